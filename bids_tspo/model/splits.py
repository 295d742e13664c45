"""Subject-grouped, group-stratified K-fold splits, stored as ``splits.json``.

All sessions of a subject sit in one test fold (the paper's notebooks split by scan, which
leaks repeated scans of a person across folds). Within each fold's training subjects a
validation part (~15 %, at least one subject) is held out for model selection and curves.

>>> subjects = {f"{i:02d}": g for i, g in enumerate(["HC", "CLBP", "KOA"] * 4)}
>>> s = make_splits(subjects, k=4, seed=1)
>>> sorted(sum((f["test"] for f in s["folds"]), [])) == sorted(subjects)
True
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InputDataError, UsageError, describe

LOG = logging.getLogger(__name__)
VAL_FRACTION = 0.15


def _stratified_folds(labels: dict[str, str], k: int, seed: int) -> list[list[str]]:
    """Assign subjects to k folds, balancing strata (StratifiedKFold over subjects)."""
    from sklearn.model_selection import StratifiedKFold

    subjects = sorted(labels)
    y = [labels[s] for s in subjects]
    counts = Counter(y)
    if min(counts.values()) < k:  # too few in a stratum for sklearn: fall back to round robin
        rng = np.random.default_rng(seed)
        order = sorted(subjects, key=lambda s: (labels[s], rng.random()))
        return [sorted(order[i::k]) for i in range(k)]
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [sorted(subjects[i] for i in test) for _, test in skf.split(subjects, y)]


def make_splits(labels: dict[str, str], k: int, seed: int, column: str = "group") -> dict:
    """Splits for subjects ``labels`` (subject -> stratum). Raises if fewer subjects than folds."""
    if k < 2:
        raise UsageError(f"--folds {k}: cross-validation needs at least 2 folds")
    if len(labels) < k:
        raise UsageError(f"--folds {k} needs at least {k} subjects with T1w and PET; "
                         f"found {len(labels)}")
    tests = _stratified_folds(labels, k, seed)
    rng = np.random.default_rng(seed + 1)
    folds = []
    for i, test in enumerate(tests):
        train = sorted(s for s in labels if s not in test)
        n_val = max(1, int(round(VAL_FRACTION * len(train)))) if len(train) > 2 else 0
        val = sorted(rng.choice(train, size=n_val, replace=False).tolist()) if n_val else []
        folds.append({"fold": i, "test": test, "val": val,
                      "train": [s for s in train if s not in val]})
    return {"k": k, "seed": seed, "grouped_by": "subject", "stratified_by": column,
            "strata": {s: labels[s] for s in sorted(labels)}, "folds": folds}


def normalise_splits(data, source: str = "splits.json") -> dict:
    """A splits file's structure checked and completed: ``folds``, a list of at least 2 objects
    with ``test`` and ``train`` lists of subject labels (``sub-`` optional) and optionally
    ``val`` and ``fold`` (its 0-based position); ``k``, when given, the number of folds. Any
    other shape is an :class:`InputDataError` naming the file and what is wrong.

    >>> s = normalise_splits({"folds": [{"test": ["sub-01"], "train": ["02"]},
    ...                                 {"test": ["02"], "train": ["01"]}]})
    >>> s["k"], s["folds"][0]
    (2, {'test': ['01'], 'train': ['02'], 'val': [], 'fold': 0})
    >>> normalise_splits({"k": 3, "folds": s["folds"]}, "my.json")
    Traceback (most recent call last):
    ...
    bids_tspo.errors.InputDataError: my.json: "k" is 3 but "folds" lists 2 folds
    """
    def fail(what: str):
        raise InputDataError(f"{source}: {what} (a splits file is "
                             '{"folds": [{"test": [...], "train": [...], "val": [...]}, ...]})')

    if not isinstance(data, dict) or not isinstance(data.get("folds"), list):
        fail('no "folds" list')
    if len(data["folds"]) < 2:
        fail(f'"folds" lists {len(data["folds"])} fold(s); cross-validation needs at least 2')
    if "k" in data and data["k"] != len(data["folds"]):
        raise InputDataError(f'{source}: "k" is {data["k"]} but "folds" lists '
                             f'{len(data["folds"])} folds')
    folds = []
    for i, fold in enumerate(data["folds"]):
        if not isinstance(fold, dict):
            fail(f"fold {i} is not an object")
        if fold.get("fold", i) != i:
            fail(f'fold {i} says "fold": {fold["fold"]!r}; folds are numbered 0, 1, ... in order')
        lists = {}
        for key in ("test", "train", "val"):
            value = fold.get(key, [] if key == "val" else None)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                fail(f'fold {i} has no "{key}" list of subject labels')
            lists[key] = [v.removeprefix("sub-") for v in value]
        if not lists["test"] or not lists["train"]:
            fail(f'fold {i} has an empty "{"test" if not lists["test"] else "train"}" list')
        folds.append({**fold, **lists, "fold": i})
    return {"grouped_by": "subject", "stratified_by": "none (--splits file)", **data,
            "k": len(folds), "folds": folds}


def check_splits(splits: dict, subjects: set[str], source: str = "splits.json") -> dict:
    """Validate a (possibly user-supplied) splits dict against the available subjects."""
    splits = normalise_splits(splits, source)
    folds = splits["folds"]
    tests = [set(f["test"]) for f in folds]
    trains = [set(f["train"]) | set(f["val"]) for f in folds]
    seen: Counter = Counter(s for t in tests for s in t)
    twice = sorted(s for s, n in seen.items() if n > 1)
    if twice:
        raise InputDataError(f"{source}: subject(s) in more than one test fold: {twice}")
    unknown = sorted(seen.keys() - subjects)
    if unknown:
        LOG.warning("%s: subjects without preprocessed T1w+PET ignored: %s", source, unknown)
    missing = sorted(subjects - seen.keys())
    if missing:
        raise InputDataError(f"{source}: subject(s) in no test fold: {missing}")
    for i, (test, train) in enumerate(zip(tests, trains)):
        if test & train:
            raise InputDataError(f"{source}: fold {i} trains on its test subjects "
                                 f"{sorted(test & train)}")
    return splits


def read_splits(path: Path) -> dict:
    """A splits file read and its structure checked (:func:`normalise_splits`)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: cannot be read as JSON ({describe(exc, 120)})") from None
    return normalise_splits(data, str(path))


def load_splits(path: Path, subjects: set[str]) -> dict:
    return check_splits(read_splits(path), subjects, str(path))


def fold_of(splits: dict, subject: str) -> int:
    for fold in splits["folds"]:
        if subject in fold["test"]:
            return fold["fold"]
    raise KeyError(subject)


def oof_plan(splits: dict, paired: list) -> list[tuple]:
    """(model folds, CV fold, test sessions, train sessions) for out-of-fold evaluation: each
    fold's model on its test subjects, the fold's training and validation subjects for its
    baseline.

    >>> from types import SimpleNamespace as S
    >>> plan = oof_plan({"folds": [{"fold": 0, "test": ["a"], "train": ["b"], "val": []}]},
    ...                 [S(subject="a"), S(subject="b")])
    >>> [(folds, k, [t.subject for t in test]) for folds, k, test, _ in plan]
    [([0], 0, ['a'])]
    """
    plan = []
    for fold in splits["folds"]:
        test = [f for f in paired if f.subject in fold["test"]]
        train = [f for f in paired if f.subject in fold["train"] + fold.get("val", [])]
        plan.append(([fold["fold"]], fold["fold"], test, train))
    return plan
