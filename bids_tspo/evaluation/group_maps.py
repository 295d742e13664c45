"""Group mean maps in template space: the mean true and the mean out-of-fold synthetic PET,
subjects as units (each subject's sessions averaged first, where its PET imaged), written at
the top of OUTPUT_DIR as ``group_space-<TPL>_desc-{truemean,synthmean}_pet.nii.gz`` with
sidecars; the group report draws them with their difference.

>>> means = SubjectMeans()
>>> ones, imaged = np.ones((2, 2, 2), np.float32), np.ones((2, 2, 2), bool)
>>> means.add("01", ones, 2 * ones, imaged); means.add("01", 3 * ones, 2 * ones, imaged)
>>> means.add("02", 4 * ones, 0 * ones, imaged)
>>> true, synth, n = means.group_means()
>>> float(true[0, 0, 0]), float(synth[0, 0, 0]), int(n[0, 0, 0])   # (2+4)/2, (2+0)/2
(3.0, 1.0, 2)
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from ..io.atomic import save_nifti_atomic, write_json_atomic
from ..io.derivatives import find_group_map, group_map_path, sidecar_path

DESCRIPTIONS = {
    "truemean": "Mean true PET target over subjects (each subject's sessions averaged first, "
                "where its PET imaged), template space.",
    "synthmean": "Mean out-of-fold synthetic PET over the same subjects and voxels, template "
                 "space.",
}


class SubjectMeans:
    """Accumulates each subject's sum of true and synthetic maps and its imaged count."""

    def __init__(self) -> None:
        self._sums: dict[str, list[np.ndarray]] = {}

    def add(self, subject: str, true: np.ndarray, synth: np.ndarray,
            imaged: np.ndarray, baseline: np.ndarray | None = None) -> None:
        w = imaged.astype(np.float32)
        parts = (true * w, synth * w, w) + (() if baseline is None else (baseline * w,))
        if subject in self._sums:
            for acc, part in zip(self._sums[subject], parts):
                acc += part
        else:
            self._sums[subject] = [np.array(p, np.float32) for p in parts]

    def __len__(self) -> int:
        return len(self._sums)

    def group_means(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean true, mean synthetic (NaN where no subject was imaged) and subjects per voxel."""
        shape = next(iter(self._sums.values()))[0].shape
        true, synth, n = np.zeros(shape), np.zeros(shape), np.zeros(shape, np.int32)
        for t, s, w, *_ in self._sums.values():
            seen = w > 0
            true[seen] += t[seen] / w[seen]
            synth[seen] += s[seen] / w[seen]
            n += seen
        with np.errstate(invalid="ignore", divide="ignore"):
            return (true / n).astype(np.float32), (synth / n).astype(np.float32), n

    def stacks(self, brain: np.ndarray) -> dict[str, np.ndarray | None]:
        """Subjects × ``brain`` voxels: each subject's mean ``true``, ``synth`` (and
        ``baseline`` when every subject has one) and where it was ``seen`` (imaged)."""
        out: dict[str, list] = {"true": [], "synth": [], "seen": [], "baseline": []}
        for sums in self._sums.values():
            w = sums[2][brain]
            out["seen"].append(w > 0)
            for key, acc in zip(("true", "synth", "baseline"), (sums[0], sums[1], *sums[3:])):
                out[key].append(np.where(w > 0, acc[brain] / np.maximum(w, 1e-6), 0.0))
        full = len(out["baseline"]) == len(self._sums)
        return {k: (np.asarray(v, np.float32) if k != "baseline" or full else None)
                for k, v in out.items()}

    def write(self, out: Path, template: str, affine: np.ndarray, units: str) -> list[Path]:
        """The two mean maps and their sidecars (nothing without subjects)."""
        if not self._sums:
            return []
        true, synth, n = self.group_means()
        written = []
        for desc, data in (("truemean", true), ("synthmean", synth)):
            path = group_map_path(out, space=template, desc=desc)
            img = nib.Nifti1Image(np.nan_to_num(data), affine)
            img.header.set_xyzt_units("mm")
            save_nifti_atomic(img, path)
            write_json_atomic(sidecar_path(path), {
                "Description": DESCRIPTIONS[desc], "Units": units, "SpatialReference": template,
                "NumberOfSubjects": len(self), "MinSubjectsPerVoxel": int(n[n > 0].min())
                if (n > 0).any() else 0})
            written.append(path)
        return written


def read_group_means(out: Path) -> tuple[nib.Nifti1Image, nib.Nifti1Image, dict] | None:
    """The mean true and synthetic maps written by the last group run, and the true map's
    sidecar (None when there are none)."""
    true_path, synth_path = find_group_map(out, "truemean"), find_group_map(out, "synthmean")
    if true_path is None or synth_path is None:
        return None
    return (nib.load(true_path), nib.load(synth_path),
            json.loads(sidecar_path(true_path).read_text()))
