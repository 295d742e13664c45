"""Per-session scores of a synthetic map against the true PET, with the baseline beside it.

Maps are compared on the T1w grid inside the brain where the PET imaged it. One normalisation
per session: the true PET is put in the model target's units with the numbers its target was
made with on the model box (``pet_scale``: :func:`~bids_tspo.model.targets.target_scale`), so a
perfect predictor of the target scores no bias whatever the grid; the synthetic map and the
baseline (a mean of training targets) are in those units already and are taken as they are.
One row per session and model: ``unet`` and, when the fold's training sessions are known,
``baseline_mean`` (:mod:`bids_tspo.evaluation.baseline`); both get every metric, and the
``unet`` row ``deviation_r`` (what the synthesis adds beyond that baseline,
:mod:`bids_tspo.evaluation.beyond`).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from ..io.derivatives import SessionFiles
from ..model.targets import apply_scale, pet_target, to_units
from ..preprocess.reference import session_reference
from .baseline import baseline_map
from .beyond import session_columns, without_genotype
from .metrics import all_metrics


def session_truth(files: SessionFiles, target: str, reference: str, pet_scale=None):
    """T1w image, the brain inside the PET field of view (where maps are scored), the SUVR
    reference region (or None) and the true PET in the target's units on the T1w grid: with
    the session's ``pet_scale`` (from its prepared item), else normalised on this grid."""
    t1 = nib.load(files.t1w)
    mask = np.asarray(nib.load(files.mask).dataobj) > 0
    scored = files.imaged(mask)
    suv = np.asarray(nib.load(files.suv).dataobj, np.float32)
    region = session_reference(files, reference, t1, scored) if target == "suvr" else None
    units = (apply_scale(suv, scored, pet_scale) if pet_scale is not None
             else pet_target(suv, scored, target, region))
    return t1, scored, region, to_units(units, target)


def id_columns(files: SessionFiles, fold, target: str) -> dict:
    """The identifying columns of a session's rows in the group tables."""
    return {"bids_name": files.name, "participant_id": f"sub-{files.subject}",
            "session_id": f"ses-{files.session}" if files.session else "n/a",
            "group": files.group, "genotype": files.genotype, "fold": fold, "target": target}


def score_session(files: SessionFiles, synth: np.ndarray, fold, target: str,
                  reference: str = "wholebrain", mean_train=None, seed: int = 0,
                  genotype_factor: float | None = None, pet_scale=None) -> list[dict]:
    """Rows of metrics of one session: the synthetic map ``synth`` (T1w grid, target units)
    and, with ``mean_train`` (:func:`~bids_tspo.evaluation.baseline.training_mean`), the
    baseline, against the true PET normalised with ``pet_scale``; ``genotype_factor``: the
    contrast factor the fold applied to this SUVR map, for the metrics without the subject's
    genotype."""
    t1, scored, _, truth = session_truth(files, target, reference, pet_scale)
    zooms = t1.header.get_zooms()[:3]
    base = id_columns(files, fold, target)
    baseline = baseline_map(files, mean_train)
    if baseline is not None:
        baseline = to_units(baseline, target)
    maps = {"unet": synth, "baseline_mean": baseline}
    rows = [base | row for row in score_maps(truth, maps, scored, zooms, seed)]
    free = without_genotype(synth, genotype_factor, scored)  # SUVR map without the genotype
    rows[0] |= session_columns(synth, baseline, truth, scored, zooms, free)
    return rows


def score_maps(truth: np.ndarray, maps: dict, scored: np.ndarray, zooms,
               seed: int = 0) -> list[dict]:
    """One row per map of ``maps`` (name -> array on the truth's grid, in its units; None
    skipped): every metric inside ``scored``, each map treated alike."""
    return [{"model": name} | all_metrics(image, truth, scored, zooms, seed=seed)
            for name, image in maps.items() if image is not None]
