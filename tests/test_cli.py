"""The command-line contract: options, validators, exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bids_tspo import __version__
from bids_tspo.app.cli import build_parser, main

CONTRACT_OPTIONS = [
    "--participant-label", "--participant_label", "--session-label", "--work-dir", "--model",
    "--folds", "--fold", "--epochs", "--batch-size", "--lr", "--image-size", "--seed",
    "--target", "--suv-window", "--group-column", "--genotype-column", "--device", "--nprocs",
    "--omp-nthreads", "--sloppy", "--skip-bids-validation", "--reports-only", "--verbose",
    "--version",
]


def run_cli(*args):
    """Run the installed console script in a subprocess (real exit codes and streams)."""
    proc = subprocess.run([sys.executable, "-m", "bids_tspo", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_help_lists_every_contract_option_in_groups():
    code, out, err = run_cli("--help")
    assert code == 0
    for option in CONTRACT_OPTIONS:
        assert option in out, option
    assert "Training" in out and "PET quantification" in out
    assert "participant" in out and "group" in out


def test_version():
    code, out, _ = run_cli("--version")
    assert code == 0 and __version__ in out


def test_unknown_analysis_level_is_usage_error(tmp_path):
    code, _, err = run_cli(tmp_path, tmp_path / "out", "subject")
    assert code == 64
    assert "invalid choice" in err and "Traceback" not in err
    code, _, err = run_cli(tmp_path, tmp_path / "out", "partcipant")
    assert code == 64 and len(err.strip().splitlines()) == 1  # one line, not the usage block
    assert "did you mean 'participant'?" in err and "bids_tspo --help" in err


def test_missing_bids_dir_exits_66(tmp_path):
    code, _, err = run_cli(tmp_path / "nope", tmp_path / "out", "participant")
    assert code == 66
    assert "nope" in err and "does not exist" in err and "Traceback" not in err


def test_output_equal_to_bids_dir_is_usage_error(tiny_bids):
    code, _, err = run_cli(tiny_bids, tiny_bids, "participant")
    assert code == 64
    assert "OUTPUT_DIR must differ from BIDS_DIR" in err and "Traceback" not in err


def test_unknown_participant_lists_labels(tiny_bids, tmp_path):
    code, _, err = run_cli(tiny_bids, tmp_path / "out", "participant",
                           "--participant-label", "sub-01", "77", "88")
    assert code == 66
    assert "sub-77" in err and "sub-88" in err and "sub-01," not in err.split("(")[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--fold", "5", "--folds", "5"], "out of range"),
    (["--suv-window", "90", "60"], "must be after"),
    (["--image-size", "50"], "multiple of 8"),
    (["--epochs", "0"], "at least 1"),
    (["--lr", "-1"], "positive"),
    (["--participant-label", "sub-0_1"], "not a valid BIDS label"),
])
def test_bad_options_exit_64_with_one_line(tiny_bids, tmp_path, capsys, argv, message):
    code = main([str(tiny_bids), str(tmp_path / "out"), "participant", *argv])
    err = capsys.readouterr().err
    assert code == 64 if isinstance(code, int) else False
    assert message in err and "Traceback" not in err


def test_argparse_errors_exit_64(tmp_path):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([str(tmp_path), str(tmp_path / "o"), "group", "--folds", "x"])
    assert exc.value.code == 64


def test_work_dir_inside_bids_dir_refused(tiny_bids, tmp_path, capsys):
    code = main([str(tiny_bids), str(tmp_path / "out"), "participant", "-w",
                 str(tiny_bids / "work")])
    assert code == 64
    assert "inside BIDS_DIR" in capsys.readouterr().err


def test_unwritable_output_exits_73(tiny_bids, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main([str(tiny_bids), str(blocker / "out"), "participant"])
    assert code == 73
    assert "cannot create OUTPUT_DIR" in capsys.readouterr().err


def test_labels_spellings_and_label_file(tiny_bids, tmp_path):
    from bids_tspo.app.cli import build_config

    label_file = tmp_path / "labels.txt"
    label_file.write_text("sub-02\n# a comment\n\n03\n")
    argv = [str(tiny_bids), str(tmp_path / "out"), "participant", "--participant_label",
            "sub-01", str(label_file), "01", "--session_label", "ses-01", "-w", str(tmp_path / "w")]
    config = build_config(build_parser().parse_args(argv), argv)
    assert config.participant_label == ("01", "02", "03")
    assert config.session_label == ("01",)
    assert config.work_dir == (tmp_path / "w").resolve()


def test_default_work_dir_never_inside_bids(tiny_bids, tmp_path):
    from bids_tspo.app.cli import build_config

    argv = [str(tiny_bids), str(tiny_bids / "derivatives" / "bids_tspo"), "group"]
    config = build_config(build_parser().parse_args(argv), argv)
    assert tiny_bids not in config.work_dir.parents


def test_config_and_command_line_written_to_logs(tiny_bids, tmp_path):
    out = tmp_path / "out"
    main([str(tiny_bids), str(out), "participant", "--participant-label", "99"])
    configs = list((out / "logs").glob("*_config.json"))
    commands = list((out / "logs").glob("*_cmd.txt"))
    assert len(configs) == 1 and len(commands) == 1
    assert json.loads(configs[0].read_text())["participant_label"] == ["99"]
    assert "--participant-label 99" in commands[0].read_text()
    assert "unknown participant" in next((out / "logs").glob("*.log")).read_text()


def test_unpadded_label_gets_a_hint(tiny_bids, tmp_path, capsys):
    assert main([str(tiny_bids), str(tmp_path / "out"), "participant",
                 "--participant-label", "2"]) == 66
    err = capsys.readouterr().err
    assert "unknown participant label(s): sub-2 " in err and "; did you mean sub-02?" in err


@pytest.mark.parametrize("content, code, message", [
    (None, 66, "no such file"),
    ("{not json", 64, "not a readable JSON filter file"),
    ('{"bold": {"task": "rest"}}', 64, "unknown key(s) 'bold'"),
    ('{"pet": {"subject": "01"}}', 64, "which the app sets itself"),
    ('{"pet": {"tracer": {"a": 1}}}', 64, "must be a label, a list of labels"),
    ('{"pet": {"trc": "PBR28"}}', 64, "unknown BIDS entity trc (BIDS entities: acquisition"),
])
def test_bad_bids_filter_files(tiny_bids, tmp_path, capsys, content, code, message):
    """A filter file that is missing (66) or malformed (64) is named on one line."""
    path = tmp_path / "filters.json"
    if content is not None:
        path.write_text(content)
    got = main([str(tiny_bids), str(tmp_path / "out"), "participant", "--participant-label",
                "01", "--bids-filter-file", str(path), "-w", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert got == code and message in err and "Traceback" not in err
    assert str(path) in err or "--bids-filter-file" in err
