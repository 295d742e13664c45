"""Per-session scores of a synthetic map against the true PET, with the baseline beside it.

Maps are compared on the T1w grid inside the brain where the PET imaged it, with the true PET
normalised like the model target (:mod:`bids_tspo.model.targets`). One row per session and
model: ``unet`` and, when the fold's training sessions are known, ``baseline_mean``
(:mod:`bids_tspo.evaluation.baseline`); the ``unet`` row carries ``deviation_r`` (what the
synthesis adds beyond that baseline, :mod:`bids_tspo.evaluation.beyond`).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from ..io.derivatives import SessionFiles
from ..model.targets import pet_target, to_units
from ..preprocess.reference import session_reference
from .baseline import baseline_map
from .beyond import deviation_metrics
from .metrics import all_metrics


def session_truth(files: SessionFiles, target: str, reference: str):
    """T1w image, the brain inside the PET field of view (where maps are scored), the SUVR
    reference region (or None) and the normalised true PET, on the T1w grid."""
    t1 = nib.load(files.t1w)
    mask = np.asarray(nib.load(files.mask).dataobj) > 0
    scored = files.imaged(mask)
    suv = np.asarray(nib.load(files.suv).dataobj, np.float32)
    region = session_reference(files, reference, t1, scored) if target == "suvr" else None
    return t1, scored, region, to_units(pet_target(suv, scored, target, region), target)


def id_columns(files: SessionFiles, fold, target: str) -> dict:
    """The identifying columns of a session's rows in the group tables."""
    return {"bids_name": files.name, "participant_id": f"sub-{files.subject}",
            "session_id": f"ses-{files.session}" if files.session else "n/a",
            "group": files.group, "genotype": files.genotype, "fold": fold, "target": target}


def score_session(files: SessionFiles, synth: np.ndarray, fold, target: str,
                  reference: str = "wholebrain", mean_train=None, seed: int = 0) -> list[dict]:
    """Rows of metrics of one session: the synthetic map ``synth`` (T1w grid, target units)
    and, with ``mean_train`` (:func:`~bids_tspo.evaluation.baseline.training_mean`), the
    baseline."""
    t1, scored, region, truth = session_truth(files, target, reference)
    zooms = t1.header.get_zooms()[:3]
    base = id_columns(files, fold, target)
    rows = [base | {"model": "unet"} | all_metrics(synth, truth, scored, zooms, seed=seed)]
    baseline = baseline_map(files, mean_train)
    if baseline is not None:
        baseline = to_units(pet_target(baseline, scored, target, region), target)
        rows.append(base | {"model": "baseline_mean"}
                    | all_metrics(baseline, truth, scored, zooms, seed=seed, with_ssim=False))
    rows[0] |= deviation_metrics(synth, baseline, truth, scored, zooms)
    return rows
