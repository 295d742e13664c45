"""Render the phantom cohort into a BIDS dataset, with its noise-free truth.

Layout::

    OUT/dataset_description.json, README, participants.tsv/.json
    OUT/sub-<l>/[ses-<s>/]anat/..._T1w.nii.gz (+ .json)
    OUT/sub-<l>/[ses-<s>/]pet/..._trc-PBR28_pet.nii.gz (+ .json)     4D, Bq/mL
    OUT/derivatives/phantom-truth/...  brain mask and tissue dseg on the T1w grid, the true SUV
                                       (noise-free; and at PET resolution), the truth record
                                       of each session in the desc-true sidecar

>>> from bids_tspo.phantom import example_dataset     # make_phantom(OUT, 1, seed=1, "tiny")
>>> sorted(p.name for p in example_dataset().iterdir())
['.bidsignore', 'README', 'dataset_description.json', 'derivatives', 'participants.json',
 'participants.tsv', 'sub-01']
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from .. import __version__
from ..io.atomic import save_nifti_atomic, write_json_atomic, write_text_atomic
from ..model.grid import apply, grid_points, sample
from .anatomy import T1W_TRACE, HeadModel, build_head_model
from .bidsmeta import SESSIONS_JSON, TRUTH_LINKS, truth_sidecar, truth_sidecar_path
from .dynamic import dynamic_frames, frame_schedule, pet_sidecar
from .subjects import GENOTYPE_P, ND_SUV, PhantomSession, PhantomSubject, make_cohort
from .warp import Individual, rigid, scanner_grid

LOG = logging.getLogger(__name__)
PET_FWHM_MM = 6.0  # mMR ~4.3 mm (NEMA, Delso et al. 2011) with a 4 mm Gaussian post-filter
MOTION_ONSET_MIN = 70  # sessions with head motion: frames starting this late are moved
T1W_ORIENTATIONS = ("LIA", "PIR", "RAS", "LPS", "ASL")


@dataclass(frozen=True)
class SizeSpec:
    subjects: int
    template_res: int
    t1_voxel: float
    t1_fov: tuple[float, float, float]
    pet_voxel: float
    pet_fov: tuple[float, float, float]


SIZES = {
    "tiny": SizeSpec(6, 2, 4.0, (176, 224, 224), 4.0, (200, 200, 160)),
    "small": SizeSpec(6, 2, 2.0, (176, 240, 240), 2.0, (224, 224, 176)),
    "full": SizeSpec(24, 1, 1.0, (176, 256, 256), 2.0, (224, 224, 176)),
}


def _session_name(subject: PhantomSubject, session: PhantomSession) -> tuple[Path, str]:
    rel = Path(f"sub-{subject.label}")
    name = f"sub-{subject.label}"
    if session.label:
        rel, name = rel / f"ses-{session.label}", f"{name}_ses-{session.label}"
    return rel, name


def _bias_field(rng, shape, amplitude=0.12) -> np.ndarray:
    coarse = rng.standard_normal((4, 4, 4))
    field = ndimage.zoom(coarse, np.asarray(shape) / 4.0, order=3)
    field = field[: shape[0], : shape[1], : shape[2]]
    return np.exp(amplitude * field / (field.std() + 1e-6)).astype(np.float32)


def render_session(model: HeadModel, spec: SizeSpec, size: str, subject: PhantomSubject,
                   session: PhantomSession, person: Individual, orientation: str,
                   t1w_trace: float = T1W_TRACE, noise: float = 1.0,
                   patient_effect: float = 1.0) -> dict:
    """All images of one session (nibabel images) and its truth record; ``noise`` scales the
    PET noise, ``patient_effect`` the patients' regional increases (0: none)."""
    rng = np.random.default_rng(session.pose_seed)
    pose = rigid(rng, rot_deg=6.0, trans_mm=5.0)
    t1_shape, t1_affine = scanner_grid(rng, spec.t1_fov, spec.t1_voxel, orientation)
    points = grid_points(t1_shape, t1_affine)
    q = apply(np.linalg.inv(pose @ person.to_subject), points)
    q = q + person.displacement(q)
    effect = model.effects[subject.group] * patient_effect
    cont = sample(np.stack([model.t1w, model.suv, effect, model.sinus, model.brain,
                            *model.variation]), model.affine, q)
    t1w, suv, eff, sinus, brain, *variation = (c.reshape(t1_shape) for c in cont)
    # this person's tissue composition: GM gained from WM, GM lost to CSF
    from_wm, to_csf = (c.reshape(t1_shape) for c in person.composition(q))
    t1w = t1w + from_wm * variation[0] + to_csf * variation[2]
    suv = suv + from_wm * variation[1] + to_csf * variation[3]
    tissue = sample(model.tissue, model.affine, q, mode="nearest").reshape(t1_shape)
    brain_mask = (brain > 0.5).astype(np.uint8)

    scale = subject.subject_factor * session.retest
    nondisplaceable = np.minimum(suv, ND_SUV)
    specific = (suv - nondisplaceable) * subject.specific_binding * (1.0 + eff * subject.severity)
    true_suv = (scale * (nondisplaceable + specific)).astype(np.float32)
    sigma_vox = PET_FWHM_MM / 2.3548 / spec.t1_voxel
    smooth_suv = ndimage.gaussian_filter(true_suv, sigma_vox).astype(np.float32)

    # T1w: subtle trace of the inflammation, bias field, Rician noise, scanner units
    signal = t1w * (1.0 - t1w_trace * eff * subject.severity) * _bias_field(rng, t1_shape)
    noise_sd = 0.025
    noisy = np.sqrt((signal + rng.normal(0, noise_sd, t1_shape)) ** 2
                    + rng.normal(0, noise_sd, t1_shape) ** 2)
    t1_units = np.clip(noisy * rng.uniform(700, 1000), 0, 32000).astype(np.int16)

    out = {
        "t1w": _img(t1_units, t1_affine, np.int16),
        "brain_mask": _img(brain_mask, t1_affine, np.uint8),
        "dseg": _img(tissue.astype(np.uint8), t1_affine, np.uint8),
        "true_suv": _img(true_suv, t1_affine),
        "truesmooth_suv": _img(smooth_suv, t1_affine),
    }
    truth = {"orientation": orientation, "template_to_subject": person.to_subject.tolist(),
             "session_pose": pose.tolist(), "suv_scale": scale,
             "specific_binding": subject.specific_binding, "nondisplaceable_suv": ND_SUV,
             "group_effect_severity": subject.severity,
             "gm_from_wm_sd": round(float(person.gm_from_wm.field.std()), 4),
             "gm_to_csf_mean": round(float(person.gm_to_csf.field.mean()), 4)}
    if subject.has_pet:
        pet_offset = rigid(rng, rot_deg=3.0, trans_mm=6.0)  # PET world = offset(T1w world)
        pet_shape, pet_affine = scanner_grid(rng, spec.pet_fov, spec.pet_voxel, "LAS",
                                             oblique_deg=0.0, jitter_mm=4.0)
        pet_grid = grid_points(pet_shape, pet_affine)
        vascular = ndimage.gaussian_filter(sinus, sigma_vox)

        def pet_frames(to_t1w_world: np.ndarray) -> np.ndarray:
            on_pet = sample(np.stack([smooth_suv, vascular]), t1_affine,
                            apply(to_t1w_world, pet_grid))
            conc = (on_pet[0].reshape(pet_shape) * session.dose_mbq * 1e6
                    / (session.weight_kg * 1e3))
            return dynamic_frames(conc, np.clip(on_pet[1].reshape(pet_shape), 0, 1), size, rng,
                                  noise, session.injection_lead_s, spec.pet_voxel)

        frames = pet_frames(np.linalg.inv(pet_offset))
        if session.head_motion:  # the head moved in the scanner from MOTION_ONSET_MIN on
            motion = rigid(np.random.default_rng([session.pose_seed, 1]), rot_deg=3.0,
                           trans_mm=3.0)
            late = frame_schedule(size)[0] + session.injection_lead_s >= MOTION_ONSET_MIN * 60
            frames[..., late] = pet_frames(np.linalg.inv(motion @ pet_offset))[..., late]
            truth.update({"pet_head_motion": motion.tolist(),
                          "pet_head_motion_from_frame": int(np.argmax(late))})
        pet = nib.Nifti1Image(frames, pet_affine)
        pet.header.set_xyzt_units("mm", "sec")
        pet.set_sform(pet_affine, 1)
        pet.set_qform(pet_affine, 1)
        pet.set_data_dtype(np.int16)  # scanner-like storage with scl_slope
        out["pet"] = pet
        truth.update({"pet_to_t1w_world": np.linalg.inv(pet_offset).tolist(),
                      "dose_mbq": session.dose_mbq, "weight_kg": session.weight_kg,
                      "pet_fwhm_mm": PET_FWHM_MM})
    out["truth"] = truth
    return out


def _img(data, affine, dtype=np.float32) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_sform(affine, 1)
    img.set_qform(affine, 1)
    return img


T1W_SIDECAR = {"Modality": "MR", "MagneticFieldStrength": 3, "Manufacturer": "Siemens",
               "ManufacturersModelName": "Biograph_mMR", "PulseSequenceType": "MPRAGE",
               "RepetitionTime": 2.53, "EchoTime": 0.00164, "InversionTime": 1.1,
               "FlipAngle": 7, "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"]}


def _write_session(out: Path, truth_root: Path, subject, session, images, size, spec) -> None:
    rel, name = _session_name(subject, session)
    save_nifti_atomic(images["t1w"], out / rel / "anat" / f"{name}_T1w.nii.gz")
    write_json_atomic(out / rel / "anat" / f"{name}_T1w.json", T1W_SIDECAR)
    t = truth_root / rel
    save_nifti_atomic(images["brain_mask"], t / "anat" / f"{name}_desc-brain_mask.nii.gz")
    save_nifti_atomic(images["dseg"], t / "anat" / f"{name}_dseg.nii.gz")
    save_nifti_atomic(images["true_suv"], t / "pet" / f"{name}_space-T1w_desc-true_pet.nii.gz")
    save_nifti_atomic(images["truesmooth_suv"],
                      t / "pet" / f"{name}_space-T1w_desc-truesmooth_pet.nii.gz")
    record = {"subject": asdict(subject) | {"sessions": None}, "session": asdict(session),
              **images["truth"]}
    write_json_atomic(truth_sidecar_path(t, name), truth_sidecar("true", name, rel, record))
    write_json_atomic(t / "pet" / f"{name}_space-T1w_desc-truesmooth_pet.json",
                      truth_sidecar("truesmooth", name, rel))
    if "pet" in images:
        pet_name = f"{name}_trc-PBR28_pet"
        save_nifti_atomic(images["pet"], out / rel / "pet" / f"{pet_name}.nii.gz")
        weight = session.weight_kg if subject.weight_source == "sidecar" else None
        write_json_atomic(out / rel / "pet" / f"{pet_name}.json",
                          pet_sidecar(size, session.dose_mbq, session.scan_start, weight,
                                      spec.pet_voxel, session.injection_lead_s))


def _write_tables(out: Path, cohort: list[PhantomSubject]) -> None:
    rows = ["participant_id\tage\tsex\tgroup\ttspo_genotype\tweight"]
    for s in cohort:
        rows.append(f"sub-{s.label}\t{s.age}\t{s.sex}\t{s.group}\t{s.genotype}\t{s.weight_kg}")
        if s.weight_source == "sessions.tsv":
            lines = ["session_id\tbody_weight"]
            lines += [f"ses-{x.label}\t{x.weight_kg}" for x in s.sessions]
            write_text_atomic(out / f"sub-{s.label}" / f"sub-{s.label}_sessions.tsv",
                              "\n".join(lines) + "\n")
    write_text_atomic(out / "participants.tsv", "\n".join(rows) + "\n")
    if any(s.weight_source == "sessions.tsv" for s in cohort):
        write_json_atomic(out / "sessions.json", SESSIONS_JSON)
    write_json_atomic(out / "participants.json", {
        "age": {"Description": "age at first scan", "Units": "year"},
        "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
        "group": {"Description": "diagnostic group",
                  "Levels": {"HC": "healthy control", "CLBP": "chronic low back pain",
                             "KOA": "knee osteoarthritis"}},
        "tspo_genotype": {"Description": "TSPO rs6971 binding affinity",
                          "Levels": {"HAB": "high-affinity binder", "MAB": "mixed-affinity binder",
                                     "LAB": "low-affinity binder"}},
        "weight": {"Description": "body weight", "Units": "kg"},
    })


def make_phantom(out: Path, n_subjects: int | None = None, seed: int = 0, size: str = "small",
                 with_sessions: bool = True, progress: bool = True,
                 t1w_trace: float = T1W_TRACE, noise: float = 1.0,
                 patient_effect: float = 1.0,
                 genotypes: tuple[str, ...] = tuple(GENOTYPE_P)) -> Path:
    """Write the phantom BIDS dataset to ``out`` (deterministic for a given seed and size).

    ``t1w_trace``: fractional T1w darkening per unit of fractional SUV increase in the patients'
    affected regions (0: the T1w carries no trace of the inflammation); ``noise``: PET noise
    scale (1: realistic, 0: none); ``patient_effect``: scale of the patients' increases;
    ``genotypes``: the rs6971 genotypes drawn (:func:`~.subjects.make_cohort`)."""
    spec = SIZES[size]
    n_subjects = spec.subjects if n_subjects is None else n_subjects
    out = Path(out)
    cohort = make_cohort(n_subjects, seed, with_sessions, genotypes)
    LOG.info("phantom: %d subjects, size %s, seed %d -> %s", n_subjects, size, seed, out)
    model = build_head_model(spec.template_res)
    truth_root = out / "derivatives" / "phantom-truth"
    jobs = [(s, ses) for s in cohort for ses in s.sessions]
    anatomies = {}
    for subject, session in tqdm(jobs, desc="phantom sessions", disable=not progress, unit="ses"):
        if subject.label not in anatomies:
            rng = np.random.default_rng([seed, subject.index, 7])
            anatomies[subject.label] = Individual.random(rng, model.affine, model.shape,
                                                         subject.age)
        orientation = T1W_ORIENTATIONS[subject.index % len(T1W_ORIENTATIONS)]
        images = render_session(model, spec, size, subject, session, anatomies[subject.label],
                                orientation, t1w_trace, noise, patient_effect)
        _write_session(out, truth_root, subject, session, images, size, spec)
    _write_tables(out, cohort)
    write_json_atomic(out / "dataset_description.json", {
        "Name": "bids_tspo phantom: synthetic T1w MRI and [11C]PBR28 PET",
        "BIDSVersion": "1.9.0", "DatasetType": "raw", "License": "CC0",
        "GeneratedBy": [{"Name": "bids_tspo-phantom", "Version": __version__}],
    })
    write_text_atomic(out / "README", (
        "Synthetic BIDS dataset made by bids_tspo-phantom (not real data).\n"
        f"size={size} seed={seed} subjects={n_subjects}\n"
        "Anatomy: nilearn MNI152 warped per subject, with individual GM/WM/CSF "
        "composition; PET: [11C]PBR28-like 4D, Bq/mL.\n"
        "Noise-free truth in derivatives/phantom-truth/.\n"))
    write_json_atomic(truth_root / "dataset_description.json", {
        "Name": "bids_tspo phantom truth", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        **TRUTH_LINKS,
        "GeneratedBy": [{"Name": "bids_tspo-phantom", "Version": __version__}],
        "PhantomSettings": {"size": size, "seed": seed, "subjects": n_subjects,
                            "with_sessions": with_sessions, "t1w_trace": t1w_trace,
                            "noise": noise, "patient_effect": patient_effect,
                            "genotypes": list(genotypes),
                            "pet_fwhm_mm": PET_FWHM_MM,
                            **asdict(spec)},
    })
    write_text_atomic(out / ".bidsignore", "derivatives/\n")
    return out


def load_truth(truth_json: Path) -> dict:
    """The truth record of a session from its ``desc-true`` sidecar (see
    :func:`~bids_tspo.phantom.bidsmeta.truth_sidecar_path`; older phantoms: ``*_truth.json``)."""
    data = json.loads(Path(truth_json).read_text())
    return data.get("PhantomTruth", data)
