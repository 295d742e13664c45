"""Beyond the population pattern, on hand-made maps and tables: deviation_r per session, region
tracking across subjects, test-retest changes, patients vs controls Hedges' g."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from bids_tspo.evaluation import beyond as B
from bids_tspo.evaluation.statistics import region_stats
from bids_tspo.evaluation.subject_stats import hedges_g, icc_a1


def test_deviation_r_separates_the_population_copy_from_own_information():
    rng = np.random.default_rng(1)
    shape = (12, 12, 12)
    population = np.linspace(0.2, 1.0, np.prod(shape)).reshape(shape)
    own = rng.standard_normal(shape) * 0.1
    truth, brain = population + own, np.ones(shape, bool)
    brain[:2] = False
    # a map that copies the population pattern: high r with the truth, deviation r 0
    copy = B.deviation_metrics(population.copy(), population, truth, brain, (2, 2, 2))
    assert st.pearsonr(population[brain], truth[brain])[0] > 0.85
    assert np.isnan(copy["deviation_r"])  # no deviation at all: undefined, not 1
    noisy = B.deviation_metrics(population + 0.1 * rng.standard_normal(shape), population,
                                truth, brain, (2, 2, 2))
    assert abs(noisy["deviation_r"]) < 0.1
    half = B.deviation_metrics(population + 0.5 * own, population, truth, brain, (2, 2, 2))
    assert half["deviation_r"] == pytest.approx(1.0)
    # against the smoothed truth: the white-noise deviations mostly smooth away
    assert 0 < half["deviation_r_smooth"] < half["deviation_r"]
    assert np.isnan(B.deviation_metrics(truth, None, truth, brain, (2, 2, 2))["deviation_r"])
    # an individual map of higher contrast than the population mean (averaging flattens):
    # a low-contrast copy of the population map shares the "- baseline" term with the truth;
    # plain r of the differences calls that information, the fitted baseline does not
    sharp = 1.4 * population + own
    flat = 0.7 * population + 0.02 * rng.standard_normal(shape)
    plain = st.pearsonr((flat - population)[brain], (sharp - population)[brain])[0]
    fitted = B.deviation_metrics(flat, population, sharp, brain, (2, 2, 2))["deviation_r"]
    assert plain < -0.5 and abs(fitted) < 0.1


@pytest.fixture
def regions():
    """One region, 6 subjects, s1 and s2 scanned twice (sessions 1, 2); a population value
    (the fold mean) of 1.0 for subjects s1-s3 and 1.1 for s4-s6."""
    true = {"s1": [1.2, 1.4], "s2": [0.8, 0.7], "s3": [1.0], "s4": [1.3], "s5": [0.9],
            "s6": [1.2]}
    synth = {"s1": [1.1, 1.2], "s2": [0.9, 0.95], "s3": [1.05], "s4": [1.2], "s5": [1.0],
             "s6": [1.1]}
    rows = []
    for i, subject in enumerate(true):
        for k, (t, s) in enumerate(zip(true[subject], synth[subject])):
            rows.append({"region": "R", "participant_id": subject, "session_id": f"ses-{k + 1}",
                         "group": "HC" if i % 2 else "KOA", "genotype": "HAB",
                         "true_smooth_mean": t, "synth_mean": s, "t1w_mean": 0.5 + i / 100,
                         "baseline_mean": 1.0 if i < 3 else 1.1})
    return pd.DataFrame(rows)


def test_region_tracking_removes_the_population_value(regions):
    out = B.region_tracking(regions)
    subj = regions.groupby("participant_id")[["true_smooth_mean", "synth_mean",
                                              "baseline_mean"]].mean()
    t, s = subj.true_smooth_mean - subj.baseline_mean, subj.synth_mean - subj.baseline_mean
    # partial r given the population value: residuals of each on it, and the p of the
    # synthetic term in OLS true ~ population + synthetic (statsmodels)
    sm = pytest.importorskip("statsmodels.api")

    pop = subj.baseline_mean.to_numpy()
    res = [v - np.polyval(np.polyfit(pop, v, 1), pop) for v in (subj.true_smooth_mean,
                                                                 subj.synth_mean)]
    fit = sm.OLS(subj.true_smooth_mean.to_numpy(),
                 sm.add_constant(np.column_stack([pop, subj.synth_mean]))).fit()
    assert out["deviation_r"] == pytest.approx(st.pearsonr(*res)[0])
    assert out["deviation_p"] == pytest.approx(fit.pvalues[2])
    assert out["deviation_icc"] == pytest.approx(icc_a1(np.column_stack([t, s]))[0])
    # without the fold's mean, the mean over subjects is the population value
    plain = B.region_tracking(regions.drop(columns="baseline_mean"))
    assert plain["deviation_r"] == pytest.approx(st.pearsonr(subj.true_smooth_mean,
                                                             subj.synth_mean)[0])
    assert plain["deviation_r"] != pytest.approx(out["deviation_r"])


def test_retest_changes(regions):
    out = B.retest(regions)
    assert out["n_pairs"] == 2 and np.isnan(out["retest_r"])  # 2 pairs: no r
    more = pd.concat([regions, regions.assign(participant_id=regions.participant_id + "b",
                                              synth_mean=regions.synth_mean * 1.5)])
    more.loc[more.participant_id == "s1b", "true_smooth_mean"] += [0.0, 0.5]
    out = B.retest(more)
    # changes (ses-2 - ses-1): true 0.2, -0.1, 0.7, -0.1; synthetic 0.1, 0.05, 0.15, 0.075
    assert out["n_pairs"] == 4
    assert out["retest_r"] == pytest.approx(st.pearsonr([0.2, -0.1, 0.7, -0.1],
                                                        [0.1, 0.05, 0.15, 0.075])[0])


def test_group_effects_patients_vs_controls(regions):
    out = B.group_effects(regions)
    subj = regions.groupby("participant_id").agg(t=("true_smooth_mean", "mean"),
                                                 s=("synth_mean", "mean"), g=("group", "first"))
    pat, con = subj[subj.g == "KOA"], subj[subj.g == "HC"]
    assert (out["n_patients"], out["n_controls"]) == (3, 3)
    assert out["g_true"] == pytest.approx(hedges_g(pat.t, con.t)["g"])
    assert out["g_synth_p"] == pytest.approx(st.ttest_ind(pat.s, con.s).pvalue)
    assert out["g_true_ci_low"] < out["g_true"] < out["g_true_ci_high"]
    assert B.group_effects(regions.assign(group="KOA")) == {}
    assert out["g_adjusted_for"] == "none"  # one genotype: nothing to adjust for


def test_group_effects_relative_to_the_brain_mean_undo_a_per_session_scale():
    """Min-max target units: each patient's hot spot lowers the whole map by its own factor.
    Raw, an unaffected region then "differs"; relative to the session's brain mean only the
    affected one does."""
    rng = np.random.default_rng(7)
    rows = []
    for i in range(12):
        patient = i % 2 == 1
        scale = rng.uniform(0.7, 0.8) if patient else rng.uniform(0.97, 1.03)
        for region, effect in (("hot", 1.5), ("plain", 1.0)):
            value = scale * (effect if patient else 1.0) * (1 + rng.normal(0, 0.02))
            rows.append({"region": region, "participant_id": f"s{i}", "genotype": "n/a",
                         "group": "KOA" if patient else "HC", "true_smooth_mean": value,
                         "synth_mean": value, "true_smooth_brain_mean": scale,
                         "synth_brain_mean": scale})
    df = pd.DataFrame(rows)
    plain, hot = (B.group_effects(df[df.region == r]) for r in ("plain", "hot"))
    assert plain["g_true_p"] > 0.05 and hot["g_true_p"] < 1e-4 and hot["g_true"] > 3
    raw = B.group_effects(df[df.region == "plain"].drop(columns=["true_smooth_brain_mean",
                                                                  "synth_brain_mean"]))
    assert raw["g_true"] < -3 and raw["g_true_p"] < 1e-4  # the artifact


def test_group_effects_adjusted_for_genotype_as_statsmodels_ols():
    """MAB subjects bind half as much: unadjusted, the genotype's spread hides a patient
    effect that the ANCOVA (value ~ patient + genotype) finds; g, p as statsmodels' OLS."""
    smf = pytest.importorskip("statsmodels.formula.api")
    rng = np.random.default_rng(4)
    rows = []
    for i in range(16):
        genotype, patient = ("HAB", "MAB")[i % 2], i % 4 >= 2
        value = (1.0 if genotype == "HAB" else 0.5) + 0.1 * patient + rng.normal(0, 0.03)
        rows.append({"region": "R", "participant_id": f"s{i}", "genotype": genotype,
                     "group": "CLBP" if patient else "HC", "true_smooth_mean": value,
                     "synth_mean": value + rng.normal(0, 0.05)})
    df = pd.DataFrame(rows)
    out = B.group_effects(df)
    fit = smf.ols("true_smooth_mean ~ patient + C(genotype)",
                  df.assign(patient=(df.group == "CLBP").astype(float))).fit()
    j = 1 - 3 / (4 * fit.df_resid - 1)
    assert out["g_adjusted_for"] == "genotype"
    assert out["g_true"] == pytest.approx(j * fit.params["patient"] / np.sqrt(fit.mse_resid))
    assert out["g_true_p"] == pytest.approx(fit.pvalues["patient"])
    assert out["g_true_p"] < 1e-3
    unadjusted = B.group_effects(df.assign(genotype="n/a"))
    assert unadjusted["g_adjusted_for"] == "none" and unadjusted["g_true_p"] > 0.1
    # the CI's first variance term is the adjusted coefficient's (X'X)^-1 entry
    c = fit.cov_params().loc["patient", "patient"] / fit.mse_resid
    half = 1.96 * np.sqrt(c + out["g_true"] ** 2 / (2 * (16 - 3.94)))
    assert out["g_true_ci_high"] - out["g_true"] == pytest.approx(half)
    # genotype that decides the group leaves nothing to separate: NaN, and said so
    confounded = df.assign(genotype=np.where(df.group == "CLBP", "HAB", "MAB"))
    out = B.group_effects(confounded)
    assert np.isnan(out["g_true"]) and out["g_adjusted_for"].startswith("none: genotype confo")


def test_hedges_g_needs_two_residual_degrees_of_freedom():
    """2 + 2 subjects and 2 genotypes leave df 1, where the correction 1 - 3/(4 df - 1) is 0:
    NaN, not an effect of exactly 0."""
    out = hedges_g([5.0, 6.0], [1.0, 1.2], strata=(["HAB", "MAB"], ["HAB", "MAB"]))
    assert np.isnan(out["g"]) and np.isnan(out["p"])
    assert hedges_g([5.0, 6.0], [1.0, 1.2])["g"] > 0  # unadjusted: df 2


def test_region_stats_carry_beyond_columns_with_q(regions):
    two = pd.concat([regions, regions.assign(region="S", synth_mean=regions.synth_mean[::-1]
                                             .to_numpy())])
    stats = region_stats(two).set_index("region")
    assert stats.n_subjects.tolist() == [6, 6]
    for column in ("deviation_q", "deviation_icc_q", "g_true_q", "g_synth_q", "retest_q"):
        assert column in stats
    p = stats.g_synth_p.to_numpy()
    q = np.minimum(np.sort(p) * 2 / np.arange(1, 3), 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    assert sorted(stats.g_synth_q) == pytest.approx(q)


def test_across_subject_map_with_the_baseline_as_control(tmp_path):
    import json

    import nibabel as nib

    from bids_tspo.evaluation.across_subject import read_across_subject, write_across_subject
    from bids_tspo.evaluation.group_maps import SubjectMeans

    rng = np.random.default_rng(2)
    shape, means = (6, 5, 4), SubjectMeans()
    brain = np.ones(shape, bool)
    brain[0] = False
    population = np.linspace(0, 1, np.prod(shape)).reshape(shape)
    for i in range(8):
        own = rng.standard_normal(shape)
        fold_mean = population + 0.01 * (i % 2)  # two folds: two population maps
        imaged = np.ones(shape, bool)
        for _ in range(1 + (i == 0)):  # subject 0 scanned twice: averaged, not counted twice
            means.add(f"{i}", population + own, population + 0.5 * own, imaged, fold_mean)
    stacks = means.stacks(brain)
    assert stacks["true"].shape == (8, brain.sum()) and stacks["baseline"] is not None
    path = write_across_subject(tmp_path, "TPL", np.eye(4), brain, stacks)
    assert "acrosssubject" in path.name and path.parent == tmp_path
    r = np.asarray(nib.load(path).dataobj)
    assert np.allclose(r[brain], 1.0, atol=1e-5) and (r[~brain] == 0).all()
    meta = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
    assert meta["NumberOfSubjects"] == 8 and meta["Synthetic"]["median_r"] == 1.0
    assert meta["Synthetic"]["fraction_q05"] == 1.0
    control = meta["BaselineControl"]
    assert abs(control["median_r"]) < 0.5 and control["fraction_q05"] < 0.2
    assert read_across_subject(tmp_path)[1]["Synthetic"]["voxels"] == brain.sum()
    assert write_across_subject(tmp_path, "TPL", np.eye(4), brain,
                                {k: (v[:2] if v is not None else None)
                                 for k, v in stacks.items()}) is None  # under 3 subjects


def test_report_answer_says_what_the_numbers_say(regions):
    from bids_tspo.reports.beyond import answer

    metrics = pd.DataFrame({"participant_id": list("abcdef"),
                            "deviation_r": [0.4, 0.5, 0.35, 0.3, 0.5, 0.6]})
    stats = region_stats(regions)
    acr = {"NumberOfSubjects": 6, "Synthetic": {"median_r": 0.5, "fraction_q05": 0.4,
                                                "voxels": 100},
           "BaselineControl": {"median_r": 0.0, "fraction_q05": 0.01}}
    yes = answer(metrics, stats, acr)
    assert yes["status"] == "yes" and "median deviation r 0.45" in yes["text"]
    measures = [row["measure"] for row in yes["rows"]]
    assert any("across-subject" in m for m in measures) and any("test–retest" in m
                                                                  for m in measures)
    assert any("patients vs controls" in m for m in measures)
    no = answer(metrics.assign(deviation_r=0.01), stats.assign(deviation_q=0.9), None)
    assert no["status"] == "no" and no["text"].startswith("No:")


def test_group_run_answers_beyond_the_population(grouped):
    """On the phantom group run: deviation_r per session, n_subjects and q in the region
    table, the across-subject map at the top of OUTPUT_DIR, the answer right after the
    verdict."""
    import json
    import re

    metrics = pd.read_csv(grouped / "group_metrics.tsv", sep="\t")
    assert np.isfinite(metrics.deviation_r).all() and np.isfinite(metrics.deviation_r_smooth).all()
    assert (metrics.deviation_r.abs() <= 1).all()
    with_pet = metrics.participant_id.nunique()
    stats = pd.read_csv(grouped / "group_region_stats.tsv", sep="\t")
    assert (stats.n_subjects == with_pet).all() and with_pet == 3
    assert {"deviation_r", "deviation_q", "retest_r", "retest_q", "g_true", "g_synth_q",
            "n_pairs"} <= set(stats.columns)
    assert (stats.n_pairs == 1).all()  # sub-02 has two sessions
    maps = list(grouped.glob("*acrosssubject*.nii.gz"))
    assert len(maps) == 1 and maps[0].parent == grouped
    meta = json.loads(maps[0].with_name(maps[0].name.replace(".nii.gz", ".json")).read_text())
    assert meta["NumberOfSubjects"] == 3 and meta["Synthetic"]["voxels"] > 1000
    assert -1 <= meta["Synthetic"]["median_r"] <= 1 and "BaselineControl" in meta
    html = (grouped / "group_report.html").read_text()
    sections = re.findall(r'<section id="([a-z-]+)"', html)
    assert sections[:2] == ["verdict", "beyond"]
    beyond = html[html.index('<section id="beyond"'):html.index('<section id="summary"')]
    assert "desc-acrosssubject" in beyond and "<svg" in beyond
    assert re.search(r"(Yes|No|Weakly)[^<]*median deviation r -?\d\.\d\d", beyond)
    assert "voxelwise across-subject r" in beyond


def test_metrics_without_the_subjects_genotype():
    rng = np.random.default_rng(3)
    shape = (10, 10, 10)
    brain = np.ones(shape, bool)
    population = 1.0 + 0.3 * np.linspace(-1, 1, np.prod(shape)).reshape(shape)
    truth = population + 0.1 * rng.standard_normal(shape)
    neutral = population + 0.05 * (truth - population)  # the model's genotype-neutral output
    restored = 1.0 + (neutral - 1.0) * 0.6  # the fold's contrast factor for a LAB-like type
    free = B.without_genotype(restored, 0.6, brain)
    out = B.session_columns(restored, population, truth, brain, (2, 2, 2), free)
    assert np.allclose(free, neutral, atol=1e-6)
    assert out["pearson_r_nogenotype"] == pytest.approx(st.pearsonr(neutral.ravel(),
                                                                    truth.ravel())[0], abs=1e-6)
    assert out["mse_nogenotype"] == pytest.approx(np.mean((neutral - truth) ** 2), rel=1e-5)
    assert out["mse_nogenotype"] != pytest.approx(np.mean((restored - truth) ** 2), rel=1e-3)
    assert "pearson_r_nogenotype" not in B.session_columns(restored, population, truth, brain,
                                                           (2, 2, 2))
    assert B.without_genotype(restored, None, brain) is None
