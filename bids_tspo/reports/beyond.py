"""The group report's first answer: does the synthetic map carry information about *this*
person beyond the population pattern, where, and how much? From ``group_metrics.tsv``
(``deviation_r``), ``group_region_stats.tsv`` (deviation, test–retest and patients-vs-controls
columns, with q) and the across-subject correlation map with its sidecar.

>>> m = pd.DataFrame({"participant_id": ["a", "a", "b", "c"],
...                   "deviation_r": [0.02, 0.0, -0.01, 0.03]})
>>> answer(m, None, None)["status"]
'no'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.across_subject import read_across_subject
from . import figures

YES_R, NO_R, ALPHA = 0.2, 0.1, 0.05


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _significant(stats: pd.DataFrame | None, column: str) -> pd.DataFrame:
    if stats is None or column not in stats:
        return pd.DataFrame(columns=["region"])
    return stats[pd.to_numeric(stats[column], errors="coerce") < ALPHA]


def _rows(metrics, stats, acr) -> list[dict]:
    rows = []
    if metrics is not None and "deviation_r" in metrics:
        dev = metrics.groupby("participant_id").deviation_r.mean().astype(float).dropna()
        if len(dev):
            rows.append({"measure": "deviation r (synthetic − baseline vs true − baseline, baseline fitted), "
                                    "median over subjects",
                         "synthetic": _fmt(float(dev.median())),
                         "control (baseline)": "0 by construction",
                         "n": f"{len(dev)} subjects"})
    if acr is not None:
        syn, base = acr.get("Synthetic", {}), acr.get("BaselineControl") or {}
        rows.append({"measure": "voxelwise across-subject r, median over the brain",
                     "synthetic": _fmt(syn.get("median_r")),
                     "control (baseline)": _fmt(base.get("median_r")),
                     "n": f"{acr.get('NumberOfSubjects')} subjects"})
        rows.append({"measure": "voxels where r > 0 survives BH (q < 0.05)",
                     "synthetic": _fmt(100 * (syn.get("fraction_q05") or 0), 1) + " %",
                     "control (baseline)": (_fmt(100 * base["fraction_q05"], 1) + " %"
                                            if base.get("fraction_q05") is not None else "–"),
                     "n": f"{syn.get('voxels')} voxels"})
    if stats is not None and "deviation_q" in stats:
        hits = _significant(stats, "deviation_q")
        rows.append({"measure": "regions whose synthetic value tracks the true deviation "
                                "from the population (q < 0.05)",
                     "synthetic": f"{len(hits)} of {len(stats)}",
                     "control (baseline)": "–", "n": f"{int(stats.n_subjects.max())} subjects"})
    if stats is not None and "n_pairs" in stats and stats.n_pairs.max() > 0:
        rows.append({"measure": "test–retest: r of synthetic with true changes, median over "
                                "regions",
                     "synthetic": _fmt(float(np.nanmedian(stats.retest_r.astype(float)))
                                       if stats.retest_r.notna().any() else None),
                     "control (baseline)": "0 (no change)",
                     "n": f"{int(stats.n_pairs.max())} pairs"})
    if stats is not None and "g_true_q" in stats:
        true_hits = _significant(stats, "g_true_q")
        both = _significant(true_hits, "g_synth_q")
        same = both[np.sign(both.g_true.astype(float)) == np.sign(both.g_synth.astype(float))]
        pair = stats[["g_true", "g_synth"]].astype(float).dropna()
        r = (float(np.corrcoef(pair.g_true, pair.g_synth)[0, 1])
             if len(pair) > 2 and pair.std().min() > 0 else None)
        rows.append({"measure": "patients vs controls: regions with a true effect (q < 0.05) "
                                "also found in the synthetic maps, same sign; r of g across "
                                "regions",
                     "synthetic": f"{len(same)} of {len(true_hits)}; r {_fmt(r)}",
                     "control (baseline)": "–",
                     "n": f"{int(stats.n_patients.max())} patients, "
                          f"{int(stats.n_controls.max())} controls"})
    return rows


def answer(metrics: pd.DataFrame | None, stats: pd.DataFrame | None,
           acr: dict | None) -> dict | None:
    """``status`` (yes / weak / no), ``text`` (the answer in words), ``rows`` (how much, with
    the baseline as the control) and ``where`` (regions tracking deviations, q < 0.05)."""
    rows = _rows(metrics, stats, acr)
    if not rows:
        return None
    med = None
    if metrics is not None and "deviation_r" in metrics:
        dev = metrics.groupby("participant_id").deviation_r.mean().astype(float).dropna()
        med = float(dev.median()) if len(dev) else None
    where = _significant(stats, "deviation_q")
    where = (list(where.sort_values("deviation_r", ascending=False).region.astype(str))
             if len(where) else [])
    voxels = ((acr or {}).get("Synthetic") or {}).get("fraction_q05") or 0
    control = (((acr or {}).get("BaselineControl") or {}).get("fraction_q05") or 0)
    if med is not None and med >= YES_R and (where or voxels > max(control, ALPHA)):
        status = "yes"
    elif (med is None or med < NO_R) and not where:
        status = "no"
    else:
        status = "weak"
    how = f"median deviation r {_fmt(med)} over subjects" if med is not None else ""
    text = {"yes": "Yes: the synthetic maps carry subject-specific information beyond the "
                   f"population pattern ({how}",
            "weak": "Weakly, if at all: the evidence for subject-specific information beyond "
                    f"the population pattern is inconclusive ({how}",
            "no": "No: the synthetic maps carry no measurable information about the person "
                  f"beyond the population pattern ({how}"}[status]
    text += (f"; {len(where)} region{'s track' if len(where) != 1 else ' tracks'} the true "
             f"deviations "
             f"at q < 0.05{': ' + ', '.join(w.replace('_', ' ') for w in where[:5]) if where else ''}"
             if stats is not None and "deviation_q" in stats else "") + ")."
    return {"status": status, "text": text.replace("( ", "(").replace("(;", "("),
            "rows": rows, "where": where}


def across_subject_figure(out: Path) -> str | None:
    """Axial slices of the across-subject r map on the template (−1 blue … 1 red)."""
    found = read_across_subject(out)
    if found is None:
        return None
    img, _ = found
    r = np.asarray(img.dataobj, np.float32)
    z = np.flatnonzero(np.abs(r).sum(axis=(0, 1)) > 0)
    if not len(z):
        return None
    cuts = np.linspace(z[0] + 0.15 * len(z), z[-1] - 0.15 * len(z), 6).astype(int)
    fig, axes = figures.plt.subplots(1, len(cuts), figsize=(1.4 * len(cuts) + 0.8, 1.8))
    for ax, k in zip(axes, cuts):
        shown = np.where(r[:, :, k] == 0, np.nan, r[:, :, k])
        im = ax.imshow(np.rot90(shown), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_axis_off()
        ax.set_title(f"z {img.affine[2, 3] + k * img.affine[2, 2]:.0f} mm", fontsize=8)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="r across subjects")
    return figures.svg_of(fig)
