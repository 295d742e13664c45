"""--nprocs / --omp-nthreads: how the CPUs are shared, and parallel preprocessing."""

from __future__ import annotations

import json

from bids_tspo.parallel import workers_and_threads


def test_cpus_are_shared_between_workers():
    assert workers_and_threads(8, None, 3, cpus=16) == (3, 5)   # no more workers than sessions
    assert workers_and_threads(4, None, 10, cpus=16) == (4, 4)
    assert workers_and_threads(1, None, 10, cpus=64) == (1, 8)  # at most 8 threads
    assert workers_and_threads(16, None, 40, cpus=4) == (16, 1)
    assert workers_and_threads(2, 3, 10, cpus=4) == (2, 3)      # explicit threads win
    assert workers_and_threads(2, None, 0, cpus=4) == (1, 4)


def test_sessions_preprocessed_in_parallel_processes(preprocessed):
    """The shared fixture runs 5 sessions with --nprocs 2: workers write their own logs,
    the main process the summary of every session."""
    _, out = preprocessed
    logs = sorted((out / "logs").glob("bids_tspo_participant_*.log"))
    main_log = [p for p in logs if p.with_name(p.stem + "_cmd.txt").is_file()]
    assert len(main_log) == 1
    text = main_log[0].read_text()
    assert "processes of 2 thread(s)" in text and "preprocessed in" in text
    assert len(logs) >= 2  # the workers' own log files
    summary = json.loads(next((out / "logs").glob("summary_participant_*.json")).read_text())
    assert len(summary["succeeded"]) == 5 and summary["failed"] == []
