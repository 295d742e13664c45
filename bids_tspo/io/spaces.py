"""Template, brain mask and atlas resolution. Never downloads anything at run time.

* Template: TemplateFlow's ``MNI152NLin2009cAsym`` when its files are present locally
  (``$TEMPLATEFLOW_HOME``, as baked into the container), otherwise nilearn's shipped MNI152
  (ICBM 2009a symmetric, ``MNI152NLin2009aSym``).

Atlases on these spaces are :mod:`bids_tspo.io.atlases`.

>>> tpl = resolve_template(resolution=2)
>>> tpl.name in (TEMPLATEFLOW_NAME, NILEARN_NAME), tpl.load()[1].shape[:3]
(True, (99, 117, 95))
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib

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
