"""The phantom: deterministic, complete metadata, valid BIDS, consistent physics."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from bids_tspo.errors import EXIT_USAGE
from bids_tspo.phantom import make_phantom
from bids_tspo.phantom.cli import main as phantom_main

REQUIRED_PET_FIELDS = [  # BIDS 1.9 PET: required fields
    "Manufacturer", "ManufacturersModelName", "Units", "TracerName", "TracerRadionuclide",
    "InjectedRadioactivity", "InjectedRadioactivityUnits", "InjectedMass", "InjectedMassUnits",
    "SpecificRadioactivity", "SpecificRadioactivityUnits", "ModeOfAdministration", "TimeZero",
    "ScanStart", "InjectionStart", "FrameTimesStart", "FrameDuration", "AcquisitionMode",
    "ImageDecayCorrected", "ImageDecayCorrectionTime", "ReconMethodName",
    "ReconMethodParameterLabels", "ReconMethodParameterUnits", "ReconMethodParameterValues",
    "ReconFilterType", "ReconFilterSize", "AttenuationCorrection",
]


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(tmp_path):
    for name in ("a", "b"):
        assert phantom_main([str(tmp_path / name), "--subjects", "2", "--seed", "3",
                             "--size", "tiny"]) == 0
    first, second = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert first == second and len(first) > 20
    make_phantom(tmp_path / "c", 2, seed=4, size="tiny", progress=False)
    assert _digest(tmp_path / "c") != first


def test_pybids_indexes_every_file_with_validation(tiny_bids):
    from bids import BIDSLayout

    layout = BIDSLayout(str(tiny_bids), validate=True)
    indexed = {f.path for f in layout.get(extension=[".nii.gz"])}
    on_disk = {str(p) for p in tiny_bids.glob("sub-*/**/*.nii.gz")}
    assert on_disk and indexed == on_disk
    assert layout.get_tracers() == ["PBR28"]


def test_metadata_complete(tiny_bids):
    for sidecar in tiny_bids.glob("sub-*/**/pet/*_pet.json"):
        meta = json.loads(sidecar.read_text())
        missing = [k for k in REQUIRED_PET_FIELDS if k not in meta]
        assert not missing, (sidecar.name, missing)
        img = nib.load(str(sidecar).replace(".json", ".nii.gz"))
        assert img.ndim == 4 and img.shape[3] == len(meta["FrameDuration"])
        end = meta["FrameTimesStart"][-1] + meta["FrameDuration"][-1]
        assert end == 90 * 60
    table = (tiny_bids / "participants.tsv").read_text().splitlines()
    assert table[0].split("\t") == ["participant_id", "age", "sex", "group", "tspo_genotype",
                                    "weight"]
    assert len(table) == 5
    assert (tiny_bids / "participants.json").is_file()
    assert (tiny_bids / "derivatives/phantom-truth/dataset_description.json").is_file()


def test_scanner_like_geometry(tiny_bids):
    codes = set()
    for t1 in tiny_bids.glob("sub-*/**/anat/*_T1w.nii.gz"):
        img = nib.load(t1)
        assert not np.allclose(img.affine, np.eye(4))
        codes.add(nib.aff2axcodes(img.affine))
    assert len(codes) > 1 and any(c != ("R", "A", "S") for c in codes)
    pet = nib.load(next(tiny_bids.glob("sub-01/**/pet/*_pet.nii.gz")))
    t1 = nib.load(next(tiny_bids.glob("sub-01/**/anat/*_T1w.nii.gz")))
    assert not np.allclose(pet.affine, t1.affine)


def test_window_average_equals_truth_times_dose_over_weight(tiny_bids):
    """60-90 min mean of the frames ~ SUV x dose / weight (up to noise), on the PET grid."""
    from bids_tspo.phantom.truth import session_pet

    pet = session_pet(tiny_bids, "sub-01_ses-01")
    starts = np.asarray(pet.sidecar["FrameTimesStart"])
    dur = np.asarray(pet.sidecar["FrameDuration"])
    w = np.where(starts >= 3600, dur, 0) / dur[starts >= 3600].sum()
    mean = (pet.data * w).sum(-1)
    scale = pet.truth["dose_mbq"] * 1e6 / (pet.truth["weight_kg"] * 1e3)
    ratio = mean[pet.inside].mean() / (pet.expected[pet.inside].mean() * scale)
    assert ratio == pytest.approx(1.0, abs=0.03)
    assert pet.r(mean) > 0.9


def test_tspo_biology(tiny_bids):
    """Genotype and patient effects are present in the truth; groups leave a T1w trace."""
    from bids_tspo.phantom.writer import load_truth

    records = [load_truth(p) for p in
               (tiny_bids / "derivatives/phantom-truth").glob("sub-*/*/pet/*_desc-true_pet.json")]
    by_genotype = {r["subject"]["genotype"]: r["specific_binding"] for r in records}
    assert by_genotype["HAB"] > by_genotype.get("MAB", 0)
    assert all(r["nondisplaceable_suv"] > 0 for r in records)
    severities = {r["subject"]["group"]: r["group_effect_severity"] for r in records}
    assert severities["HC"] == 0 and severities["CLBP"] > 0


def test_individual_tissue_composition_shows_in_t1w_and_pet():
    """People differ in more than a deformation: GM gained from WM darkens the T1w and raises
    the SUV; GM lost to CSF (atrophy, with age) darkens the T1w and lowers the SUV."""
    from dataclasses import replace

    from bids_tspo.phantom.anatomy import build_head_model
    from bids_tspo.phantom.subjects import make_cohort
    from bids_tspo.phantom.warp import Individual
    from bids_tspo.phantom.writer import SIZES, render_session

    model = build_head_model(2)
    subject = make_cohort(1, seed=0, with_sessions=False)[0]
    person = Individual.random(np.random.default_rng(0), model.affine, model.shape, age=70)
    young = Individual.random(np.random.default_rng(0), model.affine, model.shape, age=25)
    assert young.gm_to_csf.field.max() == 0 < person.gm_to_csf.field.mean()
    assert np.abs(person.gm_from_wm.field).max() <= 1 and person.gm_from_wm.field.std() > 0.3

    def render(p):
        images = render_session(model, SIZES["tiny"], "tiny", subject, subject.sessions[0], p,
                                "RAS")
        return (np.asarray(images["t1w"].dataobj, float),
                images["true_suv"].get_fdata(), images["brain_mask"].get_fdata() > 0)

    none = replace(person, gm_from_wm=replace(person.gm_from_wm, field=0 * person.gm_from_wm.field),
                   gm_to_csf=replace(person.gm_to_csf, field=0 * person.gm_to_csf.field))
    t1_0, suv_0, brain = render(none)
    for p, sign in ((replace(person, gm_to_csf=none.gm_to_csf), -1),
                    (replace(person, gm_from_wm=none.gm_from_wm), 1)):
        t1, suv, _ = render(p)
        d_t1, d_suv = (t1 - t1_0)[brain], (suv - suv_0)[brain]
        changed = np.abs(d_suv) > 1e-3
        assert changed.mean() > 0.2
        assert sign * np.corrcoef(d_t1[changed], d_suv[changed])[0, 1] > 0.8


def test_t1w_trace_switch_removes_the_inflammation_from_the_t1w(tmp_path):
    """--t1w-trace 0: a patient's T1w is exactly the T1w it would have without inflammation
    (negative control), while its PET still carries the effect; the default darkens the T1w."""
    from dataclasses import replace

    from bids_tspo.phantom.anatomy import T1W_TRACE, build_head_model
    from bids_tspo.phantom.subjects import make_cohort
    from bids_tspo.phantom.warp import Individual
    from bids_tspo.phantom.writer import SIZES, render_session

    model = build_head_model(2)
    patient = next(s for s in make_cohort(6, seed=0, with_sessions=False) if s.severity > 0)
    person = Individual.random(np.random.default_rng(0), model.affine, model.shape, age=40)

    def render(subject, trace):
        images = render_session(model, SIZES["tiny"], "tiny", subject, subject.sessions[0],
                                person, "RAS", t1w_trace=trace)
        return np.asarray(images["t1w"].dataobj, float), images["true_suv"].get_fdata()

    t1_off, suv_off = render(patient, 0.0)
    t1_on, suv_on = render(patient, T1W_TRACE)
    t1_healthy, suv_healthy = render(replace(patient, severity=0.0), T1W_TRACE)
    assert np.array_equal(t1_off, t1_healthy)           # no trace at all
    assert np.array_equal(suv_off, suv_on)               # PET unchanged by the switch
    assert (suv_on > suv_healthy + 1e-3).sum() > 50      # the inflammation is in the PET
    darker = t1_on < t1_off - 1e-6
    assert darker.sum() > 50 and not (t1_on > t1_off + 1e-6).any()
    with pytest.raises(SystemExit) as exc:
        phantom_main([str(tmp_path / "bad"), "--t1w-trace", "-1"])
    assert exc.value.code == EXIT_USAGE and not (tmp_path / "bad").exists()


def test_noise_switch_scales_the_pet_voxel_sd():
    """--noise SCALE: the 60-90 min average of a uniform grey-matter-level block has a voxel
    SD of NOISE_SD_2MM x SCALE at 2 mm (SD ~ voxel volume^-1/2 at 4 mm), and none at 0."""
    from bids_tspo.phantom.dynamic import (
        NOISE_SD_2MM,
        dynamic_frames,
        frame_schedule,
        window_weights,
    )

    conc = np.full((40, 40, 40), 5000.0, np.float32)
    w = window_weights(*frame_schedule("small"))

    def rel_sd(noise, voxel_mm=2.0):
        frames = dynamic_frames(conc, np.zeros_like(conc), "small", np.random.default_rng(0),
                                noise=noise, voxel_mm=voxel_mm)
        mean = (frames * w).sum(-1)[5:-5, 5:-5, 5:-5]
        assert mean.mean() == pytest.approx(5000.0, rel=0.01)
        return mean.std() / mean.mean()

    assert NOISE_SD_2MM == 0.10
    assert rel_sd(1.0) == pytest.approx(0.10, rel=0.05)
    assert rel_sd(2.0) == pytest.approx(0.20, rel=0.05)
    assert rel_sd(1.0, voxel_mm=4.0) == pytest.approx(0.10 / 8**0.5, rel=0.05)
    assert rel_sd(0.0) < 1e-6


def test_patient_effect_switch_scales_the_truths_patient_rois(tmp_path):
    """--patient-effect SIZE: the patient's true SUV rises in its group's regions in
    proportion to SIZE (0: none); a control is unchanged; the settings are recorded."""
    from dataclasses import replace

    from bids_tspo.phantom.anatomy import GROUP_EFFECTS, build_head_model
    from bids_tspo.phantom.subjects import ND_SUV, make_cohort
    from bids_tspo.phantom.warp import Individual
    from bids_tspo.phantom.writer import SIZES, render_session

    model = build_head_model(2)
    patient = next(s for s in make_cohort(6, seed=0, with_sessions=False) if s.group == "CLBP")
    patient = replace(patient, genotype="HAB")
    person = Individual.random(np.random.default_rng(0), model.affine, model.shape, age=40)

    def suv(subject, size):
        images = render_session(model, SIZES["tiny"], "tiny", subject, subject.sessions[0],
                                person, "RAS", patient_effect=size)
        return images["true_suv"].get_fdata()

    base, one, two = (suv(patient, size) for size in (0.0, 1.0, 2.0))
    assert np.allclose(two - base, 2 * (one - base), atol=1e-4)
    specific = base - np.minimum(base, ND_SUV * patient.subject_factor)
    rise = (one - base)[specific > 0.3] / specific[specific > 0.3]
    # largest rise of specific binding: CLBP thalamus +20 % x severity (smoothed at the edges)
    peak = GROUP_EFFECTS["CLBP"]["Thalamus"] * patient.severity
    assert 0.8 * peak < np.percentile(rise, 99.9) <= peak + 1e-3
    assert (rise > 0.5 * peak).sum() > 20
    control = replace(patient, group="HC", severity=0.0)
    assert np.array_equal(suv(control, 0.0), suv(control, 2.0))
    assert phantom_main([str(tmp_path / "ds"), "--subjects", "1", "--size", "tiny",
                         "--noise", "0.5", "--patient-effect", "2"]) == 0
    settings = json.loads((tmp_path / "ds/derivatives/phantom-truth/dataset_description.json")
                          .read_text())["PhantomSettings"]
    assert settings["noise"] == 0.5 and settings["patient_effect"] == 2.0


def test_genotypes_switch_excludes_lab_and_keeps_the_other_draws():
    """``--genotypes HAB MAB`` (LABs excluded at screening, as [11C]PBR28 studies do): no LAB
    in the cohort, the genotype drawn from the renormalised probabilities, every other draw
    (groups, weights, sessions) as with all three."""
    from bids_tspo.phantom.cli import build_parser
    from bids_tspo.phantom.subjects import make_cohort

    args = build_parser().parse_args(["out", "--genotypes", "HAB", "MAB"])
    every = make_cohort(40, seed=2)
    screened = make_cohort(40, seed=2, genotypes=tuple(args.genotypes))
    assert "LAB" in {s.genotype for s in every}
    assert {s.genotype for s in screened} == {"HAB", "MAB"}
    hab = sum(s.genotype == "HAB" for s in screened[2:]) / len(screened[2:])
    assert 0.3 < hab < 0.8  # 5/9 expected
    assert [(s.group, s.weight_kg, len(s.sessions)) for s in every] == \
        [(s.group, s.weight_kg, len(s.sessions)) for s in screened]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["out", "--genotypes", "XAB"])
