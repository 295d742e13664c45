"""PET quantification: SUV window average, units, decay, body weight; coregistration to T1w.

Pure functions (frame weights, unit factors, weight lookup) are separated from the image work
so they can be tested on small cases.

>>> frame_weights([0, 3600, 4500], [3600, 900, 900], (60, 90))
array([0. , 0.5, 0.5])
>>> activity_to_bq(10, "mCi")
370000000.0
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..errors import InputDataError
from ..io.tables import WEIGHT_COLUMNS, is_missing
from .decay import (
    decay_to_injection,
    frame_timing_problems,
    frames_beyond_window,
    sidecar_number,
    sidecar_numbers,
    sidecar_required,
    timing_assumptions,
    tracer_warning,
)

LOG = logging.getLogger(__name__)

_ACTIVITY = {"bq": 1.0, "kbq": 1e3, "mbq": 1e6, "gbq": 1e9, "ci": 3.7e10, "mci": 3.7e7,
             "uci": 3.7e4, "µci": 3.7e4, "μci": 3.7e4}
_VOLUME = {"ml": 1.0, "cc": 1.0, "cm3": 1.0, "l": 1e3}
WEIGHT_RANGE_KG = (20.0, 300.0)
WEIGHT_AGREEMENT_KG = 1.0  # weights of one session from two sources farther apart: warned
# participants.tsv holds one weight per person (often from screening): against a session's own
# weight it is warned only beyond 10 % (a unit mix-up, a wrong row), not for weight change
SUBJECT_WEIGHT_AGREEMENT = 0.10


def activity_to_bq(value: float, units: str) -> float:
    """Convert an injected activity to Bq (Bq, kBq, MBq, GBq, Ci, mCi, uCi)."""
    key = str(units).strip().lower().replace(" ", "")
    if key not in _ACTIVITY:
        raise ValueError(f"unknown activity units {units!r} (use Bq, kBq, MBq, GBq or mCi)")
    return float(value) * _ACTIVITY[key]


def concentration_factor(units: str) -> float:
    """Factor converting image values in ``units`` (e.g. kBq/mL) to Bq/mL."""
    key = str(units).strip().lower().replace(" ", "")
    if "/" not in key:
        raise ValueError(f"image units {units!r} are not a concentration (e.g. Bq/mL)")
    num, den = key.split("/", 1)
    if num not in _ACTIVITY or den not in _VOLUME:
        raise ValueError(f"unknown image units {units!r} (use Bq/mL, kBq/mL or MBq/mL)")
    return _ACTIVITY[num] / _VOLUME[den]


def frame_weights(starts, durations, window_min: tuple[float, float],
                  tolerance_s: float = 1.0) -> np.ndarray:
    """Duration weights of each frame's overlap with the window (minutes after injection).

    Partial overlaps count by their overlapping duration; the weights sum to 1. Raises
    ``ValueError`` when the frames do not cover the window (gaps count as uncovered).
    """
    starts = np.asarray(starts, dtype=float)
    durations = np.asarray(durations, dtype=float)
    lo, hi = window_min[0] * 60.0, window_min[1] * 60.0
    overlap = np.clip(np.minimum(starts + durations, hi) - np.maximum(starts, lo), 0, None)
    covered = overlap.sum()
    if covered < (hi - lo) - tolerance_s:
        first, last = starts.min() / 60, (starts + durations).max() / 60
        raise ValueError(f"frames ({first:g}-{last:g} min after injection) cover only "
                         f"{covered / 60:.1f} of the {window_min[0]:g}-{window_min[1]:g} min "
                         f"SUV window")
    return overlap / covered


@dataclass(frozen=True)
class WeightLookup:
    kg: float
    source: str
    disagreeing: tuple = field(default=(), compare=False)  # ((source, kg), ...): _tolerance


_POUND_KG = 0.45359237


def _parse_weight(value, where: str) -> float | None:
    """kg from a number, or a number with ``kg`` or ``lb``/``lbs`` after it; None when empty.

    >>> _parse_weight("70", "t"), _parse_weight("70 kg", "t"), round(_parse_weight("154lb", "t"), 1)
    (70.0, 70.0, 69.9)
    """
    if is_missing(value):
        return None
    text = str(value).strip().lower()
    match = re.fullmatch(r"([0-9.eE+-]+)\s*(kg|lbs?)?", text)
    try:
        kg = float(match.group(1)) if match else float(text)
    except ValueError:
        raise InputDataError(f"{where}: body weight {value!r} is not a number (kg)") from None
    return kg * _POUND_KG if match and (match.group(2) or "").startswith("lb") else kg


def _tolerance(chosen: str, other: str, kg: float) -> float:
    """How far (kg) ``other``'s weight may lie from the ``chosen`` source's before it is a
    disagreement: 1 kg between two records of the session, 10 % (at least 1 kg) between a
    session's weight and participants.tsv's one weight per person.

    >>> _tolerance("sidecar BodyWeight", "sessions.tsv weight", 70.0)
    1.0
    >>> _tolerance("sessions.tsv weight", "participants.tsv weight", 70.0)
    7.0
    """
    if not chosen.startswith("participants.tsv") and other.startswith("participants.tsv"):
        return max(WEIGHT_AGREEMENT_KG, SUBJECT_WEIGHT_AGREEMENT * kg)
    return WEIGHT_AGREEMENT_KG


def body_weight(sidecar: Mapping, session_row: Mapping, participant_row: Mapping,
                pet_path: Path, bids_dir: Path | None = None) -> WeightLookup:
    """Body weight (kg): PET sidecar ``BodyWeight``, else sessions.tsv, else participants.tsv."""
    candidates = [("sidecar BodyWeight", sidecar.get("BodyWeight"), f"{pet_path} sidecar")]
    for column in WEIGHT_COLUMNS:
        candidates.append((f"sessions.tsv {column}", session_row.get(column), "sessions.tsv"))
    for column in WEIGHT_COLUMNS:
        candidates.append((f"participants.tsv {column}", participant_row.get(column),
                           "participants.tsv"))
    found: list[tuple[str, float]] = []
    for source, value, where in candidates:
        try:
            kg = _parse_weight(value, where)
        except InputDataError as exc:
            if not found:
                raise
            LOG.warning("%s (ignored: the SUV uses %s)", exc, found[0][0])
            continue
        if kg is None:
            continue
        if not found and not WEIGHT_RANGE_KG[0] <= kg <= WEIGHT_RANGE_KG[1]:
            raise InputDataError(f"{pet_path}: body weight {kg:g} kg from {source} is implausible "
                                 f"(expected {WEIGHT_RANGE_KG[0]:g}-{WEIGHT_RANGE_KG[1]:g} kg)")
        found.append((source, kg))
    if not found:
        raise InputDataError(f"{pet_path}: no body weight (sidecar BodyWeight, sessions.tsv or "
                             "participants.tsv body_weight/weight) - SUV cannot be computed")
    (source, kg), others = found[0], found[1:]
    disagreeing = tuple((s, round(k, 2)) for s, k in others
                        if abs(k - kg) > _tolerance(source, s, kg))
    if disagreeing:
        LOG.warning("%s: body weights disagree: %g kg in %s, %s; the SUV uses %g kg (%s first; "
                    "recorded as BodyWeightDisagreement in the SUV sidecar)", pet_path, kg,
                    source, ", ".join(f"{k:g} kg in {s}" for s, k in disagreeing), kg,
                    source)
    return WeightLookup(kg, source, disagreeing)


def _window_mean(frames: np.ndarray, weights: np.ndarray, decay: np.ndarray) -> np.ndarray:
    """Weighted mean of decay-corrected frames; a NaN (a realigned frame without data there)
    leaves the frame out of that voxel's mean, its weight shared by the others (0 where no
    frame has data).

    >>> f = np.array([[2.0, 4.0], [2.0, np.nan]])
    >>> _window_mean(f, np.array([0.5, 0.5]), np.ones(2)).tolist()
    [3.0, 2.0]
    """
    valid = ~np.isnan(frames)
    total = np.tensordot(np.where(valid, frames, 0.0), weights * decay, axes=([-1], [0]))
    share = np.tensordot(valid.astype(np.float32), weights, axes=([-1], [0]))
    return np.divide(total, share, out=np.zeros_like(total), where=share > 0)


@dataclass(frozen=True)
class SuvResult:
    data: np.ndarray       # 3D SUV (g/mL) on the PET grid
    affine: np.ndarray
    metadata: dict         # what was used (window, weight source, dose, units)


def compute_suv(data: np.ndarray, affine: np.ndarray, sidecar: Mapping, path: Path,
                weight: WeightLookup, window_min: tuple[float, float],
                realign: Callable | None = None) -> SuvResult:
    """Average the frames in ``window_min`` and convert to SUV; ``realign(frames, weights)``
    (:func:`bids_tspo.preprocess.motion.realign_frames`) aligns the frames used first."""
    frames = data if data.ndim == 4 else data[..., None]
    problems = frame_timing_problems(sidecar, path, frames.shape[3])
    if problems:
        raise InputDataError("; ".join(problems))
    starts = sidecar_numbers(sidecar["FrameTimesStart"], "FrameTimesStart", path)
    durations = sidecar_numbers(sidecar["FrameDuration"], "FrameDuration", path)
    injection = sidecar_number(sidecar, "InjectionStart", 0.0, path)
    try:
        weights = frame_weights(starts - injection, durations, window_min)
    except ValueError as exc:
        first, last = (starts - injection).min() / 60, (starts - injection + durations).max() / 60
        hint = (f"; --suv-window {max(first, 0):.0f} {last:.0f} would use them"
                if last - max(first, 0) >= 10 else "")
        raise InputDataError(f"{path}: {exc}{hint}") from None
    dose = float(sidecar_numbers(sidecar_required(sidecar, "InjectedRadioactivity", path),
                                 "InjectedRadioactivity", path)[0])
    dose_units = sidecar_required(sidecar, "InjectedRadioactivityUnits", path)
    units = sidecar_required(sidecar, "Units", path)
    try:
        dose_bq = activity_to_bq(dose, dose_units)
        to_bq_ml = concentration_factor(units)
    except ValueError as exc:
        raise InputDataError(f"{path}: {exc}") from None
    if dose_bq <= 0:
        raise InputDataError(f"{path}: InjectedRadioactivity {dose:g} {dose_units} is not positive")
    if not 1e6 <= dose_bq <= 5e10:
        raise InputDataError(f"{path}: InjectedRadioactivity {dose:g} {dose_units} is implausible "
                             "for a human PET scan (check InjectedRadioactivityUnits)")
    decay = decay_to_injection(sidecar, starts, durations, path)
    assumed = timing_assumptions(sidecar)
    if assumed:
        LOG.warning("%s: sidecar lacks BIDS timing field(s), assumed %s", path, "; ".join(assumed))
    used = weights > 0
    selected, moved = frames[..., used], None
    if realign is not None:
        selected, moved = realign(selected, weights[used])
    mean = _window_mean(selected, weights[used], decay[used])
    suv = mean * to_bq_ml / (dose_bq / (weight.kg * 1000.0))
    meta = {"SUVWindow": list(window_min), "SUVWindowUnits": "min after injection",
            "FramesUsed": [int(i) for i in np.flatnonzero(used)],
            "FrameWeights": [round(float(w), 6) for w in weights[used]],
            "InjectedRadioactivityBq": dose_bq, "BodyWeight": weight.kg,
            "BodyWeightSource": weight.source, "SourceUnits": units,
            "DecayFactorsToInjection": [round(float(f), 6) for f in decay[used]]}
    if assumed:
        meta["TimingAssumptions"] = assumed
    beyond = frames_beyond_window(starts - injection, durations, weights, window_min)
    if beyond:
        LOG.warning("%s: %s", path, beyond)
        meta["FrameTimingWarning"] = beyond
    if weight.disagreeing:
        meta["BodyWeightDisagreement"] = {weight.source: weight.kg, **dict(weight.disagreeing)}
    tracer = tracer_warning(sidecar, path)
    if tracer:
        LOG.warning("%s", tracer)
        meta["TracerWarning"] = tracer
    if moved is not None:
        meta["MotionCorrection"] = ("frames used realigned rigidly (ANTs) to frame "
                                    f"{int(np.flatnonzero(used)[np.argmax(weights[used])])}")
        meta["FrameDisplacement"] = moved
        LOG.info("%s: frames realigned, displacement up to %.2f mm", path.name, max(moved))
    return SuvResult(suv.astype(np.float32), affine, meta)
