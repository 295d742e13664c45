"""Training augmentation of whole batches on the training device.

Heads differ in pose and size in native space (a model trained on a handful of poses loses
~0.04 in r on its own training subjects turned by 15°; benchmarks/README), so each training
sample is, independently: flipped left-right (p 0.5); rotated by up to ±0.2 rad (~11°) about
each axis and scaled by ±8 % (p 0.5); its T1w scaled in intensity by ±10 % (p 0.5) and
gamma-adjusted with γ in [0.8, 1.25] (p 0.3). T1w, PET target and loss mask share the geometry.

The random draws come from a seeded CPU generator, so one seed gives the same augmentations
on a CPU and on a GPU; the resampling is one MONAI ``AffineTransform`` (``grid_sample``) call
for the batch, on the batch's device, so on a GPU it is a handful of small kernels per step
(``benchmarks/model_speed.py`` times it). On one core of the build machine a 96³ sample takes
~80 ms, as long as MONAI's per-sample dictionary transforms, which therefore needed
DataLoader processes (and Docker shared memory) to keep up with a GPU.

>>> augment = BatchAugment(seed=0)
>>> t1, pet, mask = torch.rand(3, 2, 1, 16, 16, 16)
>>> [tuple(x.shape) for x in augment(t1, pet, (mask > 0.3).float())]
[(2, 1, 16, 16, 16), (2, 1, 16, 16, 16), (2, 1, 16, 16, 16)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ROTATE_RAD = 0.2
SCALE = 0.08
INTENSITY = 0.1
GAMMA = (0.8, 1.25)
P_FLIP, P_AFFINE, P_INTENSITY, P_GAMMA = 0.5, 0.5, 0.5, 0.3


def describe() -> dict:
    """The augmentation as recorded in a model bundle's ``model.json``.

    >>> describe()["rotate_rad"], describe()["p_flip"]
    (0.2, 0.5)
    """
    return {"p_flip": P_FLIP, "flip_axis": "left-right", "p_affine": P_AFFINE,
            "rotate_rad": ROTATE_RAD, "scale": SCALE, "p_t1w_intensity": P_INTENSITY,
            "t1w_intensity": INTENSITY, "p_t1w_gamma": P_GAMMA, "t1w_gamma": list(GAMMA),
            "where": "whole batches on the training device (bids_tspo.model.augment)"}


@dataclass(frozen=True)
class Draw:
    """One batch's random parameters (CPU tensors, one entry per sample)."""

    flip: torch.Tensor       # (B,) bool: mirror the first spatial axis (left-right)
    affine: torch.Tensor     # (B,) bool: resample with ``theta``
    theta: torch.Tensor      # (B, 3, 4) rotation x scaling about the volume's centre, voxels
    intensity: torch.Tensor  # (B,) T1w factor (1 where not drawn)
    gamma: torch.Tensor      # (B,) T1w gamma (1 where not drawn)


def _uniform(generator: torch.Generator, low: float, high: float, *shape: int) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)


def _matrix(angles: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """3x4 rotation (about x, y, z) times scaling, in voxel units about the centre."""
    from monai.transforms.utils import create_rotate, create_scale

    return (create_rotate(3, angles.tolist()) @ create_scale(3, factors.tolist()))[:3]


class BatchAugment:
    """Random flips, affines and T1w intensity changes of (B, 1, S, S, S) batches.

    ``draw`` and ``apply`` are separate so that tests (and benchmarks) can fix the parameters.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(int(seed))

    def draw(self, batch: int) -> Draw:
        g = self.generator
        drawn = torch.rand(4, batch, generator=g, dtype=torch.float64)
        angles = _uniform(g, -ROTATE_RAD, ROTATE_RAD, batch, 3).numpy()
        factors = 1 + _uniform(g, -SCALE, SCALE, batch, 3).numpy()
        intensity = 1 + _uniform(g, -INTENSITY, INTENSITY, batch)
        gamma = _uniform(g, *GAMMA, batch)
        theta = torch.as_tensor(np.stack([_matrix(a, f) for a, f in zip(angles, factors)]))
        return Draw(flip=drawn[0] < P_FLIP, affine=drawn[1] < P_AFFINE, theta=theta.float(),
                    intensity=torch.where(drawn[2] < P_INTENSITY, intensity, 1.0).float(),
                    gamma=torch.where(drawn[3] < P_GAMMA, gamma, 1.0).float())

    def __call__(self, t1: torch.Tensor, pet: torch.Tensor, mask: torch.Tensor):
        return apply(self.draw(len(t1)), t1, pet, mask)


def apply(draw: Draw, t1: torch.Tensor, pet: torch.Tensor, mask: torch.Tensor):
    """``draw`` applied to a batch: geometry to all three (the mask re-thresholded at 0.5),
    intensity and gamma to the T1w only (as MONAI's ``RandAdjustContrast``, per sample)."""
    from monai.networks.layers import AffineTransform

    device = t1.device
    stack = torch.cat([t1, pet, mask], dim=1).float()                 # (B, 3, S, S, S)
    flip = draw.flip.to(device).view(-1, 1, 1, 1, 1)
    stack = torch.where(flip, stack.flip(2), stack)
    if draw.affine.any():
        chosen = draw.affine.nonzero().flatten().to(device)
        resample = AffineTransform(normalized=False, zero_centered=True, mode="bilinear",
                                   padding_mode="zeros", align_corners=False)
        stack = stack.index_copy(0, chosen, resample(stack[chosen],
                                                     draw.theta[draw.affine].to(device)))
    t1, prior, pet, mask = stack.split([1, t1.shape[1] - 1, 1, 1], dim=1)  # prior: see network
    t1 = t1 * draw.intensity.to(device).view(-1, 1, 1, 1, 1)
    low = t1.amin(dim=(1, 2, 3, 4), keepdim=True)
    span = t1.amax(dim=(1, 2, 3, 4), keepdim=True) - low
    gamma = draw.gamma.to(device).view(-1, 1, 1, 1, 1)
    adjusted = ((t1 - low) / (span + 1e-7)).clamp_min(0) ** gamma * span + low
    t1 = torch.cat([torch.where(gamma != 1, adjusted, t1), prior], dim=1)
    return t1.contiguous(), pet.contiguous(), (mask > 0.5).float()
