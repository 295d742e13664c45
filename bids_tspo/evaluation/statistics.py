"""ROI statistics of the paper (Harvard-Oxford regions, template space) and beyond.

* :func:`region_values`: mean true, 4 mm-smoothed true, synthetic and T1w value per region of
  one session (rows of ``group_regions.tsv``).
* :func:`region_stats`: per region, across subjects (each subject's sessions averaged first:
  repeated scans are not independent): Pearson r (smoothed true vs synthetic) with p, Spearman
  rho and ICC(A,1), Bland-Altman bias and limits of agreement, the paper's median-split
  Mann-Whitney U of the synthetic values overall and per genotype (Table 3), correlations with
  the T1w signal (Figure 6), a paired true-vs-synthetic Wilcoxon test per diagnostic group
  (Figure 3); the paper's correlation over sessions beside them; what the synthesis adds
  beyond the population pattern (:mod:`.beyond`: deviations, test–retest, patients vs
  controls); ``X_q`` (Benjamini–Hochberg across regions) beside every ``X_p``.
* :func:`specificity`: each synthetic map against its own true PET and every other subject's
  (Table 5), with whether its own is the best match.
* :func:`cohort_summary`: normalised SUV mean ± SD in the brain (Table 2), over subjects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from .beyond import beyond_stats
from .subject_stats import icc_a1, pearson, per_subject, spearman, subject_means, with_q


def region_values(labels: np.ndarray, names: dict[int, str], true: np.ndarray,
                  smooth_true: np.ndarray, synth: np.ndarray, t1w: np.ndarray,
                  min_voxels: int = 5, baseline: np.ndarray | None = None) -> list[dict]:
    """Per-region means of four co-registered template-space images (and of the fold's
    population map, ``baseline_mean``, when given)."""
    rows = []
    for index, name in names.items():
        inside = labels == index
        n = int(inside.sum())
        if n < min_voxels:
            continue
        rows.append({"region": name, "region_id": index, "n_voxels": n,
                     "true_mean": float(true[inside].mean()),
                     "true_smooth_mean": float(smooth_true[inside].mean()),
                     "synth_mean": float(synth[inside].mean()),
                     "t1w_mean": float(t1w[inside].mean())})
        if baseline is not None:
            rows[-1]["baseline_mean"] = float(baseline[inside].mean())
    return rows


def _pearson(x, y) -> tuple[float, float]:
    return pearson(x, y)


def _median_split_u(true, synth) -> tuple[float, float]:
    """Mann-Whitney U of synthetic values between units below/above the median true value
    (the paper's test)."""
    if len(true) < 4:
        return float("nan"), float("nan")
    median = np.median(true)
    low, high = synth[true <= median], synth[true > median]
    if len(low) < 2 or len(high) < 2:
        return float("nan"), float("nan")
    u, p = st.mannwhitneyu(low, high, alternative="two-sided")
    return float(u), float(p)


VALUES = ("true_smooth_mean", "synth_mean", "t1w_mean", "baseline_mean")


def _subject_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per subject of one region's rows: values averaged, group and genotype kept."""
    if "participant_id" not in df:
        return df.assign(participant_id=np.arange(len(df)).astype(str))
    keep = [c for c in ("participant_id", *VALUES, "group", "genotype") if c in df]
    return subject_means(df[keep])


def region_stats(regions: pd.DataFrame) -> pd.DataFrame:
    """One row per region: the paper's statistics (see module docstring) with subjects as the
    units (each subject's sessions averaged first), Spearman and ICC(A,1) beside them, the
    paper's correlation over sessions kept as ``pearson_r_sessions``, and the
    Benjamini–Hochberg q of every p column beside it (one family per column, across regions).

    >>> rows = pd.DataFrame({"region": "A", "participant_id": ["s1", "s1", "s2", "s3"],
    ...                      "true_smooth_mean": [1.0, 1.2, 2.0, 3.0],
    ...                      "synth_mean": [1.1, 1.1, 2.1, 2.9], "t1w_mean": 0.5,
    ...                      "genotype": "HAB", "group": "HC"})
    >>> row = region_stats(rows).iloc[0]
    >>> int(row.n_sessions), int(row.n_subjects), round(float(row.pearson_r), 3)
    (4, 3, 0.996)
    """
    out = []
    for region, df in regions.groupby("region", sort=False):
        subjects = _subject_rows(df)
        true, synth = subjects.true_smooth_mean.to_numpy(), subjects.synth_mean.to_numpy()
        diff, mean = synth - true, (synth + true) / 2
        r, p = pearson(true, synth)
        rho, p_rho = spearman(true, synth)
        icc, p_icc = icc_a1(np.column_stack([true, synth]))
        r_ses, p_ses = pearson(df.true_smooth_mean, df.synth_mean)
        u, pu = _median_split_u(true, synth)
        r_true_t1, p_true_t1 = pearson(true, subjects.t1w_mean)
        r_syn_t1, p_syn_t1 = pearson(synth, subjects.t1w_mean)
        sd = diff.std(ddof=1) if len(diff) > 1 else float("nan")
        row = {"region": region, "n_sessions": len(df), "n_subjects": len(subjects),
               "true_smooth_mean": true.mean(), "synth_mean": synth.mean(),
               "pearson_r": r, "pearson_p": p, "spearman_rho": rho, "spearman_p": p_rho,
               "icc": icc, "icc_p": p_icc,
               "pearson_r_sessions": r_ses, "pearson_p_sessions": p_ses,
               "ba_bias": diff.mean(), "ba_loa_low": diff.mean() - 1.96 * sd,
               "ba_loa_high": diff.mean() + 1.96 * sd, "ba_mean_of_means": mean.mean(),
               "mannwhitney_u": u, "mannwhitney_p": pu,
               "r_true_t1w": r_true_t1, "p_true_t1w": p_true_t1,
               "r_synth_t1w": r_syn_t1, "p_synth_t1w": p_syn_t1}
        for genotype, gdf in subjects.groupby("genotype"):
            row[f"mannwhitney_p_{genotype}"] = _median_split_u(
                gdf.true_smooth_mean.to_numpy(), gdf.synth_mean.to_numpy())[1]
        for group, gdf in subjects.groupby("group"):
            d = gdf.synth_mean.to_numpy() - gdf.true_smooth_mean.to_numpy()
            row[f"wilcoxon_p_{group}"] = (float(st.wilcoxon(d).pvalue)
                                          if len(d) >= 5 and np.any(d != 0) else float("nan"))
        out.append(row)
    table = pd.DataFrame(out).merge(beyond_stats(regions), on="region", how="left")
    return with_q(table)


def specificity(synth: dict[str, np.ndarray], true: dict[str, np.ndarray],
                scored: dict[str, np.ndarray], subject_of: dict[str, str]) -> pd.DataFrame:
    """Pearson r and MSE of each synthetic map with its own and with other subjects' PET.

    ``scored`` holds each session's region (template brain its PET imaged); a pair of sessions
    is compared where both are scored, so no map is matched against another's unimaged zeros.

    >>> ramp, everywhere, top_missed = np.arange(6.0), np.ones(6, bool), np.arange(6) < 4
    >>> table = specificity({"a": ramp, "b": 5 - ramp},
    ...                     {"a": ramp, "b": np.where(top_missed, ramp, 0)},
    ...                     {"a": everywhere, "b": top_missed}, {"a": "1", "b": "2"})
    >>> table.r_others_mean.round(3).tolist()       # a vs b only where b was imaged: exact
    [1.0, -1.0]
    """
    rows = []
    names = list(synth)
    for name in names:
        mask = scored[name]
        s = synth[name]
        others = [n for n in names if subject_of[n] != subject_of[name]]
        r_own = _pearson(s[mask], true[name][mask])[0]
        both = {o: mask & scored[o] for o in others}
        r_other = [_pearson(s[both[o]], true[o][both[o]])[0] for o in others]
        mse_other = [float(np.mean((s[both[o]] - true[o][both[o]]) ** 2)) for o in others]
        rows.append({"bids_name": name, "r_own": r_own,
                     "r_others_mean": float(np.mean(r_other)) if r_other else float("nan"),
                     "mse_own": float(np.mean((s[mask] - true[name][mask]) ** 2)),
                     "mse_others_mean": float(np.mean(mse_other)) if mse_other else float("nan"),
                     "own_is_best_r": bool(all(r_own > r for r in r_other)) if r_other else None})
    return pd.DataFrame(rows)


def cohort_summary(values: dict[str, list[float]],
                   subjects: list[str] | None = None) -> pd.DataFrame:
    """Mean ± SD of each image's brain mean (the paper's Table 2), across subjects when
    ``subjects`` (one per value) is given (each subject's sessions averaged first).

    >>> row = cohort_summary({"original": [1.0, 3.0, 5.0]}, ["a", "a", "b"]).iloc[0]
    >>> int(row.n_sessions), int(row.n_subjects), float(row["mean"]), round(float(row.sd), 4)
    (3, 2, 3.5, 2.1213)
    """
    rows = []
    for key, v in values.items():
        v = pd.Series(v, dtype=float)
        means = v.groupby(subjects).mean() if subjects is not None else v
        rows.append({"image": key, "n_sessions": len(v), "n_subjects": len(means),
                     "mean": float(means.mean()),
                     "sd": float(means.std(ddof=1)) if len(means) > 1 else float("nan")})
    return pd.DataFrame(rows)


def paired_over_subjects(table: pd.DataFrame, model: str, baseline: str,
                         higher_is_better: bool = True) -> dict:
    """U-Net against the baseline on one metric, each subject's sessions averaged first:
    subjects compared, in how many the U-Net is better, and the paired Wilcoxon p (n/a with
    fewer than 5 subjects).

    >>> t = pd.DataFrame({"participant_id": list("abcdef"), "r": [.9, .8, .85, .9, .7, .95],
    ...                   "baseline_r": [.8, .7, .86, .8, .6, .9]})
    >>> out = paired_over_subjects(t, "r", "baseline_r")
    >>> out["subjects"], out["better"], round(out["wilcoxon_p"], 3)
    (6, 5, 0.062)
    """
    means = per_subject(table, (model, baseline)).dropna()
    diff = means[model] - means[baseline]
    diff = diff if higher_is_better else -diff
    p = (float(st.wilcoxon(diff).pvalue) if len(diff) >= 5 and np.any(diff != 0)
         else float("nan"))
    return {"subjects": int(len(diff)), "better": int((diff > 0).sum()), "wilcoxon_p": p}


def cnr_paired_t(table: pd.DataFrame, suffix: str = "",
                 subjects: bool = False) -> tuple[float, float]:
    """The paper's comparison of true and synthetic CNR: a paired t-test across sessions
    (t > 0: the synthetic maps have the higher contrast-to-noise); ``subjects``: across
    subjects, each subject's sessions averaged first."""
    columns = [f"cnr_synth{suffix}", f"cnr_true{suffix}"]
    pair = table[columns + (["participant_id"] if "participant_id" in table else [])]
    if subjects:
        pair = per_subject(pair.astype({c: float for c in columns}), columns)
    pair = pair[columns].astype(float).dropna()
    if len(pair) < 3 or np.allclose(pair.iloc[:, 0], pair.iloc[:, 1]):
        return float("nan"), float("nan")
    t, p = st.ttest_rel(pair.iloc[:, 0], pair.iloc[:, 1])
    return float(t), float(p)
