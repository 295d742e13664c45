"""Dynamic [11C]PBR28 PET of the phantom: frame schedule, kinetics, noise and BIDS sidecar.

Each voxel's time-activity curve is a mix of a tissue curve (fast uptake, slow washout) and a
vascular curve (early peak; the venous sinus) normalised so that the duration-weighted mean of
the frames in 60-90 min after injection equals ``SUV * dose / weight`` exactly (noise-free).
Frames are decay corrected to TimeZero: the injection, or the scan start when the injection
came ``injection_lead_s`` before it (the frames then run from the scan start, and their values
are what was left at it: ``exp(-lambda lead)`` of the injection-time activity). Noise follows
the counts of each frame (C-11 decay, frame length) and is spatially correlated like a
reconstructed image; it is calibrated so that the 60-90 min average has a voxel SD of
``NOISE_SD_2MM`` (relative, at the 90th-percentile concentration, about grey matter) at 2 mm
voxels, times ``noise``, and smaller for larger voxels (SD ~ voxel volume^-1/2).

>>> starts, durations = frame_schedule("small")
>>> float(starts[-1] + durations[-1]) / 60
90.0
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

C11_HALF_LIFE_S = 1220.04
# Voxel SD of the 60-90 min SUV average at 2 mm voxels, relative, at a grey-matter level: an
# estimate from counting statistics for a Biograph mMR (13.3 kcps/MBq, Karlberg et al. 2016),
# ~450 MBq [11C]PBR28, OSEM with a 4 mm Gaussian filter; see docs/phantom.md.
NOISE_SD_2MM = 0.10
NOISE_SIGMA_VOX = 0.8  # spatial correlation of reconstructed-image noise (Gaussian, voxels)
FRAMES = {  # frame durations in seconds, 0-90 min
    "full": [60] * 5 + [300] * 5 + [600] * 3 + [300] * 6,
    "small": [600] * 3 + [900] * 2 + [600] * 3,
    "tiny": [900] * 2 + [1800] + [600] * 3,
}


def frame_schedule(size: str) -> tuple[np.ndarray, np.ndarray]:
    durations = np.asarray(FRAMES[size], dtype=float)
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    return starts, durations


def _tissue_curve(t_min: np.ndarray) -> np.ndarray:
    return (1.0 - np.exp(-t_min / 1.5)) * (0.55 + 0.45 * np.exp(-t_min / 25.0))


def _vascular_curve(t_min: np.ndarray) -> np.ndarray:
    return (1.0 - np.exp(-t_min / 0.3)) * (0.5 + 3.0 * np.exp(-t_min / 4.0))


def frame_means(curve, starts: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Mean of ``curve`` (a function of minutes) over each frame (numerical integration)."""
    out = []
    for s, d in zip(starts, durations):
        t = np.linspace(s, s + d, 64) / 60.0
        out.append(np.trapezoid(curve(t), t) / (d / 60.0))
    return np.asarray(out)


def window_weights(starts: np.ndarray, durations: np.ndarray,
                   window_min=(60.0, 90.0)) -> np.ndarray:
    lo, hi = window_min[0] * 60, window_min[1] * 60
    overlap = np.clip(np.minimum(starts + durations, hi) - np.maximum(starts, lo), 0, None)
    return overlap / overlap.sum()


def _kernel_sd(sigma: float) -> float:
    """SD of unit white noise after scipy's Gaussian filter (truncate 4) in 3D."""
    x = np.arange(-int(4.0 * sigma + 0.5), int(4.0 * sigma + 0.5) + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    return float(np.sqrt((k**2).sum()) ** 3)


def dynamic_frames(concentration: np.ndarray, vascular: np.ndarray, size: str,
                   rng: np.random.Generator, noise: float = 1.0,
                   injection_lead_s: float = 0.0, voxel_mm: float = 2.0) -> np.ndarray:
    """4D frames (X, Y, Z, T) in Bq/mL whose 60-90 min mean is ``concentration`` (+ noise).

    ``concentration`` is the 60-90 min (after injection) mean activity (Bq/mL) decay corrected
    to injection, ``vascular`` the fraction (0-1) of each voxel following the vascular curve;
    ``noise`` scales the noise (1: ``NOISE_SD_2MM`` at 2 mm; 0: none); ``voxel_mm`` the voxel
    size; ``injection_lead_s``: see the module docstring.
    """
    starts, durations = frame_schedule(size)
    starts = starts + injection_lead_s  # seconds after injection
    w = window_weights(starts, durations)
    tissue = frame_means(_tissue_curve, starts, durations)
    blood = frame_means(_vascular_curve, starts, durations)
    tissue, blood = tissue / (w @ tissue), blood / (w @ blood)
    shape_t = (1 - vascular[..., None]) * tissue + vascular[..., None] * blood
    frames = concentration[..., None] * shape_t
    # count-based noise: relative SD ~ 1/sqrt(counts); decay-corrected frames get noisier
    lam = np.log(2) / C11_HALF_LIFE_S
    mid = starts + durations / 2
    rel = 1.0 / np.sqrt((durations / 300.0) * np.exp(-lam * (mid - 75 * 60)))
    # calibrate: relative SD of the window average of a tissue voxel at the scale level
    target = NOISE_SD_2MM * noise * (2.0 / voxel_mm) ** 1.5
    rel *= target / float(np.sqrt(((w * rel) ** 2 * tissue).sum()))
    positive = concentration[concentration > 0]
    scale = float(np.percentile(positive, 90)) if positive.size else 1.0
    kernel_sd = _kernel_sd(NOISE_SIGMA_VOX)
    for k in range(frames.shape[-1]):
        if not noise:
            break
        sd = rel[k] * np.sqrt(np.clip(frames[..., k], 0, None) * scale)
        n = ndimage.gaussian_filter(rng.standard_normal(frames.shape[:3]), NOISE_SIGMA_VOX)
        frames[..., k] += sd * n / kernel_sd
    return (frames * np.exp(-lam * injection_lead_s)).astype(np.float32)


def decay_factors(starts: np.ndarray, durations: np.ndarray) -> list[float]:
    """Frame decay-correction factors to TimeZero (C-11; ``starts`` relative to it)."""
    lam = np.log(2) / C11_HALF_LIFE_S
    f = lam * durations / (np.exp(-lam * starts) * (1 - np.exp(-lam * durations)))
    return [round(float(x), 6) for x in f]


def pet_sidecar(size: str, dose_mbq: float, scan_start: str, body_weight: float | None,
                voxel_mm: float, injection_lead_s: float = 0.0) -> dict:
    """A complete BIDS PET sidecar for the phantom acquisition (times relative to TimeZero,
    the scan start; the injection ``injection_lead_s`` before it)."""
    starts, durations = frame_schedule(size)
    meta = {
        "Manufacturer": "Siemens",
        "ManufacturersModelName": "Biograph_mMR",
        "Units": "Bq/mL",
        "BodyPart": "Brain",
        "TracerName": "PBR28",
        "TracerRadionuclide": "C11",
        "TracerMolecularWeight": 348.4,
        "TracerMolecularWeightUnits": "g/mol",
        "InjectedRadioactivity": round(dose_mbq, 3),
        "InjectedRadioactivityUnits": "MBq",
        "InjectedMass": "n/a",
        "InjectedMassUnits": "n/a",
        "SpecificRadioactivity": "n/a",
        "SpecificRadioactivityUnits": "n/a",
        "ModeOfAdministration": "bolus",
        "TimeZero": scan_start,
        "ScanStart": 0,
        "InjectionStart": -float(injection_lead_s) if injection_lead_s else 0,
        "FrameTimesStart": [float(s) for s in starts],
        "FrameDuration": [float(d) for d in durations],
        "AcquisitionMode": "list mode",
        "ImageDecayCorrected": True,
        "ImageDecayCorrectionTime": 0,
        "DecayCorrectionFactor": decay_factors(starts, durations),
        "ReconMethodName": "OP-OSEM",
        "ReconMethodParameterLabels": ["subsets", "iterations"],
        "ReconMethodParameterUnits": ["none", "none"],
        "ReconMethodParameterValues": [21, 3],
        "ReconFilterType": "Gaussian",
        "ReconFilterSize": 4.0,
        "AttenuationCorrection": "PseudoCT (Izquierdo-Garcia et al. 2014)",
        "SpatialResolutionNote": f"~6 mm FWHM, {voxel_mm:g} mm voxels (synthetic phantom)",
    }
    if body_weight is not None:
        meta["BodyWeight"] = round(body_weight, 1)
    return meta
