"""--nprocs / --omp-nthreads: how the CPUs are shared, and parallel preprocessing."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import pytest

from bids_tspo.app.parallel import workers_and_threads

# Two forward passes of the U-Net at 48³ after two warm-ups: whether heap reuse took effect and
# how many pages the process faulted in meanwhile.
FAULTS = """
import resource, torch
from bids_tspo.model.network import TSPOUNet
from bids_tspo.app.resources import reuse_freed_memory
took = reuse_freed_memory()
torch.set_num_threads(2)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
net, x = TSPOUNet().eval(), torch.rand(1, 1, 48, 48, 48)
with torch.no_grad():
    net(x), net(x)
    before = faults()
    net(x), net(x)
print(took, faults() - before)
"""


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


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_large_allocations_reuse_freed_memory():
    """With heap reuse the network's freed activations are handed out again instead of being
    unmapped and faulted back in (zeroed by the kernel) at every layer: a small fraction of
    the page faults. BIDS_TSPO_MALLOC=system, or a preloaded allocator, leaves glibc alone."""
    def run(**env):
        out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True,
                             env={**os.environ, **env}, check=True).stdout.split()
        return out[0] == "True", int(out[1])

    took, reused = run(BIDS_TSPO_MALLOC="")
    assert took
    took, system = run(BIDS_TSPO_MALLOC="system")
    assert not took and reused < 0.25 * system   # measured 0-0.02 (0.11 after one warm-up)
    assert run(BIDS_TSPO_MALLOC="", LD_PRELOAD="libjemalloc.so.2")[0] is False


# A 1.2 GB block (a float32 forward at 96³ frees ~1.4 GB at its end) freed and allocated
# again through libc itself, single-threaded, so nothing else lands in the heap meanwhile.
REFAULT = """
import ctypes, ctypes.util, resource
from bids_tspo.app.resources import reuse_freed_memory
took = reuse_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
n = 1_200_000_000
block = libc.malloc(n); ctypes.memset(block, 1, n); libc.free(block)
before = faults()
block = libc.malloc(n); ctypes.memset(block, 1, n)
print(took, faults() - before, n // 4096)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_top_of_heap_kept_for_the_next_forward():
    """The heap's freed top is kept up to 2 GiB: with the earlier 1 GiB threshold a float32
    96³ forward returned it at its end and faulted it in again on the next one."""
    out = subprocess.run([sys.executable, "-c", REFAULT], capture_output=True, text=True,
                         env={**os.environ, "BIDS_TSPO_MALLOC": ""}, check=True).stdout.split()
    assert out[0] == "True"
    assert int(out[1]) < 0.05 * int(out[2])   # pages of the block faulted in again


def _dies_for_sub_01(config, session):
    """Stands in for a session's preprocessing in a spawned worker: sub-01's kills its process
    (as the kernel's out-of-memory killer would), the others finish."""
    if session.name == "sub-01":
        os._exit(9)
    time.sleep(0.5)
    return session.name, None, 0.5


def test_killed_worker_is_found_and_the_others_finish(tmp_path, monkeypatch):
    """A killed worker breaks the pool and every session in it loses its result; the unfinished
    sessions run again one per process, so only the killer is reported."""
    from types import SimpleNamespace

    from bids_tspo.app import parallel
    from bids_tspo.app.config import Config

    monkeypatch.setattr(parallel, "_preprocess", _dies_for_sub_01)
    config = Config(tmp_path, tmp_path / "out", "participant", tmp_path / "work")
    sessions = [SimpleNamespace(name=f"sub-0{i}") for i in range(1, 5)]
    failures = parallel.preprocess_in_parallel(config, sessions, workers=2, threads=1)
    assert list(failures) == ["sub-01"]
    assert failures["sub-01"].exit_code == 1 and "worker process died" in failures["sub-01"].message
