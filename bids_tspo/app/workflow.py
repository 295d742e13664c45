"""Orchestration of the participant and group levels (and nothing else).

Each session is processed independently: an expected error (bad input, missing file) is
logged as one line, recorded, and the next session goes on. A summary of failures is logged,
written to ``OUTPUT_DIR/logs/`` and decides the exit code.
"""

from __future__ import annotations

import logging
import os
import time

from ..errors import EXIT_NOINPUT, EXIT_OK
from ..io.atomic import write_json_atomic
from ..io.dataset import init_output_dir
from ..io.layout import Session, load_layout, select_sessions
from ..io.tables import row_value
from .config import Config
from .parallel import Failure, attempt, limit_threads, preprocess_in_parallel, workers_and_threads
from .runlog import run_id

LOG = logging.getLogger(__name__)


def run(config: Config) -> int:
    """Run the level named in ``config``; return the exit code."""
    LOG.info("bids_tspo %s level: %s -> %s", config.analysis_level, config.bids_dir,
             config.output_dir)
    if config.analysis_level == "participant":
        return run_participant(config)
    return run_group(config)


def _process_participant_session(config: Config, session: Session, synthesis=None,
                                 genotype: str = "n/a", preprocess: bool = True) -> list:
    """Run the participant stages on one session (``preprocess=False``: only the synthesis,
    after the worker processes preprocessed it); returns the outputs written."""
    from ..io.derivatives import SessionFiles
    from ..preprocess import preprocess_session

    written = preprocess_session(config, session) if preprocess else []
    if synthesis is not None:
        from ..model.infer import synthesize_session

        out = config.output_dir
        files = SessionFiles.of(out, session, genotype)
        written += synthesize_session(out, files, synthesis.bundle, synthesis.device,
                                      config.work_dir / "participant" / "cache", synthesis.net)
    return written


def run_participant(config: Config) -> int:
    layout = load_layout(config.bids_dir, validate=not config.skip_bids_validation)
    sessions, missing = select_sessions(layout, config.participant_label, config.session_label,
                                        config.bids_filters)
    synthesis = None
    if config.model is not None:
        from ..model.infer import Synthesis

        synthesis = Synthesis.load(config.model, config.device, config.compile,
                                   config.precision)
        bundle = synthesis.bundle
        LOG.info("synthesis with model %s (folds %s)", bundle.model_id, sorted(bundle.folds))
        if bundle.warning:
            LOG.warning("%s", bundle.warning)
    init_output_dir(config.output_dir, config.bids_dir)
    failures = [Failure(name, f"{name}: no T1w image (anat/*_T1w.nii[.gz])", EXIT_NOINPUT)
                for name in missing]
    for failure in failures:
        LOG.error("%s", failure.message)
    LOG.info("%d session(s) selected: %s", len(sessions), ", ".join(s.name for s in sessions))
    if config.reports_only:
        write_reports(config, sorted({s.subject for s in sessions}))
        return EXIT_OK
    workers, threads = workers_and_threads(config.nprocs, config.omp_nthreads, len(sessions))
    limit_threads(threads)
    LOG.info("%d thread(s) per process", threads)
    todo = sessions
    if workers > 1:
        failed = preprocess_in_parallel(config, sessions, workers, threads)
        failures += list(failed.values())
        # synthesis (one network, in this process) for the sessions preprocessed in parallel
        todo = [s for s in sessions if s.name not in failed] if synthesis is not None else []
    for session in todo:
        start = time.monotonic()
        failure = attempt(session.name, lambda: _process_participant_session(
            config, session, synthesis,
            row_value(session.participant, config.genotype_column, genotype=True),
            preprocess=workers == 1))
        if failure is not None:
            LOG.error("%s: %s", session.name, failure.message)
            failures.append(failure)
            continue
        LOG.info("%s done in %.1f s", session.name, time.monotonic() - start)
    code = _summarise(config, [s.name for s in sessions], failures)
    write_reports(config, sorted({s.subject for s in sessions}))
    return code


def write_reports(config: Config, subjects: list[str], group: bool = False) -> None:
    """Participant (and group) reports; a report problem is logged, never fatal."""
    from ..reports.group import group_report
    from ..reports.participant import participant_report

    for subject in subjects:
        try:
            path = participant_report(config.output_dir, subject)
            LOG.info("report: %s", path)
        except Exception as exc:  # noqa: BLE001 - QC output must not fail the processing
            LOG.error("sub-%s: the report could not be written (%s: %s)", subject,
                      type(exc).__name__, exc, exc_info=True)
    if group:
        try:
            LOG.info("group report: %s", group_report(config.output_dir))
        except Exception as exc:  # noqa: BLE001
            LOG.error("the group report could not be written (%s: %s)", type(exc).__name__, exc,
                      exc_info=True)


def run_group(config: Config) -> int:
    from .group_level import run_group_level

    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun processes on this node
    threads = workers_and_threads(ranks, config.omp_nthreads, ranks)[1]
    LOG.info("%d thread(s)", threads)
    limit_threads(threads)
    init_output_dir(config.output_dir, config.bids_dir)
    main_rank = os.environ.get("RANK", "0") == "0"
    code = EXIT_OK
    if not config.reports_only:
        names, left_out = run_group_level(config)
        if main_rank:
            code = _summarise(config, names, left_out)
    if config.fold is None and main_rank:
        subjects = sorted(p.name[4:] for p in config.output_dir.glob("sub-*") if p.is_dir())
        write_reports(config, subjects, group=True)
    return code


def _summarise(config: Config, names: list[str], failures: list[Failure]) -> int:
    failed = {f.name for f in failures}
    ok = [n for n in names if n not in failed]
    summary = {
        "level": config.analysis_level,
        "succeeded": ok,
        "failed": [{"session": f.name, "error": f.message, "exit_code": f.exit_code}
                   for f in failures],
    }
    write_json_atomic(config.logs_dir / f"summary_{run_id(config)}.json", summary)
    if not failures:
        LOG.info("finished: %d session(s) succeeded", len(ok))
        return EXIT_OK
    LOG.error("finished with %d failure(s): %s (%d succeeded)", len(failures),
              ", ".join(sorted(failed)), len(ok))
    return failures[0].exit_code
