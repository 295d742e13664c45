"""Time of a group run versus the number of sessions on the phantom.

    python benchmarks/group_scaling.py WORKDIR [--counts 6 12 24] [--epochs 2] [--image-size 32]

Builds one phantom large enough for the biggest count, runs the participant level once
(``--sloppy``), then for each count a fresh group level (training K folds + out-of-fold
synthesis + tables + reports) on the first subjects, up to N PET sessions. Records the group
wall time and seconds per session. Writes ``benchmarks/results/group_scaling_<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import machine  # noqa: E402


def pet_sessions(out: Path) -> list[Path]:
    return sorted(out.glob("sub-*/**/pet/*_space-T1w_desc-suv_pet.nii.gz"))


def _n_pet(folder: Path) -> int:
    return len(list(folder.glob("**/pet/*_space-T1w_desc-suv_pet.nii.gz")))


def subset(out: Path, dest: Path, n_sessions: int) -> int:
    """Copy the derivatives of the first subjects, session folder by session folder, until
    exactly ``n_sessions`` PET sessions (a subject's second session is left out when only one
    more is wanted; subjects without session folders are copied whole)."""
    dest.mkdir(parents=True)
    for name in ("dataset_description.json", ".bidsignore"):
        if (out / name).is_file():
            shutil.copy(out / name, dest / name)
    count = 0
    for sub in sorted(p for p in out.glob("sub-*") if p.is_dir()):
        sessions = sorted(p for p in sub.glob("ses-*") if p.is_dir())
        parts = [p for p in sessions if _n_pet(p)] or [sub]
        for part in parts:
            if count + _n_pet(part) > n_sessions:
                continue
            shutil.copytree(part, dest / part.relative_to(out))
            count += _n_pet(part)
        if count >= n_sessions:
            break
    return count


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("workdir", type=Path)
    p.add_argument("--counts", type=int, nargs="+", default=[6, 12, 24])
    p.add_argument("--size", default="tiny")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()
    from bids_tspo.app.cli import main as app
    from bids_tspo.phantom import make_phantom
    from bids_tspo.phantom.subjects import make_cohort

    bids, out = args.workdir / "bids", args.workdir / "out"
    subjects = 2
    while sum(len(s.sessions) for s in make_cohort(subjects, args.seed, True)
              if s.has_pet) < max(args.counts):
        subjects += 1
    start = time.monotonic()
    if not (bids / "participants.tsv").is_file():
        make_phantom(bids, subjects, args.seed, args.size, progress=False)
    if not pet_sessions(out):
        code = app([str(bids), str(out), "participant", "--sloppy", "-w",
                    str(args.workdir / "work"), "--omp-nthreads", "2"])
        if code:
            return code
    participant_s = round(time.monotonic() - start, 1)
    runs = []
    for n in args.counts:
        dest = args.workdir / f"group_{n}"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(args.workdir / f"work_{n}", ignore_errors=True)
        sessions = subset(out, dest, n)
        start = time.monotonic()
        code = app([str(bids), str(dest), "group", "-w", str(args.workdir / f"work_{n}"),
                    "--folds", str(args.folds), "--epochs", str(args.epochs), "--image-size",
                    str(args.image_size), "--omp-nthreads", "2"])
        wall = time.monotonic() - start
        runs.append({"sessions": sessions, "exit_code": code, "group_s": round(wall, 1),
                     "s_per_session": round(wall / max(sessions, 1), 2)})
        print(json.dumps(runs[-1]), flush=True)
    result = {"benchmark": "group level time vs sessions", "settings": vars(args)
              | {"workdir": str(args.workdir)}, "participant_s": participant_s, "runs": runs,
              "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    dest = Path(__file__).parent / "results" / f"group_scaling_{args.size}.json"
    dest.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return max(r["exit_code"] for r in runs)


if __name__ == "__main__":
    sys.exit(main())
