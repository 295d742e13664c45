"""Model-ready arrays from the participant derivatives, cached, and the torch Dataset.

Each session is resampled (trilinear) into a brain-centred, RAS-aligned box of
``image_size``³ voxels covering a fixed 192 mm field of view (96³ at 2 mm by default). The box
affine is kept, so predictions map back onto the exact T1w grid (:func:`to_native`).

The T1w scaling and the PET target normalisation are :mod:`bids_tspo.model.targets`.

>>> grid = ModelGrid.around(np.ones((4, 4, 4)), np.eye(4), size=32)
>>> grid.shape, float(grid.affine[0, 0])
((32, 32, 32), 6.0)
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputDataError
from ..io.atomic import atomic_path
from ..io.derivatives import SessionFiles, read_derivative
from ..preprocess.reference import session_reference
from .grid import resample_to_grid
from .targets import apply_scale, scale_t1, suv_stats, target_scale

LOG = logging.getLogger(__name__)
FOV_MM = 192.0
CACHE_VERSION = 6
MIN_IMAGED_FRACTION = 0.1  # of the brain mask inside the PET field of view, to train or score


@dataclass(frozen=True)
class ModelGrid:
    shape: tuple[int, int, int]
    affine: np.ndarray

    @classmethod
    def around(cls, mask: np.ndarray, affine: np.ndarray, size: int) -> "ModelGrid":
        """A RAS box of ``size``³ voxels over ``FOV_MM``, centred on the mask's centroid."""
        idx = np.argwhere(mask > 0)
        centre_vox = idx.mean(axis=0) if len(idx) else (np.asarray(mask.shape) - 1) / 2
        centre = affine[:3, :3] @ centre_vox + affine[:3, 3]
        spacing = FOV_MM / size
        box = np.diag([spacing, spacing, spacing, 1.0])
        box[:3, 3] = centre - spacing * (size - 1) / 2.0
        return cls((size, size, size), box)


def _fingerprint(files: SessionFiles, size: int, target: str, reference: str) -> str:
    parts = [CACHE_VERSION, size, target, reference if target == "suvr" else None]
    for path in (files.t1w, files.mask, files.suv, files.fov):
        if path is not None:
            st = Path(path).stat()
            parts += [str(path), st.st_size, st.st_mtime_ns]
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:16]


def prepare(files: SessionFiles, size: int, target: str, cache_dir: Path | None = None,
            reference: str = "wholebrain") -> dict:
    """Model-ready arrays of one session: t1, mask (brain), pet (or None), the box affine and,
    with PET, ``pet_mask`` (the brain inside the PET field of view: the loss mask) and
    ``pet_scale`` (the target's normalisation, which the evaluation applies to the true PET on
    every grid: :func:`~bids_tspo.model.targets.target_scale`)."""
    key = _fingerprint(files, size, target, reference)
    cache = Path(cache_dir) / f"{files.name}_{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return {"pet": None} | {k: z[k] for k in z.files} | {"name": files.name}
    mask_img, mask_native = read_derivative(files.mask)
    grid = ModelGrid.around(mask_native, mask_img.affine, size)
    t1_img, t1_native = read_derivative(files.t1w)
    mask = (resample_to_grid(mask_native, mask_img.affine, grid.shape, grid.affine) > 0.5)
    t1 = resample_to_grid(t1_native, t1_img.affine, grid.shape, grid.affine)
    out = {"t1": scale_t1(t1, mask)[None], "mask": mask.astype(np.float32)[None],
           "affine": grid.affine, "pet": None}
    if files.suv is not None:
        suv_img, suv_native = read_derivative(files.suv)
        imaged_native = files.imaged(mask_native > 0)
        out["suv_stats"] = suv_stats(suv_native, imaged_native)
        suv = resample_to_grid(suv_native, suv_img.affine, grid.shape, grid.affine)
        imaged = mask & (resample_to_grid(imaged_native.astype(np.float32), suv_img.affine,
                                          grid.shape, grid.affine) > 0.5)
        _check_coverage(files.suv, imaged, mask)
        region = None
        if target == "suvr":
            native = session_reference(files, reference, suv_img, imaged_native)
            if native is not None:
                region = resample_to_grid(native.astype(np.float32), suv_img.affine,
                                          grid.shape, grid.affine) > 0.5
        out["pet_scale"] = target_scale(suv, imaged, target, region)  # also for scoring
        out["pet"] = apply_scale(suv, imaged, out["pet_scale"])[None]
        out["pet_mask"] = imaged.astype(np.float32)[None]
    if cache is not None:
        with atomic_path(cache) as tmp:  # torchrun ranks write it too: one rename wins
            np.savez(tmp, **{k: v for k, v in out.items() if v is not None})
    return out | {"name": files.name}


def _check_coverage(suv: Path, imaged: np.ndarray, brain: np.ndarray) -> None:
    """A PET whose field of view (and data) covers too little of the brain cannot be
    normalised into a target: an input error naming the SUV map."""
    fraction = imaged.sum() / max(int(brain.sum()), 1)
    if fraction < MIN_IMAGED_FRACTION:
        raise InputDataError(f"{suv}: the PET field of view covers {100 * fraction:.1f} % of "
                             f"the brain mask (at least {100 * MIN_IMAGED_FRACTION:.0f} % is "
                             "needed to train on or score this session); check the PET-T1w "
                             "coregistration and the PET's extent")


def loss_mask(item: dict) -> np.ndarray:
    """Where a prepared item's target counts: its ``pet_mask`` (brain inside the PET field of
    view), or the brain mask for items built without one."""
    return item.get("pet_mask", item["mask"])


class VolumeDataset(torch.utils.data.Dataset):
    """Prepared sessions as tensors ``{"t1", "pet", "mask"}`` of shape (1, S, S, S); training
    augments whole batches on the device (:mod:`bids_tspo.model.augment`)."""

    def __init__(self, items: list[dict]):
        self.items = [it for it in items if it.get("pet") is not None]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        return {"t1": torch.as_tensor(item["t1"]), "pet": torch.as_tensor(item["pet"]),
                "mask": torch.as_tensor(loss_mask(item))}
