"""Pre-flight: every check on a session's inputs that can fail, run before any ANTs work.

A check is a function ``(config, session) -> list[str]``: one line per problem found, each
naming the file and what is wrong (empty: nothing wrong). :data:`CHECKS` lists them;
:func:`session_problems` runs them all, so a session reports all its input problems at once,
and :func:`preflight` turns them into one :class:`~bids_tspo.errors.InputDataError` (exit 65).
To add a check, write such a function and append it to :data:`CHECKS`.

>>> _report(["a.nii: broken", "b.json: bad"])
'2 input problems:\\n  a.nii: broken\\n  b.json: bad'
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np

from ..app.config import Config
from ..errors import BidsTspoError, InputDataError
from ..io.dataset import bids_uri
from ..io.layout import Session, missing_target
from .decay import frame_timing_problems
from .images import load_checked
from .pet import WeightLookup, body_weight, compute_suv

Check = Callable[[Config, Session], list]
_QUIET = ("bids_tspo.preprocess.images", "bids_tspo.preprocess.pet", "bids_tspo.preprocess.decay")


def file_problems(config: Config, session: Session) -> list[str]:
    """Images that are symbolic links to nothing (their sidecars: :attr:`PetImage.problem`)."""
    paths = [session.primary_t1w, *(p.path for p in session.pet)]
    return [problem for p in paths if (problem := missing_target(p)) is not None]


def uri_problems(config: Config, session: Session) -> list[str]:
    """Inputs whose BIDS URI (``Sources`` of every output) cannot be built."""
    problems = []
    for path in (session.primary_t1w, *(p.path for p in session.pet)):
        try:
            bids_uri(path, config.bids_dir)
        except InputDataError as exc:
            problems.append(str(exc))
    return problems


def t1w_problems(config: Config, session: Session) -> list[str]:
    """The T1w image: readable, 3D, finite, not empty, a usable affine."""
    if missing_target(session.primary_t1w):
        return []  # reported by file_problems
    return _errors(lambda: load_checked(session.primary_t1w, ndim=3, what="T1w"))


def pet_problems(config: Config, session: Session) -> list[str]:
    """Each PET: its sidecar readable, the image, the body weight and the SUV arithmetic
    (frame timing, window coverage, dose and units) on a one-voxel stand-in of the image."""
    problems = []
    for pet in session.pet:
        if pet.problem is not None:
            problems.append(pet.problem)
        elif not missing_target(pet.path):
            problems += _one_pet(config, session, pet)
    return problems


def _one_pet(config: Config, session: Session, pet) -> list[str]:
    problems, frames = [], None
    try:
        data = load_checked(pet.path, ndim=(3, 4), what="PET")[1]
        frames = data.shape[3] if data.ndim == 4 else 1
    except BidsTspoError as exc:
        problems.append(str(exc))
    weight = WeightLookup(70.0, "stand-in")
    try:
        weight = body_weight(pet.sidecar, session.session_row, session.participant, pet.path)
    except BidsTspoError as exc:
        problems.append(str(exc))
    timing = frame_timing_problems(pet.sidecar, pet.path, frames)  # one line each
    problems += timing
    if frames is not None and not timing:
        stand_in = np.ones((1, 1, 1, frames), np.float32)
        try:
            compute_suv(stand_in, np.eye(4), pet.sidecar, pet.path, weight, config.suv_window)
        except BidsTspoError as exc:
            problems.append(str(exc))
    return problems


CHECKS: list[Check] = [file_problems, uri_problems, t1w_problems, pet_problems]


def session_problems(config: Config, session: Session) -> list[str]:
    """All input problems of ``session`` (one line each; empty when it can be processed)."""
    problems: list[str] = []
    with _quiet():  # warnings come again, once, from the processing itself
        for check in CHECKS:
            problems += check(config, session)
    return problems


def preflight(config: Config, session: Session) -> None:
    """Raise :class:`InputDataError` listing every input problem of ``session``, if any."""
    problems = session_problems(config, session)
    if problems:
        raise InputDataError(_report(problems))


def _report(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} input problems:\n" + "\n".join(f"  {p}" for p in problems)


def _errors(work: Callable[[], object]) -> list[str]:
    """The message of the input error ``work`` raises, as a list (empty when none)."""
    try:
        work()
    except BidsTspoError as exc:
        return [str(exc)]
    return []


@contextmanager
def _quiet():
    loggers = [logging.getLogger(name) for name in _QUIET]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
