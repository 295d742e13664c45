"""Sidecar numbers, radionuclides and decay correction to the injection (BIDS PET timing).

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
