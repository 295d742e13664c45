"""World-coordinate resampling shared by the phantom, the model data and synthesis (model box
-> native grid: :func:`to_native`).

Images are arrays on grids given by NIfTI voxel-to-world (RAS mm) affines; sampling uses
torch's ``grid_sample`` (trilinear or nearest, zero outside), which is fast and threaded.

>>> import numpy as np
>>> vol = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
>>> float(sample(vol, np.eye(4), np.array([[1.0], [1.0], [1.5]]))[0])
13.5
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import nibabel as nib


def grid_points(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World coordinates (3, N) of every voxel of a grid."""
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return affine[:3, :3] @ ijk + affine[:3, 3:4]


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to points (3, N)."""
    return matrix[:3, :3] @ points + matrix[:3, 3:4]


def sample(volumes: np.ndarray, affine: np.ndarray, points: np.ndarray,
           mode: str = "bilinear") -> np.ndarray:
    """Sample ``volumes`` ((C,) X, Y, Z on grid ``affine``) at world ``points`` (3, N).

    Trilinear (``bilinear``) or ``nearest``; zero outside. Returns (C, N) or (N,).
    """
    single = volumes.ndim == 3
    vol = torch.from_numpy(np.ascontiguousarray(volumes[None] if single else volumes,
                                                dtype=np.float32))
    inv = np.linalg.inv(affine)
    ijk = inv[:3, :3] @ points + inv[:3, 3:4]
    size = np.asarray(vol.shape[1:], dtype=np.float64)[:, None]
    norm = (2.0 * ijk / np.maximum(size - 1, 1) - 1.0)[::-1].T  # (N, 3) as (k, j, i)
    grid = torch.from_numpy(np.ascontiguousarray(norm, dtype=np.float32)).view(1, 1, 1, -1, 3)
    with torch.no_grad():
        out = torch.nn.functional.grid_sample(vol[None], grid, mode=mode, padding_mode="zeros",
                                              align_corners=True)
    out = out.view(vol.shape[0], -1).numpy()
    return out[0] if single else out


def resample_to_grid(data: np.ndarray, affine: np.ndarray, shape, target_affine: np.ndarray,
                     mode: str = "bilinear") -> np.ndarray:
    """Resample ``data`` onto the grid (``shape``, ``target_affine``)."""
    return sample(data, affine, grid_points(tuple(shape), target_affine), mode).reshape(
        (-1, *shape) if data.ndim == 4 else tuple(shape))


def normalised(weighted: np.ndarray, weight: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Normalised interpolation: resampled ``value * support`` over resampled ``support``,
    zero where the support's weight is below ``floor``.

    >>> normalised(np.array([0.5, 0.0]), np.array([0.5, 0.0])).tolist()
    [1.0, 0.0]
    """
    return np.where(weight > floor, weighted / np.maximum(weight, floor), 0.0).astype(np.float32)


def to_native(volume: np.ndarray, box_affine: np.ndarray, like: nib.Nifti1Image,
              support: np.ndarray | None = None) -> np.ndarray:
    """Resample a model-box volume onto the grid of ``like`` (zero outside the box).

    With ``support`` (the box's brain mask) the interpolation is normalised: each native voxel
    averages only the supported box voxels around it, so the brain's edge is not darkened by
    the zeros (or untrained values) outside the box mask; zero where no box voxel supports it.

    >>> import nibabel as nib
    >>> box = np.zeros((4, 4, 4), np.float32)
    >>> box[:2] = 1.0                                      # brain in x < 2, value 1
    >>> at = np.eye(4)
    >>> at[0, 3] = 1.5                                     # a voxel halfway out of the brain
    >>> edge = nib.Nifti1Image(np.zeros((1, 1, 1)), at)
    >>> float(to_native(box, np.eye(4), edge)[0, 0, 0])
    0.5
    >>> float(to_native(box, np.eye(4), edge, support=box > 0)[0, 0, 0])
    1.0
    """
    shape = like.shape[:3]
    points = grid_points(shape, like.affine)
    volume = np.asarray(volume, np.float32)
    if support is None:
        return sample(volume, box_affine, points).reshape(shape)
    weight = np.asarray(support, np.float32)
    value, total = sample(np.stack([volume * weight, weight]), box_affine, points)
    return normalised(value, total).reshape(shape)
