"""The BIDS tables of a dataset: ``participants.tsv`` and ``sub-<l>_sessions.tsv`` rows (all
values as strings), with weight columns their JSON sidecar gives in pounds marked as such.

>>> row_value({"tspo_genotype": " hab"}, "tspo_genotype", genotype=True)
'HAB'
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Mapping

import pandas as pd

from ..errors import InputDataError, describe

LOG = logging.getLogger(__name__)


def is_missing(value) -> bool:
    """The one reading of an absent value in BIDS tables and sidecars: None, NaN, empty,
    ``n/a`` (and the ``na``/``nan``/``None`` that spreadsheets and pandas write).

    >>> [is_missing(v) for v in (None, float("nan"), "", " N/A ", "None", "0", 0)]
    [True, True, True, True, True, False, False]
    """
    if isinstance(value, float):
        return value != value  # NaN
    return value is None or (isinstance(value, str)
                             and value.strip().lower() in ("", "n/a", "na", "nan", "none"))


def read_tsv(path: Path, as_text: bool = False) -> pd.DataFrame | None:
    """The one TSV reader: a tab-separated table (BIDS tables, the group tables), None when
    the file does not exist. ``as_text``: every value as written (``n/a`` kept), for BIDS
    tables whose columns mix numbers and labels; otherwise ``n/a`` is NaN and numbers are
    numbers. A file that cannot be parsed is an input error naming it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        if as_text:
            return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        return pd.read_csv(path, sep="\t", na_values=["n/a"])
    except Exception as exc:  # noqa: BLE001 - pandas raises many kinds
        raise InputDataError(f"{path}: cannot be read as a tab-separated table ({exc})") from None


def read_rows(path: Path, index: str) -> dict[str, dict[str, str]]:
    """Rows of a BIDS TSV keyed by ``index`` (all values as strings; 'n/a' kept), with weight
    columns that the TSV's sidecar gives in pounds marked as such; {} when there is none."""
    table = read_tsv(path, as_text=True)
    if table is None:
        return {}
    if index not in table.columns:
        raise InputDataError(f"{path}: no {index!r} column (columns: {', '.join(table.columns)})")
    weights = set(WEIGHT_COLUMNS) & set(table.columns)
    for column in _pound_columns(Path(path).with_suffix(".json"), weights):
        numeric = pd.to_numeric(table[column], errors="coerce").notna()
        table.loc[numeric, column] = table.loc[numeric, column] + " lb"
    return {row[index]: dict(row) for row in table.to_dict("records")}


WEIGHT_COLUMNS = ("body_weight", "weight")


_POUNDS = ("lb", "lbs", "pound", "pounds", "[lb_av]")
_KILOGRAMS = ("kg", "kgs", "kilogram", "kilograms", "kilo", "kilos")


def _pound_columns(sidecar: Path, columns: set[str]) -> set[str]:
    """Weight ``columns`` whose TSV sidecar gives their ``Units`` in pounds: their plain
    numbers are read as pounds (converted to kg with the SUV). A sidecar that cannot be read,
    ``Units`` that are neither kg nor pounds, or pounds named outside ``Units``: warned, the
    numbers are read as kg (176 lb would pass as 176 kg: check the SUV sidecar's
    ``BodyWeight``)."""
    if not columns or not sidecar.is_file():
        return set()
    try:
        meta = json.loads(sidecar.read_text())
        meta = meta if isinstance(meta, dict) else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        LOG.warning("%s: cannot be read (%s): units of %s unknown, read as kg", sidecar,
                    describe(exc, 80), ", ".join(sorted(columns)))
        return set()
    pounds = set()
    for column in sorted(columns):
        entry = meta.get(column)
        entry = entry if isinstance(entry, dict) else {"Description": entry}
        units = str(entry.get("Units") or "").strip().lower()
        if units in _POUNDS:
            pounds.add(column)
        elif units and units not in _KILOGRAMS:
            LOG.warning("%s: %s Units %r are neither kg nor lb: read as kg", sidecar, column,
                        entry["Units"])
        elif not units and re.search(r"\b(lbs?|pounds?)\b", json.dumps(entry).lower()):
            LOG.warning("%s: %s mentions pounds but has no \"Units\": \"lb\": read as kg",
                        sidecar, column)
    return pounds


def participants_table(bids_dir: Path) -> dict[str, dict[str, str]]:
    """participants.tsv keyed by bare label (without ``sub-``).

    A missing or malformed table is not fatal: a warning is logged and it counts as empty
    (body weight must then come from elsewhere; folds are not stratified).
    """
    path = Path(bids_dir) / "participants.tsv"
    if not path.is_file():
        LOG.warning("%s: missing; no group, genotype or weight from participants.tsv", path)
        return {}
    try:
        rows = read_rows(path, "participant_id")
    except InputDataError as exc:
        LOG.warning("%s (ignored: no group, genotype or weight from it)", exc)
        return {}
    return {key.removeprefix("sub-"): row for key, row in rows.items()}


GENOTYPES = ("HAB", "MAB", "LAB")


def row_value(row: Mapping[str, str], column: str, genotype: bool = False) -> str:
    """A participants.tsv cell, 'n/a' when absent or empty; with ``genotype``, the rs6971
    class spelled as the tables spell it (' hab' -> 'HAB') so it matches across subjects.

    >>> row_value({"tspo_genotype": " mab"}, "tspo_genotype", genotype=True)
    'MAB'
    >>> row_value({"group": ""}, "group")
    'n/a'
    """
    value = row.get(column)
    if is_missing(value):
        return "n/a"
    value = str(value).strip()
    return value.upper() if genotype and value.upper() in GENOTYPES else value


def sessions_table(bids_dir: Path, subject: str) -> dict[str, dict[str, str]]:
    path = Path(bids_dir) / f"sub-{subject}" / f"sub-{subject}_sessions.tsv"
    rows = read_rows(path, "session_id")
    return {key.removeprefix("ses-"): row for key, row in rows.items()}
