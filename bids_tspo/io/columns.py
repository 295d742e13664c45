"""The group tables of OUTPUT_DIR (``group_<table>.tsv``) with their BIDS column descriptions
(``group_<table>.json``), from the declarative ``data/columns.json``.

>>> describe_column("group_metrics", "baseline_pearson_r_smooth_tpl")["LongName"]
'Baseline Pearson r, true PET at 4 mm, template space'
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .atomic import write_json_atomic, write_text_atomic


@lru_cache(maxsize=1)
def _columns() -> dict:
    return json.loads(resources.files("bids_tspo").joinpath("data/columns.json").read_text())


def describe_column(table: str, column: str) -> dict | None:
    """BIDS description (``LongName``, ``Description``, ``Units``) of a group-table column,
    from ``data/columns.json``: metric names compose with ``baseline_``, ``_smooth`` and
    ``_tpl``, and ``{}`` entries match a genotype or group label; a table with ``_same_as``
    takes that table's descriptions. None when unknown.

    >>> describe_column("group_region_stats", "wilcoxon_p_HC")["LongName"]
    'Wilcoxon p, group HC'
    >>> describe_column("group_region_stats", "wilcoxon_q_HC")["LongName"]
    'Wilcoxon p, group HC, BH q'
    """
    spec, known = _columns(), _columns().get(table, {})
    if "_same_as" in known:  # a table with another's columns (some described anew)
        known = spec[known["_same_as"]] | {k: v for k, v in known.items() if k != "_same_as"}
    if column in known:
        return dict(known[column])
    for key, entry in known.items():
        head, placeholder, tail = key.partition("{}")
        label = column[len(head): len(column) - len(tail)]
        if placeholder and column == head + label + tail and label:
            return {k: v.replace("{}", label) for k, v in entry.items()}
    parts = column.split("_")
    if "q" in parts:  # X_q: the Benjamini-Hochberg q of the p column X_p
        parts[parts.index("q")] = "p"
        base = describe_column(table, "_".join(parts))
        if base is not None:
            return {k: v.replace("{}", base.get(k, "")) for k, v in spec["q_value"].items()}
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
