"""The participant report, :func:`participant_report`: ``sub-<l>.html``, self-contained (its
figures inlined as SVG, also kept in ``sub-<l>/figures/*.svg``; the group report is
:func:`bids_tspo.reports.group.group_report`; what both share is :mod:`.rendering`).

Both read only what is on disk, so ``--reports-only`` can regenerate them at any time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import CITATION, __version__
from ..errors import BidsTspoError
from ..io.atomic import write_text_atomic
from ..io.columns import describe_column
from ..io.derivatives import (
    SessionFiles,
    figure_path,
    find_pet,
    group_table_path,
    pet_path,
    report_path,
    session_name,
    session_record,
)
from ..io.tables import read_tsv
from ..model.targets import pet_target, scale_t1, to_units
from ..preprocess.reference import session_reference
from . import figures
from .flags import MAX_FRAME_MOTION_MM, sessions_to_check
from .rendering import ENV, METHODS, display_grid, run_errors, sidecar

LOG = logging.getLogger(__name__)


def _reference(files: SessionFiles, reference: str, brain: np.ndarray):
    """The SUVR reference region on the canonical T1w grid (None: whole brain or unknown)."""
    if reference == "wholebrain":
        return None
    raw = nib.load(files.t1w)
    try:
        region = session_reference(files, reference, raw, np.ones(raw.shape[:3], bool))
    except BidsTspoError as exc:  # the figure falls back to whole-brain SUVR
        LOG.warning("%s: %s reference unavailable for the report figure (%s)", files.name,
                    reference, exc)
        return None
    canonical = display_grid(nib.Nifti1Image(region.astype(np.uint8), raw.affine), labels=True)
    return (np.asarray(canonical.dataobj) > 0) & brain


def _session_figures(out: Path, files: SessionFiles) -> list[dict]:
    from ..io.spaces import resolve_template
    from ..preprocess.images import resample_with_transforms
    from ..preprocess.qc import QC_TEMPLATE_RES, warped_correlation

    made = []

    def save(key: str, title: str, caption: str, svg: str):
        path = figure_path(out, files.subject, files.name, key)
        write_text_atomic(path, svg)
        made.append({"title": title, "caption": caption, "svg": svg,
                     "src": path.relative_to(out).as_posix()})

    t1_path, mask_path = files.t1w, files.mask
    if not (t1_path.is_file() and mask_path.is_file()):
        return made
    raw = nib.load(t1_path)
    raw_data = np.asarray(raw.dataobj, np.float32)  # read once: display grid and template warp
    t1 = display_grid(nib.Nifti1Image(raw_data, raw.affine))
    mask = display_grid(mask_path, labels=True)
    save("mask", "Brain extraction", "Bias-corrected T1w with the brain-mask outline (red).",
         figures.mask_contour(t1, mask))
    xfm = files.xfm()
    if xfm is not None:
        tpl_img, tpl_mask = resolve_template(QC_TEMPLATE_RES).load()
        warped = resample_with_transforms(raw_data, raw.affine, tpl_img, [xfm[1]])
        r = sidecar(t1_path).get("QualityControl", {}).get("TemplateCorrelation")
        if r is None:  # outputs of an earlier version: computed here
            r = warped_correlation(warped, tpl_img, tpl_mask)
        save("registration", "Template registration",
             "T1w warped to the template; blue: the template's brain outline. Correlation with "
             f"the template inside its brain mask, both smoothed at 4 mm: r = {r:.3f} (standard "
             "preset: 0.91 on a real 3T MPRAGE, 0.96 on the Colin27 average; markedly lower "
             "values call for a close look at this figure).",
             figures.registration_check(warped, tpl_mask))
    suv_path = next(iter(find_pet(files.pet_dir, files.name, desc="suv", space="T1w")), None)
    suv = display_grid(suv_path) if suv_path is not None else None
    if suv is not None:
        meta = sidecar(suv_path)
        window, moved = meta.get("SUVWindow"), meta.get("FrameDisplacement")
        span = f" ({window[0]:g}–{window[1]:g} min)" if window else ""
        check = ": check the frames (next figure)"
        motion = (f" Its {len(moved)} frames were realigned for head motion; they had moved "
                  f"up to {max(moved):.1f} mm (mean movement 50 mm from the centre)"
                  f"{check if max(moved) > MAX_FRAME_MOTION_MM else ''}." if moved else "")
        save("coreg", "PET to T1w coregistration",
             f"SUV{span} over the T1w; green: the brain outline.{motion}",
             figures.coreg_check(t1, suv, mask))
        if moved:
            save("motion", "PET frames: head motion",
                 "Displacement of each frame of the SUV window before realignment (mean over "
                 "points 50 mm from the centre of the brain), against the QC limit of "
                 f"{MAX_FRAME_MOTION_MM:g} mm; frames above it were realigned, but check the "
                 "SUV map above for blurring or misplaced uptake.",
                 figures.frame_motion(moved, meta.get("FramesUsed"),
                                      MAX_FRAME_MOTION_MM))
    synth_path = pet_path(out, files.record, desc="synth", space="T1w")
    if synth_path.is_file():
        m = np.asarray(mask.dataobj) > 0
        synth = np.asarray(display_grid(synth_path).dataobj, np.float32)
        sd_path = pet_path(out, files.record, desc="synthstd", space="T1w")
        sd = (np.asarray(display_grid(sd_path).dataobj, np.float32) if sd_path.is_file()
              else None)
        meta = sidecar(synth_path)
        true = None
        if suv is not None:
            target = "suvr" if meta.get("Units") == "SUVR" else "minmax"
            region = _reference(files, meta.get("SUVRReference", "wholebrain"), m)
            true = to_units(pet_target(np.asarray(suv.dataobj, np.float32), m,
                                       target, region), target)
        save("synthesis", "Synthetic PET",
             _mosaic_caption(true is not None, sd is not None) + _agreement(synth, sd, m),
             figures.synthesis_mosaic(scale_t1(np.asarray(t1.dataobj, np.float32), m), true,
                                      synth, sd, m, meta.get("Units", ""),
                                      z_mm=(float(t1.affine[2, 3]), float(t1.affine[2, 2]))))
    return made


def _mosaic_caption(true: bool, sd: bool) -> str:
    """The synthesis mosaic's caption, naming the rows it has.

    >>> _mosaic_caption(False, True)
    'Rows: T1w, synthetic PET and the SD across fold models, on shared colour scales.'
    """
    rows = ["T1w"] + (["true PET (normalised as the model target)"] if true else [])
    rows += ["synthetic PET"] + (["their difference"] if true else [])
    rows += ["the SD across fold models"] if sd else []
    return f"Rows: {', '.join(rows[:-1])} and {rows[-1]}, on shared colour scales."


def _agreement(synth: np.ndarray, sd: np.ndarray | None, brain: np.ndarray) -> str:
    """How much the fold models agree, in words for the caption (the uncertainty of an
    MRI-only synthesis, where no true PET can be compared).

    >>> brain = np.ones(4, bool)
    >>> _agreement(np.full(4, 0.5), np.full(4, 0.01), brain)
    ' Fold models agree to a mean SD of 0.01 in the brain (2.0 % of the mean synthetic value).'
    """
    if sd is None or not brain.any():
        return ""
    mean, spread = float(synth[brain].mean()), float(sd[brain].mean())
    return (f" Fold models agree to a mean SD of {spread:.3g} in the brain "
            f"({100 * spread / max(mean, 1e-9):.1f} % of the mean synthetic value).")


def _metric_rows(row: dict | None) -> list[dict]:
    """A session's metrics for its report card: name, readable label and description (from
    the group tables' column descriptions) and value."""
    keys = ("pearson_r", "pearson_r_smooth", "mse", "normdiff", "percdiff", "ssim", "psnr",
            "cnr_synth", "cnr_true", "baseline_pearson_r", "deviation_r")
    rows = []
    for key in keys:
        if row is not None and key in row:
            about = describe_column("group_metrics", key) or {}
            rows.append({"name": key, "label": about.get("LongName", key),
                         "help": about.get("Description", ""), "units": about.get("Units", ""),
                         "value": row[key]})
    return rows


def participant_report(out: Path, subject: str) -> Path:
    """Write ``sub-<subject>.html`` (+ figures) from what exists in OUTPUT_DIR."""
    out = Path(out)
    metrics = read_tsv(group_table_path(out, "metrics"))
    flags = {f["session"]: f["reasons"] for f in sessions_to_check(out)
             if f["subject"] == subject}
    sessions = []
    for t1 in sorted((out / f"sub-{subject}").glob("**/anat/*_desc-preproc_T1w.nii.gz")):
        files = SessionFiles.of(out, session_record(session_name(t1)))
        name = files.name
        img = nib.load(t1)
        suv = find_pet(files.pet_dir, name, desc="suv", space="T1w")
        row = (metrics[metrics.bids_name == name].iloc[0].to_dict()
               if metrics is not None and (metrics.bids_name == name).any() else None)
        sessions.append({
            "name": name,
            "t1w": {"shape": "×".join(map(str, img.shape)),
                    "zooms": " × ".join(f"{z:.2f}" for z in img.header.get_zooms()[:3]),
                    "orientation": "".join(nib.aff2axcodes(img.affine))},
            "pet": [{"file": p.name, **{k: sidecar(p).get(k) for k in (
                "SUVWindow", "InjectedRadioactivityBq", "BodyWeight", "BodyWeightSource")}}
                    for p in suv],
            "synth": sidecar(pet_path(out, files.record, desc="synth", space="T1w")),
            "figures": _session_figures(out, files),
            "metrics": _metric_rows(row),
            "flags": flags.get(name, []),
        })
    html = ENV.get_template("participant.html.j2").render(
        subject=subject, sessions=sessions, errors=run_errors(out, f"sub-{subject}"),
        version=__version__, citation=CITATION, methods=METHODS,
        date=time.strftime("%Y-%m-%d %H:%M"))
    return write_text_atomic(report_path(out, subject), html)
