"""BIDS input: pybids queries turned into frozen :class:`Session` records.

One :class:`Session` per (subject, session) that is selected, holding its T1w image(s), PET
image(s) with their merged sidecars, and its rows of ``participants.tsv`` and
``sub-<l>_sessions.tsv``. Datasets with and without a session level, several runs, ``trc-``
entities and MRI-only subjects are all represented.

>>> from bids_tspo.phantom import example_dataset
>>> layout = load_layout(example_dataset())
>>> sessions, missing = select_sessions(layout, participants=("01",), sessions=())
>>> sessions[0].name, sessions[0].has_pet, missing
('sub-01_ses-01', True, [])
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from ..errors import InputDataError, MissingInputError, describe
from .filters import pybids_filters
from .tables import participants_table, sessions_table

LOG = logging.getLogger(__name__)


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


class _Record:
    """Frozen records with read-only mappings, picklable (``--nprocs`` sends them to worker
    processes): the mappings travel as dicts and are made read-only again."""

    def __getstate__(self) -> dict:
        return {f.name: dict(v) if isinstance(v, MappingProxyType) else v
                for f in fields(self) for v in (getattr(self, f.name),)}

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            object.__setattr__(self, key,
                               MappingProxyType(value) if isinstance(value, dict) else value)


@dataclass(frozen=True)
class PetImage(_Record):
    """One PET acquisition: image path, merged JSON sidecar and BIDS entities."""

    path: Path
    sidecar: Mapping[str, object] = field(default_factory=_empty, compare=False)
    entities: Mapping[str, str] = field(default_factory=_empty, compare=False)
    problem: str | None = None  # its own sidecar cannot be read: the session's input error

    @property
    def tracer(self) -> str | None:
        return self.entities.get("tracer")


@dataclass(frozen=True)
class Session(_Record):
    """Everything the pipeline needs to know about one (subject, session)."""

    subject: str
    session: str | None
    t1w: tuple[Path, ...]
    pet: tuple[PetImage, ...] = ()
    participant: Mapping[str, str] = field(default_factory=_empty, compare=False)
    session_row: Mapping[str, str] = field(default_factory=_empty, compare=False)

    @property
    def name(self) -> str:
        """``sub-<l>[_ses-<s>]``: the prefix of every output of this session."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def reldir(self) -> Path:
        """``sub-<l>[/ses-<s>]`` relative folder of this session."""
        base = Path(f"sub-{self.subject}")
        return base / f"ses-{self.session}" if self.session else base

    @property
    def has_pet(self) -> bool:
        return bool(self.pet)

    @property
    def primary_t1w(self) -> Path:
        """The T1w used when several runs exist: the first in BIDS (run) order."""
        return self.t1w[0]


def json_problem(path: Path, what: str = "sidecar") -> str | None:
    """Why a JSON file cannot be read (one line naming it), or None.

    >>> json_problem(Path("/nonexistent.json")) is None
    True
    """
    try:
        json.loads(Path(path).read_text())
    except FileNotFoundError:
        return missing_target(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"{path}: {what} is not valid JSON ({describe(exc, 120)})"
    return None


def missing_target(path: Path) -> str | None:
    """Why a listed file cannot be opened: a symbolic link whose target is absent (a
    DataLad/git-annex file whose content was not retrieved, a moved store); else None.

    >>> missing_target(Path("/nonexistent")) is None
    True
    """
    if Path(path).is_symlink() and not Path(path).exists():
        return (f"{path}: a symbolic link to {os.readlink(path)}, which does not exist "
                "(git-annex/DataLad content not retrieved? `datalad get` it)")
    return None


def _unreadable_sidecars(root: Path) -> dict[Path, str]:
    """JSON files that pybids would index but cannot parse (it stops the whole layout on the
    first), with why; the rest of the dataset is indexed without them."""
    skip = {"derivatives", "sourcedata", "code", "models", "stimuli"}
    found = {}
    for path in sorted(Path(root).rglob("*.json")):
        parts = path.relative_to(root).parts
        if parts[0] in skip or any(p.startswith(".") for p in parts):
            continue
        problem = json_problem(path)
        if problem is not None:
            found[path] = problem
    return found


def load_layout(bids_dir: Path, validate: bool = True):
    """Index ``bids_dir`` with pybids; invalid datasets raise :class:`InputDataError`. Sidecars
    that are not valid JSON are left out of the index: the sessions whose PET they describe
    fail with that message (:func:`select_sessions`), the others go on."""
    from bids import BIDSLayout, BIDSLayoutIndexer
    from bids.exceptions import BIDSValidationError
    from bids.layout.validation import DEFAULT_LOCATIONS_TO_IGNORE

    description = Path(bids_dir) / "dataset_description.json"
    if missing_target(description):
        raise InputDataError(missing_target(description))
    if not description.is_file():
        raise InputDataError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json)")
    unreadable = _unreadable_sidecars(Path(bids_dir).absolute())
    if description.absolute() in unreadable:
        raise InputDataError(json_problem(description, "dataset description"))
    for problem in unreadable.values():
        LOG.warning("%s (left out of the index)", problem)
    indexer = BIDSLayoutIndexer(validate=validate,
                                ignore=[*DEFAULT_LOCATIONS_TO_IGNORE, *unreadable])
    try:
        return BIDSLayout(str(bids_dir), validate=validate, derivatives=False, indexer=indexer)
    except (BIDSValidationError, ValueError) as exc:
        raise InputDataError(f"{bids_dir}: {exc}") from None


def _own_sidecar(image: Path) -> Path:
    return image.with_name(image.name.split(".")[0] + ".json")


def _files(layout, **query) -> list:
    return sorted(layout.get(return_type="object", extension=[".nii", ".nii.gz"], **query),
                  key=lambda f: f.path)


def check_labels(layout, participants: tuple[str, ...], sessions: tuple[str, ...]) -> None:
    """Unknown participant/session labels → :class:`MissingInputError` listing all of them."""
    known = set(layout.get_subjects())
    unknown = [p for p in participants if p not in known]
    if unknown:
        raise MissingInputError(
            "unknown participant label(s): " + ", ".join(f"sub-{u}" for u in unknown)
            + f" (dataset has {len(known)}: "
            + ", ".join(f"sub-{k}" for k in sorted(known)[:20])
            + (", ..." if len(known) > 20 else "") + ")" + _did_you_mean(unknown, known, "sub-")
        )
    known_ses = set(layout.get_sessions())
    unknown_ses = [s for s in sessions if s not in known_ses]
    if unknown_ses:
        raise MissingInputError(
            "unknown session label(s): " + ", ".join(f"ses-{u}" for u in unknown_ses)
            + " (dataset has: " + (", ".join(f"ses-{k}" for k in sorted(known_ses)) or "none")
            + ")" + _did_you_mean(unknown_ses, known_ses, "ses-")
        )


def _did_you_mean(unknown: list[str], known: set[str], prefix: str) -> str:
    """Labels that differ from known ones only by zero padding or letter case, as a hint.

    >>> _did_you_mean(["6", "x"], {"06", "07"}, "sub-")
    '; did you mean sub-06?'
    """
    def key(label: str) -> str:
        return label.lower().lstrip("0") or "0"

    by_key = {key(k): k for k in known}
    close = [by_key[key(u)] for u in unknown if key(u) in by_key]
    return f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""


def select_sessions(layout, participants: tuple[str, ...] = (),
                    sessions: tuple[str, ...] = (), filters: dict | None = None
                    ) -> tuple[list[Session], list[str]]:
    """Build the selected :class:`Session` records; ``filters`` (see :func:`read_filters`)
    narrow the T1w and PET queries.

    Returns ``(sessions, missing)``: ``missing`` lists the selected subjects (or subject
    sessions) that have no T1w image; they are reported, the others are processed.
    """
    check_labels(layout, participants, sessions)
    filters = filters or {}
    t1w_filters = pybids_filters(layout, filters.get("t1w", {}))
    pet_filters = pybids_filters(layout, filters.get("pet", {}))
    bids_dir = Path(layout.root)
    table = participants_table(bids_dir)
    subjects = list(participants) or sorted(layout.get_subjects())
    if not subjects:
        raise MissingInputError(f"{bids_dir}: no subjects found")
    found: list[Session] = []
    missing: list[str] = []
    for subject in subjects:
        ses_labels = layout.get_sessions(subject=subject) or [None]
        if sessions:
            ses_labels = [s for s in ses_labels if s in sessions]
        ses_table = sessions_table(bids_dir, subject)
        for ses in ses_labels:
            query = {"subject": subject}
            if ses is not None:
                query["session"] = ses
            t1w = _files(layout, suffix="T1w", datatype="anat", **query, **t1w_filters)
            name = f"sub-{subject}" + (f"_ses-{ses}" if ses else "")
            if not t1w:
                missing.append(name)
                continue
            if len(t1w) > 1:
                LOG.info("%s: %d T1w runs, using %s", name, len(t1w), Path(t1w[0].path).name)
            pets = tuple(
                PetImage(Path(f.path), MappingProxyType(dict(f.get_metadata())),
                         MappingProxyType({k: str(v) for k, v in f.get_entities().items()}),
                         json_problem(_own_sidecar(Path(f.path))))
                for f in _files(layout, suffix="pet", datatype="pet", **query, **pet_filters)
            )
            found.append(Session(
                subject=subject,
                session=ses,
                t1w=tuple(Path(f.path) for f in t1w),
                pet=pets,
                participant=MappingProxyType(table.get(subject, {})),
                session_row=MappingProxyType(ses_table.get(ses, {}) if ses else {}),
            ))
    if not found:
        raise MissingInputError(
            "no T1w image in the selection: " + ", ".join(missing) if missing else
            "empty selection: no session matches --participant-label/--session-label")
    return found, missing
