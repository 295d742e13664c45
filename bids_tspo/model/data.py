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
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from ..io.tables import row_value
from ..io.derivatives import find_pet
from ..errors import InputDataError, MissingInputError, describe
from .grid import resample_to_grid
from .targets import pet_target, scale_t1, suv_stats

LOG = logging.getLogger(__name__)
FOV_MM = 192.0
CACHE_VERSION = 5
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


@dataclass(frozen=True)
class SessionFiles:
    """Participant-level derivatives of one session (``suv`` is None for MRI-only)."""

    name: str
    subject: str
    session: str | None
    t1w: Path
    mask: Path
    suv: Path | None = None
    group: str = "n/a"
    genotype: str = "n/a"

    @property
    def record(self):
        """The :class:`~bids_tspo.io.layout.Session` of these files (for derivative names)."""
        from ..io.layout import Session

        return Session(self.subject, self.session, (self.t1w,))

    @property
    def from_template(self) -> Path | None:
        """The participant-level template -> T1w transform, when written."""
        found = sorted(self.t1w.parent.glob(f"{self.name}_from-*_to-T1w_mode-image_xfm.h5"))
        return found[0] if found else None

    @property
    def fov(self) -> Path | None:
        """The PET field-of-view mask written beside the SUV map (None: none, or older runs)."""
        from ..io.derivatives import fov_mask_for

        path = fov_mask_for(self.suv) if self.suv is not None else None
        return path if path is not None and path.is_file() else None

    def imaged(self, brain: np.ndarray) -> np.ndarray:
        """``brain`` (boolean, T1w grid) limited to the PET field of view when it is known:
        where PET targets are normalised, trained on and scored."""
        fov = self.fov
        return brain if fov is None else brain & (_read(fov)[1] > 0)

    def reference(self, name: str, like: nib.Nifti1Image, brain: np.ndarray):
        """SUVR reference region of this session on the T1w grid (None: whole brain)."""
        from ..preprocess.reference import reference_region

        if name != "wholebrain" and self.from_template is None:
            raise MissingInputError(f"{self.t1w.parent}: no from-<template>_to-T1w transform "
                                    f"for {self.name}; needed for the {name} reference")
        return reference_region(name, like, brain, self.from_template)


def discover(output_dir: Path, table: dict[str, dict] | None = None,
             group_column: str = "group", genotype_column: str = "tspo_genotype"
             ) -> list[SessionFiles]:
    """Sessions with a preprocessed T1w and brain mask in ``output_dir`` (SUV when present)."""
    table = table or {}
    found = []
    for t1w in sorted(Path(output_dir).glob("sub-*/**/anat/*_desc-preproc_T1w.nii.gz")):
        name = t1w.name.split("_desc-")[0]
        mask = t1w.with_name(f"{name}_desc-brain_mask.nii.gz")
        if not mask.is_file():
            continue
        suvs = find_pet(t1w.parent.parent / "pet", name, desc="suv", space="T1w")
        if len(suvs) > 1:
            LOG.warning("%s: %d SUV maps (%s); training and evaluation use the first; choose one "
                        "with --bids-filter-file at the participant level", name, len(suvs),
                        ", ".join(p.name for p in suvs))
        ent = dict(part.split("-", 1) for part in name.split("_"))
        row = table.get(ent["sub"], {})
        found.append(SessionFiles(name, ent["sub"], ent.get("ses"), t1w, mask,
                                  suvs[0] if suvs else None,
                                  row_value(row, group_column),
                                  row_value(row, genotype_column, genotype=True)))
    return found


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
    with PET, ``pet_mask`` (the brain inside the PET field of view: the loss mask)."""
    key = _fingerprint(files, size, target, reference)
    cache = Path(cache_dir) / f"{files.name}_{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return {"pet": None} | {k: z[k] for k in z.files} | {"name": files.name}
    mask_img, mask_native = _read(files.mask)
    grid = ModelGrid.around(mask_native, mask_img.affine, size)
    t1_img, t1_native = _read(files.t1w)
    mask = (resample_to_grid(mask_native, mask_img.affine, grid.shape, grid.affine) > 0.5)
    t1 = resample_to_grid(t1_native, t1_img.affine, grid.shape, grid.affine)
    out = {"t1": scale_t1(t1, mask)[None], "mask": mask.astype(np.float32)[None],
           "affine": grid.affine, "pet": None}
    if files.suv is not None:
        suv_img, suv_native = _read(files.suv)
        imaged_native = files.imaged(mask_native > 0)
        out["suv_stats"] = suv_stats(suv_native, imaged_native)
        suv = resample_to_grid(suv_native, suv_img.affine, grid.shape, grid.affine)
        imaged = mask & (resample_to_grid(imaged_native.astype(np.float32), suv_img.affine,
                                          grid.shape, grid.affine) > 0.5)
        _check_coverage(files.suv, imaged, mask)
        region = None
        if target == "suvr":
            native = files.reference(reference, suv_img, imaged_native)
            if native is not None:
                region = resample_to_grid(native.astype(np.float32), suv_img.affine,
                                          grid.shape, grid.affine) > 0.5
        out["pet"] = pet_target(suv, imaged, target, region)[None]
        out["pet_mask"] = imaged.astype(np.float32)[None]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")  # torchrun ranks write it too
        np.savez(tmp, **{k: v for k, v in out.items() if v is not None})
        tmp.replace(cache)
    return out | {"name": files.name}


def _read(path: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A participant-level derivative and its data (float32); one that cannot be read is an
    input error naming it."""
    try:
        img = nib.load(path)
        return img, np.asarray(img.dataobj, np.float32)
    except Exception as exc:  # noqa: BLE001 - nibabel/zlib raise many kinds for broken files
        raise InputDataError(f"{path}: cannot be read ({describe(exc, 120)}); rerun the "
                             "participant level for this session") from None


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
