"""Per-subject anatomy of the phantom: random affine, smooth deformation and tissue
composition (:class:`Individual`), and scanner grids.

A subject's anatomy is the template head model seen through ``q -> q + D(q)`` (a smooth
random displacement ``D`` in template space) and an affine ``A`` into the subject's head
coordinates; each session adds a rigid head pose ``P``. An image on a scanner grid with
voxel-to-world affine ``V`` is sampled at template points ``A^-1 P^-1 V ijk`` (+ ``D``).
On top, smooth fields move grey matter to or from white matter and CSF, so people differ in
ways a deformation cannot undo, visibly in the T1w and in the PET alike.

>>> import nibabel as nib
>>> rng = np.random.default_rng(0)
>>> shape, affine = scanner_grid(rng, (176, 240, 240), 2.0, "LIA")
>>> shape
(88, 120, 120)
>>> nib.aff2axcodes(affine)
('L', 'I', 'A')
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial.transform import Rotation

from ..model.grid import sample

_AXES = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0),
         "S": (0, 0, 1), "I": (0, 0, -1)}


def rigid(rng: np.random.Generator, rot_deg: float, trans_mm: float) -> np.ndarray:
    """A random rigid 4x4 transform (rotations ~U(±rot_deg), translations ~N(0, trans_mm))."""
    out = np.eye(4)
    out[:3, :3] = Rotation.from_euler("xyz", rng.uniform(-rot_deg, rot_deg, 3),
                                      degrees=True).as_matrix()
    out[:3, 3] = rng.normal(0, trans_mm, 3)
    return out


def random_affine(rng: np.random.Generator, rot_deg: float = 8.0, scale_sd: float = 0.05,
                  shear: float = 0.03, trans_mm: float = 4.0) -> np.ndarray:
    """Template -> subject head coordinates: rotation, anisotropic scale, small shear."""
    out = rigid(rng, rot_deg, trans_mm)
    scale = np.diag(np.clip(rng.normal(1.0, scale_sd, 3), 0.85, 1.15))
    shear_m = np.eye(3) + np.triu(rng.uniform(-shear, shear, (3, 3)), 1)
    out[:3, :3] = out[:3, :3] @ scale @ shear_m
    return out


@dataclass(frozen=True)
class SmoothField:
    """Smooth random field on a coarse grid in template world coordinates: a displacement
    (3 channels, mm) or any per-voxel deviation (1 channel)."""

    field: np.ndarray  # (channels, nx, ny, nz)
    affine: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, template_affine: np.ndarray,
               template_shape: tuple[int, int, int], amplitude: float = 3.0,
               spacing_mm: float = 20.0, channels: int = 3) -> "SmoothField":
        """Gaussian noise on a grid of ``spacing_mm`` covering the template, smoothed over one
        grid step and scaled to standard deviation ``amplitude``."""
        from scipy import ndimage

        zoom = np.abs(np.diag(template_affine)[:3])
        extent = np.asarray(template_shape) * zoom
        shape = tuple(int(np.ceil(e / spacing_mm)) + 3 for e in extent)
        affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
        affine[:3, 3] = template_affine[:3, 3] - spacing_mm
        field = rng.standard_normal((channels, *shape))
        field = np.stack([ndimage.gaussian_filter(c, 1.0) for c in field])
        field *= amplitude / (field.std() + 1e-6)
        return cls(field.astype(np.float32), affine)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Values (channels, N) at world points (3, N)."""
        return sample(self.field, self.affine, points, mode="bilinear")


@dataclass(frozen=True)
class Individual:
    """One person's anatomy: an affine into head coordinates, a smooth displacement, and the
    differences in tissue composition that no deformation expresses (GM gained from WM:
    cortical thickness and GM density; GM lost to CSF: atrophy, growing with age)."""

    to_subject: np.ndarray
    displacement: SmoothField
    gm_from_wm: SmoothField  # in [-1, 1], times the head model's gm·wm capacity
    gm_to_csf: SmoothField   # in [0, 1], times the gm·csf capacity

    @classmethod
    def random(cls, rng: np.random.Generator, template_affine: np.ndarray,
               template_shape: tuple[int, int, int], age: float) -> "Individual":
        to_subject = random_affine(rng)
        displacement = SmoothField.random(rng, template_affine, template_shape)
        thickness = SmoothField.random(rng, template_affine, template_shape, amplitude=0.6,
                                       spacing_mm=6.0, channels=1)
        atrophy = SmoothField.random(rng, template_affine, template_shape, amplitude=0.4,
                                     spacing_mm=12.0, channels=1)
        level = 0.8 * float(np.clip((age - 30.0) / 40.0, 0.0, 1.0))
        return cls(to_subject, displacement,
                   replace(thickness, field=np.clip(thickness.field, -1.0, 1.0)),
                   replace(atrophy, field=np.clip(level * (1.0 + atrophy.field), 0.0, 1.0)))

    def composition(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GM-from-WM and GM-to-CSF deviations (N,) at template world points (3, N)."""
        return self.gm_from_wm(points)[0], self.gm_to_csf(points)[0]


def scanner_grid(rng: np.random.Generator, fov_mm: tuple[float, float, float], voxel_mm: float,
                 axcodes: str, oblique_deg: float = 6.0, centre=(0.0, -18.0, 12.0),
                 jitter_mm: float = 8.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """An oblique scanner grid in orientation ``axcodes`` covering ``fov_mm`` (x, y, z)."""
    directions = np.array([_AXES[c] for c in axcodes], dtype=float).T  # columns = voxel axes
    world_axis = np.abs(directions).argmax(axis=0)
    shape = tuple(int(round(fov_mm[a] / voxel_mm)) for a in world_axis)
    tilt = Rotation.from_euler("xyz", rng.uniform(-oblique_deg, oblique_deg, 3),
                               degrees=True).as_matrix()
    affine = np.eye(4)
    affine[:3, :3] = tilt @ directions * voxel_mm
    middle = (np.asarray(shape) - 1) / 2.0
    affine[:3, 3] = np.asarray(centre) + rng.normal(0, jitter_mm, 3) - affine[:3, :3] @ middle
    return shape, affine
