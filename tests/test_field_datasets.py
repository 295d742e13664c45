"""Datasets as they exist in the field (issue #22 items 1-3): the official BIDS examples' PET
sidecars and tables (tests/data/bids_examples, CC0), alone and paired with phantom images."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_tspo.app.cli import main
from bids_tspo.io.derivatives import discover
from bids_tspo.io.tables import participants_table
from bids_tspo.preprocess.decay import (
    frame_timing_problems,
    frames_beyond_window,
    tracer_warning,
)
from bids_tspo.preprocess.pet import WeightLookup, body_weight, compute_suv

EXAMPLES = Path(__file__).parent / "data" / "bids_examples"
PET001 = EXAMPLES / "pet001/sub-01/ses-01/pet/sub-01_ses-01_trc-CIMBI36_pet.json"
PET002 = EXAMPLES / "pet002/sub-01/ses-baseline/pet/sub-01_ses-baseline_pet.json"
PET003 = EXAMPLES / "pet003/sub-01/ses-01/pet/sub-01_ses-01_pet.json"
PET004 = EXAMPLES / "pet004/sub-01/pet/sub-01_pet.json"
PET005 = EXAMPLES / "pet005/sub-01/ses-intervention/pet/sub-01_ses-intervention_task-eyes_pet.json"
PET005B = EXAMPLES / "pet005/sub-01/ses-baseline/pet/sub-01_ses-baseline_pet.json"
PET006 = EXAMPLES / "pet006/sub-01/pet/sub-01_pet.json"
TPL = "MNI152NLin2009aSym"


def _meta(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@pytest.fixture(autouse=True)
def _captured(caplog):
    """caplog sees bids_tspo's warnings, also after the CLI configured its logger."""
    logger = logging.getLogger("bids_tspo")
    logger.addHandler(caplog.handler)
    yield
    logger.removeHandler(caplog.handler)


# item 2: frame timing ------------------------------------------------------------------------

@pytest.mark.parametrize("sidecar, frame, start, end, next_start", [
    (PET001, 1, 10, 30, 20), (PET003, 1, 20, 60, 40), (PET004, 1, 10, 30, 20)])
def test_examples_with_end_times_in_frame_duration_are_refused(sidecar, frame, start, end,
                                                               next_start):
    """pet001/003/004: FrameDuration holds each frame's end time; the frames overlap (the scan
    would end at 235 min). One problem naming the file, the first frame that overlaps and why."""
    problems = frame_timing_problems(_meta(sidecar), sidecar)
    assert problems == [(
        f"{sidecar}: frame {frame} ({start}-{end} s) overlaps frame {frame + 1}, which starts at "
        f"{next_start} s; FrameDuration seems to hold frame end times (FrameDuration of each "
        "frame = FrameTimesStart of the next); BIDS FrameDuration is each frame's length, "
        "end - start")]


@pytest.mark.parametrize("sidecar", [PET002, PET005, PET005B, PET006])
def test_examples_with_consistent_frames_accepted(sidecar):
    """pet002 (irregular 237 s and 279 s frames that still abut), pet005, pet006 (one frame)."""
    assert frame_timing_problems(_meta(sidecar), sidecar, len(_meta(sidecar)["FrameDuration"])
                                 ) == []


@pytest.mark.parametrize("starts, durations, words", [
    ([0, 600, 600, 1200], [600] * 4,
     "frame 2 starts at 600 s, frame 1 at 600 s (the same start twice: a frame listed twice?)"),
    ([0, 600, 300, 1200], [600] * 4,
     "frame 2 starts at 300 s, frame 1 at 600 s (frames out of time order"),
    ([0, 600, 1200, 1800], [600, 900, 600, 600],
     "frame 1 (600-1500 s) overlaps frame 2, which starts at 1200 s; 1 frame(s) overlap the next"),
    ([0, 600, 1200], [600, 0, 600], "FrameDuration has values <= 0 (frame 1: 0 s; 1 frame(s))"),
    ([0, 600], [600, 600, 600], "lists 2 FrameTimesStart but 3 FrameDuration"),
])
def test_inconsistent_timing_names_first_frame_and_cause(starts, durations, words):
    problems = frame_timing_problems({"FrameTimesStart": starts, "FrameDuration": durations},
                                     "x_pet.json")
    assert len(problems) == 1 and problems[0].startswith("x_pet.json: ")
    assert words in problems[0]


def test_rounded_frame_lists_pass():
    """Frame lists rounded to the second may overlap by up to 1 s: not a problem."""
    meta = {"FrameTimesStart": [0, 599.6, 1200], "FrameDuration": [600.4, 600, 600]}
    assert frame_timing_problems(meta) == []


def test_frame_far_beyond_the_window_warned_and_recorded(caplog):
    """pet006 (FDG, one 0-98000 s frame) paired with an image: the SUV is computed but the
    frame's 1603 min outside the 60-90 min window are warned and recorded in the sidecar;
    the tracer is not a TSPO ligand: warned and recorded too."""
    meta = _meta(PET006)
    frames = np.full((4, 4, 4, 1), 5000.0, np.float32)  # Bq/mL
    with caplog.at_level("WARNING"):
        out = compute_suv(frames, np.eye(4), meta, PET006, WeightLookup(70.0, "x"), (60, 90))
    expected = 5000.0 / (75.85e6 / 70000.0)
    assert out.data == pytest.approx(np.full((4, 4, 4), expected), rel=1e-5)
    assert out.metadata["FrameTimingWarning"] == (
        "frame 0 (0-1633 min after injection) extends far beyond the 60-90 min SUV window "
        "(1603 of its 1633 min outside it; 100 % of the SUV's weight): the SUV is that "
        "frame's mean, not the window's")
    assert f"{PET006}: frame 0 (0-1633 min after injection) extends far beyond" in caplog.text
    assert "tracer 'FDG' is not a TSPO ligand" in out.metadata["TracerWarning"]
    assert f"{PET006}: tracer 'FDG' is not a TSPO ligand" in caplog.text


def test_frames_within_the_window_not_warned(caplog):
    """pet005's 5-min frames (two partly outside 60-90 min): no window warning."""
    meta = _meta(PET005)
    frames = np.ones((4, 4, 4, len(meta["FrameDuration"])), np.float32)
    out = compute_suv(frames, np.eye(4), meta, PET005, WeightLookup(62.0, "x"), (60, 90))
    assert out.metadata["FramesUsed"] == list(range(38, 45))
    assert "FrameTimingWarning" not in out.metadata


@pytest.fixture
def single_subject(tiny_bids_nosessions, tmp_path):
    bids = tmp_path / "bids"
    shutil.copytree(tiny_bids_nosessions, bids, ignore=shutil.ignore_patterns("derivatives"))
    return bids


def test_end_times_refused_with_exit_65_before_ants(single_subject, tmp_path):
    """Phantom images with the sidecars of pet001 and pet003 (frame counts matched): exit 65,
    both PETs' problems in one message naming each file, nothing written, no ANTs started."""
    pet = single_subject / "sub-01/pet"
    img = nib.load(pet / "sub-01_trc-PBR28_pet.nii.gz")
    data = np.asarray(img.dataobj, np.float32)
    for trc, sidecar in (("CIMBI36", PET001), ("DASB", PET003)):
        n = len(_meta(sidecar)["FrameDuration"])
        frames = data[..., np.minimum(np.arange(n) * data.shape[3] // n, data.shape[3] - 1)]
        nib.save(nib.Nifti1Image(frames, img.affine), pet / f"sub-01_trc-{trc}_pet.nii.gz")
        shutil.copy(sidecar, pet / f"sub-01_trc-{trc}_pet.json")
    out, work = tmp_path / "out", tmp_path / "work"
    code = main([str(single_subject), str(out), "participant", "--participant-label", "01",
                 "--sloppy", "-w", str(work), "--omp-nthreads", "1"])
    assert code == 65
    summary = json.loads(next((out / "logs").glob("summary_*.json")).read_text())
    error = summary["failed"][0]["error"]
    assert "sub-01_trc-CIMBI36_pet.nii.gz: frame 1 (10-30 s) overlaps frame 2" in error
    assert "sub-01_trc-DASB_pet.nii.gz: frame 1 (20-60 s) overlaps frame 2" in error
    assert error.count("FrameDuration seems to hold frame end times") == 2
    assert not (out / "sub-01").exists()
    assert not (work / "participant/sub-01/anat").exists()  # T1w preprocessing never started


# item 3: body weight, pounds, tracer ---------------------------------------------------------

def test_disagreeing_body_weights_warned_and_recorded(caplog):
    """Sidecar 70 kg, sessions.tsv 80 kg, participants.tsv 70.4 kg: the sidecar's is used,
    80 kg warned and both recorded in the SUV sidecar; a malformed lower-priority weight is
    warned, not fatal."""
    pet = Path("sub-01_trc-PBR28_pet.nii.gz")
    with caplog.at_level("WARNING"):
        weight = body_weight({"BodyWeight": 70}, {"body_weight": "80"},
                             {"weight": "70.4", "body_weight": "heavy"}, pet)
    assert (weight.kg, weight.source) == (70.0, "sidecar BodyWeight")
    assert weight.disagreeing == (("sessions.tsv body_weight", 80.0),)
    assert ("sub-01_trc-PBR28_pet.nii.gz: body weights disagree: 70 kg in sidecar BodyWeight, "
            "80 kg in sessions.tsv body_weight; the SUV uses 70 kg") in caplog.text
    assert "participants.tsv: body weight 'heavy' is not a number" in caplog.text
    meta = {"FrameTimesStart": [3600], "FrameDuration": [1800], "InjectedRadioactivity": 400,
            "InjectedRadioactivityUnits": "MBq", "Units": "Bq/mL", "TracerName": "PBR28"}
    out = compute_suv(np.ones((2, 2, 2, 1), np.float32), np.eye(4), meta, pet, weight, (60, 90))
    assert out.metadata["BodyWeightDisagreement"] == {"sidecar BodyWeight": 70.0,
                                                      "sessions.tsv body_weight": 80.0}
    assert "TracerWarning" not in out.metadata
    agreeing = body_weight({"BodyWeight": 70}, {}, {"weight": "70.9"}, pet)
    assert agreeing.disagreeing == ()
    # participants.tsv's one weight per person against a later session's: weight change
    # (here 4 kg) is not a disagreement; a unit mix-up (154 "kg", i.e. lb) is
    changed = body_weight({}, {"weight": "74"}, {"weight": "70"}, pet)
    assert changed.disagreeing == ()
    mixed = body_weight({"BodyWeight": 70}, {}, {"weight": "154"}, pet)
    assert mixed.disagreeing == (("participants.tsv weight", 154.0),)


@pytest.mark.parametrize("sidecar_text, warning, cell", [
    ('{"weight": {"Units": "lbs"', "participants.json: cannot be read", "21"),
    ('{"weight": {"Units": "libras"}}', "weight Units 'libras' are neither kg nor lb", "21"),
    ('{"weight": {"Description": "weight in pounds"}}', 'mentions pounds but has no "Units"',
     "21"),
    ('{"weight": {"Units": "[lb_av]"}}', None, "21 lb"),
    (None, None, "21"),  # pet001's own participants.json: no Units, kg
])
def test_pounds_declaration_that_cannot_be_read_is_warned(tmp_path, caplog, sidecar_text,
                                                          warning, cell):
    """pet001's participants.tsv (weight 21) with participants.json declarations: a pounds
    declaration that cannot be read is warned (the number is read as kg); UCUM [lb_av] is
    pounds."""
    shutil.copy(EXAMPLES / "pet001/participants.tsv", tmp_path / "participants.tsv")
    if sidecar_text is None:
        shutil.copy(EXAMPLES / "pet001/participants.json", tmp_path / "participants.json")
    else:
        (tmp_path / "participants.json").write_text(sidecar_text)
    with caplog.at_level("WARNING"):
        table = participants_table(tmp_path)
    assert table["01"]["weight"] == cell  # "21 lb": 9.5 kg with the SUV
    if cell == "21":
        assert body_weight({}, {}, table["01"], tmp_path / "x_pet.nii.gz").kg == 21.0
    if warning:
        assert warning in caplog.text and str(tmp_path / "participants.json") in caplog.text
    else:
        assert "participants.json" not in caplog.text


@pytest.mark.parametrize("name, tspo", [
    ("[11C]PBR28", True), ("(R)-[11C]PK11195", True), ("[18F]GE-180", True),
    ("[18F]DPA-714", True), ("[11C]ER176", True), ("[18F]FEPPA", True), ("[18F]PBR111", True),
    ("flutriciclamide", True),
    *[(_meta(p)["TracerName"], False) for p in (PET001, PET002, PET005, PET006)],
])
def test_tracer_not_tspo_warned(name, tspo):
    """The official examples' tracers (CIMBI-36, DASB, AZ-10419369, FDG) are not TSPO ligands."""
    warning = tracer_warning({"TracerName": name}, Path("x_pet.nii.gz"))
    assert (warning is None) == tspo
    if not tspo:
        assert warning.startswith(f"x_pet.nii.gz: tracer {name!r} is not a TSPO ligand")
    assert tracer_warning({}, Path("sub-1_trc-FDG_pet.nii.gz")) is not None  # from trc-
    assert tracer_warning({}, Path("sub-1_pet.nii.gz")) is None


# item 1: every entity that tells two PETs apart in the output names ---------------------------

def test_pets_differing_by_rec_or_task_get_their_own_outputs(single_subject, tmp_path, caplog):
    """One session, three PETs: task-rest_rec-acdyn, task-rest_rec-nacdyn (image x 0.5: differs
    only by rec-) and task-eyes_rec-acdyn (image x 2: differs only by task-; every PET has both
    entities, as BIDS inheritance wants: no sidecar applies to another PET). Three SUV maps in each space, with
    the values of their own input; the group level uses one, says which, in every space.
    The rec-nacdyn sidecar also gives BodyWeight 1.5 x participants.tsv's and a non-TSPO
    TracerName: both recorded in its SUV sidecar (item 3 end to end)."""
    pet = single_subject / "sub-01/pet"
    img = nib.load(pet / "sub-01_trc-PBR28_pet.nii.gz")
    data = np.asarray(img.dataobj, np.float32)
    kg = float(participants_table(single_subject)["01"]["weight"])
    for name, scale in (("task-rest_trc-PBR28_rec-acdyn", 1.0),
                        ("task-rest_trc-PBR28_rec-nacdyn", 0.5),
                        ("task-eyes_trc-PBR28_rec-acdyn", 2.0)):
        nib.save(nib.Nifti1Image(data * scale, img.affine), pet / f"sub-01_{name}_pet.nii.gz")
        meta = _meta(pet / "sub-01_trc-PBR28_pet.json")
        if "nacdyn" in name:
            meta |= {"BodyWeight": round(1.5 * kg, 3), "TracerName": "[11C]DASB"}
        (pet / f"sub-01_{name}_pet.json").write_text(json.dumps(meta))
    for old in pet.glob("sub-01_trc-PBR28_pet.*"):
        old.unlink()
    out = tmp_path / "out"
    code = main([str(single_subject), str(out), "participant", "--participant-label", "01",
                 "--sloppy", "-w", str(tmp_path / "work"), "--omp-nthreads", "1"])
    assert code == 0
    written = out / "sub-01/pet"
    suv = {}
    for name in ("task-rest_trc-PBR28_rec-acdyn", "task-rest_trc-PBR28_rec-nacdyn",
                 "task-eyes_trc-PBR28_rec-acdyn"):
        for space in ("T1w", TPL):
            path = written / f"sub-01_{name}_space-{space}_desc-suv_pet.nii.gz"
            assert path.is_file(), path.name
            source = _meta(path.with_name(path.name.replace(".nii.gz", ".json")))["Sources"][0]
            assert source == f"bids:raw:sub-01/pet/sub-01_{name}_pet.nii.gz"
        suv[name] = np.asarray(nib.load(written / f"sub-01_{name}_space-T1w_desc-suv_pet.nii.gz"
                                        ).dataobj, np.float32)
    assert len(list(written.glob("*_desc-suv_pet.nii.gz"))) == 6
    rest = suv["task-rest_trc-PBR28_rec-acdyn"]
    inside = rest > 0.1 * rest.max()
    for name, scale in (("task-rest_trc-PBR28_rec-nacdyn", 0.5 * 1.5),
                        ("task-eyes_trc-PBR28_rec-acdyn", 2.0)):
        ratio = np.median(suv[name][inside] / rest[inside])
        assert ratio == pytest.approx(scale, rel=0.02), name
    side = _meta(written / "sub-01_task-rest_trc-PBR28_rec-nacdyn_space-T1w_desc-suv_pet.json")
    assert side["BodyWeightDisagreement"] == {"sidecar BodyWeight": round(1.5 * kg, 3),
                                              "participants.tsv weight": kg}
    assert "tracer '[11C]DASB' is not a TSPO ligand" in side["TracerWarning"]
    assert "TracerWarning" not in _meta(
        written / "sub-01_task-rest_trc-PBR28_rec-acdyn_space-T1w_desc-suv_pet.json")
    with caplog.at_level("WARNING"):
        files = discover(out)[0]
    chosen = "sub-01_task-eyes_trc-PBR28_rec-acdyn_space-T1w_desc-suv_pet.nii.gz"  # first
    assert files.suv.name == chosen
    assert "3 SUV maps" in caplog.text and f"training and evaluation use {chosen}" in caplog.text
    assert files.suv_in(TPL).name == (
        f"sub-01_task-eyes_trc-PBR28_rec-acdyn_space-{TPL}_desc-suv_pet.nii.gz")


def test_frame_weighted_by_its_minute_in_the_window_is_not_warned():
    """The phantom's later sessions: a 46-61 min frame enters a 60-90 min SUV with the weight
    of its 1 minute inside; most of the frame lies outside, but 1/30 of the SUV is no reason to
    warn. A 0-90 min frame holding half of the SUV's weight is."""
    assert frames_beyond_window([2760.0, 3660.0], [900.0, 1740.0], [1 / 30, 29 / 30],
                                (60, 90)) is None
    text = frames_beyond_window([0.0, 3600.0], [5400.0, 1800.0], [0.5, 0.5], (60, 90))
    assert text is not None and "50 % of the SUV's weight" in text

