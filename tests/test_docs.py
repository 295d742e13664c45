"""Documentation: every contract option and output is described; the phantom examples in
docs/usage.md run as written (slow)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .test_cli import CONTRACT_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_every_option_and_output_documented():
    usage = (DOCS / "usage.md").read_text()
    for option in CONTRACT_OPTIONS:
        assert option in usage, option
    outputs = (DOCS / "outputs.md").read_text()
    for name in ("dataset_description.json", ".bidsignore", "desc-preproc_T1w", "desc-brain_mask",
                 "_xfm.h5", "desc-suv_pet", "desc-synth_pet", "desc-synthstd", "group_metrics.tsv",
                 "group_regions.tsv", "group_report.html", "model.json", "splits.json",
                 "weights.pt", "logs/", "Sources", "SkullStripped", "Units",
                 "CrossValidationFold"):
        assert name in outputs, name


def _examples() -> list[str]:
    text = (DOCS / "usage.md").read_text().split("## Examples on the phantom", 1)[1]
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    joined = block.replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in joined.splitlines() if line.strip()]


def test_examples_are_parsed():
    commands = _examples()
    assert commands[0].startswith("bids_tspo-phantom") and len(commands) >= 5


@pytest.mark.slow
def test_phantom_examples_run_as_written(tmp_path):
    env = dict(os.environ, PATH=f"{Path(os.sys.executable).parent}:{os.environ['PATH']}")
    for command in _examples():
        command = command.replace("/tmp/", f"{tmp_path}/")
        proc = subprocess.run(command, shell=True, capture_output=True, text=True, env=env,
                              timeout=1800)
        expected = 66 if "--participant-label 99" in command else 0
        assert proc.returncode == expected, (command, proc.stderr[-2000:])
