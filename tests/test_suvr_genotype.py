"""SUVR targets with a cerebellar reference, and the per-fold genotype adjustment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_tspo.app.cli import main
from bids_tspo.io.derivatives import SessionFiles, discover
from bids_tspo.io.spaces import resolve_template
from bids_tspo.model.data import prepare
from bids_tspo.model.genotype import genotype_factors, neutralise, restore
from bids_tspo.model.targets import SUVR_SCALE, pet_target
from bids_tspo.preprocess.reference import reference_region, session_reference

from .conftest import GROUP_ARGS


def test_cerebellum_reference_in_template_space():
    _, mask_img = resolve_template(2).load()
    brain = np.asarray(mask_img.dataobj) > 0.5
    region = reference_region("cerebellum", mask_img, brain)
    ml = region.sum() * 8 / 1000
    assert 50 < ml < 150, ml  # both cerebellar hemispheres, eroded
    centre = mask_img.affine[:3, :3] @ np.argwhere(region).mean(axis=0) + mask_img.affine[:3, 3]
    assert centre[1] < -50 and centre[2] < -20 and abs(centre[0]) < 5  # posterior fossa
    assert reference_region("wholebrain", mask_img, brain) is None


def test_cerebellum_reference_on_subject_grid(preprocessed, tiny_bids):
    """The atlas region, warped through the inverse registration, lands on the phantom's
    cerebellum (SUV x1.25 there): its SUV is well above the brain mean."""
    _, out = preprocessed
    files = next(f for f in discover(out) if f.suv is not None)
    t1 = nib.load(files.t1w)
    brain = np.asarray(nib.load(files.mask).dataobj) > 0
    region = session_reference(files, "cerebellum", t1, brain)
    assert region.shape == t1.shape and (region <= brain).all() and region.sum() > 0
    truth = next((tiny_bids / "derivatives/phantom-truth").rglob(
        f"{files.name}_space-T1w_desc-true_pet.nii.gz"))
    suv = nib.load(truth).get_fdata()
    assert suv[region].mean() / suv[brain].mean() > 1.15
    suvr = pet_target(suv, brain, "suvr", region) * SUVR_SCALE
    assert suvr[region].mean() == pytest.approx(1.0, abs=0.01)


def _session(tmp: Path, name: str, subject: str, genotype: str, contrast: float) -> SessionFiles:
    rng = np.random.default_rng(len(name))
    suv = 1.0 + contrast * rng.standard_normal((12, 12, 12))
    paths = {}
    for key, data in (("t1w", np.ones((12, 12, 12))), ("mask", np.ones((12, 12, 12))),
                      ("suv", suv)):
        paths[key] = tmp / f"{name}_{key}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([16.0, 16, 16, 1])),
                 paths[key])  # 192 mm: the model box's field of view
    return SessionFiles(name, subject, None, paths["t1w"], paths["mask"], paths["suv"],
                        genotype=genotype)


def test_genotype_factors_use_training_subjects_only(tmp_path):
    paired = [_session(tmp_path, "sub-a", "a", "HAB", 0.30),
              _session(tmp_path, "sub-b", "b", "LAB", 0.10),
              _session(tmp_path, "sub-c", "c", "LAB", 0.20),
              _session(tmp_path, "sub-d", "d", "n/a", 0.50)]
    splits = {"folds": [{"fold": 0, "train": ["a", "b"], "val": [], "test": ["c", "d"]},
                        {"fold": 1, "train": ["a", "c"], "val": [], "test": ["b", "d"]}]}
    items = {f.name: prepare(f, 8, "minmax") for f in paired}
    factors = genotype_factors(paired, splits, items)
    c = factors["contrast"]
    assert c["0"]["HAB"] == 1.0 and c["1"]["HAB"] == 1.0
    assert c["0"]["LAB"] == pytest.approx(1 / 3, abs=0.05)  # only sub-b (0.10 / 0.30)
    assert c["1"]["LAB"] == pytest.approx(2 / 3, abs=0.05)  # only sub-c
    assert set(c["0"]) == {"HAB", "LAB"}  # unknown genotype left out


def test_neutralise_and_restore_are_inverse():
    rng = np.random.default_rng(0)
    pet = rng.uniform(0.25, 0.45, (8, 8, 8)).astype(np.float32)  # SUVR 0.75-1.35: no clipping
    mask = np.ones_like(pet)
    flat = neutralise(pet, mask, 0.5)  # a LAB-like contrast, stretched to HAB contrast
    assert (flat * SUVR_SCALE - 1).std() == pytest.approx(2 * (pet * SUVR_SCALE - 1).std(),
                                                          rel=1e-4)
    assert np.allclose(restore(flat, 0.5), pet, atol=1e-6)
    assert neutralise(pet, mask, None) is pet and restore(pet, None) is pet


def test_suvr_reference_needs_suvr_target(tiny_bids, tmp_path, capsys):
    code = main([str(tiny_bids), str(tmp_path / "o"), "group", "--suvr-reference", "cerebellum"])
    assert code == 64
    assert "needs --target suvr" in capsys.readouterr().err


def test_group_suvr_cerebellum_with_genotype(tiny_bids, preprocessed):
    root, out = preprocessed
    trained = root / "trained_suvr"
    shutil.copytree(out, trained)
    args = [str(tiny_bids), str(trained), "group", "-w", str(root / "work_suvr"), *GROUP_ARGS,
            "--target", "suvr", "--suvr-reference", "cerebellum"]
    assert main(args) == 0
    bundle = trained / "models" / "tspo-unet_suvr-cerebellum_32_k2_s42"
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["normalisation"]["suvr_reference"] == "cerebellum"
    adjustment = meta["genotype_adjustment"]
    assert adjustment["applied_to_target"] is True
    splits = json.loads((bundle / "splits.json").read_text())
    table = pd.read_csv(tiny_bids / "participants.tsv", sep="\t")
    genotype_of = {p[4:]: g for p, g in zip(table.participant_id, table.tspo_genotype)}
    for fold in splits["folds"]:
        seen = {genotype_of[s] for s in fold["train"] + fold["val"]}
        assert set(adjustment["contrast_factors_per_fold"][str(fold["fold"])]) == seen
    metrics = pd.read_csv(trained / "group_metrics.tsv", sep="\t")
    assert set(metrics.target) == {"suvr"} and metrics.pearson_r.notna().all()
    applied = set()
    for _, row in metrics.iterrows():
        pet = trained / row.participant_id / row.session_id / "pet"
        side = json.loads((pet / f"{row.bids_name}_space-T1w_desc-synth_pet.json").read_text())
        assert side["Units"] == "SUVR" and side["SUVRReference"] == "cerebellum"
        known = adjustment["contrast_factors_per_fold"][str(row.fold)]
        if row.genotype in known:
            applied.add(row.genotype)
            factor = side["GenotypeAdjustment"]["ContrastFactorPerFold"][str(row.fold)]
            assert factor == known[row.genotype]
            # metrics without the subject's genotype beside those with it
            assert np.isfinite([row.pearson_r_nogenotype, row.mse_nogenotype,
                                row.deviation_r_nogenotype]).all()
            assert row.pearson_r_nogenotype == pytest.approx(row.pearson_r, abs=0.02)
        else:  # e.g. a MAB subject tested by a fold trained on HAB only
            assert "unknown or not in the training data" in side["GenotypeAdjustment"]["Note"]
    assert applied
    assert "reference region: cerebellum" in (bundle / "README.md").read_text()


def test_cerebellum_cut_off_is_a_clear_input_error():
    from bids_tspo.errors import InputDataError

    _, mask_img = resolve_template(2).load()
    brain = np.asarray(mask_img.dataobj) > 0.5
    z_mm = mask_img.affine[2, 2] * np.arange(brain.shape[2]) + mask_img.affine[2, 3]
    brain[:, :, z_mm < -10] = False  # field of view ends above the cerebellum
    with pytest.raises(InputDataError, match="cerebellar reference region has only"):
        reference_region("cerebellum", mask_img, brain)
