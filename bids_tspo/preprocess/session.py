"""One session of the participant level: T1w preprocessing, then each PET, into OUTPUT_DIR.

All outputs are computed first and written atomically at the end, so a failure (bad PET
sidecar, unreadable image) leaves nothing half-written for that session.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..app.config import Config
from ..errors import InputDataError
from ..io.atomic import atomic_path, save_nifti_atomic, write_json_atomic
from ..io.dataset import bids_uri
from ..io.derivatives import (
    anat_path,
    fov_mask_path,
    pet_entities,
    pet_path,
    sidecar_path,
    xfm_path,
)
from ..io.layout import PetImage, Session
from ..io.spaces import resolve_template
from .anat import AnatResult, preprocess_anat, seed_ants
from .images import field_of_view, load_checked, resample_with_transforms, to_ants
from .motion import realign_frames
from .pet import body_weight, compute_suv
from .preflight import preflight
from .presets import load_preset
from .qc import anat_qc

LOG = logging.getLogger(__name__)
PET_TEMPLATE_RES = 2
COREG_SPACING_MM = 2.5  # PET resolution is ~5 mm: register against a coarse T1w
MIN_BRAIN_COVERAGE = 0.99  # warn when the PET field of view misses more of the brain
# Raised whenever a change makes unchanged inputs give other outputs, so that a rerun redoes
# sessions finished before it. 2: images decay corrected after the injection were scaled by
# exp(-lambda t) instead of exp(+lambda t) (SUV too low). 3: the frames averaged for the SUV
# are realigned (head motion). 4: PET outputs keep every entity of the input's name (task-,
# rec-, ...; two PETs no longer share one output). 5: the FOV mask moved to anat/ under a
# BIDS-valid name (older runs lack it there).
METHOD_REVISION = 5


def coregister_pet(suv, pet_affine, anat: AnatResult, preset: dict, workdir: Path):
    """Rigid (mutual information) PET -> T1w; returns the transform file (ANTs .mat)."""
    import ants

    fixed = to_ants(np.asarray(anat.t1w.dataobj, np.float32), anat.t1w.affine)
    spacing = max(COREG_SPACING_MM, *anat.t1w.header.get_zooms()[:3])
    fixed = ants.resample_image(fixed, (spacing,) * 3, use_voxels=False, interp_type=0)
    moving = to_ants(suv, pet_affine)
    reg = ants.registration(fixed=fixed, moving=moving, outprefix=str(workdir / "pet2t1w_"),
                            **preset["pet_coreg"])
    return reg["fwdtransforms"][0]


def _pet_entities(pet: PetImage) -> dict:
    return pet_entities(pet.path)


def preprocess_session(config: Config, session: Session) -> list[Path]:
    """Preprocess one session; returns the derivative paths written."""
    preset = load_preset(config.sloppy)
    template = resolve_template(preset["template_resolution"])
    work = config.work_dir / "participant" / session.name
    record = _read_marker(work / "done.json")
    previous = [Path(p) for p in record.get("outputs", [])]  # removed if not written again
    if config.clean_workdir and work.exists():
        shutil.rmtree(work)
        record = {}
    inputs = input_record(session)
    done = finished_outputs(record, preset["name"], config, inputs)
    if done is not None:
        LOG.info("%s: already preprocessed (%d outputs; --clean-workdir recomputes)",
                 session.name, len(done))
        return done
    preflight(config, session)  # every input problem of the session, before any ANTs work
    measured = [_measured_suv(config, session, pet, preset.get("pet_motion"), work)
                for pet in session.pet]  # bad PET: fail fast
    LOG.info("%s: T1w %s (preset %s)", session.name, session.primary_t1w.name, preset["name"])
    anat = preprocess_anat(session.primary_t1w, template, preset, work / "anat", config.seed)
    started = time.monotonic()
    qc = anat_qc(session.name, anat.t1w, anat.brain_mask, anat.to_template)
    qc_seconds = round(time.monotonic() - started, 2)
    t1_uri = bids_uri(session.primary_t1w, config.bids_dir)
    out = config.output_dir
    t1w_path = anat_path(out, session, desc="preproc", suffix="T1w")
    on_t1w_grid = bids_uri(t1w_path, out, dataset="")  # SpatialReference of T1w-grid outputs
    pending: list[tuple[object, Path, dict | None]] = [
        (anat.t1w, t1w_path,
         {"Sources": [t1_uri], "SkullStripped": False, "Units": "arbitrary",
          "Description": "T1w bias-corrected (N4), native grid",
          "BiasCorrection": "N4 (ANTs)", "QualityControl": qc}),
        (_as_uint8(anat.brain_mask, anat.t1w),
         anat_path(out, session, desc="brain", suffix="mask"),
         {"Sources": [t1_uri], "SkullStripped": False, "Units": "binary", "Type": "Brain",
          "Description": "brain mask (1 = brain)", "SpatialReference": on_t1w_grid,
          "Method": "template mask warped by affine + SyN (ANTs), cleaned"}),
    ]
    timings = dict(anat.timings) | {"qc": qc_seconds}
    tpl_pet = resolve_template(PET_TEMPLATE_RES)
    tpl_like = tpl_pet.load()[1]
    for pet, (weight, suv, seconds) in zip(session.pet, measured):
        start = time.monotonic() - seconds
        pet_work = work / pet.path.name.split(".")[0]
        pet_work.mkdir(parents=True, exist_ok=True)
        rigid = coregister_pet(suv.data, suv.affine, anat, preset, pet_work)
        on_t1w = resample_with_transforms(suv.data, suv.affine, anat.t1w, [rigid])
        fov = field_of_view(suv.data.shape, suv.affine, anat.t1w, [rigid])
        coverage = _brain_coverage(fov, anat.brain_mask, session.name, pet.path.name)
        on_tpl = resample_with_transforms(suv.data, suv.affine, tpl_like,
                                          [str(anat.to_template), rigid])
        pet_uri = bids_uri(pet.path, config.bids_dir)
        meta = {"Sources": [pet_uri, t1_uri], "SkullStripped": False, "Units": "g/mL",
                "Description": "standardised uptake value, frame-duration-weighted window mean",
                **suv.metadata, "BrainCoverage": coverage}
        ent = _pet_entities(pet)
        pending.append((_as_uint8(nib.Nifti1Image(fov.astype(np.uint8), anat.t1w.affine),
                                  anat.t1w),
                        fov_mask_path(out, session, space="T1w", **ent),
                        {"Sources": [pet_uri, t1_uri], "SkullStripped": False,
                         "Units": "binary", "Type": "ROI",
                         "Description": "PET field of view: voxels the PET imaged (1 = imaged)",
                         "BrainCoverage": coverage, "SpatialReference": on_t1w_grid}))
        pending.append((on_t1w, pet_path(out, session, desc="suv", space="T1w", **ent),
                        {**meta, "SpatialReference": on_t1w_grid}))
        pending.append((on_tpl, pet_path(out, session, desc="suv", space=template.name, **ent),
                        {**meta, "SpatialReference": template.name,
                         "Resolution": f"{PET_TEMPLATE_RES} mm"}))
        timings[f"pet:{pet.path.name}"] = round(time.monotonic() - start, 2)
        LOG.info("%s: PET %s -> SUV (weight %.1f kg from %s) in %.1f s", session.name,
                 pet.path.name, weight.kg, weight.source, timings[f"pet:{pet.path.name}"])
    written = _write_all(pending)
    for src, dst in ((anat.to_template, xfm_path(out, session, src="T1w", dst=template.name)),
                     (anat.from_template, xfm_path(out, session, src=template.name, dst="T1w"))):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        written.append(dst)
    _remove_stale(previous, written, config.output_dir, session.name)
    write_json_atomic(work / "timings.json", timings)
    write_json_atomic(work / "done.json", {"version": __version__, "revision": METHOD_REVISION,
                                           "preset": preset["name"],
                                           "suv_window": list(config.suv_window),
                                           "inputs": inputs,
                                           "output_dir": str(Path(config.output_dir).resolve()),
                                           "outputs": [str(p) for p in written]})
    LOG.debug("%s timings: %s", session.name, timings)
    return written


def _measured_suv(config: Config, session: Session, pet: PetImage, motion: dict | None,
                  work: Path):
    """(body weight, SUV, seconds) of one PET from its image and sidecar (frames realigned
    with the preset's ``motion`` settings): every input error of the PET (sidecar, frames,
    dose, weight, image) before any time goes into the T1w."""
    start = time.monotonic()
    if pet.problem is not None:
        raise InputDataError(pet.problem)
    img, data = load_checked(pet.path, ndim=(3, 4), what="PET")
    weight = body_weight(pet.sidecar, session.session_row, session.participant, pet.path)
    motion_dir = work / pet.path.name.split(".")[0] / "motion"
    seed_ants(config.seed)

    def realign(frames, weights):
        return realign_frames(frames, img.affine, weights, motion, motion_dir)

    suv = compute_suv(data, img.affine, pet.sidecar, pet.path, weight, config.suv_window,
                      realign)
    return weight, suv, time.monotonic() - start


def _brain_coverage(fov: np.ndarray, brain_mask: nib.Nifti1Image, name: str, pet: str) -> float:
    """Fraction of the brain mask inside the PET field of view; a warning below 99 %."""
    brain = np.asarray(brain_mask.dataobj) > 0
    coverage = round(float(fov[brain].mean()), 4) if brain.any() else 0.0
    if coverage < MIN_BRAIN_COVERAGE:
        LOG.warning("%s: the field of view of %s misses %.1f %% of the brain (no PET data "
                    "there: SUV 0 on the T1w grid; anat/*_desc-fov<tracer>_mask shows the "
                    "imaged part)",
                    name, pet, 100 * (1 - coverage))
    return coverage


def input_record(session: Session) -> dict:
    """What a session's outputs were made from: the T1w and PET images (path, size,
    modification time), each PET's merged sidecar and the participants/sessions rows (body
    weight). A rerun reprocesses a session when any of it changed: another T1w or PET chosen
    (``--bids-filter-file``), an image replaced, a sidecar or a weight corrected."""
    def stamp(path: Path) -> list:
        try:
            st = Path(path).stat()
        except OSError:  # a broken link: reported by the pre-flight
            return [str(path), None, None]
        return [str(path), st.st_size, st.st_mtime_ns]

    return json.loads(json.dumps({
        "t1w": stamp(session.primary_t1w),
        "pet": [stamp(pet.path) + [dict(pet.sidecar)] for pet in session.pet],
        "rows": [dict(session.participant), dict(session.session_row)],
    }, default=str))  # as read back from done.json (lists, str keys)


def finished_outputs(record: dict, preset: str, config: Config,
                     inputs: dict | None = None) -> list[Path] | None:
    """The outputs of a finished session when its marker (``done.json`` as read by
    :func:`_read_marker`) matches this version and method revision, the settings and the
    inputs (:func:`input_record`), was written for this OUTPUT_DIR (two OUTPUT_DIRs may share
    a work dir) and every output still exists; otherwise None (the session is processed)."""
    outputs = [Path(p) for p in record.get("outputs", [])]
    out_dir = Path(config.output_dir).resolve()
    same = (record.get("version") == __version__
            and record.get("output_dir") == str(out_dir)
            and all(out_dir in p.resolve().parents for p in outputs)
            and record.get("revision") == METHOD_REVISION
            and record.get("preset") == preset
            and record.get("suv_window") == list(config.suv_window)
            and (inputs is None or record.get("inputs") == inputs))
    if same and outputs and all(p.is_file() for p in outputs):
        return outputs
    return None


def _read_marker(marker: Path) -> dict:
    """A session's ``done.json``; empty when missing or unreadable (the session is redone)."""
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _remove_stale(previous: list[Path], written: list[Path], output_dir: Path,
                  name: str) -> None:
    """Outputs of this session's previous run that this run did not write again (a PET no
    longer selected, say) are removed with their sidecars: OUTPUT_DIR describes one run."""
    keep = {Path(p) for p in written}
    for path in previous:
        inside = Path(output_dir) in path.parents and path.name.startswith(name)
        if path in keep or not inside or not path.is_file():
            continue
        LOG.info("%s: removing %s (not produced by this run's inputs)", name, path.name)
        path.unlink()
        if path.name.endswith((".nii", ".nii.gz")) and sidecar_path(path).is_file():
            sidecar_path(path).unlink()


def _as_uint8(img: nib.Nifti1Image, grid: nib.Nifti1Image) -> nib.Nifti1Image:
    """``img`` as uint8 with the header geometry of ``grid`` (the T1w it lies on: units,
    qform and sform, as the BIDS validator expects)."""
    out = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.uint8), grid.affine, grid.header)
    out.set_data_dtype(np.uint8)
    return out


def _write_all(pending) -> list[Path]:
    written = []
    for img, path, meta in pending:
        save_nifti_atomic(img, path)
        if meta is not None:
            write_json_atomic(sidecar_path(path), meta)
        written.append(path)
    return written
