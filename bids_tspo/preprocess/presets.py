"""ANTs settings as data: ``bids_tspo/data/ants_presets/{standard,sloppy}.json``.

>>> load_preset(sloppy=True)["template_resolution"]
2
"""

from __future__ import annotations

import json
from importlib import resources


def _tuples(value):
    """antspyx wants tuples (not lists) for per-level settings."""
    if isinstance(value, dict):
        return {k: (v if k == "convergence" else _tuples(v)) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(value)
    return value


def load_preset(sloppy: bool = False) -> dict:
    name = "sloppy" if sloppy else "standard"
    text = resources.files("bids_tspo").joinpath(f"data/ants_presets/{name}.json").read_text()
    preset = _tuples(json.loads(text))
    preset["name"] = name
    return preset
