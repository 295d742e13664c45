"""What both reports share: the jinja2 environment, the methods text, sidecars and run
failures read from OUTPUT_DIR, and the display grid of the figures.

>>> sidecar(Path("/nonexistent_T1w.nii.gz"))
{}
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import nibabel as nib

from ..io.derivatives import sidecar_path

ENV = jinja2.Environment(loader=jinja2.PackageLoader("bids_tspo", "reports/templates"),
                         autoescape=jinja2.select_autoescape(["html", "j2"]))
METHODS = ("T1w images were bias-corrected (N4) and brain-extracted with ANTs and registered to "
           "the MNI152 template (affine + SyN). PET frames in the SUV window were averaged, "
           "converted to SUV and rigidly coregistered to the T1w. A 3D U-Net (Ferrante et al. "
           "2025) trained with subject-grouped cross-validation synthesised TSPO PET maps from "
           "the skull-stripped T1w; maps are the mean of fold models and left-right flips.")


def sidecar(path: Path) -> dict:
    """The JSON sidecar of a NIfTI output ({} when it has none)."""
    side = sidecar_path(path)
    return json.loads(side.read_text()) if side.is_file() else {}


def run_errors(out: Path, subject: str | None = None) -> list[dict]:
    """Failures that still stand: each session's outcome in the latest run summary
    (``logs/summary_*.json``) that names it, kept when it failed there (a failure fixed by a
    later run is gone); ``subject`` (``sub-<l>``): only that participant's sessions."""
    latest: dict[str, dict | None] = {}
    for summary in sorted((Path(out) / "logs").glob("summary_*.json"), key=_run_order):
        try:
            record = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        latest.update(dict.fromkeys(record.get("succeeded", [])))
        latest.update({f["session"]: f | {"log": summary.name} for f in record.get("failed", [])})
    return [failure for name, failure in sorted(latest.items()) if failure is not None
            and (subject is None or name == subject or name.startswith(f"{subject}_"))]


def _run_order(summary: Path) -> tuple:
    """When a run started (``summary_<level>_<YYYYmmdd-HHMMSS>_<host>_<pid>.json``), then when
    its summary was written.

    >>> _run_order(Path("/nonexistent/summary_group_20260101-120000_h_1.json"))
    ('20260101-120000', 0)
    """
    parts = summary.stem.split("_")
    try:
        written = summary.stat().st_mtime_ns
    except OSError:
        written = 0
    return (parts[2] if len(parts) > 2 else "", written)


def display_grid(img: nib.Nifti1Image | Path, labels: bool = False) -> nib.Nifti1Image:
    """The image on an axis-aligned RAS grid, resampled once (linear; nearest for labels).

    nilearn resamples oblique images itself, with cubic splines, on every plot call (7 per
    participant report: 8 s of a 1 mm session); images that share a grid (all space-T1w
    derivatives) land on the same display grid, so their arrays stay voxel-aligned.
    """
    from nilearn.image import reorder_img

    img = nib.load(img) if isinstance(img, Path) else img
    return reorder_img(img, resample="nearest" if labels else "linear", copy_header=True)
