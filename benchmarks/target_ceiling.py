"""Where the PET target's ceiling falls, and how much of the effect each fold's network writes (#24).

    python benchmarks/target_ceiling.py WORKDIR [--control positive-strong] [--registration 4]
        [--networks]

Post hoc: run after the fourth registration's verdicts, to look for the failure's mechanism;
no verdict reads it. For each session a controls run cached (``WORKDIR/<control>/
work_paper_reg<R>/group/cache``: the model-box arrays the network was trained and scored on):

* target side, no model: the voxels at the target's ceiling (>= 0.999; the min-max target
  clips its 99.5th percentile to 1), how many lie in the core of the true inflammation (the
  noise-free truth over the truth of the same phantom made with ``--patient-effect 0``,
  > 1.3) and their median distance from the brain's centre, the core's mean in the target
  against the noise-free truth in the same units without the clip, and the target's brain
  mean (a hot spot that sets the ceiling dims the rest of the map);
* ``--networks``: each fold's network run on the session's T1w and on the negative
  control's T1w of the same session (the same phantom without the trace); the difference of
  the two outputs inside the effect region (truth ratio > 1.1) over the true difference:
  the fraction of the effect the network writes because of the trace, by the session's role
  in that fold (train / val / test).

Results: ``benchmarks/results/target_ceiling_reg<R>_<control>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

CORE, REGION = 1.3, 1.1  # truth ratios (with / without the patient effect)
RESULTS = Path(__file__).parent / "results"


def _cache_dir(work: Path, control: str, registration: int) -> Path:
    return work / control / f"work_paper_reg{registration}" / "group" / "cache"


def _load(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _counterpart(work: Path, control: str, registration: int, name: str) -> dict:
    """Session ``name``'s cached arrays in another control's run."""
    found = sorted(_cache_dir(work, control, registration).glob(f"{name}_*.npz"))
    if not found:
        sys.exit(f"no cached arrays of {name} for {control} (registration {registration})")
    return _load(found[0])


def _truth(bids: Path, name: str, box: dict) -> np.ndarray:
    """The noise-free smoothed truth of session ``name`` on the model box."""
    from bids_tspo.model.grid import resample_to_grid

    sub, ses = name.split("_")
    img = nib.load(bids / "derivatives" / "phantom-truth" / sub / ses / "pet"
                   / f"{name}_space-T1w_desc-truesmooth_pet.nii.gz")
    size = box["t1"].shape[-1]
    return resample_to_grid(np.asarray(img.dataobj, np.float32), img.affine, (size,) * 3,
                            box["affine"])


def target_side(box: dict, truth: np.ndarray, truth_pe0: np.ndarray) -> dict:
    """Ceiling voxels of the target and where they fall (see the module's docstring)."""
    inside = box["pet_mask"][0] > 0
    offset, scale = (float(v) for v in box["pet_scale"])
    ceiling = inside & (box["pet"][0] >= 0.999)
    core = inside & (truth > CORE * truth_pe0)
    spacing = float(box["affine"][0, 0])
    distance = np.linalg.norm(np.argwhere(ceiling) - np.argwhere(inside).mean(axis=0), axis=1)
    row = {"ceiling_voxels": int(ceiling.sum()), "ceiling_in_core": int((ceiling & core).sum()),
           "ceiling_median_mm_from_centre": round(float(np.median(distance)) * spacing, 1),
           "brain_mean_target": round(float(box["pet"][0][inside].mean()), 3),
           "core_voxels": int(core.sum())}
    if core.any():
        row |= {"core_target": round(float(box["pet"][0][core].mean()), 3),
                "core_truth_unclipped": round(float(((truth - offset) / scale)[core].mean()), 3)}
    return row


def network_side(bundle, net, splits: dict, box: dict, box_neg: dict, truth: np.ndarray,
                 truth_pe0: np.ndarray, subject: str) -> list[dict]:
    """Per fold: the trace's share of the effect in the network's output (module docstring);
    ``net``: one :class:`~bids_tspo.model.infer.Network` for the bundle, fold weights
    swapped in."""
    import torch

    from bids_tspo.model.infer import predict
    from bids_tspo.model.targets import apply_scale

    inside = box["pet_mask"][0] > 0
    region = inside & (truth > REGION * truth_pe0)
    if not region.any():
        return []
    if not np.allclose(box["affine"], box_neg["affine"], atol=0.5):  # brain masks differ
        return [{"skipped": "the negative control's model box differs by > 0.5 mm"}]
    true_diff = (apply_scale(truth, inside, box["pet_scale"])
                 - apply_scale(truth_pe0, inside, box["pet_scale"]))[region].mean()
    cpu, rows = torch.device("cpu"), []
    for fold in splits["folds"]:
        net.load(bundle.folds[fold["fold"]])
        with torch.no_grad():
            diff = predict(net, box["t1"], cpu) - predict(net, box_neg["t1"], cpu)
        role = next(r for r in ("train", "val", "test") if subject in fold[r])
        rows.append({"fold": fold["fold"], "role": role,
                     "fraction": round(float(diff[region].mean() / true_diff), 3)})
    return rows


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("workdir", type=Path)
    p.add_argument("--control", default="positive-strong")
    p.add_argument("--registration", type=int, default=4)
    p.add_argument("--networks", action="store_true")
    args = p.parse_args()
    work, reg = args.workdir.resolve(), args.registration
    models = work / args.control / f"out_paper_reg{reg}" / "models"
    bundle_dir = next(models.glob("*/model.json")).parent
    splits = json.loads((bundle_dir / "splits.json").read_text())
    bundle = net = None
    if args.networks:
        import torch

        from bids_tspo.model.bundle import load_bundle
        from bids_tspo.model.infer import Network

        bundle = load_bundle(bundle_dir)
        net = Network(bundle.cfg, torch.device("cpu"))
    rows = []
    for path in sorted(_cache_dir(work, args.control, reg).glob("*.npz")):
        name = "_".join(path.name.split("_")[:2])
        subject = name.split("_")[0].removeprefix("sub-")
        box = _load(path)
        truth = _truth(work / args.control / "bids", name, box)
        truth_pe0 = _truth(work / "bids_pe0", name, box)
        row = {"session": name, "group": splits["strata"][subject]}
        row |= target_side(box, truth, truth_pe0)
        if bundle is not None:
            row["networks"] = network_side(bundle, net, splits, box,
                                           _counterpart(work, "negative", reg, name), truth,
                                           truth_pe0, subject)
        rows.append(row)
    summary = {}
    if bundle is not None:
        for role in ("train", "val", "test"):
            fractions = [n["fraction"] for r in rows for n in r["networks"]
                         if n.get("role") == role]
            summary[f"median_fraction_{role}"] = (round(float(np.median(fractions)), 3)
                                                  if fractions else None)
    out = RESULTS / f"target_ceiling_reg{reg}_{args.control}.json"
    out.write_text(json.dumps({"benchmark": "target ceiling and trace share (#24, post hoc)",
                               "model": bundle_dir.name, "core_ratio": CORE,
                               "region_ratio": REGION, "summary": summary, "sessions": rows},
                              indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
