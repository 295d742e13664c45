"""T1w preprocessing with ANTs: N4, brain extraction, registration to the template.

Brain extraction works offline on full-head scans (neck and face included) and on images that
are already skull-stripped, with a brain-only template:

0. N4 bias-field correction of the whole head;
1. affine registration of the N4-corrected head to the template, the metric restricted to the
   (dilated) template brain so that scalp and neck do not pull it;
2. SyN of the head, masked by the dilated first-guess mask, to the template brain; the
   template brain mask is warped back through it;
3. clean-up: threshold at 0.5, largest connected component, hole filling, closing;
4. N4 once more, the field fitted inside that brain mask (:func:`n4_in_brain`).

The SyN of step 2 is the T1w -> template registration, written as composite ``.h5``
transforms (forward and inverse) by :mod:`bids_tspo.preprocess`.

>>> result = preprocess_anat(t1w_path, template, preset, workdir)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import BidsTspoError
from .images import load_checked, to_ants, to_nibabel

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnatResult:
    t1w: nib.Nifti1Image          # bias-corrected, native grid
    brain_mask: nib.Nifti1Image   # uint8, native grid
    to_template: Path             # composite transform T1w -> template (.h5)
    from_template: Path           # composite transform template -> T1w (.h5)
    timings: dict


def _timed(timings: dict, key: str, start: float) -> float:
    timings[key] = round(time.monotonic() - start, 2)
    LOG.info("  %s: %.1f s", key, timings[key])
    return time.monotonic()


def n4(head, preset: dict):
    import ants

    cfg = preset["n4"]
    corrected = ants.n4_bias_field_correction(head, shrink_factor=cfg["shrink_factor"],
                                              convergence=cfg["convergence"])
    return corrected


def n4_in_brain(image, brain_mask: np.ndarray, like: nib.Nifti1Image, preset: dict):
    """Second N4 pass with the bias field fitted inside the brain only (scalp, fat and neck,
    whose intensities follow other rules, no longer pull the fit); the smooth field is applied to
    the whole image. Removes the residual inferior-superior shading that a whole-head N4 leaves
    at 3 T (real MPRAGE benchmark: skull-stripped T1w vs template at 4 mm, r 0.88 -> 0.92;
    see benchmarks/README.md)."""
    import ants

    cfg = preset.get("n4_brain")
    if not cfg:
        return image
    mask = to_ants(brain_mask.astype(np.float32), like.affine)
    # the spline distance as a mesh size per axis: N4 given a distance pads the image to a
    # multiple of it (+0.6 GB and 2.5x the time on a 1 mm head)
    extent = np.asarray(image.shape) * np.asarray(image.spacing)
    mesh = tuple(int(max(1, round(e / cfg["spline_distance_mm"]))) for e in extent)
    return ants.n4_bias_field_correction(image, mask=mask, shrink_factor=cfg["shrink_factor"],
                                         spline_param=mesh, convergence=cfg["convergence"])


def clean_mask(prob: np.ndarray, zooms) -> np.ndarray:
    """Binary brain mask from a warped probability: threshold, largest component, fill, close."""
    mask = prob >= 0.5
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == (int(np.argmax(sizes)) + 1)
    radius = max(1, int(round(2.0 / float(min(zooms)))))
    ball = ndimage.iterate_structure(ndimage.generate_binary_structure(3, 1), radius)
    mask = ndimage.binary_closing(np.pad(mask, radius + 1), ball)[
        radius + 1:-radius - 1, radius + 1:-radius - 1, radius + 1:-radius - 1]
    return ndimage.binary_fill_holes(mask)


def head_centre(data: np.ndarray, affine: np.ndarray, below_vertex_mm: float = 78.0) -> np.ndarray:
    """Approximate brain centre (RAS mm) of a head or brain image, robust to neck and face.

    The vertex (top of the foreground) is found along the superior axis; the brain centre lies
    ``below_vertex_mm`` under it, at the centroid of the top 100 mm slab in x and y.
    """
    level = np.percentile(data[data > 0], 99) * 0.1 if np.any(data > 0) else 0
    fg = data > level
    labels, n = ndimage.label(fg)
    if n > 1:
        fg = labels == (int(np.argmax(ndimage.sum(fg, labels, range(1, n + 1)))) + 1)
    ijk = np.argwhere(fg)[:: max(1, int(fg.sum() // 200000))].T
    xyz = affine[:3, :3] @ ijk + affine[:3, 3:4]
    top = np.percentile(xyz[2], 99.9)
    slab = xyz[:, xyz[2] > top - 100.0]
    return np.array([slab[0].mean(), slab[1].mean(), top - below_vertex_mm])


def head_region(shape, affine: np.ndarray, centre: np.ndarray,
                semi_axes_mm=(85.0, 105.0, 80.0)) -> np.ndarray:
    """Ellipsoid (RAS mm semi-axes) around the estimated brain centre: the affine metric
    ignores the neck and most of the face, which otherwise capture the registration."""
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    total = np.zeros(shape, np.float32)
    for row, (offset, semi) in enumerate(zip(affine[:3, 3] - np.asarray(centre), semi_axes_mm)):
        a = affine[row, :3].astype(np.float32) / semi  # broadcasting, no (3, N) index array
        coord = (a[0] * axes[0][:, None, None] + a[1] * axes[1][None, :, None]
                 + a[2] * axes[2][None, None, :] + np.float32(offset / semi))
        total += coord * coord
    return total <= 1.0


def seed_ants(seed: int) -> None:
    """Seed ANTs' metric sampling (random jitter otherwise makes registrations differ run to
    run); unlike ants.set_ants_deterministic this keeps multi-threading. ``ants.registration``
    passes ``ants.config._random_seed`` on as ``--random-seed`` since antspyx 0.6.2 (the
    version pyproject.toml requires); without it nothing could be seeded: a loud failure."""
    import ants

    if not hasattr(getattr(ants, "config", None), "_random_seed"):
        raise BidsTspoError(
            f"antspyx {getattr(ants, '__version__', '?')} cannot seed its registrations (no "
            "ants.config._random_seed, added in antspyx 0.6.2): install antspyx>=0.6.2")
    ants.config._random_seed = int(seed)


def _initial_translation(moving_centre, fixed_centre, path: Path) -> str:
    """ANTs initial transform (fixed -> moving points, LPS) aligning the two centres."""
    import ants

    shift = np.asarray(moving_centre) - np.asarray(fixed_centre)
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                    translation=(-shift[0], -shift[1], shift[2]))
    ants.write_transform(tx, str(path))
    return str(path)


def _dilate(mask: np.ndarray, mm: float, zooms) -> np.ndarray:
    """Dilation by ``mm`` (Euclidean), computed in the mask's padded bounding box only."""
    if not mask.any():
        return mask.copy()
    pad = np.ceil(mm / np.asarray(zooms, float)).astype(int) + 1
    idx = np.argwhere(mask)
    lo, hi = np.maximum(idx.min(0) - pad, 0), np.minimum(idx.max(0) + pad + 1, mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    out = np.zeros_like(mask, dtype=bool)
    out[box] = ndimage.distance_transform_edt(~mask[box], sampling=zooms) <= mm
    return out


def preprocess_anat(t1w_path: Path, template, preset: dict, workdir: Path,
                    seed: int = 42) -> AnatResult:
    """N4, brain extraction and template registration of one T1w image."""
    import ants

    seed_ants(seed)
    timings: dict = {}
    t0 = time.monotonic()
    img, data = load_checked(t1w_path, ndim=3, what="T1w")
    data = np.clip(data, 0, None)
    zooms = img.header.get_zooms()[:3]
    head = to_ants(data, img.affine)
    tpl_nib, tpl_mask_nib = template.load()
    tpl_mask_data = (np.asarray(tpl_mask_nib.dataobj) > 0.5)
    # brain-only template (TemplateFlow's T1w is full-head; nilearn's is already stripped)
    tpl = to_ants(np.asarray(tpl_nib.dataobj, dtype=np.float32) * tpl_mask_data, tpl_nib.affine)
    tpl_zooms = tpl_mask_nib.header.get_zooms()[:3]
    tpl_mask = to_ants(tpl_mask_data.astype(np.float32), tpl_mask_nib.affine)
    tpl_region = to_ants(_dilate(tpl_mask_data, 10.0, tpl_zooms).astype(np.float32),
                         tpl_mask_nib.affine)
    t0 = _timed(timings, "load", t0)

    corrected = n4(head, preset)
    t0 = _timed(timings, "n4", t0)

    ext = preset["extraction"]
    workdir.mkdir(parents=True, exist_ok=True)
    tpl_centre = np.asarray(ndimage.center_of_mass(tpl_mask_data))
    tpl_centre = tpl_mask_nib.affine[:3, :3] @ tpl_centre + tpl_mask_nib.affine[:3, 3]
    centre = head_centre(data, img.affine)
    init = _initial_translation(centre, tpl_centre, workdir / "init.mat")
    head_roi = to_ants(head_region(data.shape, img.affine, centre).astype(np.float32), img.affine)
    affine_reg = ants.registration(fixed=tpl, moving=corrected, mask=tpl_region,
                                   moving_mask=head_roi, initial_transform=[init],
                                   outprefix=str(workdir / "affine_"), **ext["affine"])
    guess = ants.apply_transforms(fixed=corrected, moving=tpl_mask,
                                  transformlist=affine_reg["invtransforms"],
                                  whichtoinvert=[True], interpolator="linear").numpy()
    t0 = _timed(timings, "brain_extraction_affine", t0)

    region = _dilate(guess >= 0.5, 6.0, zooms).astype(np.float32)
    masked = corrected * to_ants(region, img.affine)
    reg_cfg = dict(preset["registration"])
    syn = ants.registration(fixed=tpl, moving=masked, mask=tpl_region,
                            initial_transform=affine_reg["fwdtransforms"][0],
                            outprefix=str(workdir / "syn_"), write_composite_transform=True,
                            **{**reg_cfg, "type_of_transform": "SyNOnly"})
    prob = ants.apply_transforms(fixed=corrected, moving=tpl_mask,
                                 transformlist=[syn["invtransforms"]],
                                 interpolator="linear").numpy()
    mask = clean_mask(prob, zooms)
    t0 = _timed(timings, "registration_syn", t0)

    # after the registration: fitted in the first-guess mask before SyN, the field pulled the
    # SyN inwards (mask Dice 0.97 -> 0.91 on the real MPRAGE benchmark)
    corrected = n4_in_brain(corrected, mask, img, preset)
    t0 = _timed(timings, "n4_brain", t0)

    t1_out = to_nibabel(corrected, like=img)
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), img.affine)
    mask_img.header.set_xyzt_units("mm")
    return AnatResult(t1w=t1_out, brain_mask=mask_img,
                      to_template=Path(syn["fwdtransforms"]),
                      from_template=Path(syn["invtransforms"]), timings=timings)
