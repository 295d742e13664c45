"""Reports list the failures that still stand: only the participant's own sessions, and for
each session only its outcome in the latest run summary that names it."""

from __future__ import annotations

import json
import os

from bids_tspo.reports.participant import participant_report
from bids_tspo.reports.rendering import run_errors


def _summary(logs, stamp, succeeded, failed, mtime):
    path = logs / f"summary_participant_{stamp}_host_{mtime}.json"
    path.write_text(json.dumps({"level": "participant", "succeeded": succeeded, "failed": [
        {"session": s, "error": f"{s}: broken in {stamp}", "exit_code": 65} for s in failed]}))
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))


def test_only_this_subject_and_only_the_latest_outcome(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    # first run: sub-1 (both sessions) and sub-10, sub-12 fail
    _summary(logs, "20260101-100000", [], ["sub-1_ses-01", "sub-1_ses-02", "sub-10_ses-01",
                                           "sub-12"], 1000)
    # a later run fixed sub-1_ses-01 (and did not touch ses-02); sub-2 failed
    _summary(logs, "20260101-110000", ["sub-1_ses-01"], ["sub-2"], 2000)
    errors = run_errors(tmp_path, "sub-1")
    assert [(e["session"], e["log"]) for e in errors] == [
        ("sub-1_ses-02", "summary_participant_20260101-100000_host_1000.json")]
    assert [e["session"] for e in run_errors(tmp_path, "sub-12")] == ["sub-12"]
    assert [e["session"] for e in run_errors(tmp_path)] == [
        "sub-10_ses-01", "sub-12", "sub-1_ses-02", "sub-2"]
    html = participant_report(tmp_path, "1").read_text()
    assert "sub-1_ses-02: broken in 20260101-100000" in html
    assert "sub-10" not in html and "sub-1_ses-01: broken" not in html
