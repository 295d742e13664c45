"""Folds: grouped by subject, stratified by group, seeded, user splits validated."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bids_tspo.errors import InputDataError, UsageError
from bids_tspo.model.splits import check_splits, load_splits, make_splits

LABELS = {f"{i:02d}": ["HC", "CLBP", "KOA"][i % 3] for i in range(30)}


def test_subjects_in_exactly_one_test_fold_and_never_in_train():
    splits = make_splits(LABELS, k=5, seed=3)
    tests = [s for f in splits["folds"] for s in f["test"]]
    assert sorted(tests) == sorted(LABELS) and len(tests) == len(set(tests))
    for fold in splits["folds"]:
        assert not set(fold["test"]) & (set(fold["train"]) | set(fold["val"]))
        assert set(fold["test"]) | set(fold["train"]) | set(fold["val"]) == set(LABELS)
        assert fold["val"]


def test_group_proportions_kept():
    splits = make_splits(LABELS, k=5, seed=3)
    for fold in splits["folds"]:
        assert Counter(LABELS[s] for s in fold["test"]) == {"HC": 2, "CLBP": 2, "KOA": 2}


def test_seeded():
    assert make_splits(LABELS, 5, 1) == make_splits(LABELS, 5, 1)
    assert make_splits(LABELS, 5, 1) != make_splits(LABELS, 5, 2)


def test_small_strata_fall_back_but_stay_grouped():
    labels = {"01": "HC", "02": "HC", "03": "KOA", "04": "n/a"}
    splits = make_splits(labels, k=3, seed=0)
    assert sorted(s for f in splits["folds"] for s in f["test"]) == sorted(labels)


def test_fewer_subjects_than_folds():
    with pytest.raises(UsageError, match="--folds 5 needs at least 5 subjects"):
        make_splits({"01": "HC", "02": "HC"}, k=5, seed=0)


def test_user_splits_validated(tmp_path):
    splits = make_splits(LABELS, 3, 0)
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(splits))
    assert load_splits(path, set(LABELS)) == splits
    bad = json.loads(json.dumps(splits))
    bad["folds"][1]["test"].append(bad["folds"][0]["test"][0])
    with pytest.raises(InputDataError, match="more than one test fold"):
        check_splits(bad, set(LABELS))
    with pytest.raises(InputDataError, match="in no test fold"):
        check_splits(splits, set(LABELS) | {"99"})
    path.write_text("{not json")
    with pytest.raises(InputDataError, match="cannot be read as JSON"):
        load_splits(path, set(LABELS))
