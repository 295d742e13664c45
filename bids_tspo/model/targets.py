"""The model's units: T1w input scaling and PET target normalisation (pure numpy).

* T1w: 1st→0 / 99th→1 percentile scaling inside the brain (no clipping), then brain-masked.
* PET target ``minmax`` (the paper's per-volume min–max, made robust): the 0.5th and 99.5th
  percentiles inside the brain -> 0 and 1, clipped; ``suvr``: SUV over its
  mean in the reference region (whole brain, or cerebellum: :mod:`bids_tspo.preprocess.reference`),
  divided by ``SUVR_SCALE`` to sit in the sigmoid's range.
"""

from __future__ import annotations

import logging

import numpy as np

LOG = logging.getLogger(__name__)
SUVR_SCALE = 3.0


def scale_t1(t1: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """T1w -> model input: the 1st percentile inside ``mask`` -> 0, the 99th -> 1 (values
    beyond are kept), zero outside ``mask``."""
    inside = t1[mask > 0]
    p1, p99 = np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0)
    return ((t1 - p1) / max(p99 - p1, 1e-6) * (mask > 0)).astype(np.float32)


ROBUST_RANGE = (0.5, 99.5)  # minmax: these percentiles of the SUV in the brain -> 0 and 1


def target_scale(suv: np.ndarray, mask: np.ndarray, target: str,
                 reference: np.ndarray | None = None) -> np.ndarray:
    """The session's normalisation ``[offset, scale]``: target = (SUV − offset) / scale,
    clipped to [0, 1]. ``minmax``: the 0.5th and 99.5th percentiles of the SUV inside ``mask``
    (a robust min–max: one hot voxel moves neither); ``suvr``: the mean SUV in ``reference``
    ∩ ``mask`` (the whole mask without it, or when none of it lies inside: a warning) times
    ``SUVR_SCALE``. Made once per session on the model box; the evaluation puts the true PET
    in the target's units with the same numbers on every grid (:func:`apply_scale`).

    >>> target_scale(np.arange(201.0), np.ones(201, bool), "minmax").tolist()
    [1.0, 198.0]
    """
    inside = suv[mask > 0]
    if target == "minmax":
        lo, hi = np.percentile(inside, ROBUST_RANGE) if inside.size else (0.0, 1.0)
        return np.array([lo, max(hi - lo, 1e-6)])
    if target == "suvr":
        region = None if reference is None else np.asarray(reference, bool) & (mask > 0)
        if region is not None and not region.any():
            LOG.warning("the SUVR reference region lies outside the imaged brain: whole-brain "
                        "mean used instead")
            region = None
        denominator = suv[region].mean() if region is not None else inside.mean()
        return np.array([0.0, max(float(denominator), 1e-6) * SUVR_SCALE])
    raise ValueError(f"unknown target {target!r}")


def apply_scale(suv: np.ndarray, mask: np.ndarray, scale) -> np.ndarray:
    """SUV -> model units with a session's ``[offset, scale]`` (:func:`target_scale`),
    clipped to [0, 1], zero outside ``mask``."""
    offset, factor = (float(v) for v in scale)
    return np.clip((suv - offset) / factor * (mask > 0), 0.0, 1.0).astype(np.float32)


def pet_target(suv: np.ndarray, mask: np.ndarray, target: str,
               reference: np.ndarray | None = None) -> np.ndarray:
    """SUV -> model units in [0, 1] inside ``mask`` with this image's own
    :func:`target_scale`; ``reference`` (boolean, same grid) is the SUVR denominator region,
    taken inside ``mask`` (the imaged brain: no unimaged zeros in the denominator).

    >>> suv, mask = np.array([1.0, 2.0, 4.0, 8.0]), np.array([1, 1, 1, 0])
    >>> (pet_target(suv, mask, "suvr", np.array([0, 1, 0, 1], bool)) * SUVR_SCALE).tolist()
    [0.5, 1.0, 2.0, 0.0]
    """
    return apply_scale(suv, mask, target_scale(suv, mask, target, reference))


def imaged_part(suv: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``brain`` where a resampled SUV map has data: resampling fills 0 outside the PET field
    of view (used in template space, where no field-of-view mask is written).

    >>> imaged_part(np.array([0.0, 0.4, 1.2]), np.array([True, True, False])).tolist()
    [False, True, False]
    """
    return brain & (suv > 0)


def suv_stats(suv: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[mean SUV, SD of SUV / mean] inside ``mask`` on the native grid: what the genotype
    factors need, kept with the cached arrays so a group run does not reread every SUV map.

    >>> suv_stats(np.array([1.0, 3.0, 9.0]), np.array([True, True, False])).tolist()
    [2.0, 0.5]
    """
    inside = np.asarray(suv, np.float64)[mask]
    mean = inside.mean() if inside.size else 0.0
    return np.array([mean, (inside / max(mean, 1e-9)).std() if inside.size else 0.0])


def target_units(target: str) -> str:
    return "normalised 0-1 (min-max in brain)" if target == "minmax" else "SUVR"


def to_units(volume: np.ndarray, target: str) -> np.ndarray:
    """Model output -> the units of the target (0-1 for minmax, SUVR for suvr).

    >>> to_units(np.array([0.5]), "suvr").tolist(), to_units(np.array([0.5]), "minmax").tolist()
    ([1.5], [0.5])
    """
    return volume * SUVR_SCALE if target == "suvr" else volume
