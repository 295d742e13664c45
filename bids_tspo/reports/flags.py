"""Sessions to check: preprocessing QC from the sidecars and metric outliers from
``group_metrics.tsv``, merged into one list with a reason each. The group report lists them
(each a link to its participant report) and a flagged session's participant report says so at
its top.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..io.derivatives import find_pet, group_table_path, session_name
from ..io.tables import read_tsv


def far_from_median(values: pd.Series, k: float = 3.0, least: int = 5) -> pd.Series:
    """True where a value lies more than ``k`` robust SDs (1.4826 MAD) from the median; all
    False with fewer than ``least`` values or no spread.

    >>> far_from_median(pd.Series([1.0, 1.1, 0.9, 1.0, 1.05, 5.0])).tolist()
    [False, False, False, False, False, True]
    """
    values = values.astype(float)
    med = values.median()
    mad = (values - med).abs().median() * 1.4826
    if values.notna().sum() < least or mad == 0 or np.isnan(mad):
        return pd.Series(False, index=values.index)
    return (values - med).abs() > k * mad


def metric_outliers(table: pd.DataFrame, columns=("pearson_r", "mse", "normdiff")
                    ) -> list[dict]:
    """Sessions whose metric lies beyond 3 robust SDs of the cohort median (one dict each)."""
    flagged = []
    for col in columns:
        if col not in table:
            continue
        med = table[col].astype(float).median()
        for _, row in table[far_from_median(table[col], least=2)].iterrows():
            flagged.append({"bids_name": row.bids_name, "subject": row.participant_id,
                            "metric": col, "value": float(row[col]), "median": float(med)})
    return flagged


MIN_TEMPLATE_R = 0.8      # real 3T MPRAGE 0.91, Colin27 0.96 (preprocess.qc)
MIN_PET_COVERAGE = 0.95   # fraction of the brain mask inside the PET field of view
MAX_FRAME_MOTION_MM = 3.0  # head displacement between the frames of the SUV window


def preprocessing_qc(out: Path) -> pd.DataFrame:
    """One row per preprocessed session from its sidecars: T1w-template r, brain volume, the
    least PET brain coverage, the largest head displacement between PET frames, and why it is
    flagged (r under 0.8 or far below the cohort, brain volume beyond 3 MAD, PET covering under
    95 % of the brain, frames more than 3 mm apart before realignment); flagged rows first."""
    rows = []
    for side in sorted(Path(out).glob("sub-*/**/anat/*_desc-preproc_T1w.json")):
        name = session_name(side)
        qc = json.loads(side.read_text()).get("QualityControl", {})
        pets = find_pet(side.parent.parent / "pet", name, desc="suv", space="T1w", ext=".json")
        sides = [json.loads(p.read_text()) for p in pets]
        coverage = [c for m in sides if (c := m.get("BrainCoverage")) is not None]
        moved = [max(m["FrameDisplacement"]) for m in sides if m.get("FrameDisplacement")]
        rows.append({"session": name, "template_r": qc.get("TemplateCorrelation", np.nan),
                     "brain_volume_ml": qc.get("BrainVolume", np.nan),
                     "pet_brain_coverage": min(coverage) if coverage else np.nan,
                     "pet_frame_motion_mm": max(moved) if moved else np.nan})
    table = pd.DataFrame(rows, columns=["session", "template_r", "brain_volume_ml",
                                        "pet_brain_coverage", "pet_frame_motion_mm"])
    r = table.template_r.astype(float)
    checks = {"registration": (r < MIN_TEMPLATE_R) | (far_from_median(r) & (r < r.median())),
              "brain volume": far_from_median(table.brain_volume_ml),
              "PET coverage": table.pet_brain_coverage.astype(float) < MIN_PET_COVERAGE,
              "PET motion": table.pet_frame_motion_mm.astype(float) > MAX_FRAME_MOTION_MM}
    table["flagged_for"] = [", ".join(k for k, hits in checks.items() if hits.iloc[i])
                            for i in range(len(table))]
    flagged = table["flagged_for"] != ""  # rows are in session order (sorted sidecars)
    return pd.concat([table[flagged], table[~flagged]]).reset_index(drop=True)


def sessions_to_check(out: Path) -> list[dict]:
    """One entry per flagged session: ``session``, ``subject`` (without ``sub-``) and
    ``reasons`` (QC checks and metric outliers, in words), in session order."""
    reasons: dict[str, list[str]] = {}
    qc = preprocessing_qc(out)
    for name, why in zip(qc.session, qc.flagged_for):
        if why:
            reasons.setdefault(name, []).extend(f"QC: {w}" for w in why.split(", "))
    metrics = read_tsv(group_table_path(out, "metrics"))
    if metrics is not None:
        for o in metric_outliers(metrics):
            reasons.setdefault(o["bids_name"], []).append(
                f"{o['metric']} {o['value']:.4g} (cohort median {o['median']:.4g})")
    return [{"session": name, "subject": name.split("_")[0][4:], "reasons": why}
            for name, why in sorted(reasons.items())]
