"""CPU parallelism: threads per process (``--omp-nthreads``) and sessions at once (``--nprocs``).

With ``--nprocs N`` (default: the CPU count) the participant level preprocesses up to N sessions
in separate processes (spawned, so no thread state is inherited), each with
``--omp-nthreads`` threads (default: the CPUs shared out between the workers, at most 8).
Synthesis with ``--model`` then runs in the main process, which holds the one network.
Every worker writes its own log file next to the run's; failures come back as records and the
other sessions go on.

>>> workers_and_threads(nprocs=8, omp_nthreads=None, n_sessions=3, cpus=16)
(3, 5)
>>> workers_and_threads(nprocs=1, omp_nthreads=None, n_sessions=3, cpus=16)
(1, 8)
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from tqdm import tqdm

from ..errors import EXIT_FAILURE, BidsTspoError, describe
from .config import Config
from .resources import reuse_freed_memory

LOG = logging.getLogger(__name__)
MAX_THREADS = 8


@dataclass(frozen=True)
class Failure:
    """A session that failed with an expected error (one line, an exit code)."""

    name: str
    message: str
    exit_code: int


def workers_and_threads(nprocs: int, omp_nthreads: int | None, n_sessions: int,
                        cpus: int | None = None) -> tuple[int, int]:
    """Processes to run and threads for each: explicit ``omp_nthreads`` wins, otherwise the
    CPUs are shared out between the workers (at most ``MAX_THREADS`` each)."""
    cpus = cpus or os.cpu_count() or 1
    workers = max(1, min(nprocs, n_sessions))
    threads = omp_nthreads or max(1, min(MAX_THREADS, cpus // workers))
    return workers, threads


def limit_threads(n: int) -> None:
    """Threads of this process for ANTs/ITK, OpenMP/BLAS and torch; and large allocations
    served from the heap (:func:`~bids_tspo.app.resources.reuse_freed_memory`).

    ITK reads its variable when it first multi-threads, so this runs before any ANTs call.
    With one thread ANTs registrations are bit-identical run to run (multi-threaded metric
    sums are not)."""
    for var in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)
    if reuse_freed_memory():
        LOG.debug("large allocations reuse the heap (M_MMAP_MAX=0)")


def _start_worker(config: Config, threads: int) -> None:
    from .runlog import setup_logging

    limit_threads(threads)
    setup_logging(config.verbose, config, worker=True)


def attempt(name: str, work: Callable[[], object]) -> Failure | None:
    """Run one session's ``work``: an expected error becomes its failure (one line naming the
    file), any other exception an unexpected failure (exit 1, traceback in the log file);
    either way the other sessions go on."""
    try:
        work()
    except BidsTspoError as exc:
        LOG.debug("%s failed", name, exc_info=True)
        return Failure(name, str(exc), exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - one session's crash must not stop the others
        LOG.debug("%s failed", name, exc_info=True)
        return Failure(name, f"unexpected failure: {describe(exc, 300)} (traceback in the log "
                             "file)", EXIT_FAILURE)
    return None


def _preprocess(config: Config, session) -> tuple[str, Failure | None, float]:
    from ..preprocess import preprocess_session

    start = time.monotonic()
    failure = attempt(session.name, lambda: preprocess_session(config, session))
    return session.name, failure, 0.0 if failure else time.monotonic() - start


def preprocess_in_parallel(config: Config, sessions: list, workers: int,
                           threads: int) -> dict[str, Failure]:
    """Preprocess ``sessions`` in ``workers`` processes; returns the failures by session.

    A worker killed from outside (out of memory) breaks the whole pool, and every session still
    in it loses its result: those are then run again one per process, so only the session that
    kills its process is reported, and the others finish."""
    LOG.info("preprocessing %d session(s) in %d processes of %d thread(s)", len(sessions),
             workers, threads)
    failures: dict[str, Failure] = {}
    lost = _pool(config, sessions, workers, threads, failures)
    if lost:
        LOG.warning("a worker process died; running the %d unfinished session(s) one per "
                    "process to find which", len(lost))
    for session in lost:
        if _pool(config, [session], 1, threads, failures):
            failures[session.name] = Failure(
                session.name, "unexpected failure: its worker process died (killed, out of "
                              "memory?); rerun it with fewer --nprocs", EXIT_FAILURE)
            LOG.error("%s: %s", session.name, failures[session.name].message)
    return failures


def _pool(config: Config, sessions: list, workers: int, threads: int,
          failures: dict[str, Failure]) -> list:
    """Run ``sessions`` in one process pool, recording failures; returns the sessions whose
    result was lost because a worker process died."""
    lost = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(config, threads)) as pool:
        futures = {pool.submit(_preprocess, config, session): session for session in sessions}
        for future in tqdm(as_completed(futures), total=len(futures), desc="sessions",
                           unit="session", disable=None if len(sessions) > 1 else True):
            try:
                name, failure, seconds = future.result()
            except BrokenProcessPool:
                lost.append(futures[future])
                continue
            if failure is not None:
                LOG.error("%s: %s", name, failure.message)
                failures[name] = failure
            else:
                LOG.info("%s preprocessed in %.1f s", name, seconds)
    return sorted(lost, key=lambda s: s.name)
