"""PET quantification: units, frame windows, decay, weight lookup order, error cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bids_tspo.errors import InputDataError
from bids_tspo.preprocess.decay import HALF_LIFE_S, decay_to_injection
from bids_tspo.preprocess.pet import (
    WeightLookup,
    activity_to_bq,
    body_weight,
    compute_suv,
    concentration_factor,
    frame_weights,
)

PET = Path("sub-01_trc-PBR28_pet.nii.gz")


@pytest.mark.parametrize("value, units, bq", [
    (1, "Bq", 1.0), (2, "kBq", 2e3), (370, "MBq", 3.7e8), (0.4, "GBq", 4e8),
    (10, "mCi", 3.7e8), (10, "mci", 3.7e8), (5, "uCi", 1.85e5),
])
def test_activity_units(value, units, bq):
    assert activity_to_bq(value, units) == pytest.approx(bq)


@pytest.mark.parametrize("units, factor", [
    ("Bq/mL", 1.0), ("kBq/mL", 1e3), ("MBq/mL", 1e6), ("kBq/cc", 1e3), ("Bq/ml", 1.0)])
def test_concentration_units(units, factor):
    assert concentration_factor(units) == factor


@pytest.mark.parametrize("bad", ["SUV", "g/mL", "counts"])
def test_unknown_concentration_units(bad):
    with pytest.raises(ValueError):
        concentration_factor(bad)


def test_frame_weights_whole_and_partial_overlaps():
    # frames 50-65, 65-80, 80-95 min: window 60-90 takes 5, 15 and 10 minutes of them
    starts = np.array([50, 65, 80]) * 60.0
    durations = np.array([15, 15, 15]) * 60.0
    w = frame_weights(starts, durations, (60, 90))
    assert w == pytest.approx([5 / 30, 15 / 30, 10 / 30])


def test_frame_weights_refuse_uncovered_window():
    with pytest.raises(ValueError, match="cover only 20.0 of the 60-90 min"):
        frame_weights([0, 3600], [3600, 1200], (60, 90))
    with pytest.raises(ValueError, match="cover only"):  # a gap inside the window
        frame_weights([3600, 4500], [600, 900], (60, 90))


def test_decay_factors():
    # corrected to injection: factor 1; corrected to a time 10 min after injection, values are
    # what was left then, e^(-lambda 600) of the injection-time activity: factor e^(+lambda 600)
    lam = math.log(2) / HALF_LIFE_S["C11"]
    meta = {"TracerRadionuclide": "C11", "ImageDecayCorrected": True,
            "ImageDecayCorrectionTime": 0, "InjectionStart": 0}
    assert decay_to_injection(meta, [3600], [600], PET) == pytest.approx([1.0])
    meta["ImageDecayCorrectionTime"] = 600
    assert decay_to_injection(meta, [3600], [600], PET) == pytest.approx([math.exp(lam * 600)])
    meta["ImageDecayCorrected"] = False  # uncorrected frames get the frame-average factor
    expected = lam * 600 / (math.exp(-lam * 3600) * (1 - math.exp(-lam * 600)))
    assert decay_to_injection(meta, [3600], [600], PET) == pytest.approx([expected])


def test_weight_lookup_order():
    sidecar, session, participant = {"BodyWeight": 70}, {"body_weight": "71"}, {"weight": "72"}
    assert body_weight(sidecar, session, participant, PET) == WeightLookup(70, "sidecar BodyWeight")
    assert body_weight({}, session, participant, PET).source == "sessions.tsv body_weight"
    assert body_weight({}, {"weight": "n/a"}, participant, PET) == WeightLookup(
        72, "participants.tsv weight")
    assert body_weight({}, {}, {"body_weight": "80", "weight": "90"}, PET).kg == 80
    assert body_weight({}, {}, {"weight": " 81.5 kg"}, PET).kg == 81.5  # units written out
    assert body_weight({}, {}, {"weight": "176 lbs"}, PET).kg == pytest.approx(79.83, abs=0.01)


@pytest.mark.parametrize("rows, message", [
    (({}, {}, {}), "no body weight"),
    (({"BodyWeight": 400}, {}, {}), "400 kg from sidecar BodyWeight is implausible"),
    (({}, {}, {"weight": "15"}), "implausible"),
    (({}, {"weight": "heavy"}, {}), "is not a number"),
])
def test_weight_errors_name_the_file(rows, message):
    with pytest.raises(InputDataError, match=message) as exc:
        body_weight(*rows, PET)
    if "BodyWeight" in message or "no body" in message or "implausible" in message:
        assert str(PET) in str(exc.value)


def _sidecar(**changes):
    meta = {"FrameTimesStart": [0, 3600, 4500], "FrameDuration": [3600, 900, 900],
            "InjectedRadioactivity": 400, "InjectedRadioactivityUnits": "MBq",
            "Units": "kBq/mL", "TracerRadionuclide": "C11", "ImageDecayCorrected": True,
            "ImageDecayCorrectionTime": 0, "InjectionStart": 0}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


def test_compute_suv_hand_computed():
    frames = np.zeros((8, 8, 8, 3), np.float32)
    frames[..., 1], frames[..., 2] = 5.0, 7.0  # kBq/mL; window mean = 6 kBq/mL
    out = compute_suv(frames, np.eye(4), _sidecar(), PET, WeightLookup(80.0, "x"), (60, 90))
    expected = 6000.0 / (400e6 / 80000.0)  # Bq/mL / (Bq/g)
    assert out.data == pytest.approx(np.full((8, 8, 8), expected), rel=1e-6)
    assert out.metadata["FramesUsed"] == [1, 2]
    assert out.metadata["BodyWeightSource"] == "x"
    assert out.metadata["DecayFactorsToInjection"] == [1.0, 1.0]
    assert "TimingAssumptions" not in out.metadata


def test_missing_timing_fields_are_assumed_warned_and_recorded(caplog):
    frames = np.ones((4, 4, 4, 3), np.float32)
    meta = _sidecar(InjectionStart=None, ImageDecayCorrectionTime=None)
    with caplog.at_level("WARNING"):
        out = compute_suv(frames, np.eye(4), meta, PET, WeightLookup(80.0, "x"), (60, 90))
    assert out.metadata["TimingAssumptions"] == [
        "InjectionStart: injection at TimeZero (0 s)",
        "ImageDecayCorrectionTime: to the injection"]
    assert f"{PET}: sidecar lacks BIDS timing field(s), assumed InjectionStart" in caplog.text


def _frames_as_stored(truth, starts, durations, tz, corrected_to):
    """Frames of a true injection-corrected activity (one value per frame, frames given in
    seconds after injection) as a scanner stores them: decay corrected to ``corrected_to``
    (seconds after injection) or, with None, not corrected (frame-average decay); BIDS times
    relative to a TimeZero ``tz`` seconds after injection."""
    lam = math.log(2) / HALF_LIFE_S["C11"]
    starts, durations = np.asarray(starts, float), np.asarray(durations, float)
    if corrected_to is None:
        stored = truth * np.exp(-lam * starts) * -np.expm1(-lam * durations) / (lam * durations)
    else:
        stored = truth * np.exp(-lam * corrected_to)
    meta = _sidecar(FrameTimesStart=(starts - tz).tolist(), FrameDuration=durations.tolist(),
                    InjectionStart=-tz, ImageDecayCorrected=corrected_to is not None,
                    ImageDecayCorrectionTime=0.0 if corrected_to is None else corrected_to - tz)
    return np.broadcast_to(stored, (4, 4, 4, len(starts))).astype(np.float32), meta


@pytest.mark.parametrize("starts, durations, tz, corrected_to", [
    ([0, 3600, 4500], [3600, 900, 900], 0, 0),        # TimeZero and correction at injection
    ([-30, 3600, 4500], [3630, 900, 900], -30, -30),  # scan started 30 s before injection
    ([0, 3600, 4500], [3600, 900, 900], 0, None),     # frames not decay corrected
    ([3600], [1800], 3600, 3600),                     # late static scan, corrected to its start
    ([3540, 4440], [900, 960], 3540, 3540),           # late scan, injection 59 min before
])
def test_suv_the_same_under_every_timing_convention(starts, durations, tz, corrected_to):
    """One true activity, stored as scanners store it: decay corrected to the injection, to a
    scan start before or long after it, or not at all, with BIDS times relative to the scan's
    TimeZero: the SUV is the same (the window mean of the injection-corrected activity)."""
    truth = np.linspace(4.0, 6.0, len(starts))  # kBq/mL, injection-corrected, per frame
    frames, meta = _frames_as_stored(truth, starts, durations, tz, corrected_to)
    out = compute_suv(frames, np.eye(4), meta, PET, WeightLookup(80.0, "x"), (60, 90))
    weights = frame_weights(np.asarray(starts, float), durations, (60, 90))
    expected = 1000.0 * float(weights @ truth) / (400e6 / 80000.0)
    assert out.data == pytest.approx(np.full((4, 4, 4), expected), rel=1e-5)


@pytest.mark.parametrize("changes, message", [
    ({"InjectedRadioactivity": None}, "no InjectedRadioactivity"),
    ({"InjectedRadioactivity": 0}, "not positive"),
    ({"InjectedRadioactivity": 10, "InjectedRadioactivityUnits": "Bq"}, "implausible"),
    ({"InjectedRadioactivityUnits": "bananas"}, "unknown activity units"),
    ({"Units": None}, "no Units"),
    ({"FrameTimesStart": None}, "no FrameTimesStart"),
    ({"FrameDuration": [3600, 900]}, "3 frame"),
    ({"FrameTimesStart": [0, 1800, 2700], "FrameDuration": [1800, 900, 900]}, "cover only"),
    ({"TracerRadionuclide": "Tc-99m"}, "unknown TracerRadionuclide 'Tc-99m'"),
    ({"FrameTimesStart": [0, 600, 1200], "FrameDuration": [600] * 3, "InjectionStart": -2400},
     "cover only 10.0 of the 60-90 min SUV window; --suv-window 40 70 would use them"),
])
def test_compute_suv_errors(changes, message):
    frames = np.ones((8, 8, 8, 3), np.float32)
    with pytest.raises(InputDataError, match=message) as exc:
        compute_suv(frames, np.eye(4), _sidecar(**changes), PET, WeightLookup(80, "x"), (60, 90))
    assert str(PET) in str(exc.value)


def test_nonfinite_corners_taken_as_no_data_a_mostly_nan_image_refused(tmp_path, caplog):
    """A reconstruction's NaN corners outside the field of view are no data (0, warned); an
    image mostly NaN/Inf is broken: one line naming it."""
    import nibabel as nib

    from bids_tspo.preprocess.images import load_checked

    data = np.random.default_rng(0).random((16, 16, 16, 2)).astype(np.float32) + 1
    data[:4, :4] = np.nan
    path = tmp_path / "sub-01_pet.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with caplog.at_level("WARNING"):
        _, loaded = load_checked(path, ndim=(3, 4), what="PET")
    assert np.isfinite(loaded).all() and (loaded[:4, :4] == 0).all()
    assert np.array_equal(loaded[4:], data[4:])
    assert f"{path}: PET has 512 NaN/Inf voxel(s) (6.2 %), taken as 0" in caplog.text
    data[:10] = np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(InputDataError, match=r"sub-01_pet.nii.gz: PET contains 5120 NaN/Inf "
                                             r"voxel\(s\) \(62 % of the image\)"):
        load_checked(path, ndim=(3, 4), what="PET")
