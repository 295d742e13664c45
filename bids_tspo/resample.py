"""World-coordinate resampling shared by the phantom, the model data and synthesis.

Images are arrays on grids given by NIfTI voxel-to-world (RAS mm) affines; sampling uses
torch's ``grid_sample`` (trilinear or nearest, zero outside), which is fast and threaded.

>>> import numpy as np
>>> vol = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
>>> float(sample(vol, np.eye(4), np.array([[1.0], [1.0], [1.5]]))[0])
13.5
"""

from __future__ import annotations

import numpy as np
import torch


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
