"""Report figures as SVG text (matplotlib and nilearn, Agg backend, no display needed)."""

from __future__ import annotations

import io
import textwrap

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PALETTE = {"HC": "#4C72B0", "CLBP": "#DD8452", "KOA": "#55A868", "n/a": "#8C8C8C"}
plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                     "svg.fonttype": "none"})


def svg_of(fig, pad: float = 0.1) -> str:
    """The figure as SVG text (closed after); ``pad`` inches around the tight bounding box:
    more where long rotated labels end, since browsers' fonts run wider than matplotlib's."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=pad)
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _display_svg(display) -> str:
    fig = display.frame_axes.figure
    text = svg_of(fig)
    display.close()
    return text


def _label_colorbar(display, label: str) -> None:
    """Name the units on a nilearn display's colour bar (nilearn leaves it unlabelled)."""
    bar = getattr(display, "_cbar", None)
    if bar is not None:
        bar.set_label(label, fontsize=8)


def mask_contour(t1: nib.Nifti1Image, mask: nib.Nifti1Image) -> str:
    """T1w with the brain-mask contour, 7 axial slices (orientation and z in mm annotated)."""
    from nilearn import plotting

    d = plotting.plot_anat(t1, display_mode="z", cut_coords=7, draw_cross=False,
                           annotate=True, colorbar=False, dim=-0.3,
                           figure=plt.figure(figsize=(11, 2.2)))
    d.add_contours(mask, levels=[0.5], colors="#e8473c", linewidths=1.0)
    return _display_svg(d)


def registration_check(warped_t1: nib.Nifti1Image, template_mask: nib.Nifti1Image) -> str:
    """The T1w in template space with the template's brain outline."""
    from nilearn import plotting

    d = plotting.plot_anat(warped_t1, display_mode="ortho", draw_cross=False, annotate=True,
                           colorbar=False, dim=-0.3, figure=plt.figure(figsize=(9, 3)))
    d.add_contours(template_mask, levels=[0.5], colors="#2fb5e8", linewidths=1.0)
    return _display_svg(d)


def coreg_check(t1: nib.Nifti1Image, suv: nib.Nifti1Image, mask: nib.Nifti1Image) -> str:
    """SUV (space-T1w) over the T1w, with the brain outline: PET-to-T1w alignment; the SUV
    colour bar (g/mL) beside the panels, no bar for the T1w (arbitrary units)."""
    from nilearn import plotting

    data = np.asarray(suv.dataobj, np.float32)
    d = plotting.plot_anat(t1, display_mode="ortho", draw_cross=False, dim=-0.2,
                           colorbar=False, figure=plt.figure(figsize=(10, 3)))
    d.add_overlay(suv, cmap="inferno", transparency=0.55, vmin=0, colorbar=True,
                  cbar_tick_format="%.1f",
                  vmax=float(np.percentile(data[data > 0], 99)) if np.any(data > 0) else 1)
    _label_colorbar(d, "SUV (g/mL)")
    d.add_contours(mask, levels=[0.5], colors="#2fe88f", linewidths=0.8)
    return _display_svg(d)


def frame_motion(displacement: list[float], frames: list[int] | None, limit_mm: float) -> str:
    """Head displacement of each PET frame of the SUV window before realignment (mm, from
    the SUV sidecar's ``FrameDisplacement``; ``frames``: their indices in the PET series,
    ``FramesUsed``), with the QC limit as a dashed line."""
    x = frames if frames and len(frames) == len(displacement) else list(
        range(len(displacement)))
    fig, ax = plt.subplots(figsize=(6, 2.4))
    ax.plot(x, displacement, "o-", color="#3b6fd8")
    ax.axhline(limit_mm, color="#c2410c", ls="--", lw=1, label=f"QC limit {limit_mm:g} mm")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("frame (index in the PET series)")
    ax.set_ylabel("displacement (mm)")
    ax.set_ylim(0, max(limit_mm, max(displacement)) * 1.15)
    ax.legend(frameon=False, fontsize=8)
    return svg_of(fig)


def synthesis_mosaic(t1: np.ndarray, true: np.ndarray | None, synth: np.ndarray,
                     sd: np.ndarray | None, mask: np.ndarray, units: str, n: int = 6,
                     z_mm: tuple[float, float] | None = None, prefix: str = "") -> str:
    """Rows T1w / true / synthetic / difference / SD on shared colour scales (axial slices of
    an RAS grid, shown in neurological convention: L on the left), colour bars in
    ``units``; ``z_mm`` (z of slice 0, slice spacing) labels each slice with its z in mm;
    ``prefix`` before the PET rows' titles (the group report's "mean ")."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    z = np.flatnonzero(mask.any(axis=(0, 1)))
    cuts = np.linspace(z.min() + 0.15 * len(z), z.max() - 0.15 * len(z), n).astype(int)
    rows = [("T1w", t1, "gray", None)]
    vmax = float(np.percentile(synth[mask], 99.5)) if mask.any() else 1
    if true is not None:
        vmax = max(vmax, float(np.percentile(true[mask], 99.5)))
        rows.append((f"{prefix}true", true * mask, "inferno", (0, vmax)))
    rows.append((f"{prefix}synthetic", synth * mask, "inferno", (0, vmax)))
    if true is not None:
        lim = float(np.percentile(np.abs(synth - true)[mask], 99)) or 1
        rows.append((f"{prefix}synthetic − {prefix}true", (synth - true) * mask, "RdBu_r",
                     (-lim, lim)))
    if sd is not None:
        rows.append(("SD across folds", sd * mask, "viridis", (0, float(sd[mask].max()) or 1)))
    # one image per row (slices side by side, blank gaps): few axes, fast to draw
    gap = np.full((t1.shape[1], max(2, t1.shape[0] // 40)), np.nan, np.float32)
    strips = [np.concatenate([part for k in cuts for part in (np.rot90(vol[:, :, k]), gap)][:-1],
                             axis=1) for _, vol, _, _ in rows]
    aspect = strips[0].shape[1] / strips[0].shape[0]
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.5 * aspect + 1.0, 1.7 * len(rows)),
                             squeeze=False)
    for ax, strip, (label, _, cmap, lims) in zip(axes[:, 0], strips, rows):
        im = ax.imshow(strip, cmap=plt.get_cmap(cmap).with_extremes(bad="white"),
                       vmin=lims[0] if lims else None, vmax=lims[1] if lims else None)
        ax.set_axis_off()
        ax.set_anchor("W")
        ax.set_title(label, loc="left", fontsize=9)
        cax = make_axes_locatable(ax).append_axes("right", size=0.08, pad=0.05)
        if lims:
            fig.colorbar(im, cax=cax, label=_units_label(units, label == "SD across folds"))
        else:
            cax.set_axis_off()
    _orientation_labels(axes[0, 0], axes[-1, 0], strips[0].shape, cuts, gap.shape[1], z_mm)
    return svg_of(fig)


def _units_label(units: str, sd: bool = False) -> str:
    """A colour bar's label: the map's units in words.

    >>> _units_label("SUVR"), _units_label("normalised 0-1 (min-max in brain)", sd=True)
    ('SUVR', 'SD (normalised 0–1)')
    """
    name = "SUVR" if units == "SUVR" else "normalised 0–1" if units.startswith("normal") \
        else units or "a.u."
    return f"SD ({name})" if sd else name


def _orientation_labels(top, bottom, shape: tuple[int, int], cuts, gap: int,
                        z_mm: tuple[float, float] | None) -> None:
    """L / R inside the first slice of the top row; each slice's z (mm) under the bottom row."""
    width = (shape[1] - gap * (len(cuts) - 1)) // len(cuts)
    style = {"fontsize": 7, "color": "#98a2b3", "fontweight": "bold"}
    top.text(1, shape[0] - 2, "L", ha="left", va="bottom", **style)
    top.text(width - 2, shape[0] - 2, "R", ha="right", va="bottom", **style)
    if z_mm is not None:
        for i, k in enumerate(cuts):
            bottom.text(i * (width + gap) + width / 2, shape[0] + 1,
                        f"z = {z_mm[0] + k * z_mm[1]:.0f} mm", ha="center", va="top",
                        fontsize=7, color="#475467")


def metric_boxplots(table: pd.DataFrame, metrics=("pearson_r", "mse", "ssim", "normdiff"),
                    labels: dict[str, str] | None = None) -> str:
    """Per-group distributions of the model's metrics, with the baseline alongside; panels
    titled by ``labels`` (metric -> readable name) where given."""
    metrics = [m for m in metrics if m in table]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3), squeeze=False)
    groups = sorted(table.group.astype(str).unique())
    for ax, m in zip(axes[0], metrics):
        data = [table.loc[table.group.astype(str) == g, m].astype(float) for g in groups]
        ax.boxplot(data, widths=0.5, showfliers=False)
        for i, (g, d) in enumerate(zip(groups, data), start=1):
            ax.scatter(np.full(len(d), i) + np.random.default_rng(i).uniform(-.12, .12, len(d)),
                       d, s=12, color=PALETTE.get(g, "#555"), zorder=3)
        if f"baseline_{m}" in table:
            ax.axhline(table[f"baseline_{m}"].astype(float).mean(), ls="--", color="#999",
                       label="baseline mean")
            ax.legend(frameon=False, fontsize=7)
        ax.set_xticks(range(1, len(groups) + 1), groups)
        ax.set_title((labels or {}).get(m, m))
    return svg_of(fig)


def region_scatter_ba(regions: pd.DataFrame, region: str) -> str:
    """Scatter (smoothed true vs synthetic) and Bland-Altman plot for one region."""
    df = regions[regions.region == region]
    x, y = df.true_smooth_mean.to_numpy(), df.synth_mean.to_numpy()
    colors = [PALETTE.get(str(g), "#555") for g in df.group]
    fig, (a, b) = plt.subplots(1, 2, figsize=(7, 2.8))
    a.scatter(x, y, c=colors, s=16)
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    a.plot([lo, hi], [lo, hi], color="#999", lw=0.8)
    a.set(xlabel="true (4 mm)", ylabel="synthetic", title=region.replace("_", " "))
    diff, mean = y - x, (x + y) / 2
    b.scatter(mean, diff, c=colors, s=16)
    bias, sd = diff.mean(), diff.std(ddof=1) if len(diff) > 1 else 0.0
    for v, ls in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
        b.axhline(v, color="#c44", ls=ls, lw=0.8)
    b.set(xlabel="mean of true and synthetic", ylabel="synthetic − true", title="Bland-Altman")
    return svg_of(fig)


def region_bars(stats: pd.DataFrame) -> str:
    """Per-region correlations: true–synthetic, synthetic–T1w, true–T1w (the paper's Fig. 6)."""
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(stats)), 3))
    x = np.arange(len(stats))
    for i, (col, label, color) in enumerate([("pearson_r", "true vs synthetic", "#4C72B0"),
                                             ("r_synth_t1w", "synthetic vs T1w", "#55A868"),
                                             ("r_true_t1w", "true vs T1w", "#DD8452")]):
        ax.bar(x + (i - 1) * 0.27, stats[col].astype(float), width=0.27, label=label, color=color)
    ax.set_xticks(x, [r.replace("_", " ") for r in stats.region], rotation=60, ha="right",
                  rotation_mode="anchor")
    ax.axhline(0, color="#333", lw=0.6)
    ax.set_ylabel("Pearson r")
    ax.legend(frameon=False, ncol=3, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1))
    return svg_of(fig, pad=0.4)


def training_curves(histories: dict[int, pd.DataFrame]) -> str:
    fig, ax = plt.subplots(figsize=(6, 2.8))
    for k, h in sorted(histories.items()):
        line, = ax.plot(h.epoch, h.train_loss, label=f"fold {k} train")
        if h.val_loss.notna().any():
            ax.plot(h.epoch, h.val_loss, ls="--", color=line.get_color(), label=f"fold {k} val")
    ax.set(xlabel="epoch", ylabel="loss (0.5 BCE + 0.5 MSE)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(frameon=False, fontsize=7, ncol=1 + len(histories) // 6, loc="upper left",
              bbox_to_anchor=(1.01, 1))
    return svg_of(fig)


def _wrapped(region: str, width: int = 24) -> str:
    """A region name as a panel title, on two lines where long.

    >>> _wrapped("Right_Temporal_Occipital_Fusiform_Cortex")
    'Right Temporal Occipital\\nFusiform Cortex'
    """
    return textwrap.fill(region.replace("_", " "), width)


def _panel_grid(n: int, width: float, height: float, per_row: int = 6):
    """A figure of ``n`` panels, at most ``per_row`` to a row (extra axes hidden); the axes
    as a flat list."""
    rows, cols = -(-n // per_row), min(n, per_row)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             layout="constrained")  # titles and tick labels never overlap
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def group_comparison(regions: pd.DataFrame, names: list[str]) -> str:
    """Smoothed true vs synthetic regional values per diagnostic group (the paper's Fig. 3)."""
    groups = sorted(regions.group.astype(str).unique())
    fig, axes = _panel_grid(len(names), 2.6, 3)
    for ax, name in zip(axes, names):
        df = regions[regions.region == name]
        data, ticks = [], []
        for g in groups:
            sub = df[df.group.astype(str) == g]
            data += [sub.true_smooth_mean.to_numpy(), sub.synth_mean.to_numpy()]
            ticks += [f"{g}\ntrue", f"{g}\nsynth"]
        parts = ax.boxplot(data, widths=0.6, showfliers=False, patch_artist=True)
        for i, box in enumerate(parts["boxes"]):
            box.set_facecolor(PALETTE.get(groups[i // 2], "#999"))
            box.set_alpha(0.35 if i % 2 else 0.8)
        ax.set_xticks(range(1, len(ticks) + 1), ticks, fontsize=7)
        ax.set_title(_wrapped(name), fontsize=9)
    return svg_of(fig)


def median_split(regions: pd.DataFrame, names: list[str]) -> str:
    """Synthetic values of sessions below/above the median smoothed true value (Fig. 4)."""
    fig, axes = _panel_grid(len(names), 2.2, 3)
    for ax, name in zip(axes, names):
        df = regions[regions.region == name]
        median = df.true_smooth_mean.median()
        low = df.synth_mean[df.true_smooth_mean <= median].to_numpy()
        high = df.synth_mean[df.true_smooth_mean > median].to_numpy()
        ax.boxplot([low, high], widths=0.5, showfliers=False)
        ax.set_xticks([1, 2], ["low\ntrue", "high\ntrue"], fontsize=8)
        ax.set_title(_wrapped(name), fontsize=9)
    axes[0].set_ylabel("synthetic regional mean")
    return svg_of(fig)
