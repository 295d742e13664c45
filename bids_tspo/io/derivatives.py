"""Every output name and sidecar of OUTPUT_DIR is built here, and written atomically.

Writes go to a temporary name in the destination folder and are renamed into place, so a
killed run never leaves a partial file and concurrent participant runs into one OUTPUT_DIR
never see each other's half-written files.

>>> from bids_tspo.io.layout import Session
>>> from pathlib import Path
>>> s = Session("01", "02", (Path("sub-01_ses-02_T1w.nii.gz"),))
>>> str(anat_path(Path("/out"), s, desc="preproc", suffix="T1w"))
'/out/sub-01/ses-02/anat/sub-01_ses-02_desc-preproc_T1w.nii.gz'
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .. import CODE_URL, __version__
from .layout import Session
from ..errors import OutputError

BIDSIGNORE = "logs/\nmodels/\n*.html\n*/figures/\ngroup_*.tsv\ngroup_*.json\n"


@contextmanager
def atomic_path(dest: Path, suffix: str | None = None):
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` on success."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {dest.parent}: {exc.strerror}") from None
    ext = suffix if suffix is not None else "".join(dest.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{ext}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(dest: Path, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_json_atomic(dest: Path, data: dict) -> Path:
    return write_text_atomic(dest, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_nifti_atomic(img, dest: Path) -> Path:
    """Save a nibabel image atomically (the temporary keeps the .nii/.nii.gz suffix)."""
    with atomic_path(dest) as tmp:
        img.to_filename(str(tmp))
    return Path(dest)


def container(env=None) -> dict | None:
    """``GeneratedBy.Container`` (BIDS): Singularity/Apptainer when running in one, Docker in
    the image of our Dockerfile (which sets ``BIDS_TSPO_IMAGE``), else None.

    >>> container({"BIDS_TSPO_IMAGE": "bids_tspo:0.1.0-cuda"})
    {'Type': 'docker', 'Tag': 'bids_tspo:0.1.0-cuda'}
    >>> container({"BIDS_TSPO_IMAGE": "bids_tspo:0.1.0-cuda", "APPTAINER_CONTAINER": "/i/t.sif"})
    {'Type': 'singularity', 'Tag': 'bids_tspo:0.1.0-cuda', 'URI': 'file:///i/t.sif'}
    >>> container({}) is None
    True
    """
    env = os.environ if env is None else env
    image = env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER")
    tag = env.get("BIDS_TSPO_IMAGE")
    if image:
        return ({"Type": "singularity"} | ({"Tag": tag} if tag else {})
                | {"URI": Path(image).as_uri() if Path(image).is_absolute() else image})
    return {"Type": "docker", "Tag": tag} if tag else None


def dataset_description(bids_dir: Path | None = None, name: str = "bids_tspo") -> dict:
    generated = {"Name": "bids_tspo", "Version": __version__, "CodeURL": CODE_URL}
    if (box := container()) is not None:
        generated["Container"] = box
    desc = {
        "Name": f"{name} derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
    }
    if bids_dir is not None:
        desc["SourceDatasets"] = [{"URL": Path(bids_dir).resolve().as_uri()}]
    return desc


def init_output_dir(output_dir: Path, bids_dir: Path | None = None) -> None:
    """Write ``dataset_description.json`` and ``.bidsignore`` (idempotent, race-safe)."""
    output_dir = Path(output_dir)
    desc_path = output_dir / "dataset_description.json"
    wanted = dataset_description(bids_dir)
    current = None
    if desc_path.is_file():
        try:
            current = json.loads(desc_path.read_text())
        except (OSError, ValueError):
            current = None
    if current != wanted:
        write_json_atomic(desc_path, wanted)
    ignore = output_dir / ".bidsignore"
    if not ignore.is_file() or ignore.read_text() != BIDSIGNORE:
        write_text_atomic(ignore, BIDSIGNORE)


def bids_uri(path: Path, root: Path, dataset: str = "raw") -> str:
    """BIDS URI of ``path`` inside dataset ``root``: ``bids:<dataset>:<relative path>``."""
    return f"bids:{dataset}:{Path(path).resolve().relative_to(Path(root).resolve()).as_posix()}"


def _entities(session: Session, **entities: str | None) -> str:
    parts = [session.name]
    for key in ("trc", "rec", "run", "space", "desc"):
        value = entities.get(key)
        if value:
            parts.append(f"{key}-{value}")
    return "_".join(parts)


def anat_path(out: Path, session: Session, *, suffix: str, desc: str | None = None,
              space: str | None = None, ext: str = ".nii.gz") -> Path:
    name = _entities(session, space=space, desc=desc)
    return Path(out) / session.reldir / "anat" / f"{name}_{suffix}{ext}"


def xfm_path(out: Path, session: Session, *, src: str, dst: str) -> Path:
    return (Path(out) / session.reldir / "anat"
            / f"{session.name}_from-{src}_to-{dst}_mode-image_xfm.h5")


def pet_path(out: Path, session: Session, *, desc: str, space: str,
             trc: str | None = None, run: str | None = None, ext: str = ".nii.gz") -> Path:
    """Measured maps carry the PET entities (trc, run); synthetic maps the T1w ones."""
    name = _entities(session, trc=trc, run=run, space=space, desc=desc)
    return Path(out) / session.reldir / "pet" / f"{name}_pet{ext}"


def fov_mask_path(out: Path, session: Session, *, space: str, trc: str | None = None,
                  run: str | None = None) -> Path:
    """The PET field of view (voxels the PET imaged) on another grid, named like the SUV map."""
    name = _entities(session, trc=trc, run=run, space=space, desc="fov")
    return Path(out) / session.reldir / "pet" / f"{name}_mask.nii.gz"


def fov_mask_for(suv: Path) -> Path:
    """The field-of-view mask written beside a ``desc-suv`` map (see :func:`fov_mask_path`)."""
    return Path(suv).with_name(Path(suv).name.replace("_desc-suv_pet.nii.gz",
                                                      "_desc-fov_mask.nii.gz"))


def find_pet(pet_dir: Path, name: str, *, desc: str, space: str) -> list[Path]:
    """Measured PET maps of session ``name`` in ``pet_dir`` (their names carry the PET
    entities, e.g. ``trc-``/``run-``, so they are found rather than built)."""
    return sorted(Path(pet_dir).glob(f"{name}_*space-{space}_desc-{desc}_pet.nii.gz"))


def sidecar_path(nifti: Path) -> Path:
    name = Path(nifti).name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return Path(nifti).with_name(name[: -len(ext)] + ".json")
    raise ValueError(f"not a NIfTI path: {nifti}")


@lru_cache(maxsize=1)
def _columns() -> dict:
    return json.loads(resources.files("bids_tspo").joinpath("data/columns.json").read_text())


def describe_column(table: str, column: str) -> dict | None:
    """BIDS description (``LongName``, ``Description``, ``Units``) of a group-table column,
    from ``data/columns.json``: metric names compose with ``baseline_``, ``_smooth`` and
    ``_tpl``, and ``{}`` entries match a genotype or group label. None when unknown.

    >>> describe_column("group_metrics", "baseline_pearson_r_smooth_tpl")["LongName"]
    'Baseline Pearson r, true PET at 4 mm, template space'
    >>> describe_column("group_region_stats", "wilcoxon_p_HC")["LongName"]
    'Wilcoxon p, group HC'
    """
    spec, known = _columns(), _columns().get(table, {})
    if column in known:
        return dict(known[column])
    for key, entry in known.items():
        head, placeholder, tail = key.partition("{}")
        label = column[len(head): len(column) - len(tail)]
        if placeholder and column == head + label + tail and label:
            return {k: v.replace("{}", label) for k, v in entry.items()}
    for modifier, entry in spec["modifiers"].items():
        prefix = modifier.endswith("_")
        if column.startswith(modifier) if prefix else column.endswith(modifier):
            inner = column[len(modifier):] if prefix else column[: -len(modifier)]
            base = describe_column(table, inner)
            if base is not None:
                return base | {k: entry[k].replace("{}", base[k]) for k in entry}
    return None


def write_table(out: Path, table: str, frame) -> Path:
    """``group_<table>.tsv`` (n/a for missing values) and its BIDS sidecar
    ``group_<table>.json`` describing each column, both atomically."""
    columns = {c: d for c in frame.columns if (d := describe_column(table, c)) is not None}
    write_json_atomic(Path(out) / f"{table}.json", columns)
    return write_text_atomic(Path(out) / f"{table}.tsv",
                             frame.to_csv(sep="\t", index=False, na_rep="n/a",
                                          float_format="%.6g"))


def report_path(out: Path, subject: str) -> Path:
    return Path(out) / f"sub-{subject}.html"


def synth_sidecar(sources: list[str], units: str, model_id: str, folds: list[int],
                  oof_fold: int | None = None, space: str = "T1w", sd: bool = False) -> dict:
    """Sidecar of a synthetic map (``desc-synth``) or its fold SD (``desc-synthstd``)."""
    meta = {
        "Sources": sources,
        "SkullStripped": True,
        "Units": units,
        "Description": ("voxelwise SD across fold models" if sd else
                        "synthetic TSPO PET from T1w (3D U-Net, mean of fold models and "
                        "left-right flips)"),
        "ModelID": model_id,
        "FoldsUsed": folds,
        "SpatialReference": space,
    }
    if oof_fold is not None:
        meta["CrossValidationFold"] = oof_fold
        meta["Description"] = ("out-of-fold synthetic TSPO PET from T1w: the fold model that "
                               "never saw this subject (mean with its left-right flip)")
    return meta


def find_xfm(out: Path, session: Session, src: str = "T1w") -> tuple[str, Path] | None:
    """The template name and T1w->template transform written at participant level."""
    anat = Path(out) / session.reldir / "anat"
    pattern = (f"{session.name}_from-T1w_to-*_mode-image_xfm.h5" if src == "T1w"
               else f"{session.name}_from-*_to-T1w_mode-image_xfm.h5")
    for path in sorted(anat.glob(pattern)):
        name = path.name.split("_from-")[1].split("_mode-")[0]
        tpl = name.split("_to-")[1] if src == "T1w" else name.split("_to-")[0]
        return tpl, path
    return None
