"""The analysis of one controls run (benchmarks/controls.py): the app's tables, and every
number again against the noise-free truth of the phantom, in template space.

Also the input side: the preprocessed T1w warped to the template like the truth, so the
tables say whether the trace of the inflammation reaches the network (``g_t1w``: patients
vs controls in the T1w's regional values, z-scored within the brain like the maps).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

AFFECTED = ("Thalamus", "Postcentral", "Precentral", "Cingulate_Gyrus_anterior")
COMPARED = ("truth", "synth", "t1w")  # regional values tested patients vs controls


def _zscore(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (x - x[mask].mean()) / (x[mask].std() + 1e-9)


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


class Truth:
    """Noise-free truth of each session (and its inflammation part) in template space."""

    def __init__(self, bids: Path, bids_pe0: Path, prep: Path):
        from bids_tspo.io.spaces import resolve_template

        self.bids, self.bids_pe0, self.prep = bids, bids_pe0, prep
        self.tpl_img, mask_img = resolve_template(2).load()
        self.mask = np.asarray(mask_img.dataobj) > 0.5
        self.mask_img = mask_img
        self.cache: dict[str, tuple] = {}

    def session(self, files) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """(noise-free SUV, inflammation SUV) on the template grid, the native brain-mean
        noise-free SUV, and the app's preprocessed T1w on the template grid."""
        if files.name not in self.cache:
            from bids_tspo.preprocess.images import resample_normalised

            rel = Path(f"sub-{files.subject}", f"ses-{files.session}" if files.session else "")
            stem = f"{files.name}_space-T1w_desc-truesmooth_pet.nii.gz"
            truth_dir = Path("derivatives/phantom-truth") / rel
            img = nib.load(self.bids / truth_dir / "pet" / stem)
            flat = np.asarray(nib.load(self.bids_pe0 / truth_dir / "pet" / stem).dataobj)
            brain = np.asarray(nib.load(self.bids / truth_dir / "anat" /
                                        f"{files.name}_desc-brain_mask.nii.gz").dataobj) > 0
            true = np.asarray(img.dataobj, np.float32)
            warped = resample_normalised([true, true - flat], img.affine, self.mask_img,
                                         [str(files.xfm()[1])], brain)
            t1w = nib.load(files.t1w)
            t1w_brain = np.asarray(nib.load(files.mask).dataobj) > 0
            t1w_tpl = resample_normalised([np.asarray(t1w.dataobj, np.float32)], t1w.affine,
                                          self.mask_img, [str(files.xfm()[1])], t1w_brain)[0]
            self.cache[files.name] = (np.asarray(warped[0].dataobj, np.float32),
                                      np.asarray(warped[1].dataobj, np.float32),
                                      float(true[brain].mean()),
                                      np.asarray(t1w_tpl.dataobj, np.float32))
        return self.cache[files.name]


def _labels(mask_img) -> tuple[np.ndarray, dict[int, str]]:
    from nilearn.image import resample_to_img

    from bids_tspo.io.atlases import harvard_oxford

    labels, names = harvard_oxford()
    on = resample_to_img(labels, mask_img, interpolation="nearest", force_resample=True,
                         copy_header=True)
    return np.asarray(on.dataobj).astype(np.int16), names


def _group_test(values: pd.DataFrame) -> pd.DataFrame:
    """Per region: patients vs controls Hedges' g adjusted for genotype, p and BH q (subjects
    as units)."""
    from bids_tspo.evaluation.beyond import is_control
    from bids_tspo.evaluation.subject_stats import bh_q, hedges_g

    subj = values.groupby(["participant_id", "group", "genotype", "region"],
                          as_index=False).mean(numeric_only=True)
    rows = []
    for region, df in subj.groupby("region"):
        control = df.group.map(is_control)
        strata = (df.genotype[~control].tolist(), df.genotype[control].tolist())
        row = {"region": region}
        for col in COMPARED:  # adjusted for genotype (z-scored maps, not ratios)
            effect = hedges_g(df[col][~control], df[col][control], strata=strata)
            row |= {f"g_{col}": effect["g"], f"p_{col}": effect["p"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    for col in COMPARED:
        table[f"q_{col}"] = bh_q(table[f"p_{col}"])
    return table


def analyse(out: Path, truth: Truth) -> dict:
    """Every number of one (control, model) run: the app's, and against the noise-free
    truth."""
    from bids_tspo.evaluation.beyond import is_control
    from bids_tspo.evaluation.subject_stats import hedges_g
    from bids_tspo.io.derivatives import discover, find_pet
    from bids_tspo.io.tables import participants_table

    metrics = pd.read_csv(out / "group_metrics.tsv", sep="\t")
    subj = metrics.groupby("participant_id")[["pearson_r", "baseline_pearson_r",
                                              "deviation_r"]].mean()
    app = {"median_subject_" + k: round(float(v), 4) for k, v in subj.median().items()}
    app["subjects_unet_above_baseline"] = int((subj.pearson_r > subj.baseline_pearson_r).sum())
    app["subjects"] = len(subj)
    stats = pd.read_csv(out / "group_region_stats.tsv", sep="\t")
    cols = ["region", "g_true", "g_true_q", "g_synth", "g_synth_q"]
    app["regions_q05_true"] = sorted(stats.region[stats.g_true_q < 0.05])
    app["regions_q05_synth"] = sorted(stats.region[stats.g_synth_q < 0.05])
    affected = stats[stats.region.str.contains("|".join(AFFECTED))][cols]
    app["affected_regions"] = affected.round(4).to_dict(orient="records")

    files_of = {f.name: f for f in discover(out, participants_table(truth.bids))}
    labels, names = _labels(truth.mask_img)
    population: dict[int, list] = {}
    per_session = {}
    for row in metrics.itertuples():
        files = files_of[row.bids_name]
        tpl_name = files.xfm()[0]
        synth_path = find_pet(files.pet_dir, files.name, desc="synth", space=tpl_name)[0]
        synth = np.asarray(nib.load(synth_path).dataobj, np.float32)
        true, inflammation, brain_mean, t1w = truth.session(files)
        mask = truth.mask & (synth > 0) & (true > 0) & (t1w > 0)
        per_session[row.bids_name] = (row, _zscore(true, mask), _zscore(synth, mask), mask,
                                      inflammation, brain_mean, float(synth[mask].mean()),
                                      _zscore(t1w, mask))
        population.setdefault(int(row.fold), [])
    folds = json.loads(next((out / "models").glob("*/splits.json")).read_text())["folds"]
    for fold in folds:  # the fold's population: z-scored truths of its training subjects
        train = {f"sub-{s}" for s in fold["train"] + fold.get("val", [])}
        maps = [v[1] for v in per_session.values() if v[0].participant_id in train]
        population[fold["fold"]] = np.mean(maps, axis=0)
    sessions, region_rows = [], []
    for name, (row, zt, zs, mask, inflammation, brain_mean, synth_mean, z1) in per_session.items():
        pop = population[int(row.fold)]
        rec = {"bids_name": name, "participant_id": row.participant_id, "group": row.group,
               "genotype": row.genotype, "r_noisefree": _r(zs[mask], zt[mask]),
               "deviation_r_noisefree": _r((zs - pop)[mask], (zt - pop)[mask]),
               "truth_brain_mean_suv": brain_mean, "synth_brain_mean": synth_mean}
        if not is_control(row.group):
            rec["effect_r"] = _r((zs - pop)[mask], inflammation[mask])
            rec["effect_r_truth"] = _r((zt - pop)[mask], inflammation[mask])
        sessions.append(rec)
        for label in np.unique(labels[mask]):
            if label:
                inside = mask & (labels == label)
                region_rows.append({"participant_id": row.participant_id, "group": row.group,
                                    "genotype": row.genotype, "region": names[label],
                                    "truth": zt[inside].mean(), "synth": zs[inside].mean(),
                                    "t1w": z1[inside].mean()})
    table = pd.DataFrame(sessions)
    by_subject = table.groupby("participant_id").mean(numeric_only=True)
    nf = {"median_subject_" + k: round(float(by_subject[k].median()), 4)
          for k in ("r_noisefree", "deviation_r_noisefree", "effect_r", "effect_r_truth")
          if k in by_subject}
    groups = _group_test(pd.DataFrame(region_rows))
    nf["regions_q05_truth"] = sorted(groups.region[groups.q_truth < 0.05])
    nf["regions_q05_synth"] = sorted(groups.region[groups.q_synth < 0.05])
    nf["regions_q05_t1w"] = sorted(groups.region[groups.q_t1w < 0.05])
    nf["affected_regions"] = (groups[groups.region.str.contains("|".join(AFFECTED))]
                              .round(4).to_dict(orient="records"))
    genotype = table.groupby("participant_id").agg(
        genotype=("genotype", "first"), truth=("truth_brain_mean_suv", "mean"),
        synth=("synth_brain_mean", "mean"))
    hab, mab = genotype[genotype.genotype == "HAB"], genotype[genotype.genotype == "MAB"]
    if len(hab) > 1 and len(mab) > 1:
        nf["genotype_hab_vs_mab_g"] = {k: round(hedges_g(hab[k], mab[k])["g"], 3)
                                       for k in ("truth", "synth")}
    return {"app_vs_measured_pet": app, "vs_noisefree_truth": nf,
            "sessions": table.round(4).to_dict(orient="records")}


def verdicts(result: dict, control: str) -> dict:
    """The pre-registered pass criteria (module docstring), per reference."""
    out = {}
    for ref, truth_key in (("app_vs_measured_pet", "regions_q05_true"),
                           ("vs_noisefree_truth", "regions_q05_truth")):
        res = result[ref]
        truth_shows, synth_shows = bool(res[truth_key]), bool(res["regions_q05_synth"])
        if control == "negative":
            out[ref] = {"truth_shows_effect": truth_shows, "synth_claims_effect": synth_shows,
                        "pass": truth_shows and not synth_shows}
        else:
            found = set(res[truth_key]) & set(res["regions_q05_synth"])
            false = set(res["regions_q05_synth"]) - set(res[truth_key])  # from the ninth on
            out[ref] = {"truth_shows_effect": truth_shows, "regions_recovered": sorted(found),
                        "regions_false": sorted(false), "pass": bool(found)}
    return out
