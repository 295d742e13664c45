"""SUVR reference regions: the whole brain (default) or the cerebellar grey matter.

TSPO has no true reference region; whole-brain normalisation is the common choice for
[11C]PBR28 SUVR, and the cerebellum is the usual alternative. The cerebellar region is the AAL
cerebellar hemispheres (:func:`bids_tspo.io.atlases.cerebellum_atlas`), intersected with the
subject's brain mask.

On a template-space grid the atlas is resampled directly; on a subject's T1w grid it is warped
through the participant-level inverse transform (``from-<TPL>_to-T1w``).

>>> from bids_tspo.io.spaces import resolve_template
>>> mask = resolve_template(2).load()[1]
>>> region = reference_region("cerebellum", mask, np.asarray(mask.dataobj) > 0.5)
>>> region.dtype, bool(80 < region.sum() * 8 / 1000 < 160)         # mL of cerebellar hemispheres
(dtype('bool'), True)
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputDataError, MissingInputError
from ..io.atlases import cerebellum_atlas
from .images import resample_with_transforms

REFERENCES = ("wholebrain", "cerebellum")
MIN_REFERENCE_ML = 5.0


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
    transforms = [from_template] if from_template is not None else []
    warped = np.asarray(resample_with_transforms(np.asarray(atlas.dataobj, np.float32),
                                                 atlas.affine, like, transforms).dataobj)
    region = (warped > 0.5) & (np.asarray(brain) > 0)
    voxel_ml = float(np.prod(like.header.get_zooms()[:3])) / 1000.0
    if region.sum() * voxel_ml < MIN_REFERENCE_ML:
        where = from_template if from_template is not None else "the template grid"
        raise InputDataError(f"{where}: the cerebellar reference region has only "
                             f"{region.sum() * voxel_ml:.1f} mL inside the brain mask "
                             "(cerebellum cut off by the field of view?)")
    return region


def session_reference(files, name: str, like: nib.Nifti1Image,
                      brain: np.ndarray) -> np.ndarray | None:
    """The SUVR reference region of a session (:class:`~bids_tspo.io.derivatives.SessionFiles`)
    on its T1w grid, warped through its template -> T1w transform (None: whole brain)."""
    if name != "wholebrain" and files.from_template is None:
        raise MissingInputError(f"{files.t1w.parent}: no from-<template>_to-T1w transform "
                                f"for {files.name}; needed for the {name} reference")
    return reference_region(name, like, brain, files.from_template)
