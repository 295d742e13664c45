"""Beyond the population pattern: does a synthetic map carry information about *this* person?

The population pattern is the fold's training-mean map (:mod:`.baseline`) placed on the
subject's anatomy; what the synthesis adds must show in the *deviations* from it.

* :func:`deviation_metrics`: per session, r of (synthetic − baseline) with (true − baseline)
  inside the scored brain, the baseline fitted to each map first (scale and offset: the
  partial correlation given the baseline, :func:`partial_r`), so that a rescaled or
  contrast-reduced copy of the population map scores nothing (``deviation_r``;
  ``deviation_r_smooth``: against the 4 mm truth).
* :func:`region_tracking`: per region across subjects, r and ICC(A,1) of the synthetic and
  true deviations from the population value (the baseline's regional mean, else the mean
  over subjects).
* :func:`retest`: per region, for subjects with repeated scans, r of the synthetic change
  between two sessions with the true change (pairs of consecutive sessions).
* :func:`group_effects`: per region, patients vs controls Hedges' g with 95 % CI in the true
  and in the synthetic maps (subjects as units; values relative to the session's brain
  mean), adjusted for genotype where it is known.

Every p column gets its Benjamini–Hochberg q in :func:`~.statistics.region_stats`' table.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
from scipy import stats as st

from ..io.tables import is_missing
from .metrics import smooth
from .subject_stats import hedges_g, icc_a1, pearson, per_subject

CONTROL_LABELS = ("hc", "control", "controls", "healthy", "hv", "cn", "ctrl")


def deviation_metrics(synth: np.ndarray, baseline: np.ndarray | None, truth: np.ndarray,
                      scored: np.ndarray, zooms) -> dict[str, float]:
    """``deviation_r`` and ``deviation_r_smooth`` of one session (NaN without a baseline).

    >>> pop = np.linspace(0, 1, 8)
    >>> own = np.array([0, 1, 0, -1, 0, 1, 0, -1.0])
    >>> out = deviation_metrics(pop + 0.5 * own, pop, pop + own, np.ones(8, bool), (1, 1, 1))
    >>> round(out["deviation_r"], 3)
    1.0
    """
    nan = {"deviation_r": float("nan"), "deviation_r_smooth": float("nan")}
    if baseline is None:
        return nan
    base = baseline[scored]
    out = {"deviation_r": partial_r(synth[scored], truth[scored], base)[0]}
    if truth.ndim == 3:
        smoothed = smooth(truth, zooms, mask=scored)
        out["deviation_r_smooth"] = partial_r(synth[scored], smoothed[scored], base)[0]
    else:
        out["deviation_r_smooth"] = float("nan")
    return out


def _residual(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, int]:
    """``y`` minus its least-squares fit ``a + b·x``, and the rank of that fit's design."""
    design = np.column_stack([np.ones(len(x)), np.asarray(x, np.float64)])
    coef, _, rank, _ = np.linalg.lstsq(design, np.asarray(y, np.float64), rcond=None)
    return np.asarray(y, np.float64) - design @ coef, int(rank)


def partial_r(x, y, z) -> tuple[float, float]:
    """Pearson r of ``x`` and ``y`` once each is freed of its best affine fit to ``z`` (the
    partial correlation given ``z``), with its two-sided p (n − 3 degrees of freedom; n − 2
    when ``z`` is constant). NaN when either is (nearly) an affine copy of ``z``: then it
    says nothing beyond ``z``.

    >>> z = np.linspace(0, 1, 50); own = np.sin(40 * z)
    >>> round(partial_r(3 * z + 0.5 * own, 2 * z + own, z)[0], 6)   # scales do not matter
    1.0
    >>> bool(np.isnan(partial_r(0.8 * z + 0.1, z + own, z)[0]))      # a rescaled copy of z
    True
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    rx, rank = _residual(x, z)
    ry, _ = _residual(y, z)
    n = len(x)
    dof = n - rank - 1
    if dof < 1 or rx.std() <= 1e-9 * (x.std() + 1e-30) or ry.std() <= 1e-9 * (y.std() + 1e-30):
        return float("nan"), float("nan")
    r = float(np.clip(np.corrcoef(rx, ry)[0, 1], -1, 1))
    t = r * np.sqrt(dof / max(1 - r * r, 1e-300))
    return r, float(2 * st.t.sf(abs(t), dof))


def without_genotype(synth: np.ndarray, factor: float | None,
                     scored: np.ndarray) -> np.ndarray | None:
    """The synthetic SUVR map without the test subject's genotype contrast inside ``scored``:
    ``1 + (SUVR - 1) / c``, the inverse of :func:`~bids_tspo.model.genotype.restore` (None
    when no factor was applied).

    >>> without_genotype(np.array([2.0, 0.5]), 2.0, np.array([True, True])).tolist()
    [1.5, 0.75]
    """
    if factor is None:
        return None
    return np.where(scored, 1.0 + (synth - 1.0) / factor, synth).astype(np.float32)


def session_columns(synth: np.ndarray, baseline: np.ndarray | None, truth: np.ndarray,
                    scored: np.ndarray, zooms, free: np.ndarray | None = None) -> dict:
    """The ``unet`` row's columns of this module: :func:`deviation_metrics` and, where the
    fold's genotype contrast was applied to this SUVR map, Pearson r, MSE and deviation r of
    the map without it (``free``, :func:`without_genotype`, in the truth's units;
    ``*_nogenotype``): what MRI alone gives, not mixed with what the genotype gives."""
    out = deviation_metrics(synth, baseline, truth, scored, zooms)
    if free is not None:
        s, t = free[scored], truth[scored]
        out |= {"pearson_r_nogenotype": pearson(s, t)[0],
                "mse_nogenotype": float(np.mean((s - t) ** 2)),
                "deviation_r_nogenotype": deviation_metrics(free, baseline, truth, scored,
                                                            zooms)["deviation_r"]}
    return out


def region_tracking(df: pd.DataFrame) -> dict[str, float]:
    """One region's rows (per session): across subjects, the partial r (with p) of the
    synthetic and true values given the population value (:func:`partial_r`), and ICC(A,1)
    (with p) of synthetic − population with true − population; the population value is the
    region's ``baseline_mean`` when the table has it (the fold's training mean), else the
    mean over the subjects here (then the partial r is the plain r)."""
    columns = ["true_smooth_mean", "synth_mean"] + (["baseline_mean"] if "baseline_mean" in df
                                                    and df.baseline_mean.notna().all() else [])
    subj = per_subject(df, columns)
    pop = (subj.baseline_mean if "baseline_mean" in subj
           else pd.Series(subj.true_smooth_mean.mean(), subj.index))
    r, p = partial_r(subj.synth_mean, subj.true_smooth_mean, pop)
    true, synth = subj.true_smooth_mean - pop, subj.synth_mean - pop
    icc, p_icc = icc_a1(np.column_stack([true, synth]))
    return {"deviation_r": r, "deviation_p": p, "deviation_icc": icc, "deviation_icc_p": p_icc}


def _pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Consecutive sessions of each subject (sorted by session label) as changes."""
    if "session_id" not in df:
        return pd.DataFrame(columns=["d_true", "d_synth"])
    rows = []
    for _, sdf in df.sort_values("session_id").groupby("participant_id"):
        values = sdf[["true_smooth_mean", "synth_mean"]].to_numpy(float)
        for a, b in pairwise(values):
            rows.append({"d_true": b[0] - a[0], "d_synth": b[1] - a[1]})
    return pd.DataFrame(rows, columns=["d_true", "d_synth"])


def retest(df: pd.DataFrame) -> dict[str, float]:
    """One region's rows: the number of repeated-scan pairs and r (with p) of the synthetic
    change with the true change (NaN under 3 pairs)."""
    pairs = _pairs(df)
    r, p = pearson(pairs.d_true, pairs.d_synth) if len(pairs) else (float("nan"),) * 2
    return {"n_pairs": len(pairs), "retest_r": r, "retest_p": p}


def is_control(group: str) -> bool:
    """Whether a participants.tsv group label names healthy controls.

    >>> is_control("HC"), is_control("Controls"), is_control("CLBP")
    (True, True, False)
    """
    return str(group).strip().lower() in CONTROL_LABELS


def _genotypes(patients: pd.DataFrame, controls: pd.DataFrame):
    """Both groups' genotype labels when every subject has one and there are two or more
    (then the effects are adjusted for genotype), else None."""
    if "genotype" not in patients:
        return None
    def clean(column: pd.Series) -> pd.Series:
        return column.astype(str).str.strip().str.upper()

    labels = pd.concat([patients.genotype, controls.genotype])
    if labels.map(is_missing).any() or clean(labels).nunique() < 2:
        return None
    return clean(patients.genotype).tolist(), clean(controls.genotype).tolist()


def relative_values(df: pd.DataFrame) -> pd.DataFrame:
    """``true_smooth_mean`` and ``synth_mean`` as ratios to their session's brain mean (the
    whole imaged brain as pseudo-reference region, as TSPO group studies use SUVR) when the
    rows carry those means; else as they are. A per-session normalisation to the map's
    extremes (the min-max target) makes a patient's hot thalamus lower every other region:
    on the positive-control phantom 90 of 110 regions then "differed" in the true maps. For
    the min-max target the ratio is (SUV - lo) / (brain mean - lo), lo the session's 0.5th
    percentile: scale-free, a monotone stretch of SUVR, not SUVR itself; and the brain mean
    includes the affected regions, so a hot spot still lowers the others slightly.

    >>> df = pd.DataFrame({"true_smooth_mean": [2.0], "synth_mean": [3.0],
    ...                    "true_smooth_brain_mean": [4.0], "synth_brain_mean": [6.0]})
    >>> relative_values(df)[["true_smooth_mean", "synth_mean"]].values.tolist()
    [[0.5, 0.5]]
    """
    if not {"true_smooth_brain_mean", "synth_brain_mean"} <= set(df):
        return df
    return df.assign(true_smooth_mean=df.true_smooth_mean / df.true_smooth_brain_mean,
                     synth_mean=df.synth_mean / df.synth_brain_mean)


def group_effects(df: pd.DataFrame) -> dict[str, float]:
    """One region's rows: patients (every group not named as controls) vs controls, Hedges' g
    (patients − controls) with 95 % CI and p, in the true (4 mm) and the synthetic subject
    means, each relative to its session's brain mean (:func:`relative_values`);
    ``g_synth_minus_true`` their difference. Adjusted for the rs6971 genotype
    (:func:`~.subject_stats.hedges_g` with strata) when every subject's is known and two or
    more occur, as TSPO group comparisons must be: ``g_adjusted_for`` says which. Empty
    without both kinds."""
    if "group" not in df:
        return {}
    labels = [c for c in ("group", "genotype") if c in df]
    subj = per_subject(relative_values(df), ["true_smooth_mean", "synth_mean"]).join(
        df.groupby("participant_id")[labels].first())
    control = subj.group.map(is_control)
    known = ~subj.group.map(is_missing)
    patients, controls = subj[known & ~control], subj[control]
    if not len(patients) or not len(controls):
        return {}
    strata = _genotypes(patients, controls)
    out = {"n_patients": len(patients), "n_controls": len(controls)}
    for name, column in (("true", "true_smooth_mean"), ("synth", "synth_mean")):
        effect = hedges_g(patients[column], controls[column], strata=strata)
        out |= {f"g_{name}": effect["g"], f"g_{name}_ci_low": effect["ci_low"],
                f"g_{name}_ci_high": effect["ci_high"], f"g_{name}_p": effect["p"]}
        if name == "true":  # what was done, as hedges_g did it (a region's NaN may drop a level)
            out["g_adjusted_for"] = ("genotype" if effect["adjusted"] else
                                     "none: genotype confounded with group"
                                     if effect["confounded"] else "none")
    out["g_synth_minus_true"] = out["g_synth"] - out["g_true"]
    return out


def beyond_stats(regions: pd.DataFrame) -> pd.DataFrame:
    """One row per region: :func:`region_tracking`, :func:`retest`, :func:`group_effects`."""
    rows = [{"region": region} | region_tracking(df) | retest(df) | group_effects(df)
            for region, df in regions.groupby("region", sort=False)]
    return pd.DataFrame(rows)
