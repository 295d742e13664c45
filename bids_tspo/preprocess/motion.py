"""Head-motion correction of the PET frames averaged for the SUV (rigid, ANTs).

A head that moves between the frames of the SUV window (60-90 min after injection, several
frames of a long scan) blurs their average. Each frame used is registered rigidly (Mattes
mutual information, on smoothed images: PET frames are noisy) to the reference frame, the one
with the largest window weight (the earliest on ties), and resampled onto it (linear). How far
each frame had moved is summarised as fMRI's framewise displacement is: the mean movement of
six points 50 mm from the image centre (±x, ±y, ±z), in mm.

The settings are the preset's ``pet_motion`` entry: ``ants.registration`` keywords, with the
pyramid given as ``level_mm`` (the voxel size of each level: its shrink factors follow from the
PET's voxels, so 2 mm and 4 mm frames are registered alike); a preset without it, a 3D PET or a
window of one frame leaves the frames as they are.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from .images import resample_with_transforms, to_ants

RADIUS_MM = 50.0


def displacement_mm(transform: str, centre_ras: np.ndarray, radius: float = RADIUS_MM) -> float:
    """Mean movement of the six points ``radius`` mm from ``centre_ras`` along each axis
    under an ANTs rigid/affine transform file (ANTs works in LPS; distances are the same)."""
    import ants

    tx = ants.read_transform(str(transform))
    centre = np.asarray(centre_ras, float) * [-1, -1, 1]
    points = [centre + sign * radius * np.eye(3)[axis] for axis in range(3) for sign in (-1, 1)]
    moved = [np.asarray(tx.apply_to_point(tuple(p))) for p in points]
    return float(np.mean([np.linalg.norm(m - p) for m, p in zip(moved, points)]))


def realign_frames(frames: np.ndarray, affine: np.ndarray, weights: np.ndarray,
                   settings: dict | None, workdir: Path | None = None
                   ) -> tuple[np.ndarray, list[float] | None]:
    """Frames (X, Y, Z, T) on one grid -> (frames aligned to the reference frame, displacement
    of each frame in mm before alignment; None when nothing was aligned). Where a moved frame
    has no data (its field of view moved with the head) the aligned frame holds NaN, so that
    the window mean there averages the frames that imaged it."""
    if not settings or frames.ndim != 4 or frames.shape[3] < 2:
        return frames, None
    import ants

    settings = dict(settings)
    voxel = float(np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0).max())
    settings["aff_shrink_factors"] = tuple(max(1, round(mm / voxel))
                                           for mm in settings.pop("level_mm", (8, 4)))
    reference = int(np.argmax(weights))
    fixed = to_ants(frames[..., reference], affine)
    like = nib.Nifti1Image(frames[..., reference], affine)
    centre = (np.asarray(affine, float) @ np.r_[(np.asarray(frames.shape[:3]) - 1) / 2, 1])[:3]
    ones = np.ones(frames.shape[:3], np.float32)
    aligned, moved = frames.copy(), []
    with tempfile.TemporaryDirectory(prefix="bids_tspo_motion_") as scratch:
        base = Path(workdir if workdir is not None else scratch)  # ANTs writes transforms
        base.mkdir(parents=True, exist_ok=True)
        for k in range(frames.shape[3]):
            if k == reference:
                moved.append(0.0)
                continue
            reg = ants.registration(fixed=fixed, moving=to_ants(frames[..., k], affine),
                                    **settings, outprefix=str(base / f"frame{k:03d}_"))
            transforms = reg["fwdtransforms"]
            moved.append(round(displacement_mm(transforms[0], centre), 3))
            warped = resample_with_transforms(frames[..., k], affine, like, transforms)
            imaged = resample_with_transforms(ones, affine, like, transforms)
            aligned[..., k] = np.where(np.asarray(imaged.dataobj) > 0.5,  # else not imaged
                                       np.asarray(warped.dataobj), np.nan)
    return aligned, moved
