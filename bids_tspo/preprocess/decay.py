"""Sidecar numbers, frame timing checks, radionuclides, the tracer and decay correction to the
injection (BIDS PET timing).

BIDS times (``FrameTimesStart``, ``InjectionStart``, ``ImageDecayCorrectionTime``) are seconds
relative to ``TimeZero``.

>>> radionuclide("[11C]")
'C11'
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import InputDataError
from ..io.tables import is_missing

HALF_LIFE_S = {"C11": 1220.04, "F18": 6586.2, "O15": 122.24, "N13": 597.9, "GA68": 4062.6,
               "CU64": 45720.0, "ZR89": 282276.0, "RB82": 75.45}


def sidecar_numbers(value, key: str, path: Path) -> np.ndarray:
    """A sidecar number or list of numbers as a float array; anything else names the key.

    >>> sidecar_numbers(["0", 600], "FrameTimesStart", Path("x_pet.json")).tolist()
    [0.0, 600.0]
    """
    try:
        array = np.atleast_1d(np.asarray(value, dtype=float))
    except (TypeError, ValueError):
        raise InputDataError(f"{path}: sidecar {key} is not a number or list of numbers "
                             f"({str(value)[:80]})") from None
    if array.ndim != 1 or not np.isfinite(array).all():
        raise InputDataError(f"{path}: sidecar {key} must be finite numbers ({str(value)[:80]})")
    return array


def sidecar_number(sidecar: Mapping, key: str, default: float, path: Path) -> float:
    """An optional single sidecar number (``default`` when absent, empty or n/a)."""
    value = sidecar.get(key)
    return default if is_missing(value) else float(sidecar_numbers(value, key, path)[0])


def sidecar_required(sidecar: Mapping, key: str, path: Path):
    value = sidecar.get(key)
    if is_missing(value):
        raise InputDataError(f"{path}: sidecar has no {key}")
    return value


OVERLAP_TOLERANCE_S = 1.0  # frame lists rounded to the second may overlap by that much


def frame_timing_problems(sidecar: Mapping, path: str | Path = "PET sidecar",
                          n_frames: int | None = None) -> list[str]:
    """Why the frame timing of a PET sidecar is inconsistent, one line each naming ``path``,
    the first offending frame (counted from 0, as ``FramesUsed``) and the likely cause; [] when
    it is consistent. Reads only the sidecar (``n_frames``: the image's frame count, when
    known), so a session's input checks run it before any image work.

    >>> frame_timing_problems({"FrameTimesStart": [0, 10, 20], "FrameDuration": [10, 10, 5]})
    []
    >>> print(*frame_timing_problems({"FrameTimesStart": [0, 10, 30],
    ...                               "FrameDuration": [10, 30, 60]}, "x_pet.json"))
    x_pet.json: frame 1 (10-40 s) overlaps frame 2, which starts at 30 s; FrameDuration seems
    to hold frame end times (FrameDuration of each frame = FrameTimesStart of the next); BIDS
    FrameDuration is each frame's length, end - start
    """
    starts, durations = sidecar.get("FrameTimesStart"), sidecar.get("FrameDuration")
    if is_missing(starts) or is_missing(durations):
        missing = f"{path}: sidecar has no FrameTimesStart/FrameDuration"
        return [f"{missing}; the SUV window cannot be located"]
    try:
        starts = sidecar_numbers(starts, "FrameTimesStart", path)
        durations = sidecar_numbers(durations, "FrameDuration", path)
    except InputDataError as exc:
        return [str(exc)]
    problems = []
    if len(starts) != len(durations):
        image = f" for an image of {n_frames} frame(s)" if n_frames is not None else ""
        problems.append(f"{path}: sidecar lists {len(starts)} FrameTimesStart but "
                        f"{len(durations)} FrameDuration{image}; one of each per frame")
    elif n_frames is not None and n_frames != len(starts):
        problems.append(f"{path}: image has {n_frames} frame(s) but the sidecar lists "
                        f"{len(starts)} FrameTimesStart and {len(durations)} FrameDuration")
    bad = np.flatnonzero(durations <= 0)
    if bad.size:
        problems.append(f"{path}: sidecar FrameDuration has values <= 0 (frame {bad[0]}: "
                        f"{durations[bad[0]]:g} s; {bad.size} frame(s)); each frame must last "
                        "a positive time")
    back = np.flatnonzero(np.diff(starts) <= 0)
    if back.size:
        k = int(back[0]) + 1
        cause = ("the same start twice: a frame listed twice?" if starts[k] == starts[k - 1]
                 else "frames out of time order, or times in mixed units?")
        problems.append(f"{path}: sidecar FrameTimesStart does not increase frame by frame: "
                        f"frame {k} starts at {starts[k]:g} s, frame {k - 1} at "
                        f"{starts[k - 1]:g} s ({cause}); frames must be in time order")
    elif len(starts) == len(durations) and not bad.size:
        ends = starts + durations
        over = np.flatnonzero(ends[:-1] - starts[1:] > OVERLAP_TOLERANCE_S)
        if over.size:
            k = int(over[0])
            holds_ends = np.allclose(durations[:-1], starts[1:], atol=OVERLAP_TOLERANCE_S)
            cause = ("FrameDuration seems to hold frame end times (FrameDuration of each frame "
                     "= FrameTimesStart of the next); BIDS FrameDuration is each frame's "
                     "length, end - start" if holds_ends else
                     f"{over.size} frame(s) overlap the next: check FrameTimesStart and "
                     "FrameDuration against the scanner's frame list")
            problems.append(f"{path}: frame {k} ({starts[k]:g}-{ends[k]:g} s) overlaps frame "
                            f"{k + 1}, which starts at {starts[k + 1]:g} s; {cause}")
    return problems


BEYOND_WINDOW_S = 600.0  # a frame used for the SUV may reach this far outside the window
BEYOND_WINDOW_SHARE = 0.25  # ... unless such frames carry more than this share of its weight


def frames_beyond_window(starts, durations, weights, window_min: tuple[float, float]
                         ) -> str | None:
    """Why the frames averaged for the SUV do not represent the window, or None: frames used
    that lie mostly outside it and reach more than 10 min beyond it, carrying over a quarter
    of the SUV's weight (a single 0-98000 s frame is a mean over 27 h, not over 60-90 min; a
    46-61 min frame weighted by its 1 min inside a 60-90 min window is not a problem).
    ``starts`` in s after injection; ``weights``: each frame's weight in the SUV.

    >>> print(frames_beyond_window([0.0], [98000.0], [1.0], (60, 90)))
    frame 0 (0-1633 min after injection) extends far beyond the 60-90 min SUV window (1603 of
    its 1633 min outside it; 100 % of the SUV's weight): the SUV is that frame's mean, not the
    window's
    >>> frames_beyond_window([2760.0, 3660.0], [900.0, 1740.0], [1 / 30, 29 / 30], (60, 90))
    """
    starts, durations = np.asarray(starts, float), np.asarray(durations, float)
    weights = np.asarray(weights, float)
    lo, hi = window_min[0] * 60.0, window_min[1] * 60.0
    inside = np.clip(np.minimum(starts + durations, hi) - np.maximum(starts, lo), 0, None)
    outside = durations - inside
    far = (weights > 0) & (outside > durations / 2) & (outside > BEYOND_WINDOW_S)
    share = float(weights[far].sum() / max(weights.sum(), 1e-12))
    if share <= BEYOND_WINDOW_SHARE:
        return None
    k = int(np.flatnonzero(far)[np.argmax(weights[far])])
    return (f"frame {k} ({starts[k] / 60:.0f}-{(starts[k] + durations[k]) / 60:.0f} min after "
            f"injection) extends far beyond the {window_min[0]:g}-{window_min[1]:g} min SUV "
            f"window ({outside[k] / 60:.0f} of its {durations[k] / 60:.0f} min outside it"
            + (f"; {far.sum()} such frames" if far.sum() > 1 else "")
            + f"; {100 * share:.0f} % of the SUV's weight): the SUV is that frame's mean, not "
            "the window's")


# TSPO radioligands (upper case, letters and digits only), matched inside TracerName or trc-
TSPO_LIGANDS = ("PBR28", "PBR111", "PBR06", "PBR099", "DPA714", "DPA713", "PK11195", "GE180",
                "FLUTRICICLAMIDE", "GE387", "FEPPA", "ER176", "DAA1106", "FEDAA1106", "FEMPA",
                "CLINDE", "SSR180575", "AC5216", "VINPOCETINE", "BS224", "CB251", "SWV23")


def tracer_warning(sidecar: Mapping, path: Path) -> str | None:
    """A warning when the PET's tracer (``TracerName``, else the ``trc-`` entity) is not a
    TSPO ligand (the model is trained on TSPO PET); None for a TSPO ligand or no name.

    >>> tracer_warning({"TracerName": "[11C]PBR28"}, Path("x_pet.nii.gz")) is None
    True
    >>> print(tracer_warning({"TracerName": "FDG"}, Path("x_pet.nii.gz")))  # doctest: +ELLIPSIS
    x_pet.nii.gz: tracer 'FDG' is not a TSPO ligand (PBR28, ...
    """
    name = sidecar.get("TracerName")
    if is_missing(name):
        match = re.search(r"_trc-([a-zA-Z0-9]+)", Path(path).name)
        name = match.group(1) if match else None
    if is_missing(name):
        return None
    key = re.sub(r"[^A-Z0-9]", "", str(name).upper())
    if any(ligand in key for ligand in TSPO_LIGANDS):
        return None
    return (f"{path}: tracer {str(name)!r} is not a TSPO ligand (PBR28, PBR111, DPA-714, "
            "PK11195, GE-180, FEPPA, ER176, ...): the SUV is computed, but the synthesis model "
            "is trained for TSPO PET and its maps say nothing about this tracer")


_ELEMENTS = {"CARBON": "C", "FLUORINE": "F", "OXYGEN": "O", "NITROGEN": "N", "GALLIUM": "GA",
             "COPPER": "CU", "ZIRCONIUM": "ZR", "RUBIDIUM": "RB"}


def radionuclide(value) -> str:
    """A ``TracerRadionuclide`` as written in the wild, as the key of ``HALF_LIFE_S``.

    >>> [radionuclide(v) for v in ("C11", "11C", "[11C]", "C-11", "carbon-11", "18F", "68Ga")]
    ['C11', 'C11', 'C11', 'C11', 'C11', 'F18', 'GA68']
    """
    key = re.sub(r"[^A-Z0-9]", "", str(value).upper())
    for name, symbol in _ELEMENTS.items():
        key = key.replace(name, symbol)
    mass_first = re.fullmatch(r"(\d+)([A-Z]+)", key)
    return mass_first.group(2) + mass_first.group(1) if mass_first else key


_TIMING_DEFAULTS = {  # BIDS-required fields a converted dataset may lack, and what is assumed
    "TracerRadionuclide": "C11",
    "InjectionStart": "injection at TimeZero (0 s)",
    "ImageDecayCorrected": "decay corrected",
    "ImageDecayCorrectionTime": "to the injection",
}


def timing_assumptions(sidecar: Mapping) -> list[str]:
    """What the decay correction assumes for the timing fields a sidecar lacks.

    >>> timing_assumptions({"TracerRadionuclide": "C11", "InjectionStart": 0})
    ['ImageDecayCorrected: decay corrected', 'ImageDecayCorrectionTime: to the injection']
    """
    return [f"{key}: {value}" for key, value in _TIMING_DEFAULTS.items()
            if is_missing(sidecar.get(key))
            and not (key == "ImageDecayCorrectionTime" and not decay_corrected(sidecar))]


def decay_corrected(sidecar: Mapping) -> bool:
    """``ImageDecayCorrected`` as a bool (JSON true/false, or a string such as "true"/"no");
    absent: assumed true."""
    value = sidecar.get("ImageDecayCorrected", True)
    return value.strip().lower() in ("true", "1", "yes") if isinstance(value, str) else bool(value)


def decay_to_injection(sidecar: Mapping, starts, durations, path: Path) -> np.ndarray:
    """Per-frame factors bringing the image to decay-corrected-to-injection concentrations.

    BIDS times (``FrameTimesStart``, ``InjectionStart``, ``ImageDecayCorrectionTime``) are
    seconds relative to ``TimeZero``. An image decay corrected to a time ``ref`` holds the
    activity left at ``ref``: ``exp(-lambda (ref - injection))`` of the injection-time activity,
    so the factor is ``exp(+lambda (ref - injection))`` (> 1 for the usual correction to a scan
    start after the injection). Frames not corrected get the frame-average decay factor.

    >>> meta = {"TracerRadionuclide": "C11", "InjectionStart": -3600,
    ...         "ImageDecayCorrected": True, "ImageDecayCorrectionTime": 0}
    >>> round(float(decay_to_injection(meta, [0], [1800], Path("x_pet.nii.gz"))[0]), 3)
    7.731
    """
    written = sidecar.get("TracerRadionuclide", "C11")
    nuclide = radionuclide(written)
    if nuclide not in HALF_LIFE_S:
        raise InputDataError(f"{path}: unknown TracerRadionuclide {written!r} (known: "
                             f"{', '.join(HALF_LIFE_S)})")
    lam = math.log(2) / HALF_LIFE_S[nuclide]
    injection = sidecar_number(sidecar, "InjectionStart", 0.0, path)
    starts = np.asarray(starts, float)
    durations = np.asarray(durations, float)
    if decay_corrected(sidecar):
        ref = sidecar_number(sidecar, "ImageDecayCorrectionTime", injection, path)
        return np.full(len(starts), math.exp(lam * (ref - injection)))
    t0 = starts - injection
    return lam * durations / (np.exp(-lam * t0) * (1 - np.exp(-lam * durations)))
