"""``--bids-filter-file``: which T1w and PET images of a session the app takes, by BIDS
entities (as fMRIPrep's filter files), e.g. one tracer where a dataset has several, or one
T1w acquisition::

    {"t1w": {"acquisition": "mprage", "run": 1}, "pet": {"tracer": "PBR28"}}
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError, describe

FILTER_KEYS = ("t1w", "pet")
_APP_ENTITIES = {"subject", "session", "suffix", "datatype", "extension"}


def read_filters(path: Path) -> dict[str, dict]:
    """A ``--bids-filter-file`` (as fMRIPrep's): ``{"t1w": {entity: value}, "pet": {...}}``
    with pybids' long entity names; a value is a label, a list of labels, ``null`` (the entity
    must be absent) or ``"*"`` (any value). A malformed file is a usage error naming it.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "filters.json"
    >>> _ = f.write_text('{"pet": {"tracer": "PBR28"}, "t1w": {"acquisition": null}}')
    >>> read_filters(f)
    {'pet': {'tracer': 'PBR28'}, 't1w': {'acquisition': None}}
    >>> _ = f.write_text('{"bold": {"task": "rest"}}'); read_filters(f)
    Traceback (most recent call last):
    ...
    bids_tspo.errors.UsageError: .../filters.json: unknown key(s) 'bold'; a BIDS filter ...
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable JSON filter file ({describe(exc)})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(f"{path}: a BIDS filter file maps t1w and/or pet to "
                         '{entity: value} objects, e.g. {"pet": {"tracer": "PBR28"}}')
    unknown = sorted(set(data) - set(FILTER_KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; a BIDS "
                         "filter file has t1w and/or pet")
    for key, entities in data.items():
        fixed = sorted(set(entities) & _APP_ENTITIES)
        if fixed:
            raise UsageError(f"{path}: {key} filters {', '.join(fixed)}, which the app sets "
                             "itself (use --participant-label/--session-label to select)")
        for entity, value in entities.items():
            values = value if isinstance(value, list) else [value]
            if not values or not all(v is None or isinstance(v, (str, int)) for v in values):
                raise UsageError(f"{path}: {key}.{entity} must be a label, a list of labels, "
                                 f'null or "*", got {json.dumps(value)}')
    return data


def pybids_filters(layout, filters: dict) -> dict:
    """Filter values as pybids queries (``null`` -> Query.NONE, ``"*"`` -> Query.ANY); an
    entity the BIDS specification does not define (e.g. ``acq`` for ``acquisition``) is a
    usage error listing those it does."""
    from bids.layout import Query

    known = {name for config in layout.config.values() for name in config.entities}
    unknown = sorted(set(filters) - known)
    if unknown:
        plural = "ies" if len(unknown) > 1 else "y"
        raise UsageError(f"--bids-filter-file: unknown BIDS entit{plural} "
                         f"{', '.join(unknown)} (BIDS entities: "
                         f"{', '.join(sorted(known - _APP_ENTITIES))})")
    special = {None: Query.NONE, "*": Query.ANY}

    def query(value):  # also inside lists: [null, 1] is "absent or 1" (as fMRIPrep's files)
        return special.get(value, value)

    return {k: [query(x) for x in v] if isinstance(v, list) else query(v)
            for k, v in filters.items()}
