"""Group tables: ``group_metrics.tsv`` (one row per evaluated session).

Model metrics keep their names; the training-mean baseline's metrics of the same session are
the same names prefixed ``baseline_``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io.columns import write_table
from .statistics import cnr_paired_t, paired_over_subjects
from .verdict import verdict

ID_COLUMNS = ["bids_name", "participant_id", "session_id", "group", "genotype", "fold", "target"]
KEY_METRICS = ["pearson_r", "pearson_r_smooth", "deviation_r", "mse", "mae", "normdiff",
               "percdiff", "ssim", "psnr", "pearson_r_tpl", "mse_tpl"]


def metrics_table(rows: list[dict], template: dict | None = None) -> pd.DataFrame:
    """Model rows merged with the baseline's (``baseline_*``) and template-space metrics."""
    template = template or {}
    model = [r for r in rows if r["model"] == "unet"]
    baseline = {r["bids_name"]: r for r in rows if r["model"] == "baseline_mean"}
    out = []
    for row in model:
        merged = {k: v for k, v in row.items() if k != "model"}
        for key, value in baseline.get(row["bids_name"], {}).items():
            if key not in ID_COLUMNS and key != "model":
                merged[f"baseline_{key}"] = value
        merged.update(template.get(row["bids_name"], {}))
        out.append(merged)
    table = pd.DataFrame(out)
    return table[ID_COLUMNS + [c for c in table.columns if c not in ID_COLUMNS]]


def summarise(table: pd.DataFrame, steps: int | None = None) -> dict:
    """The bundle's metrics summary: means of the key metrics (model and baseline), the
    comparison over subjects and the :func:`~.verdict.verdict` (``steps``: per fold)."""
    summary = {"sessions": int(len(table))}
    for key in KEY_METRICS:
        for prefix in ("", "baseline_"):
            column = prefix + key
            if column in table and table[column].astype(float).notna().any():
                summary[f"mean_{column}"] = float(np.nanmean(table[column].astype(float)))
    if {"participant_id", "pearson_r", "baseline_pearson_r"} <= set(table):
        test = paired_over_subjects(table, "pearson_r", "baseline_pearson_r")
        summary["subjects_unet_r_above_baseline"] = test["better"]
        summary["wilcoxon_p_subjects_r_vs_baseline"] = test["wilcoxon_p"]
    if {"cnr_synth", "cnr_true"} <= set(table):
        summary["cnr_paired_t"], summary["cnr_paired_t_p"] = cnr_paired_t(table)
        summary["cnr_paired_t_subjects"], summary["cnr_paired_t_subjects_p"] = cnr_paired_t(
            table, subjects=True)
    summary["verdict"] = verdict(table, steps)
    return summary


def write_metrics(out: Path, rows: list[dict], template: dict | None = None,
                  steps: int | None = None) -> dict:
    table = metrics_table(rows, template)
    write_table(out, "group_metrics", table)
    return summarise(table, steps)
