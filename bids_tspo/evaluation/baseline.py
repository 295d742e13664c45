"""The baseline the model must beat: the mean normalised PET of a fold's training subjects in
template space (the population pattern), warped onto each test session's T1w grid.

Computed once per fold from its training (and validation) subjects only, so no test subject's
PET enters its own baseline.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from ..io.derivatives import SessionFiles
from ..model.targets import apply_scale, imaged_part, pet_target
from ..preprocess.images import resample_normalised
from ..preprocess.reference import reference_region


def template_suv(files: SessionFiles):
    """Template-space SUV image of a session (None when missing)."""
    xfm = files.xfm()
    if xfm is None:
        return None
    path = files.suv_in(xfm[0])
    return nib.load(path) if path is not None else None


def training_mean(train: list[SessionFiles], target: str, tpl_mask: np.ndarray,
                  reference: str = "wholebrain", scales: dict | None = None):
    """Mean normalised template-space PET of ``train`` as (array, affine, support), or None;
    each voxel averages the sessions whose PET imaged it (``support``: voxels at least one
    imaged), each normalised with its own target's ``scales[name]`` when given (else on the
    template grid). Computed once per fold; :func:`baseline_map` warps it to each test
    session."""
    total, count, affine, region = None, None, None, None
    for other in train:
        img = template_suv(other)
        if img is not None:
            if affine is None and target == "suvr":
                region = reference_region(reference, img, tpl_mask)
            affine = img.affine
            suv = np.asarray(img.dataobj, np.float32)
            imaged = imaged_part(suv, tpl_mask)
            scale = (scales or {}).get(other.name)
            value = (apply_scale(suv, imaged, scale) if scale is not None
                     else pet_target(suv, imaged, target, region))
            total = value if total is None else total + value
            count = imaged.astype(np.float32) if count is None else count + imaged
    if total is None:
        return None
    return (np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32), affine,
            count > 0)


def baseline_map(files: SessionFiles, mean) -> np.ndarray | None:
    """The fold's training-mean template PET warped onto ``files``' T1w grid; like the U-Net's
    maps (:func:`~bids_tspo.model.maps.native_maps`), interpolated over its support only, so
    the brain's edge is not darkened by the zeros outside it."""
    inverse = files.xfm(src="template")
    if mean is None or inverse is None:
        return None
    values, affine, support = mean
    warped, = resample_normalised([values], affine, nib.load(files.t1w), [inverse[1]],
                                  support)
    return np.asarray(warped.dataobj, np.float32)
