"""PET frame realignment on the phantom: SUV accuracy with and without it, displacement, time.

    python benchmarks/pet_motion.py WORKDIR [--size small] [--subjects 4] [--seed 3]

Builds a phantom (every other subject's first PET session has its head moved 70 min after
injection; the others are still) and, for each PET session, computes the SUV map on the PET
grid as the participant level does, with each preset's frame realignment and without any, and
scores it against the true SUV (r inside the brain). Writes
``benchmarks/results/pet_motion_<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import machine  # noqa: E402


def _displacement(motion: np.ndarray, affine: np.ndarray, shape) -> float:
    """Mean movement under ``motion`` of the six points 50 mm from the grid centre."""
    centre = (affine @ np.r_[(np.asarray(shape) - 1) / 2, 1])[:3]
    points = [np.r_[centre + sign * 50.0 * np.eye(3)[axis], 1] for axis in range(3)
              for sign in (-1, 1)]
    return float(np.mean([np.linalg.norm((motion @ q - q)[:3]) for q in points]))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("workdir", type=Path)
    p.add_argument("--size", default="small")
    p.add_argument("--subjects", type=int, default=4)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args()
    import torch

    from bids_tspo.phantom import make_phantom
    from bids_tspo.phantom.truth import session_pet
    from bids_tspo.preprocess.anat import seed_ants
    from bids_tspo.preprocess.motion import realign_frames
    from bids_tspo.preprocess.pet import WeightLookup, compute_suv
    from bids_tspo.preprocess.presets import load_preset

    torch.set_num_threads(2)
    bids = args.workdir / f"phantom_{args.size}"
    if not (bids / "participants.tsv").is_file():
        make_phantom(bids, args.subjects, args.seed, args.size, progress=False)
    rows = []
    for pet_file in sorted(bids.glob("sub-*/ses-*/pet/*_pet.nii.gz")):
        name = "_".join(pet_file.name.split("_")[:2])
        pet = session_pet(bids, name)
        weight = WeightLookup(pet.truth["weight_kg"], "truth")
        row = {"session": name, "moved": "pet_head_motion" in pet.truth}
        if row["moved"]:  # the phantom's head motion, measured as the app measures it
            row["true_displacement_mm"] = round(_displacement(
                np.asarray(pet.truth["pet_head_motion"]), pet.affine, pet.data.shape[:3]), 3)
        plain = compute_suv(pet.data, pet.affine, pet.sidecar, pet_file, weight, (60, 90))
        row["r_plain"] = round(pet.r(plain.data), 4)
        for preset in ("sloppy", "standard"):
            settings = load_preset(sloppy=preset == "sloppy")["pet_motion"]
            seed_ants(42)
            start = time.perf_counter()
            out = compute_suv(pet.data, pet.affine, pet.sidecar, pet_file, weight, (60, 90),
                              lambda f, w: realign_frames(f, pet.affine, w, settings))
            row[f"{preset}_s"] = round(time.perf_counter() - start, 2)
            row[f"r_{preset}"] = round(pet.r(out.data), 4)
            row[f"displacement_mm_{preset}"] = out.metadata.get("FrameDisplacement")
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {"benchmark": "PET frame realignment", "settings": vars(args)
              | {"workdir": str(args.workdir)}, "sessions": rows, "machine": machine(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    dest = Path(__file__).parent / "results" / f"pet_motion_{args.size}.json"
    dest.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
