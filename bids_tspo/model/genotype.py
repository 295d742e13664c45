"""TSPO genotype (rs6971: HAB / MAB / LAB) factors, estimated per fold without leakage.

The genotype changes *specific* binding (LAB ≈ non-binders), not the nondisplaceable uptake,
so it changes both the level and the contrast of TSPO images:

* **uptake factor**: each genotype's mean whole-brain SUV relative to the reference genotype
  (HAB, or the most common one). Recorded; every target normalises the level away.
* **contrast factor** ``c``: each genotype's mean spread (SD inside the brain) of SUVR relative
  to the reference genotype. Applied with ``--target suvr``: training targets become
  genotype-neutral, ``SUVR' = 1 + (SUVR - 1) / c``, and synthesis for a subject whose
  genotype is known restores ``1 + (SUVR' - 1) * c`` with the factor of each fold's model.
  ``minmax`` rescales every volume to [0, 1], so there it is recorded, not applied.

Factors use only the training (and validation) subjects of each fold.

>>> target = neutralise(np.array([0.5]), np.array([1]), factor=0.8)   # SUVR 1.5 of a LAB-like
>>> round(float(target[0]) * SUVR_SCALE, 3), round(float(restore(target, 0.8)[0]), 6)
(1.625, 0.5)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..io.tables import is_missing
from .targets import SUVR_SCALE

def _reference(by_type: dict[str, list[float]]) -> str:
    return "HAB" if "HAB" in by_type else max(by_type, key=lambda g: len(by_type[g]))


def _per_fold(values: dict[str, tuple[str, str, float]], splits: dict) -> dict:
    """{fold: {genotype: mean value / reference genotype's mean}} over training subjects."""
    out = {}
    for fold in splits["folds"]:
        train = set(fold["train"]) | set(fold.get("val", []))
        by_type: dict[str, list[float]] = defaultdict(list)
        for subject, genotype, value in values.values():
            if subject in train:
                by_type[genotype].append(value)
        if by_type:
            ref = float(np.mean(by_type[_reference(by_type)]))
            out[str(fold["fold"])] = {g: round(float(np.mean(v)) / max(ref, 1e-9), 4)
                                      for g, v in sorted(by_type.items())}
    return out


def genotype_factors(paired, splits: dict, items: dict[str, dict]) -> dict:
    """Uptake and contrast factors per fold for sessions with a known genotype, from the
    native SUV summaries of their prepared ``items`` (``suv_stats``: mean SUV and the SD of
    whole-brain SUVR, whatever the target)."""
    uptake, contrast = {}, {}
    for f in paired:
        if is_missing(f.genotype):
            continue
        mean, spread = (float(v) for v in items[f.name]["suv_stats"])
        uptake[f.name] = (f.subject, f.genotype, mean)
        contrast[f.name] = (f.subject, f.genotype, spread)
    return {"uptake": _per_fold(uptake, splits), "contrast": _per_fold(contrast, splits)}


def fold_factor(adjustment: dict, fold: int, genotype: str) -> float | None:
    """The contrast factor of ``genotype`` for ``fold``'s model, when it applies."""
    if not adjustment.get("applied_to_target") or is_missing(genotype):
        return None
    return adjustment.get("contrast_factors_per_fold", {}).get(str(fold), {}).get(genotype)


def neutralise(pet: np.ndarray, mask: np.ndarray, factor: float | None) -> np.ndarray:
    """A ``suvr`` target (model units) made genotype-neutral: SUVR' = 1 + (SUVR - 1) / c."""
    if factor is None:
        return pet
    suvr = 1.0 + (pet * SUVR_SCALE - 1.0) / factor
    return np.clip(suvr / SUVR_SCALE * (mask > 0), 0.0, 1.0).astype(np.float32)


def restore(pred, factor: float | None):
    """Inverse of :func:`neutralise` on a prediction (model units, not clipped above); a numpy
    array or a torch tensor (kept on its device), float32 in and out.

    >>> (restore(np.array([0.5, 0.0], np.float32), 2.0) * SUVR_SCALE).round(4)  # 1 + (x-1)·2
    array([2., 0.], dtype=float32)
    >>> import torch
    >>> restore(torch.tensor([0.5, 0.0]), 2.0).dtype
    torch.float32
    """
    if factor is None:
        return pred
    suvr = 1.0 + (pred * SUVR_SCALE - 1.0) * factor
    return suvr.clip(0.0, None) / SUVR_SCALE
