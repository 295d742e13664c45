"""Loading input images with clear, one-line errors, and nibabel <-> ANTs conversion.

>>> import tempfile
>>> broken = Path(tempfile.mkdtemp()) / "broken_T1w.nii.gz"
>>> _ = broken.write_bytes(b"not a NIfTI")
>>> load_checked(broken, ndim=3)
Traceback (most recent call last):
...
bids_tspo.errors.InputDataError: .../broken_T1w.nii.gz: cannot be read as NIfTI (...)
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputDataError, describe

LOG = logging.getLogger(__name__)
MAX_NONFINITE = 0.5  # a larger NaN/Inf fraction is a broken image, not missing corners


def load_checked(path: Path, ndim: int | tuple[int, ...] = 3, what: str = "image"):
    """Load a NIfTI image and check it is readable, finite, non-empty and of ``ndim``.

    A 4D image with a single volume counts as 3D. NaN/Inf voxels are taken as 0 (no data)
    with a warning, up to ``MAX_NONFINITE`` of the image; beyond, it is an input error.
    Returns ``(img, data)`` (float32).
    """
    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds for broken files
        raise InputDataError(f"{path}: cannot be read as NIfTI ({describe(exc)})") from None
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if data.ndim == 4 and data.shape[3] == 1 and 3 in allowed:
        data = data[..., 0]
    if data.ndim not in allowed:
        raise InputDataError(f"{path}: {what} has {data.ndim} dimensions {data.shape}, "
                             f"expected {' or '.join(f'{d}D' for d in allowed)}")
    if min(data.shape[:3]) < 8:
        raise InputDataError(f"{path}: {what} is too small {data.shape[:3]} to be a head scan")
    bad = ~np.isfinite(data)
    if bad.mean() > MAX_NONFINITE:
        raise InputDataError(f"{path}: {what} contains {int(bad.sum())} NaN/Inf voxel(s) "
                             f"({100 * bad.mean():.0f} % of the image)")
    if bad.any():  # e.g. a reconstruction's outside-the-field-of-view corners: no data there
        LOG.warning("%s: %s has %d NaN/Inf voxel(s) (%.1f %%), taken as 0 (no data)", path,
                    what, int(bad.sum()), 100 * bad.mean())
        data[bad] = 0.0
    if not np.any(data):
        raise InputDataError(f"{path}: {what} is all zeros")
    if data.min() == data.max():
        raise InputDataError(f"{path}: {what} is constant ({data.flat[0]:g} everywhere)")
    _check_affine(path, img.affine, what)
    return img, data


def _check_affine(path: Path, affine: np.ndarray, what: str) -> None:
    """A voxel-to-world matrix that cannot place the image (non-finite, a zero voxel size or
    collinear axes) is an input error: registration would fail deep inside ANTs."""
    affine = np.asarray(affine, np.float64)
    detail = None
    if not np.isfinite(affine).all():
        detail = "non-finite values"
    else:
        sizes = np.linalg.norm(affine[:3, :3], axis=0)
        if sizes.min() < 1e-3:
            detail = "voxel sizes " + " x ".join(f"{v:.3g}" for v in sizes) + " mm"
        elif abs(np.linalg.det(affine[:3, :3])) < 1e-6 * np.prod(sizes):
            detail = "voxel axes not independent"
    if detail is not None:
        raise InputDataError(f"{path}: {what} has a degenerate voxel-to-world affine ({detail}); "
                             "fix the header's qform/sform")


def to_ants(data: np.ndarray, affine: np.ndarray):
    """An ANTs image from an array on a NIfTI (RAS) voxel grid."""
    import ants

    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")  # else ITK warns "spatial units are 'unknown'"
    return ants.from_nibabel_nifti(img)


def to_nibabel(image, like: nib.Nifti1Image | None = None, dtype=np.float32) -> nib.Nifti1Image:
    """An ANTs image as a NIfTI image (on the grid of ``like`` when given)."""
    import ants

    out = ants.to_nibabel_nifti(image)
    data = np.asarray(out.dataobj, dtype=dtype)
    affine = like.affine if like is not None else out.affine
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.set_sform(affine, 1)
    img.set_qform(affine, 1)
    return img


def resample_with_transforms(moving_data: np.ndarray, moving_affine: np.ndarray,
                             like: nib.Nifti1Image, transforms: list[str]) -> nib.Nifti1Image:
    """Apply ANTs transforms (fixed -> moving order) to put an array onto the grid of ``like``
    (linear); no transforms: resampled in world coordinates (both grids in one space).

    >>> like = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.diag([2.0, 2, 2, 1]))
    >>> ramp = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 4, 4), np.float32)
    >>> np.asarray(resample_with_transforms(ramp, np.eye(4), like, []).dataobj)[:, 0, 0]
    array([0., 2.], dtype=float32)
    """
    import ants

    fixed = to_ants(np.zeros(like.shape[:3], np.float32), like.affine)
    moving = to_ants(moving_data, moving_affine)
    if transforms:
        out = ants.apply_transforms(fixed=fixed, moving=moving,
                                    transformlist=[str(t) for t in transforms],
                                    interpolator="linear")
    else:
        out = ants.resample_image_to_target(moving, fixed, interp_type="linear")
    return to_nibabel(out, like=like)


def resample_normalised(maps: list[np.ndarray], moving_affine: np.ndarray,
                        like: nib.Nifti1Image, transforms: list[str], support: np.ndarray,
                        floor: float = 1e-3) -> list[nib.Nifti1Image]:
    """:func:`resample_with_transforms` of maps defined only on ``support`` (a brain): the
    interpolation averages supported voxels only (``resample.normalised``), so the edge is not
    darkened by the zeros outside; zero where the support's weight is at most ``floor``. The
    support is warped once for all ``maps``."""
    from ..model.grid import normalised

    weight = np.asarray(support, np.float32)
    total = np.asarray(resample_with_transforms(weight, moving_affine, like,
                                                transforms).dataobj)
    out = []
    for data in maps:
        value = resample_with_transforms(np.asarray(data, np.float32) * weight, moving_affine,
                                         like, transforms)
        out.append(nib.Nifti1Image(normalised(np.asarray(value.dataobj), total, floor),
                                   value.affine, value.header))
    return out


def field_of_view(shape: tuple, affine: np.ndarray, like: nib.Nifti1Image,
                  transforms: list[str]) -> np.ndarray:
    """Boolean mask, on the grid of ``like``, of the voxels inside the field of view of an image
    of ``shape`` and ``affine`` once ``transforms`` are applied; voxels whose interpolation
    reaches outside it (the edge) are left out."""
    ones = np.ones(tuple(shape)[:3], np.float32)
    return np.asarray(resample_with_transforms(ones, affine, like, transforms).dataobj) > 0.99
