"""Group-level options: input selection refused (exit 64), ``--splits`` strictly checked
before any work (exit 64 when it disagrees with --folds, 65 when it is not a splits file)."""

from __future__ import annotations

import json
import shutil

import pytest

from bids_tspo.app.cli import build_config, build_parser, main

from .conftest import GROUP_ARGS, MODEL_ID

MINIMAL = {"folds": [{"test": ["sub-01"], "train": ["02", "03"]},
                     {"test": ["02"], "train": ["01", "03"]},
                     {"test": ["03"], "train": ["01"], "val": ["02"]}]}


@pytest.mark.parametrize("argv, named", [
    (["--participant-label", "01"], "--participant-label"),
    (["--session-label", "01", "--participant_label", "02"], "--participant-label, --session-label"),
    (["--bids-filter-file", "FILTER"], "--bids-filter-file"),
])
def test_input_selection_refused_at_group_level(tiny_bids, tmp_path, capsys, argv, named):
    (tmp_path / "f.json").write_text('{"pet": {"tracer": "PBR28"}}')
    argv = [a.replace("FILTER", str(tmp_path / "f.json")) for a in argv]
    code = main([str(tiny_bids), str(tmp_path / "out"), "group", *argv])
    err = capsys.readouterr().err
    assert code == 64
    assert f"{named}: not available at the group level" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "models").exists()


def test_minimal_splits_file_completed_and_checked_against_folds(tiny_bids, tmp_path, capsys):
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps(MINIMAL))
    base = [str(tiny_bids), str(tmp_path / "out"), "group", "--splits", str(splits)]
    assert main(base) == 64  # --folds defaults to 5
    assert f"--splits {splits} has 3 folds but --folds is 5; pass --folds 3" \
        in capsys.readouterr().err
    config = build_config(build_parser().parse_args([*base, "--folds", "3"]), [])
    from bids_tspo.model.splits import load_splits

    loaded = load_splits(config.splits, {"01", "02", "03"})
    assert loaded["k"] == 3 and [f["fold"] for f in loaded["folds"]] == [0, 1, 2]
    assert loaded["folds"][0] == {"test": ["01"], "train": ["02", "03"], "val": [], "fold": 0}
    assert loaded["stratified_by"] == "none (--splits file)"


@pytest.mark.parametrize("content, message", [
    ("{}", 'no "folds" list'),
    ("[1, 2]", 'no "folds" list'),
    ('{"folds": [{"test": ["01"]}, {"test": ["02"]}]}', 'fold 0 has no "train" list'),
    ('{"folds": [{"test": ["01"], "train": ["02"]}]}',
     '"folds" lists 1 fold(s); cross-validation needs at least 2'),
    ('{"k": 5, "folds": [{"test": ["01"], "train": ["02"]}, {"test": ["02"], "train": ["01"]}]}',
     '"k" is 5 but "folds" lists 2 folds'),
    (('{"folds": [{"fold": 1, "test": ["01"], "train": ["02"]}, '
      '{"fold": 0, "test": ["02"], "train": ["01"]}]}'), 'fold 0 says "fold": 1'),
    ("{not json", "cannot be read as JSON"),
])
def test_bad_splits_file_one_line_exit_65(tiny_bids, tmp_path, capsys, content, message):
    splits = tmp_path / "splits.json"
    splits.write_text(content)
    code = main([str(tiny_bids), str(tmp_path / "out"), "group", "--splits", str(splits),
                 "--folds", "2"])
    err = capsys.readouterr().err
    assert code == 65
    assert f"{splits}: {message}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_minimal_splits_file_trains_and_is_recorded(tiny_bids, preprocessed, tmp_path):
    """A hand-written minimal splits file (no k, no fold numbers, no val) drives a real
    group run: exit 0, the bundle's splits.json completed, model.json says where folds came from."""
    _, out = preprocessed
    dest = tmp_path / "out"
    shutil.copytree(out, dest)
    splits = tmp_path / "mine.json"
    splits.write_text(json.dumps({"folds": [{"test": ["sub-01"], "train": ["02", "03"]},
                                            {"test": ["02", "03"], "train": ["01"]}]}))
    code = main([str(tiny_bids), str(dest), "group", "-w", str(tmp_path / "w"), *GROUP_ARGS,
                 "--splits", str(splits)])
    assert code == 0
    bundle = dest / "models" / MODEL_ID
    written = json.loads((bundle / "splits.json").read_text())
    assert written["k"] == 2 and [f["test"] for f in written["folds"]] == [["01"], ["02", "03"]]
    model = json.loads((bundle / "model.json").read_text())
    assert model["folds_trained"] == [0, 1]
    assert model["training"]["splits"] == "subject-grouped, stratified by none (--splits file)"
