"""The group report: ``group_report.html``, self-contained (figures inlined as SVG), from the
group tables, the model bundle and the run summaries in OUTPUT_DIR."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import CITATION, __version__
from ..evaluation.across_subject import read_across_subject
from ..evaluation.group_maps import read_group_means
from ..evaluation.statistics import cnr_paired_t, paired_over_subjects
from ..evaluation.beyond import relative_values
from ..evaluation.subject_stats import subject_means
from ..evaluation.verdict import steps_per_fold, verdict
from ..io.atomic import write_text_atomic
from ..io.columns import describe_column
from ..io.derivatives import group_table_path
from ..io.spaces import resolve_template
from ..io.tables import read_tsv
from ..model.targets import scale_t1
from . import figures
from .beyond import across_subject_figure, answer
from .flags import (
    MAX_FRAME_MOTION_MM,
    MIN_PET_COVERAGE,
    MIN_TEMPLATE_R,
    preprocessing_qc,
    sessions_to_check,
)
from .regions_shown import regions_to_show
from .rendering import ENV, METHODS, run_errors


def _table(frame: pd.DataFrame, index: bool = False, fold_after: int = 20) -> str:
    """An HTML table of the report: 4 decimals, an empty cell (a single-session group's SD,
    a test without enough sessions) as a dash, region names with spaces; a table of more than
    ``fold_after`` rows (one per session in a large cohort) is folded away until opened.

    >>> html = _table(pd.DataFrame({"region": ["Left_Caudate"], "p": [float("nan")]}))
    >>> "Left Caudate" in html and "<td>–</td>" in html and "<details" not in html
    True
    >>> _table(pd.DataFrame({"r": range(30)})).startswith("<details><summary>30 rows")
    True
    """
    frame = frame.round(4)
    if "region" in frame:
        frame = frame.assign(region=frame.region.astype(str).str.replace("_", " "))
    html = frame.to_html(classes="data", border=0, index=index, na_rep="–")
    if len(frame) > fold_after:
        html = f"<details><summary>{len(frame)} rows (show)</summary>{html}</details>"
    return html


def _training_note(model: dict | None) -> str | None:
    """One line on where and how long the folds trained, from model.json.

    >>> _training_note({"training": {"per_fold": {"0": {"device": "cuda:0", "world_size": 2,
    ...     "epochs": 50, "seconds": 600.0}, "1": {"device": "cuda:0", "world_size": 2,
    ...     "epochs": 50, "seconds": 660.0}}}})
    'Trained on cuda:0 (2 processes): 12.6 s per epoch, 21.0 min for 2 folds.'
    """
    folds = ((model or {}).get("training") or {}).get("per_fold") or {}
    epochs = sum(f["epochs"] for f in folds.values())
    if not epochs:
        return None
    seconds = sum(f["seconds"] for f in folds.values())
    devices = ", ".join(sorted({str(f["device"]) for f in folds.values()}))
    world = max(f.get("world_size", 1) for f in folds.values())
    total = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
    return (f"Trained on {devices} ({world} process{'es' if world > 1 else ''}): "
            f"{seconds / epochs:.1f} s per epoch, {total} for {len(folds)} "
            f"fold{'s' if len(folds) > 1 else ''}.")


def _baseline_table(metrics: pd.DataFrame) -> str | None:
    """Mean of each metric for the U-Net and the baseline, and the paired comparison over
    subjects (their sessions averaged): subjects where the U-Net is better, Wilcoxon p."""
    rows = []
    for metric in ("pearson_r", "pearson_r_smooth", "mse", "ssim"):
        if f"baseline_{metric}" not in metrics:
            continue
        test = paired_over_subjects(metrics, metric, f"baseline_{metric}",
                                    higher_is_better=metric != "mse")
        rows.append({"metric": metric, "U-Net": metrics[metric].mean(),
                     "training-mean baseline": metrics[f"baseline_{metric}"].mean(),
                     "subjects where the U-Net is better": f"{test['better']} / {test['subjects']}",
                     "paired Wilcoxon p (subjects)": test["wilcoxon_p"]})
    return _table(pd.DataFrame(rows)) if rows else None


def _qc_summary(out: Path) -> dict | None:
    table = preprocessing_qc(out)
    if not len(table):
        return None
    return {"sessions": len(table), "flagged": int((table["flagged_for"] != "").sum()),
            "min_r": MIN_TEMPLATE_R, "min_coverage": round(100 * MIN_PET_COVERAGE),
            "max_motion": MAX_FRAME_MOTION_MM,
            "table": _table(table)}


def _group_mosaic(out: Path) -> str | None:
    """Mean true, mean synthetic and their difference over subjects, on the template."""
    maps = read_group_means(out)
    if maps is None:
        return None
    true_img, synth_img, meta = maps
    tpl_img, tpl_mask = resolve_template(2).load()
    mask = (np.asarray(tpl_mask.dataobj) > 0.5) & (np.asarray(true_img.dataobj) > 0)
    if tpl_img.shape[:3] != mask.shape or not mask.any():
        return None
    affine = true_img.affine
    return figures.synthesis_mosaic(
        scale_t1(np.asarray(tpl_img.dataobj, np.float32), mask),
        np.asarray(true_img.dataobj, np.float32), np.asarray(synth_img.dataobj, np.float32),
        None, mask, meta.get("Units", ""), z_mm=(float(affine[2, 3]), float(affine[2, 2])),
        prefix="mean ")


def group_report(out: Path) -> Path:
    """Write ``group_report.html`` (self-contained) from the group tables and the bundle."""
    out = Path(out)
    metrics = read_tsv(group_table_path(out, "metrics"))
    regions = read_tsv(group_table_path(out, "regions"))
    stats = read_tsv(group_table_path(out, "region_stats"))
    bundles = sorted((out / "models").glob("*/model.json"), key=lambda p: p.stat().st_mtime)
    bundle = bundles[-1] if bundles else None  # the bundle the latest group run wrote
    model = json.loads(bundle.read_text()) if bundle else None
    figs = {}
    if metrics is not None and len(metrics):  # figures plot subjects, as the tests count
        figs["metrics"] = figures.metric_boxplots(subject_means(metrics), labels={
            c: (describe_column("group_metrics", c) or {}).get("LongName", c)
            for c in metrics.columns})
    key = regions_to_show(stats)
    if len(key):
        figs["region_bars"] = figures.region_bars(key)
        subjects = subject_means(regions, ["region"])
        figs["scatter"] = [figures.region_scatter_ba(subjects, r) for r in key.region]
        figs["groups"] = figures.group_comparison(  # the values the g_true/g_synth compare
            subject_means(relative_values(regions), ["region"]), list(key.region))
        figs["median_split"] = figures.median_split(subjects, list(key.region))
    if (mosaic := _group_mosaic(out)) is not None:
        figs["group_mosaic"] = mosaic
    across = read_across_subject(out)
    beyond = answer(metrics, stats, across[1] if across else None)
    if beyond is not None:
        beyond["table"] = _table(pd.DataFrame(beyond["rows"]))
    if (across_fig := across_subject_figure(out)) is not None:
        figs["acrosssubject"] = across_fig
    if bundle is not None:
        histories = {int(p.parent.name.split("-")[1]): read_tsv(p)
                     for p in sorted(bundle.parent.glob("fold-*/history.tsv"))}
        if histories:
            figs["curves"] = figures.training_curves(histories)
    tables = {}
    if metrics is not None:
        cols = [c for c in ("pearson_r", "pearson_r_smooth", "mse", "mse_smooth", "normdiff",
                            "percdiff", "cnr_synth", "cnr_true", "ssim", "psnr")
                if c in metrics]
        tables["by_group"] = _table(metrics.groupby("group")[cols].agg(["mean", "std"]), True)
        cohort = metrics.groupby(["group", "genotype"]).agg(
            sessions=("bids_name", "count"), subjects=("participant_id", "nunique"))
        tables["cohort"] = _table(cohort.reset_index())
        tables["baseline"] = _baseline_table(metrics)
        t, p = cnr_paired_t(metrics)
        t_s, p_s = cnr_paired_t(metrics, subjects=True)
        tables["cnr_test"] = (None if np.isnan(t) else
                              f"CNR, synthetic vs true (paired t-test across sessions, as the "
                              f"paper): mean {metrics.cnr_synth.mean():.3f} vs "
                              f"{metrics.cnr_true.mean():.3f}, t = {t:.2f}, p = {p:.3g}"
                              + ("" if np.isnan(t_s) else f"; across subjects (sessions "
                                 f"averaged): t = {t_s:.2f}, p = {p_s:.3g}"))
    for name in ("cohort", "specificity"):
        t = read_tsv(group_table_path(out, name))
        if t is not None:
            tables[f"tsv_{name}"] = _table(t)
            if name == "specificity" and len(t):
                best = t.own_is_best_r.astype(str).str.lower().eq("true")
                tables["own_best"] = (f"{int(best.sum())} of {len(t)} synthetic maps "
                                      f"({100 * best.mean():.0f} %) match their own PET best; "
                                      f"mean r own {t.r_own.mean():.3f} vs others "
                                      f"{t.r_others_mean.mean():.3f}")
    if stats is not None:
        keep = (["region", "n_subjects", "pearson_r", "pearson_p", "pearson_q", "spearman_rho",
                 "icc", "pearson_r_sessions", "ba_bias", "ba_loa_low", "ba_loa_high",
                 "mannwhitney_p", "mannwhitney_q"]
                + [c for c in stats if c.startswith(("mannwhitney_p_", "wilcoxon_p_",
                                                     "mannwhitney_q_", "wilcoxon_q_"))])
        keep = [c for c in keep if c in key]
        tables["regions"] = _table(key[keep[:1] + ["why"] + keep[1:]])
        paper = read_tsv(group_table_path(out, "paper_region_stats"))
        if paper is not None and len(paper):  # the paper's Table 3 atlas, every region
            tables["paper_regions"] = _table(paper[[c for c in keep if c in paper]])
        tables["regions_shown"] = {"shown": len(key), "total": int(stats.region.nunique()),
                                   "why": key.groupby(key.why.str.split(" [(]").str[0],
                                                      sort=False).region.apply(list).to_dict()}
    html = ENV.get_template("group.html.j2").render(
        model=model, figs=figs, tables=tables,
        to_check=sessions_to_check(out),
        verdict=verdict(metrics, steps_per_fold(
            ((model or {}).get("training") or {}).get("per_fold"))),
        training_note=_training_note(model), beyond=beyond,
        qc=_qc_summary(out),
        subjects=sorted(p.name[4:-5] for p in out.glob("sub-*.html")),
        errors=run_errors(out), version=__version__, citation=CITATION, methods=METHODS,
        n_sessions=0 if metrics is None else len(metrics), date=time.strftime("%Y-%m-%d %H:%M"))
    return write_text_atomic(out / "group_report.html", html)
