"""OUTPUT_DIR as a BIDS-Derivatives dataset: ``dataset_description.json``, ``.bidsignore``,
the container that made it, and BIDS URIs of its sources.

>>> container({"BIDS_TSPO_IMAGE": "bids_tspo:0.1.0-cuda"})
{'Type': 'docker', 'Tag': 'bids_tspo:0.1.0-cuda'}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import CODE_URL, __version__
from ..errors import InputDataError
from .atomic import write_json_atomic, write_text_atomic
from .spaces import NILEARN_NAME, TEMPLATEFLOW_NAME, templateflow_files

# No trailing "/": the BIDS validator 3.x does not match "models/" against the folder itself.
# "work": a -w/--work-dir placed in OUTPUT_DIR under that name. Transforms: BIDS has no .h5 rule.
BIDSIGNORE = ("logs\nmodels\nwork\n*.html\nsub-*/figures\n*_xfm.h5\n"
              "group_*.tsv\ngroup_*.json\ngroup_*.nii.gz\n")


def container(env=None) -> dict | None:
    """``GeneratedBy.Container`` (BIDS): Singularity/Apptainer when running in one, Docker in
    the image of our Dockerfile (which sets ``BIDS_TSPO_VARIANT``; ``BIDS_TSPO_IMAGE`` overrides), else None.

    >>> container({"BIDS_TSPO_IMAGE": "bids_tspo:0.1.0-cuda", "APPTAINER_CONTAINER": "/i/t.sif"})
    {'Type': 'singularity', 'Tag': 'bids_tspo:0.1.0-cuda', 'URI': 'file:///i/t.sif'}
    >>> container({"BIDS_TSPO_VARIANT": "cpu"})["Tag"] == f"bids_tspo:{__version__}-cpu"
    True
    >>> container({}) is None
    True
    """
    env = os.environ if env is None else env
    image = env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER")
    tag = env.get("BIDS_TSPO_IMAGE")
    if not tag and env.get("BIDS_TSPO_VARIANT"):  # our image: the version is the package's
        tag = f"bids_tspo:{__version__}-{env['BIDS_TSPO_VARIANT']}"
    if image:
        return ({"Type": "singularity"} | ({"Tag": tag} if tag else {})
                | {"URI": Path(image).as_uri() if Path(image).is_absolute() else image})
    return {"Type": "docker", "Tag": tag} if tag else None


def template_note() -> str:
    """Which template the run uses (an image built with TEMPLATEFLOW=0 has none baked)."""
    if templateflow_files(1) is not None:
        return f"template {TEMPLATEFLOW_NAME} from TemplateFlow"
    return (f"template {NILEARN_NAME} shipped with nilearn (no TemplateFlow files in "
            "TEMPLATEFLOW_HOME, e.g. an image built with TEMPLATEFLOW=0)")


def dataset_description(bids_dir: Path | None = None, name: str = "bids_tspo") -> dict:
    generated = {"Name": "bids_tspo", "Version": __version__, "CodeURL": CODE_URL,
                 "Description": template_note()}
    if (box := container()) is not None:
        generated["Container"] = box
    desc = {
        "Name": f"{name} derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
    }
    if bids_dir is not None:  # "raw": the dataset of the bids:raw: URIs in Sources
        desc["SourceDatasets"] = [{"URL": Path(bids_dir).resolve().as_uri()}]
        desc["DatasetLinks"] = {"raw": desc["SourceDatasets"][0]["URL"]}
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
    """BIDS URI of ``path`` inside dataset ``root``: ``bids:<dataset>:<relative path>``.

    The path is taken as listed in the dataset, symbolic links not followed: a file that is a
    link into a store outside the dataset (a symlink farm, git-annex's ``.git/annex/objects``)
    keeps its place in the dataset.

    >>> bids_uri(Path("/d/bids/sub-01/anat/../anat/sub-01_T1w.nii.gz"), Path("/d/bids"))
    'bids:raw:sub-01/anat/sub-01_T1w.nii.gz'
    """
    listed, root = Path(os.path.abspath(path)), Path(root)
    for base in (Path(os.path.abspath(root)), root.resolve()):
        if base == listed or base in listed.parents:
            return f"bids:{dataset}:{listed.relative_to(base).as_posix()}"
    raise InputDataError(f"{path}: not inside the BIDS dataset {root}; no BIDS URI can name it")
