"""Every output name of OUTPUT_DIR, built and parsed here (no other module spells one), and
the participant derivatives of a session as a frozen record (:class:`SessionFiles`).

>>> s = Session("01", "02", ())
>>> str(anat_path(Path("/out"), s, desc="preproc", suffix="T1w"))
'/out/sub-01/ses-02/anat/sub-01_ses-02_desc-preproc_T1w.nii.gz'
>>> parse_name("sub-01_ses-02_trc-PBR28_space-T1w_desc-suv_pet.nii.gz")
{'sub': '01', 'ses': '02', 'trc': 'PBR28', 'space': 'T1w', 'desc': 'suv', 'suffix': 'pet',
 'extension': '.nii.gz'}
>>> session_record("sub-01_ses-02").reldir.as_posix()
'sub-01/ses-02'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputDataError, describe
from .layout import Session

LOG = logging.getLogger(__name__)
# BIDS entity order (the specification's entity table) of the entities outputs carry
ENTITY_ORDER = ("task", "acq", "ce", "trc", "stain", "rec", "dir", "run", "mod", "echo", "flip",
                "inv", "mt", "part", "proc", "hemi", "space", "desc")
SESSION_ENTITIES = ("sub", "ses")
EXTENSIONS = (".nii.gz", ".nii", ".json", ".h5", ".tsv", ".html", ".svg")


def parse_name(name: str | Path) -> dict[str, str]:
    """Entities, ``suffix`` and ``extension`` of a BIDS file name (the inverse of the
    builders below)."""
    name = Path(name).name
    extension = next((e for e in EXTENSIONS if name.endswith(e)), Path(name).suffix)
    parts = name[: len(name) - len(extension)].split("_")
    out = dict(part.split("-", 1) for part in parts[:-1] if "-" in part)
    return out | {"suffix": parts[-1], "extension": extension}


def session_name(path: str | Path) -> str:
    """``sub-<l>[_ses-<s>]`` of a derivative file: the prefix every output of a session has.

    >>> session_name("/out/sub-01/anat/sub-01_desc-preproc_T1w.nii.gz")
    'sub-01'
    """
    ent = parse_name(path)
    return f"sub-{ent['sub']}" + (f"_ses-{ent['ses']}" if "ses" in ent else "")


def session_record(name: str) -> Session:
    """The :class:`Session` key of an output prefix ``sub-<l>[_ses-<s>]`` (no input paths)."""
    ent = parse_name(f"{name}_x")
    return Session(ent["sub"], ent.get("ses"), ())


def _entities(session: Session, **entities: str | None) -> str:
    """``sub-<l>[_ses-<s>]`` and ``entities`` in BIDS order (an entity BIDS does not order
    comes before ``space``, alphabetically)."""
    def rank(key: str) -> tuple:
        return ((ENTITY_ORDER.index(key), "") if key in ENTITY_ORDER
                else (ENTITY_ORDER.index("space") - 0.5, key))

    keys = sorted((k for k, v in entities.items() if v), key=rank)
    return "_".join([session.name, *(f"{key}-{entities[key]}" for key in keys)])


def pet_entities(source: str | Path) -> dict[str, str]:
    """The entities of an input PET file that its outputs keep: every one but ``sub``/``ses``
    (``task``, ``trc``, ``rec``, ``run``, ...), so that two PETs of a session never share an
    output name.

    >>> pet_entities("sub-01_ses-1_task-rest_trc-PBR28_rec-acdyn_run-2_pet.nii.gz")
    {'task': 'rest', 'trc': 'PBR28', 'rec': 'acdyn', 'run': '2'}
    """
    ent = parse_name(source)
    return {k: v for k, v in ent.items()
            if k not in (*SESSION_ENTITIES, "suffix", "extension")}


def anat_path(out: Path, session: Session, *, suffix: str, desc: str | None = None,
              space: str | None = None, ext: str = ".nii.gz") -> Path:
    name = _entities(session, space=space, desc=desc)
    return Path(out) / session.reldir / "anat" / f"{name}_{suffix}{ext}"


def xfm_path(out: Path, session: Session, *, src: str, dst: str) -> Path:
    return (Path(out) / session.reldir / "anat"
            / f"{session.name}_from-{src}_to-{dst}_mode-image_xfm.h5")


def pet_path(out: Path, session: Session, *, desc: str, space: str, ext: str = ".nii.gz",
             **entities: str | None) -> Path:
    """Measured maps carry the PET entities (:func:`pet_entities`: task, trc, rec, run, ...);
    synthetic maps the T1w ones.

    >>> pet_path(Path("/o"), Session("01", None, ()), desc="suv", space="T1w",
    ...          **pet_entities("sub-01_task-rest_trc-PBR28_rec-acdyn_pet.nii.gz")).name
    'sub-01_task-rest_trc-PBR28_rec-acdyn_space-T1w_desc-suv_pet.nii.gz'
    """
    name = _entities(session, **entities, space=space, desc=desc)
    return Path(out) / session.reldir / "pet" / f"{name}_pet{ext}"


def fov_mask_path(out: Path, session: Session, *, space: str, **entities: str | None) -> Path:
    """The PET field of view (voxels the PET imaged) on another grid: see :func:`fov_mask_for`."""
    return fov_mask_for(pet_path(out, session, desc="suv", space=space, **entities))


def fov_mask_for(suv: Path) -> Path:
    """The field-of-view mask of a ``desc-suv`` map. It is on the T1w grid and BIDS has masks
    in ``anat/`` but none in ``pet/``, and anat masks have no ``trc-``: so it lives in
    ``anat/``, keeps the other entities of the SUV map and carries the tracer in ``desc``.

    >>> fov_mask_for(Path("/o/sub-01/pet/sub-01_trc-PBR28_run-2_space-T1w_desc-suv_pet.nii.gz"))
    PosixPath('/o/sub-01/anat/sub-01_run-2_space-T1w_desc-fovPBR28_mask.nii.gz')
    """
    ent = parse_name(suv)
    keep = [f"{key}-{value}" for key, value in ent.items()
            if key not in ("trc", "desc", "suffix", "extension")]
    name = "_".join([*keep, f"desc-fov{ent.get('trc', '')}", "mask.nii.gz"])
    return Path(suv).parent.parent / "anat" / name


def find_pet(pet_dir: Path, name: str, *, desc: str, space: str,
             ext: str = ".nii.gz") -> list[Path]:
    """Measured PET maps of session ``name`` in ``pet_dir`` (their names carry the PET
    entities, e.g. ``trc-``/``run-``, so they are found rather than built); ``ext=".json"``:
    their sidecars."""
    return sorted(Path(pet_dir).glob(f"{name}_*space-{space}_desc-{desc}_pet{ext}"))


def find_xfm(anat_dir: Path, name: str, src: str = "T1w") -> tuple[str, Path] | None:
    """The template name and the participant-level transform of session ``name``:
    T1w -> template (``src="T1w"``) or template -> T1w (any other ``src``)."""
    pattern = (f"{name}_from-T1w_to-*_mode-image_xfm.h5" if src == "T1w"
               else f"{name}_from-*_to-T1w_mode-image_xfm.h5")
    for path in sorted(Path(anat_dir).glob(pattern)):
        ent = parse_name(path)
        return (ent["to"] if src == "T1w" else ent["from"]), path
    return None


def sidecar_path(nifti: Path) -> Path:
    name = Path(nifti).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return Path(nifti).with_name(name[: -len(ext)] + ".json")
    raise ValueError(f"not a NIfTI path: {nifti}")


def report_path(out: Path, subject: str) -> Path:
    return Path(out) / f"sub-{subject}.html"


def figure_path(out: Path, subject: str, name: str, key: str) -> Path:
    """A participant report's figure ``sub-<l>/figures/<session>_<key>.svg``."""
    return Path(out) / f"sub-{subject}" / "figures" / f"{name}_{key}.svg"


def group_table_path(out: Path, table: str) -> Path:
    """``group_<table>.tsv`` at the top of OUTPUT_DIR."""
    return Path(out) / f"group_{table}.tsv"


def group_map_path(out: Path, *, space: str, desc: str, suffix: str = "pet") -> Path:
    """A group-level map ``group_space-<TPL>_desc-<desc>_<suffix>.nii.gz`` at the top of
    OUTPUT_DIR (``.bidsignore``-d: BIDS has no rule for group maps)."""
    return Path(out) / f"group_space-{space}_desc-{desc}_{suffix}.nii.gz"


def find_group_map(out: Path, desc: str, suffix: str = "pet") -> Path | None:
    """The newest group map of ``desc`` in OUTPUT_DIR, in whichever template space."""
    found = sorted(Path(out).glob(f"group_space-*_desc-{desc}_{suffix}.nii.gz"),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


@dataclass(frozen=True)
class SessionFiles:
    """Participant-level derivatives of one session (``suv`` is None for MRI-only)."""

    name: str
    subject: str
    session: str | None
    t1w: Path
    mask: Path
    suv: Path | None = None
    group: str = "n/a"
    genotype: str = "n/a"

    @classmethod
    def of(cls, out: Path, session: Session, genotype: str = "n/a") -> "SessionFiles":
        """The T1w derivatives of ``session`` in ``out`` (no PET: synthesis inputs)."""
        return cls(session.name, session.subject, session.session,
                   anat_path(out, session, desc="preproc", suffix="T1w"),
                   anat_path(out, session, desc="brain", suffix="mask"), genotype=genotype)

    @property
    def record(self) -> Session:
        """The :class:`~bids_tspo.io.layout.Session` of these files (for derivative names)."""
        return Session(self.subject, self.session, (self.t1w,))

    @property
    def pet_dir(self) -> Path:
        return self.t1w.parent.parent / "pet"

    def xfm(self, src: str = "T1w") -> tuple[str, Path] | None:
        """(template name, transform) written at participant level (see :func:`find_xfm`)."""
        return find_xfm(self.t1w.parent, self.name, src)

    @property
    def from_template(self) -> Path | None:
        """The participant-level template -> T1w transform, when written."""
        found = self.xfm(src="template")
        return found[1] if found else None

    def suv_in(self, space: str) -> Path | None:
        """The chosen SUV map (``suv``, the one a session with several PETs trains and is
        scored on) in another space; None when there is none or it was not written."""
        if self.suv is None:
            return None
        ent = pet_entities(self.suv)
        keep = {k: v for k, v in ent.items() if k not in ("space", "desc")}
        path = self.pet_dir / f"{_entities(self.record, **keep, space=space, desc='suv')}_pet.nii.gz"
        return path if path.is_file() else None

    @property
    def fov(self) -> Path | None:
        """The PET field-of-view mask written beside the SUV map (None: none, or older runs)."""
        path = fov_mask_for(self.suv) if self.suv is not None else None
        return path if path is not None and path.is_file() else None

    def imaged(self, brain: np.ndarray) -> np.ndarray:
        """``brain`` (boolean, T1w grid) limited to the PET field of view when it is known:
        where PET targets are normalised, trained on and scored."""
        fov = self.fov
        return brain if fov is None else brain & (read_derivative(fov)[1] > 0)


def read_derivative(path: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A participant-level derivative and its data (float32); one that cannot be read is an
    input error naming it."""
    try:
        img = nib.load(path)
        return img, np.asarray(img.dataobj, np.float32)
    except Exception as exc:  # noqa: BLE001 - nibabel/zlib raise many kinds for broken files
        raise InputDataError(f"{path}: cannot be read ({describe(exc, 120)}); rerun the "
                             "participant level for this session") from None


def discover(output_dir: Path, table: dict[str, dict] | None = None,
             group_column: str = "group", genotype_column: str = "tspo_genotype"
             ) -> list[SessionFiles]:
    """Sessions with a preprocessed T1w and brain mask in ``output_dir`` (SUV when present)."""
    from .tables import row_value

    table = table or {}
    found = []
    for t1w in sorted(Path(output_dir).glob("sub-*/**/anat/*_desc-preproc_T1w.nii.gz")):
        session = session_record(session_name(t1w))
        mask = anat_path(output_dir, session, desc="brain", suffix="mask")
        if not mask.is_file():
            continue
        suvs = find_pet(t1w.parent.parent / "pet", session.name, desc="suv", space="T1w")
        if len(suvs) > 1:
            LOG.warning("%s: %d SUV maps (%s); training and evaluation use %s (the first by "
                        "name); choose one with --bids-filter-file at the participant level, "
                        "e.g. {\"pet\": {\"reconstruction\": \"acdyn\"}}", session.name,
                        len(suvs), ", ".join(p.name for p in suvs), suvs[0].name)
        row = table.get(session.subject, {})
        found.append(SessionFiles(session.name, session.subject, session.session, t1w, mask,
                                  suvs[0] if suvs else None,
                                  row_value(row, group_column),
                                  row_value(row, genotype_column, genotype=True)))
    return found
