"""``--learn-deviation``: the network learns each person's deviation from the population.

The fold's population map is the mean normalised PET of its training (and validation)
subjects in template space: the training-mean baseline of the evaluation, computed from the
same subjects. It is warped onto each session's model box and given to the network as a
second input channel, and added to its output in logit space (:class:`TSPOUNet` with
``prior=True``, whose last layer starts at zero): an untrained network returns the population
map, and training fits what the T1w says about where this person departs from it. Each fold
keeps its map in the bundle (``fold-<k>/population.nii.gz``: values and support), so a bundle
synthesises new sessions as it did in cross-validation.

>>> with_prior({"t1": np.zeros((1, 4, 4, 4), np.float32)}, np.ones((1, 4, 4, 4)))["t1"].shape
(2, 4, 4, 4)
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputDataError, MissingInputError
from ..evaluation.baseline import baseline_map
from ..io.atomic import save_nifti_atomic
from ..io.derivatives import SessionFiles
from .grid import resample_to_grid

POPULATION = "population.nii.gz"


def save_population(fold_dir: Path, mean) -> None:
    """A fold's population map ``(values, affine, support)`` into its bundle folder."""
    values, affine, support = mean
    data = np.stack([values, support.astype(np.float32)], axis=-1).astype(np.float32)
    save_nifti_atomic(nib.Nifti1Image(data, affine), Path(fold_dir) / POPULATION)


def load_population(fold_dir: Path):
    """``(values, affine, support)`` saved by :func:`save_population`; a missing or broken
    file is an input error naming it."""
    path = Path(fold_dir) / POPULATION
    try:
        img = nib.load(path)
        data = np.asarray(img.dataobj, np.float32)
    except FileNotFoundError:
        raise InputDataError(f"{path}: missing; a --learn-deviation bundle keeps each fold's "
                             "population map there") from None
    except Exception as exc:  # noqa: BLE001 - truncated or not a NIfTI
        raise InputDataError(f"{path}: cannot be read ({exc})") from None
    if data.ndim != 4 or data.shape[-1] != 2:
        raise InputDataError(f"{path}: expected a 4D image of (values, support), got shape "
                             f"{data.shape}")
    return data[..., 0], img.affine, data[..., 1] > 0.5


def prior_box(files: SessionFiles, item: dict, mean) -> np.ndarray:
    """The population map on ``item``'s model box (1, S, S, S), clipped to [0, 1]."""
    native = baseline_map(files, mean)
    if native is None:
        raise MissingInputError(f"{files.t1w}: no template-to-T1w transform for this session; "
                                "--learn-deviation needs it to place the population map (run "
                                "the participant level)")
    t1 = nib.load(files.t1w)
    shape = item["t1"].shape[1:]
    box = resample_to_grid(native, t1.affine, shape, item["affine"])
    return np.clip(box, 0.0, 1.0)[None].astype(np.float32)


def with_prior(item: dict, prior: np.ndarray) -> dict:
    """``item`` with the prior as the second input channel."""
    return item | {"t1": np.concatenate([item["t1"][:1], prior]).astype(np.float32)}


def fold_priors(files: SessionFiles, item: dict, populations: dict) -> dict:
    """``item`` with ``priors``: each fold's population map on its box (for the ensemble)."""
    return item | {"priors": {k: prior_box(files, item, mean)
                              for k, mean in populations.items()}}


def fold_populations(bundle_dir: Path, splits: dict, paired: list[SessionFiles], target: str,
                     reference: str = "wholebrain", write: bool = True) -> dict:
    """Each fold's population map, from its training and validation subjects only; read from
    the bundle when there (so ``--fold`` jobs and the final run share it), else computed and
    (``write``) saved there."""
    from ..evaluation.baseline import training_mean
    from ..io.spaces import resolve_template

    tpl_mask = None
    populations = {}
    for fold in splits["folds"]:
        fold_dir = Path(bundle_dir) / f"fold-{fold['fold']}"
        if (fold_dir / POPULATION).is_file():
            populations[fold["fold"]] = load_population(fold_dir)
            continue
        if tpl_mask is None:
            tpl_mask = np.asarray(resolve_template(2).load()[1].dataobj) > 0.5
        train = [f for f in paired if f.subject in fold["train"] + fold.get("val", [])]
        mean = training_mean(train, target, tpl_mask, reference)
        if mean is None:
            raise MissingInputError(f"{bundle_dir}: fold {fold['fold']} has no training session "
                                    "with a template-space SUV map for its population map")
        if write:
            save_population(fold_dir, mean)
        populations[fold["fold"]] = mean
    return populations
