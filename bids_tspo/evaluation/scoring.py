"""Out-of-fold synthesis and per-session metrics, with the baseline the model must beat.

For every session with PET, the fold model that never saw its subject synthesises the map
(written as ``desc-synth`` with ``CrossValidationFold``); metrics compare it, on the T1w grid
inside the brain mask, with the true PET normalised like the model target. The baseline is
the mean normalised PET of the same fold's training subjects in template space, warped to the
subject through the inverse template registration.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from ..model.data import SessionFiles
from ..model.targets import imaged_part, pet_target
from ..io.derivatives import find_pet, find_xfm
from ..model.bundle import Bundle
from ..model.infer import Network, ensemble, native_maps, to_units, write_maps
from .metrics import all_metrics
from ..preprocess.images import resample_normalised

LOG = logging.getLogger(__name__)


def _native_truth(files: SessionFiles, bundle: Bundle):
    """T1w image, brain mask, the brain inside the PET field of view (where maps are scored),
    SUVR reference region (or None) and the normalised true PET."""
    t1 = nib.load(files.t1w)
    mask = np.asarray(nib.load(files.mask).dataobj) > 0
    scored = files.imaged(mask)
    suv = np.asarray(nib.load(files.suv).dataobj, np.float32)
    region = (files.reference(bundle.suvr_reference, t1, scored) if bundle.target == "suvr"
              else None)
    return t1, mask, scored, region, to_units(pet_target(suv, scored, bundle.target, region),
                                              bundle.target)


def _template_suv(out: Path, files: SessionFiles):
    """Template-space SUV image of a session (None when missing)."""
    xfm = find_xfm(out, files.record)
    if xfm is None:
        return None
    paths = find_pet(files.t1w.parent.parent / "pet", files.name, desc="suv", space=xfm[0])
    return nib.load(paths[0]) if paths else None


def training_mean(out: Path, train: list[SessionFiles], target: str, tpl_mask: np.ndarray,
                  reference: str = "wholebrain"):
    """Mean normalised template-space PET of ``train`` as (array, affine, support), or None;
    each voxel averages the sessions whose PET imaged it (``support``: voxels at least one
    imaged). Computed once per fold; :func:`baseline_map` warps it to each test session."""
    from ..preprocess.reference import reference_region

    total, count, affine, region = None, None, None, None
    for other in train:
        img = _template_suv(out, other)
        if img is not None:
            if affine is None and target == "suvr":
                region = reference_region(reference, img, tpl_mask)
            affine = img.affine
            suv = np.asarray(img.dataobj, np.float32)
            imaged = imaged_part(suv, tpl_mask)
            value = pet_target(suv, imaged, target, region)
            total = value if total is None else total + value
            count = imaged.astype(np.float32) if count is None else count + imaged
    if total is None:
        return None
    return (np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32), affine,
            count > 0)


def baseline_map(out: Path, files: SessionFiles, mean) -> np.ndarray | None:
    """The fold's training-mean template PET warped onto ``files``' T1w grid; like the U-Net's
    maps (:func:`~bids_tspo.model.infer.native_maps`), interpolated over its support only, so the
    brain's edge is not darkened by the zeros outside it."""
    inverse = find_xfm(out, files.record, src="template")
    if mean is None or inverse is None:
        return None
    values, affine, support = mean
    warped, = resample_normalised([values], affine, nib.load(files.t1w), [inverse[1]],
                                  support)
    return np.asarray(warped.dataobj, np.float32)


def oof_plan(splits: dict, paired: list[SessionFiles]) -> list[tuple]:
    """(model folds, CV fold, test sessions, train sessions) for out-of-fold evaluation."""
    plan = []
    for fold in splits["folds"]:
        test = [f for f in paired if f.subject in fold["test"]]
        train = [f for f in paired if f.subject in fold["train"] + fold.get("val", [])]
        plan.append(([fold["fold"]], fold["fold"], test, train))
    return plan


def evaluate_sessions(out: Path, bundle: Bundle, plan: list[tuple], items: dict[str, dict],
                      device: torch.device, seed: int, progress: bool = True,
                      compile: bool = False, precision: str = "auto") -> list[dict]:
    """Synthesise and score each session of ``plan``; one metrics row per session and model
    ("unet", and "baseline_mean" when training sessions are known)."""
    from ..io.spaces import resolve_template

    tpl_mask = np.asarray(resolve_template(2).load()[1].dataobj) > 0.5
    rows, net = [], Network(bundle.cfg, device, compile, precision)
    for model_folds, cv_fold, test, train in plan:
        mean_train = (training_mean(out, train, bundle.target, tpl_mask, bundle.suvr_reference)
                      if train else None)
        label = f"fold {cv_fold}" if cv_fold is not None else "ensemble"
        for files in tqdm(test, desc=f"synthesis ({label})", disable=None if progress else True):
            item = items[files.name]
            mean, sd = ensemble(bundle, item, device, model_folds, genotype=files.genotype,
                                net=net)
            t1, mask, scored, region, truth = _native_truth(files, bundle)
            maps = native_maps(item, mean, sd if len(model_folds) > 1 else None,
                               bundle.target, t1, mask)
            write_maps(out, files, maps, t1, mask, bundle, model_folds, oof_fold=cv_fold,
                       precision=net.precision)
            synth = maps["synth"]
            zooms = t1.header.get_zooms()[:3]
            base = {"bids_name": files.name, "participant_id": f"sub-{files.subject}",
                    "session_id": f"ses-{files.session}" if files.session else "n/a",
                    "group": files.group, "genotype": files.genotype,
                    "fold": cv_fold if cv_fold is not None else "all", "target": bundle.target}
            rows.append(base | {"model": "unet"}
                        | all_metrics(synth, truth, scored, zooms, seed=seed))
            baseline = baseline_map(out, files, mean_train)
            if baseline is not None:
                baseline = to_units(pet_target(baseline, scored, bundle.target, region),
                                    bundle.target)
                rows.append(base | {"model": "baseline_mean"}
                            | all_metrics(baseline, truth, scored, zooms, seed=seed,
                                          with_ssim=False))
    return rows
