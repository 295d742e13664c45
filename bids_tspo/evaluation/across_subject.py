"""The voxelwise across-subject correlation of synthetic and true PET: at each template voxel,
Pearson r over subjects of their mean synthetic and mean true maps (each subject's sessions
averaged first, :class:`~.group_maps.SubjectMeans`). High r where the synthesis tells people
apart the way their PET does; ~0 where it paints the same pattern on everyone.

The control is the baseline (each subject's fold training-mean map): it carries no information
about the subject, so its across-subject r is what chance and fold differences give.

Written at the top of OUTPUT_DIR as ``group_space-<TPL>_desc-acrosssubject_statmap.nii.gz``
with a sidecar holding the summary (median r in the brain, voxels with BH q < 0.05, the
baseline's control values).

>>> rng = np.random.default_rng(0)
>>> true = rng.standard_normal((6, 4))
>>> synth = np.column_stack([true[:, 0], -true[:, 1], rng.standard_normal((6, 2))])
>>> r, n = across_subject_r(true, synth, np.ones((6, 4), bool))
>>> [round(float(x), 2) for x in r[:2]], int(n[0])
([1.0, -1.0], 6)
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import stats as st

from ..io.atomic import save_nifti_atomic, write_json_atomic
from ..io.derivatives import find_group_map, group_map_path, sidecar_path
from .subject_stats import bh_q

DESC, SUFFIX = "acrosssubject", "statmap"
MIN_SUBJECTS = 3


def across_subject_r(true: np.ndarray, synth: np.ndarray, seen: np.ndarray,
                     min_subjects: int = MIN_SUBJECTS) -> tuple[np.ndarray, np.ndarray]:
    """Per column (voxel) of subjects × voxels arrays, Pearson r over the subjects that
    ``seen`` it (NaN under ``min_subjects`` or without variance), and that count."""
    w = seen.astype(np.float64)
    n = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mt = (w * true).sum(axis=0) / n
        ms = (w * synth).sum(axis=0) / n
        dt, ds = (true - mt) * w, (synth - ms) * w
        cov = (dt * ds).sum(axis=0)
        var = (dt ** 2).sum(axis=0) * (ds ** 2).sum(axis=0)
        r = cov / np.sqrt(var)
    ok = (n >= min_subjects) & (var > 1e-20)
    return np.where(ok, np.clip(r, -1, 1), np.nan), n.astype(np.int32)


def summary(r: np.ndarray, n: np.ndarray) -> dict:
    """Median and mean r over the voxels with an r, and the fraction of them where r > 0
    survives Benjamini–Hochberg (q < 0.05; one-sided t-test of r over the voxel's subjects)."""
    ok = np.isfinite(r)
    if not ok.any():
        return {"voxels": 0, "median_r": None, "mean_r": None, "fraction_q05": None}
    rv, nv = r[ok], n[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = rv * np.sqrt((nv - 2) / np.maximum(1 - rv ** 2, 1e-12))
    p = st.t.sf(t, nv - 2)
    q = np.asarray(bh_q(p))
    return {"voxels": int(ok.sum()), "median_r": round(float(np.median(rv)), 4),
            "mean_r": round(float(np.mean(rv)), 4),
            "fraction_q05": round(float(np.mean(q < 0.05)), 4)}


def write_across_subject(out: Path, template: str, affine: np.ndarray, brain: np.ndarray,
                         stacks: dict[str, np.ndarray]) -> Path | None:
    """Compute and write the map from subject-mean stacks over the ``brain`` voxels
    (``true``, ``synth``, ``seen`` and optionally ``baseline``: subjects × voxels); the
    baseline's map is the control row of the sidecar. None with fewer than 3 subjects."""
    if stacks["true"].shape[0] < MIN_SUBJECTS:
        return None
    r, n = across_subject_r(stacks["true"], stacks["synth"], stacks["seen"])
    meta = {"Description": "Voxelwise Pearson r across subjects of the mean synthetic and mean "
                           "true PET (each subject's sessions averaged first, where its PET "
                           "imaged; at least 3 subjects per voxel), template space.",
            "Units": "r", "SpatialReference": template,
            "NumberOfSubjects": int(stacks["true"].shape[0]), "MinSubjectsPerVoxel":
            MIN_SUBJECTS, "Synthetic": summary(r, n)}
    if stacks.get("baseline") is not None:
        base, _ = across_subject_r(stacks["true"], stacks["baseline"], stacks["seen"])
        meta["BaselineControl"] = summary(base, n) | {
            "about": "the same map for each subject's training-mean baseline (its fold's "
                     "population map): no subject-specific information, the control"}
    volume = np.zeros(brain.shape, np.float32)
    volume[brain] = np.nan_to_num(r)
    path = group_map_path(out, space=template, desc=DESC, suffix=SUFFIX)
    img = nib.Nifti1Image(volume, affine)
    img.header.set_xyzt_units("mm")
    save_nifti_atomic(img, path)
    write_json_atomic(sidecar_path(path), meta)
    return path


def read_across_subject(out: Path) -> tuple[nib.Nifti1Image, dict] | None:
    """The map of the last group run and its sidecar (None when there is none)."""
    path = find_group_map(out, DESC, SUFFIX)
    if path is None:
        return None
    return nib.load(path), json.loads(sidecar_path(path).read_text())
