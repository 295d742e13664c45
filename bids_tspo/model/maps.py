"""Synthetic maps from the model box to OUTPUT_DIR: in the target's units on the T1w grid
and in template space, with sidecars naming the bundle, folds, units and adjustments.

>>> synth_sidecar(["bids::sub-01/anat/sub-01_desc-preproc_T1w.nii.gz"], "SUVR", "m", [0, 1],
...               oof_fold=1)["CrossValidationFold"]
1
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..io.atomic import save_nifti_atomic, write_json_atomic
from ..io.derivatives import pet_path, sidecar_path
from ..io.spaces import resolve_template
from ..preprocess.images import resample_normalised
from .bundle import Bundle
from .grid import to_native
from .targets import target_units, to_units


def synth_sidecar(sources: list[str], units: str, model_id: str, folds: list[int],
                  oof_fold: int | None = None, space: str = "T1w", sd: bool = False) -> dict:
    """Sidecar of a synthetic map (``desc-synth``) or its fold SD (``desc-synthstd``);
    ``space``: its ``SpatialReference`` (a template name, or the URI of the T1w)."""
    meta = {
        "Sources": sources,
        "SkullStripped": True,
        "Units": units,
        "Description": ("voxelwise SD across fold models" if sd else
                        "synthetic TSPO PET from T1w (3D U-Net, mean of fold models and "
                        "left-right flips)"),
        "ModelID": model_id,
        "FoldsUsed": folds,
        "SpatialReference": space,
    }
    if oof_fold is not None:
        meta["CrossValidationFold"] = oof_fold
        meta["Description"] = ("out-of-fold synthetic TSPO PET from T1w: the fold model that "
                               "never saw this subject (mean with its left-right flip)")
    return meta


def native_maps(item: dict, mean: np.ndarray, sd: np.ndarray | None, target: str,
                t1, brain: np.ndarray) -> dict[str, np.ndarray]:
    """Model-box mean (and SD) maps in the target's units on the T1w grid, zero outside the
    brain: ``{"synth": ..., "synthstd": ...}`` (no ``synthstd`` when ``sd`` is None). The
    interpolation is normalised over the box brain mask, so edge voxels keep their values."""
    maps = {"synth": mean} | ({"synthstd": sd} if sd is not None else {})
    support = item["mask"][0] > 0.5
    return {desc: to_native(to_units(volume, target), item["affine"], t1, support) * brain
            for desc, volume in maps.items()}


def write_maps(out: Path, files, maps: dict[str, np.ndarray], t1, brain: np.ndarray,
               bundle: Bundle, folds: list[int], oof_fold: int | None = None,
               precision: str | None = None) -> list[Path]:
    """Write ``desc-synth`` (and ``desc-synthstd``) from :func:`native_maps` on the T1w grid
    and in template space, with sidecars naming the bundle, folds, units, SUVR reference,
    genotype adjustment and the arithmetic used (``precision``). Template-space maps are
    interpolated over ``brain`` (the T1w brain mask the maps live in) only, and kept where a
    template voxel lies mostly inside it."""
    session = files.record
    units = target_units(bundle.target)
    sources = [f"bids::{files.t1w.relative_to(out)}"]
    extra = _map_metadata(bundle, files.genotype, folds)
    if oof_fold is None and bundle.warning:  # a synthesis with a bundle that lost
        extra["Warning"] = bundle.warning
    if precision:
        extra["SynthesisPrecision"] = precision
    xfm = files.xfm()
    on_tpl = (dict(zip(maps, resample_normalised(list(maps.values()), t1.affine,
                                                 resolve_template(2).load()[1], [xfm[1]],
                                                 brain, 0.5)))
              if xfm is not None else {})
    written = []
    for desc, native in maps.items():
        is_sd = desc == "synthstd"
        img = nib.Nifti1Image(native.astype(np.float32), t1.affine)
        img.header.set_xyzt_units("mm")
        img.set_qform(t1.affine)
        path = pet_path(out, session, desc=desc, space="T1w")
        save_nifti_atomic(img, path)
        write_json_atomic(sidecar_path(path), synth_sidecar(  # the T1w grid: as the SUV maps'
            sources, units, bundle.model_id, folds, oof_fold, sources[0], is_sd) | extra)
        written.append(path)
        if xfm is not None:
            tpl_name = xfm[0]
            tpl_path = pet_path(out, session, desc=desc, space=tpl_name)
            save_nifti_atomic(on_tpl[desc], tpl_path)
            write_json_atomic(sidecar_path(tpl_path), synth_sidecar(
                sources, units, bundle.model_id, folds, oof_fold, tpl_name, is_sd)
                | extra)
            written.append(tpl_path)
    return written


def _map_metadata(bundle: Bundle, genotype: str, folds: list[int]) -> dict:
    """Sidecar fields describing the target's reference and the genotype adjustment."""
    meta = {}
    if bundle.target == "suvr":
        meta["SUVRReference"] = bundle.suvr_reference
    if bundle.meta.get("genotype_adjustment", {}).get("applied_to_target"):
        factors = {k: bundle.genotype_factor(k, genotype) for k in folds}
        meta["GenotypeAdjustment"] = (
            {"Genotype": genotype, "ContrastFactorPerFold": {str(k): v for k, v in factors.items()}}
            if any(v is not None for v in factors.values()) else
            {"Genotype": genotype, "Note": "genotype unknown or not in the training data: "
                                           "reference-genotype (HAB) contrast"})
    return meta
