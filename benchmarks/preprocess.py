"""Participant-level preprocessing time per session, split by step, and peak RSS.

    python benchmarks/preprocess.py BIDS_DIR --participant-label 01 [--sloppy] [--name NAME]

Runs the real participant level (one process, ``--omp-nthreads`` threads) into a scratch
folder and writes ``benchmarks/results/preprocess_<name>.json`` with the machine, versions,
the per-step timings of every session (from the work folder) and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path


def machine() -> dict:
    """Machine and package versions (read from the installed metadata: a GPU machine running
    only the model benchmark need not have ANTs)."""
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    import bids_tspo

    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "processor": platform.processor(),
            "bids_tspo": bids_tspo.__version__, "antspyx": version("antspyx"),
            "nibabel": version("nibabel"), "torch": version("torch"),
            "monai": version("monai")}


def save_result(result: dict, filename: str, summary) -> Path:
    """Write ``result`` to ``benchmarks/results/<filename>`` and print ``summary`` (the one
    writer of the benchmark scripts that report a summary)."""
    dest = Path(__file__).parent / "results" / filename
    dest.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps(summary, indent=1, default=str))
    return dest


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("bids_dir", type=Path)
    p.add_argument("--participant-label", nargs="+", required=True)
    p.add_argument("--sloppy", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", default=None)
    args = p.parse_args()
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from bids_tspo.app.cli import main as app

    with tempfile.TemporaryDirectory() as tmp:
        out, work = Path(tmp) / "out", Path(tmp) / "work"
        argv = [str(args.bids_dir), str(out), "participant", "-w", str(work), "--omp-nthreads",
                str(args.threads), "--participant-label", *args.participant_label]
        argv += ["--sloppy"] if args.sloppy else []
        start = time.monotonic()
        code = app(argv)
        wall = time.monotonic() - start
        sessions = {t.parent.name: json.loads(t.read_text())
                    for t in (work / "participant").glob("*/timings.json")}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    name = args.name or f"{args.bids_dir.name}_{'sloppy' if args.sloppy else 'standard'}"
    result = {"benchmark": "participant preprocessing", "name": name, "exit_code": code,
              "preset": "sloppy" if args.sloppy else "standard", "threads": args.threads,
              "wall_s": round(wall, 1), "sessions": sessions,
              "per_session_s": round(wall / max(1, len(sessions)), 1),
              "peak_rss_mb": round(rss_kb / 1024, 1), "machine": machine(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    dest = Path(__file__).parent / "results" / f"preprocess_{name}.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("name", "wall_s", "per_session_s", "peak_rss_mb")}))
    return code


if __name__ == "__main__":
    sys.exit(main())
