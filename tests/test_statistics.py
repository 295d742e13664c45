"""Statistics across subjects on small hand-made tables, checked against scipy / statsmodels and
hand computations: BH q, ICC(A,1), Hedges' g, and the per-region table (subjects as units)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from bids_tspo.evaluation import subject_stats as S
from bids_tspo.evaluation.statistics import region_stats


def test_bh_q_against_hand_and_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests

    p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
    # by hand: q_(i) = min_{j >= i} p_(j) * m / j, m = 10
    hand = [0.01, 0.04, 0.084, 0.084, 0.084, 0.1, 0.10571, 0.216, 0.216, 0.216]
    assert S.bh_q(p) == pytest.approx(hand, abs=1e-5)
    assert S.bh_q(p) == pytest.approx(list(multipletests(p, method="fdr_bh")[1]))
    shuffled = [p[i] for i in (3, 0, 9, 5, 1, 8, 2, 7, 4, 6)]
    assert S.bh_q(shuffled) == pytest.approx([hand[i] for i in (3, 0, 9, 5, 1, 8, 2, 7, 4, 6)],
                                             abs=1e-5)
    q = S.bh_q([0.02, float("nan"), 0.04])  # NaN is no test: m = 2
    assert q[0] == pytest.approx(0.04) and np.isnan(q[1]) and q[2] == pytest.approx(0.04)


def test_icc_against_shrout_fleiss_and_statsmodels_anova():
    smf = pytest.importorskip("statsmodels.formula.api")
    anova_lm = pytest.importorskip("statsmodels.stats.anova").anova_lm

    x = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
                  [6, 2, 4, 7]], float)
    icc, p = S.icc_a1(x)
    assert round(icc, 2) == 0.29  # Shrout & Fleiss (1979), ICC(2,1)
    n, k = x.shape
    long = pd.DataFrame({"y": x.ravel(), "s": np.repeat(np.arange(n), k).astype(str),
                         "r": np.tile(np.arange(k), n).astype(str)})
    table = anova_lm(smf.ols("y ~ C(s) + C(r)", long).fit())
    ms_r, ms_c, ms_e = table["mean_sq"].iloc[:3]
    assert icc == pytest.approx((ms_r - ms_e) / (ms_r + (k - 1) * ms_e + k * (ms_c - ms_e) / n))
    assert p == pytest.approx(float(table["PR(>F)"].iloc[0]))
    # two raters in perfect agreement: 1; a constant offset lowers absolute agreement
    a = np.array([1.0, 2.0, 4.0, 3.0, 5.0])
    assert S.icc_a1(np.column_stack([a, a]))[0] == pytest.approx(1.0)
    # MS_rows 5, MS_cols 10, MS_err 0: 5 / (5 + 2 * 10 / 5)
    assert S.icc_a1(np.column_stack([a, a + 2]))[0] == pytest.approx(5 / 9)


def test_hedges_g_against_statsmodels():
    effectsize_smd = pytest.importorskip("statsmodels.stats.meta_analysis").effectsize_smd

    patients = np.array([1.3, 1.5, 1.1, 1.7, 1.4, 1.6])
    controls = np.array([1.0, 1.2, 0.9, 1.3, 1.1])
    out = S.hedges_g(patients, controls)
    g, var = effectsize_smd(patients.mean(), patients.std(ddof=1), len(patients),
                            controls.mean(), controls.std(ddof=1), len(controls))
    assert out["g"] == pytest.approx(float(g))
    se = np.sqrt(float(var))
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((g - 1.96 * se, g + 1.96 * se))
    assert out["p"] == pytest.approx(st.ttest_ind(patients, controls).pvalue)
    assert np.isnan(S.hedges_g([1.0], controls)["g"])


def test_q_beside_every_p():
    table = pd.DataFrame({"region": ["a", "b"], "x_p": [0.01, 0.04], "mannwhitney_p_HAB":
                          [0.5, 0.02], "p_true_t1w": [0.2, 0.2], "r": [1, 2]})
    out = S.with_q(table)
    assert list(out.columns) == ["region", "x_p", "x_q", "mannwhitney_p_HAB",
                                 "mannwhitney_q_HAB", "p_true_t1w", "q_true_t1w", "r"]
    assert out.x_q.tolist() == pytest.approx([0.02, 0.04])
    assert out.mannwhitney_q_HAB.tolist() == pytest.approx([0.5, 0.04])


@pytest.fixture
def regions():
    """Two regions, 6 subjects (s1 and s4 scanned twice), two groups."""
    rng = np.random.default_rng(0)
    rows = []
    for region, noise in (("A", 0.05), ("B", 0.5)):
        for i in range(6):
            for ses in range(2 if i in (0, 3) else 1):
                true = 1.0 + 0.2 * i + 0.1 * ses
                rows.append({"region": region, "participant_id": f"s{i + 1}",
                             "group": "HC" if i < 3 else "P", "genotype": "HAB",
                             "true_smooth_mean": true,
                             "synth_mean": true + noise * rng.standard_normal(),
                             "t1w_mean": 0.5 + 0.01 * i})
    return pd.DataFrame(rows)


def test_region_stats_use_subjects_and_match_scipy(regions):
    stats = region_stats(regions).set_index("region")
    assert stats.n_sessions.tolist() == [8, 8] and stats.n_subjects.tolist() == [6, 6]
    pvalues = {}
    for region, df in regions.groupby("region"):
        subj = df.groupby("participant_id")[["true_smooth_mean", "synth_mean", "t1w_mean"]].mean()
        r, p = st.pearsonr(subj.true_smooth_mean, subj.synth_mean)
        rho, p_rho = st.spearmanr(subj.true_smooth_mean, subj.synth_mean)
        row = stats.loc[region]
        assert (row.pearson_r, row.pearson_p) == pytest.approx((r, p))
        assert (row.spearman_rho, row.spearman_p) == pytest.approx((rho, p_rho))
        assert row.icc == pytest.approx(S.icc_a1(subj[["true_smooth_mean",
                                                       "synth_mean"]].to_numpy())[0])
        # the paper's correlation over sessions (8 rows) is kept beside it
        assert row.pearson_r_sessions == pytest.approx(
            st.pearsonr(df.true_smooth_mean, df.synth_mean)[0])
        diff = subj.synth_mean - subj.true_smooth_mean
        assert row.ba_bias == pytest.approx(diff.mean())
        assert row.ba_loa_high - row.ba_bias == pytest.approx(1.96 * diff.std(ddof=1))
        assert row.mannwhitney_p == pytest.approx(st.mannwhitneyu(
            subj.synth_mean[subj.true_smooth_mean <= subj.true_smooth_mean.median()],
            subj.synth_mean[subj.true_smooth_mean > subj.true_smooth_mean.median()]).pvalue)
        pvalues[region] = p
    hand = sorted(pvalues.values())
    q_small, q_large = min(hand[0] * 2, hand[1]), hand[1]
    assert sorted(stats.pearson_q) == pytest.approx([q_small, q_large])
    cols = list(stats.columns)
    for c in cols:
        if S.q_name(c):
            assert cols[cols.index(c) + 1] == S.q_name(c), c


def test_subjects_as_units_keep_the_false_positive_rate():
    """No true relation, 1-3 scans per subject with a subject effect in both maps: the
    correlation over sessions rejects far more often than 5 %, over subjects it does not."""
    rng = np.random.default_rng(11)
    hits_sessions = hits_subjects = 0
    runs = 300  # seed 11: sessions 21.3 %, subjects 6.7 %
    for _ in range(runs):
        rows = []
        for i in range(16):
            a, b = rng.standard_normal(2)  # independent subject effects: no true relation
            for _ in range(rng.integers(1, 4)):
                rows.append({"region": "R", "participant_id": f"s{i}", "group": "HC",
                             "genotype": "HAB", "t1w_mean": 0.5,
                             "true_smooth_mean": a + 0.2 * rng.standard_normal(),
                             "synth_mean": b + 0.2 * rng.standard_normal()})
        row = region_stats(pd.DataFrame(rows)).iloc[0]
        hits_sessions += row.pearson_p_sessions < 0.05
        hits_subjects += row.pearson_p < 0.05
    assert hits_sessions / runs > 0.12 and hits_subjects / runs < 0.09


def test_cnr_paired_t_over_subjects_and_cohort_over_subjects():
    from bids_tspo.evaluation.statistics import cnr_paired_t, cohort_summary

    table = pd.DataFrame({"participant_id": ["a", "a", "b", "c", "d"],
                          "cnr_synth": [0.2, 0.4, 0.5, 0.1, 0.3],
                          "cnr_true": [0.1, 0.1, 0.2, 0.15, 0.1]})
    means = table.groupby("participant_id").mean()
    t, p = st.ttest_rel(means.cnr_synth, means.cnr_true)
    assert cnr_paired_t(table, subjects=True) == pytest.approx((t, p))
    assert cnr_paired_t(table) == pytest.approx(tuple(st.ttest_rel(table.cnr_synth,
                                                                   table.cnr_true)))
    cohort = cohort_summary({"original": [1.0, 2.0, 4.0, 6.0]}, ["a", "a", "b", "c"])
    assert cohort.iloc[0][["n_sessions", "n_subjects"]].tolist() == [4, 3]
    assert cohort.iloc[0]["mean"] == pytest.approx(np.mean([1.5, 4, 6]))
    assert cohort.iloc[0]["sd"] == pytest.approx(np.std([1.5, 4, 6], ddof=1))
