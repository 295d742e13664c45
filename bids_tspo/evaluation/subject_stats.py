"""Statistics across subjects: the unit of every test across the sample is a person (repeated
scans of one subject are averaged first; they are not independent samples), and every family of
tests across regions is corrected with Benjamini–Hochberg.

* :func:`per_subject`: one row per subject, its sessions' values averaged;
  :func:`subject_means`: the same for a whole table (per region), labels kept.
* :func:`bh_q`: Benjamini–Hochberg q-values of one family of p-values (NaN kept out).
* :func:`with_q`: a table with ``X_q`` beside every ``X_p`` column (one column = one family).
* :func:`icc_a1`: ICC(A,1), two-way, absolute agreement, single measure (McGraw & Wong 1996;
  Shrout & Fleiss ICC(2,1)), with the F-test p of ICC = 0.
* :func:`hedges_g`: Hedges' g of two groups with its 95 % CI and the two-sample t-test p,
  optionally adjusted for a stratum such as the rs6971 genotype.

>>> [round(q, 4) for q in bh_q([0.01, 0.04, 0.03, float("nan")])]
[0.03, 0.04, 0.04, nan]
>>> list(with_q(pd.DataFrame({"r": [0.1], "r_p": [0.2], "p_t1w": [0.3]})).columns)
['r', 'r_p', 'r_q', 'p_t1w', 'q_t1w']
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st


def per_subject(df: pd.DataFrame, columns, by: str = "participant_id") -> pd.DataFrame:
    """One row per subject (index ``by``): the mean of its sessions' ``columns``."""
    if by not in df:
        return df[list(columns)]
    return df.groupby(by, sort=True)[list(columns)].mean()


def subject_means(table: pd.DataFrame, within=()) -> pd.DataFrame:
    """One row per subject (and per ``within`` key, e.g. region): numeric columns averaged
    over the subject's sessions, ``group`` and ``genotype`` kept; what the figures plot, as
    the tests count subjects.

    >>> t = pd.DataFrame({"participant_id": ["a", "a", "b"], "group": ["HC", "HC", "KOA"],
    ...                   "r": [0.25, 0.75, 0.5]})
    >>> subject_means(t).values.tolist()
    [['a', 0.5, 'HC'], ['b', 0.5, 'KOA']]
    >>> subject_means(t.assign(genotype=float("nan"))).columns.tolist()
    ['participant_id', 'r', 'group', 'genotype']
    """
    keys = ["participant_id", *within]
    if "participant_id" not in table:
        return table
    labels = [c for c in ("group", "genotype") if c in table]  # all-n/a columns read as NaN
    numeric = [c for c in table.select_dtypes("number").columns if c not in keys + labels]
    grouped = table.groupby(keys, sort=True)
    return grouped[numeric].mean().join(grouped[labels].first()).reset_index()


def bh_q(pvalues) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (q) of one family; NaN p-values stay NaN and do not
    count as tests."""
    p = np.asarray(pvalues, float)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        m = ok.size
        ranked = p[order] * m / np.arange(1, m + 1)
        q[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return q.tolist()


def q_name(column: str) -> str | None:
    """The q column of a p column (``X_p`` → ``X_q``, ``p_X`` → ``q_X``, ``X_p_Y`` →
    ``X_q_Y``), or None when ``column`` holds no p-value.

    >>> q_name("mannwhitney_p_HAB"), q_name("pearson_r"), q_name("g_synth_p")
    ('mannwhitney_q_HAB', None, 'g_synth_q')
    """
    parts = column.split("_")
    if "p" not in parts:
        return None
    parts[parts.index("p")] = "q"
    return "_".join(parts)


def with_q(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (one row per region) with the Benjamini–Hochberg q of every p column placed
    right after it; each p column is one family (one test across the regions)."""
    out = table.copy()
    for column in list(table.columns):
        q = q_name(column)
        if q is None or q in table:
            continue
        values = bh_q(pd.to_numeric(out[column], errors="coerce"))
        out.insert(out.columns.get_loc(column) + 1, q, values)
    return out


def _correlation(test, x, y) -> tuple[float, float]:
    """``test`` (a scipy correlation) of x and y: coefficient and two-sided p, NaN with fewer
    than 3 pairs or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    r, p = test(x, y)
    return float(r), float(p)


def pearson(x, y) -> tuple[float, float]:
    """Pearson r and two-sided p (NaN with fewer than 3 pairs or a constant side)."""
    return _correlation(st.pearsonr, x, y)


def spearman(x, y) -> tuple[float, float]:
    """Spearman rho and two-sided p (NaN with fewer than 3 pairs or a constant side)."""
    return _correlation(st.spearmanr, x, y)


def icc_a1(ratings) -> tuple[float, float]:
    """ICC(A,1) of an n-subjects × k-raters array (here k = 2: true and synthetic) and the
    one-sided F-test p of ICC = 0 (F = MS_rows / MS_error); NaN with fewer than 3 subjects.

    Shrout & Fleiss (1979), Table 2 (6 targets, 4 judges): ICC(2,1) = 0.29.

    >>> sf = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
    ...       [6, 2, 4, 7]]
    >>> round(icc_a1(sf)[0], 2)
    0.29
    """
    x = np.asarray(ratings, float)
    n, k = x.shape
    if n < 3 or k < 2 or not np.isfinite(x).all():
        return float("nan"), float("nan")
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    ms_r, ms_c = ss_rows / (n - 1), ss_cols / (k - 1)
    ms_e = ss_err / ((n - 1) * (k - 1))
    denominator = ms_r + (k - 1) * ms_e + k * (ms_c - ms_e) / n
    if denominator <= 0:
        return float("nan"), float("nan")
    icc = (ms_r - ms_e) / denominator
    f = ms_r / ms_e if ms_e > 1e-12 * max(ms_r, 1e-300) else np.inf
    p = float(st.f.sf(f, n - 1, (n - 1) * (k - 1)))
    return float(icc), p


def _adjusted_difference(y: np.ndarray, in_a: np.ndarray, strata: np.ndarray):
    """OLS of ``y`` on the group (``in_a``) and one indicator per stratum beyond the first:
    the adjusted group difference, its t-test p, the residual SD, its degrees of freedom and
    the group term's (X'X)^-1 entry (None where the design is rank deficient, e.g. genotype
    confounded with group, or leaves under 2 residual degrees of freedom)."""
    levels = sorted(set(strata.tolist()))
    design = np.column_stack([np.ones(len(y)), in_a.astype(float)]
                             + [(strata == level).astype(float) for level in levels[1:]])
    coef, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    dof = len(y) - design.shape[1]
    if rank < design.shape[1] or dof < 2:
        return None
    resid = y - design @ coef
    sd = float(np.sqrt(resid @ resid / dof))
    if sd == 0:
        return None
    c = float(np.linalg.inv(design.T @ design)[1, 1])
    return float(coef[1]), float(2 * st.t.sf(abs(coef[1]) / (sd * np.sqrt(c)), dof)), sd, dof, c


def hedges_g(a, b, strata=None) -> dict[str, float]:
    """Hedges' g of ``a`` minus ``b`` (pooled SD, small-sample correction 1 - 3/(4 df - 1),
    df = N - 2), its 95 % CI (normal approximation, variance N/(n1 n2) + g²/(2(N - 3.94)),
    Borenstein 2009, as statsmodels' ``effectsize_smd``) and the two-sample Student t-test p
    (NaN: a group under 2, or df under 2).

    ``strata``: a label per value of ``a`` and of ``b`` (for TSPO, the rs6971 genotype). With
    two or more levels the difference is adjusted for them (ANCOVA: OLS on group and stratum
    indicators), the SD is the residual SD (df = N - 1 - levels), p is the group term's
    t-test and the CI's first variance term is the group term's (X'X)^-1 entry (N/(n1 n2)
    without strata); ``adjusted`` says whether that happened, ``confounded`` that it could
    not (the strata determine the group: NaN).

    >>> out = hedges_g([2.0, 2.2, 2.4], [1.0, 1.2, 1.4])
    >>> round(out["g"], 3), round(out["ci_low"], 2), round(out["ci_high"], 2)
    (4.0, -0.18, 8.18)
    >>> geno = (["HAB", "MAB", "HAB"], ["HAB", "MAB", "MAB"])
    >>> out = hedges_g([2.0, 1.0, 2.2], [1.5, 0.5, 0.6], strata=geno)
    >>> out["adjusted"], round(out["g"], 2)
    (True, 3.67)
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    labels = None
    if strata is not None:
        labels = np.concatenate([np.asarray(s, dtype=object) for s in strata])[
            np.concatenate([np.isfinite(a), np.isfinite(b)])].astype(str)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    n1, n2 = len(a), len(b)
    nan = {"g": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
           "p": float("nan"), "adjusted": False, "confounded": False}
    if n1 < 2 or n2 < 2:
        return nan
    fit = None
    if labels is not None and len(set(labels.tolist())) > 1:
        fit = _adjusted_difference(np.concatenate([a, b]),
                                   np.r_[np.ones(n1, bool), np.zeros(n2, bool)], labels)
        if fit is None:
            return nan | {"confounded": True}
        difference, p, sd, dof, c = fit
    else:
        sd = np.sqrt(((n1 - 1) * a.var(ddof=1) + (n2 - 1) * b.var(ddof=1)) / (n1 + n2 - 2))
        if sd == 0:
            return nan
        difference, dof, c = a.mean() - b.mean(), n1 + n2 - 2, (n1 + n2) / (n1 * n2)
        p = float(st.ttest_ind(a, b).pvalue)
    g = (1 - 3 / (4 * dof - 1)) * difference / sd
    se = np.sqrt(c + g ** 2 / (2 * (n1 + n2 - 3.94)))
    return {"g": float(g), "ci_low": float(g - 1.96 * se), "ci_high": float(g + 1.96 * se),
            "p": p, "adjusted": fit is not None, "confounded": False}
