"""Out-of-fold r inside the brain *and the PET field of view*: the check behind the CV tables.

    python benchmarks/cv_fov_check.py WORKDIR NAME

The phantom's PET has a smaller field of view than the T1w, rigidly offset, so in some sessions
part of the brain (vertex or cerebellum) was never imaged: the SUV map on the T1w grid is 0
there. The group level's metrics (and training targets) still use the whole brain mask, which
rewards a model for predicting those zeros. This script rescores a finished ``cv_phantom.py``
run (its out-of-fold maps and the per-fold training-mean baseline) inside brain ∩ {SUV > 0.05},
eroded by 2 voxels against the interpolation ramp at the FOV edge, and writes
``benchmarks/results/cv_<NAME>_fov.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import machine, save_result  # noqa: E402


def _load(path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj, np.float32)


def _r(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return round(float(np.corrcoef(a[where], b[where])[0, 1]), 4)


def main() -> int:
    from bids_tspo.evaluation.baseline import baseline_map, training_mean
    from bids_tspo.io.derivatives import discover
    from bids_tspo.io.spaces import resolve_template

    workdir, name = Path(sys.argv[1]), sys.argv[2]
    out = workdir / "out"
    bundle = next(out.glob("models/*/splits.json")).parent
    splits = json.loads((bundle / "splits.json").read_text())
    files = {f.name: f for f in discover(out) if f.suv is not None}
    tpl_mask = np.asarray(resolve_template(2).load()[1].dataobj) > 0.5
    rows = []
    for fold in splits["folds"]:
        train = [f for f in files.values() if f.subject in fold["train"] + fold.get("val", [])]
        mean = training_mean(train, "minmax", tpl_mask)
        for f in (f for f in files.values() if f.subject in fold["test"]):
            pet_dir = f.t1w.parent.parent / "pet"
            brain, suv = _load(f.mask) > 0, _load(f.suv)
            fov = brain & ndimage.binary_erosion(suv > 0.05, iterations=2)
            synth = _load(pet_dir / f"{f.name}_space-T1w_desc-synth_pet.nii.gz")
            base = baseline_map(f, mean)
            rows.append({"session": f.name, "fold": fold["fold"],
                         "brain_outside_fov": round(1 - fov.sum() / brain.sum(), 4),
                         "unet_r_brain": _r(synth, suv, brain),
                         "baseline_r_brain": _r(base, suv, brain),
                         "unet_r_fov": _r(synth, suv, fov), "baseline_r_fov": _r(base, suv, fov)})
    keys = [k for k in rows[0] if k.endswith(("_brain", "_fov"))]
    summary = {k: {"mean": round(float(np.mean([r[k] for r in rows])), 4),
                   "median": round(float(np.median([r[k] for r in rows])), 4)} for k in keys}
    summary["unet_higher_r_fov_sessions"] = sum(r["unet_r_fov"] > r["baseline_r_fov"] for r in rows)
    result = {"benchmark": "out-of-fold r inside brain and PET field of view", "name": name,
              "bundle": bundle.name, "sessions": len(rows), "summary": summary, "rows": rows,
              "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    save_result(result, f"cv_{name}_fov.json", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
