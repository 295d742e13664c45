"""Per-session scores of a synthetic map against the true PET, with the baseline beside it.

Maps are compared on the T1w grid inside the brain where the PET imaged it. The true PET (SUV),
the synthetic map and the baseline are put in the same units there by one rule
(:func:`~bids_tspo.evaluation.metrics.comparable`), so a perfect predictor scores no bias
whatever grid its target was normalised on. One row per session and model: ``unet`` and,
when the fold's training sessions are known, ``baseline_mean``
(:mod:`bids_tspo.evaluation.baseline`); both get every metric, and the ``unet`` row ``deviation_r`` (what the
synthesis adds beyond that baseline, :mod:`bids_tspo.evaluation.beyond`).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from ..io.derivatives import SessionFiles
from ..preprocess.reference import session_reference
from .baseline import baseline_map
from .beyond import session_columns, without_genotype
from .metrics import all_metrics, comparable


def session_truth(files: SessionFiles, target: str, reference: str):
    """T1w image, the brain inside the PET field of view (where maps are scored), the SUVR
    reference region (or None) and the true PET in evaluation units, on the T1w grid."""
    t1 = nib.load(files.t1w)
    mask = np.asarray(nib.load(files.mask).dataobj) > 0
    scored = files.imaged(mask)
    suv = np.asarray(nib.load(files.suv).dataobj, np.float32)
    region = session_reference(files, reference, t1, scored) if target == "suvr" else None
    return t1, scored, region, comparable(suv, scored, target, region)


def id_columns(files: SessionFiles, fold, target: str) -> dict:
    """The identifying columns of a session's rows in the group tables."""
    return {"bids_name": files.name, "participant_id": f"sub-{files.subject}",
            "session_id": f"ses-{files.session}" if files.session else "n/a",
            "group": files.group, "genotype": files.genotype, "fold": fold, "target": target}


def score_session(files: SessionFiles, synth: np.ndarray, fold, target: str,
                  reference: str = "wholebrain", mean_train=None, seed: int = 0,
                  genotype_factor: float | None = None) -> list[dict]:
    """Rows of metrics of one session: the synthetic map ``synth`` (T1w grid, target units)
    and, with ``mean_train`` (:func:`~bids_tspo.evaluation.baseline.training_mean`), the
    baseline; ``genotype_factor``: the contrast factor the fold applied to this SUVR map, for
    the metrics without the subject's genotype."""
    t1, scored, region, truth = session_truth(files, target, reference)
    zooms = t1.header.get_zooms()[:3]
    base = id_columns(files, fold, target)
    maps = {"unet": synth, "baseline_mean": baseline_map(files, mean_train)}
    rows = [base | row for row in score_maps(truth, maps, scored, zooms, target, region, seed)]
    baseline = maps["baseline_mean"]
    if baseline is not None:
        baseline = comparable(baseline, scored, target, region)
    free = without_genotype(synth, genotype_factor, scored)  # SUVR map without the genotype
    if free is not None:
        free = comparable(free, scored, target, region)
    rows[0] |= session_columns(comparable(synth, scored, target, region), baseline, truth,
                               scored, zooms, free)
    return rows


def score_maps(truth: np.ndarray, maps: dict, scored: np.ndarray, zooms, target: str,
               region: np.ndarray | None = None, seed: int = 0) -> list[dict]:
    """One row per map of ``maps`` (name -> array on the truth's grid; None skipped): each map
    put in the truth's units by the same rule (:func:`comparable`; ``truth`` already is),
    then every metric inside ``scored``."""
    return [{"model": name} | all_metrics(comparable(image, scored, target, region), truth,
                                          scored, zooms, seed=seed)
            for name, image in maps.items() if image is not None]
