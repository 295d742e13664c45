"""Up-front resource check: will training at this image size and batch fit in memory?

Peak memory of one training step was measured at ~7.5 kB per voxel and volume in fp32
(forward + backward + Adam, 32³ and 48³ on CPU); bf16 autocast on CUDA roughly halves the
activations. On the CPU the app's heap reuse (:func:`reuse_freed_memory`) adds ~20 % of
fragmentation: peak RSS at batch 2 was 4.7 GiB at 64³ and 15.2 GiB at 96³ (3.1 GiB at 64³
with glibc's default allocation). The check refuses (exit 64) when the estimate exceeds the
available memory and warns above 70 %.

>>> round(estimate_training_bytes(96, 2, "cpu") / 2**30, 1)
15.4
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

import torch

from ..errors import UsageError

LOG = logging.getLogger(__name__)
TRAIN_BYTES_PER_VOXEL = 7500
CUDA_FACTOR = 0.55
CPU_HEAP_FACTOR = 1.2
OVERHEAD_BYTES = 600 * 2**20  # libraries, cached volumes


def estimate_training_bytes(image_size: int, batch: int, device_type: str) -> float:
    per = TRAIN_BYTES_PER_VOXEL * (CUDA_FACTOR if device_type == "cuda" else CPU_HEAP_FACTOR)
    return image_size**3 * batch * per + OVERHEAD_BYTES


def available_bytes(device: torch.device) -> float | None:
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_training_memory(image_size: int, batch: int, device: torch.device) -> None:
    need = estimate_training_bytes(image_size, batch, device.type)
    have = available_bytes(device)
    if have is None:
        return
    gib = 2**30
    if need > have:
        raise UsageError(
            f"training at --image-size {image_size} --batch-size {batch} needs about "
            f"{need / gib:.1f} GiB on {device.type}, but only {have / gib:.1f} GiB is available; "
            "lower --batch-size or --image-size, or use a GPU")
    if need > 0.7 * have:
        LOG.warning("training needs about %.1f GiB of the %.1f GiB available on %s",
                    need / gib, have / gib, device.type)
    else:
        LOG.info("memory check: about %.1f GiB needed, %.1f GiB available on %s",
                 need / gib, have / gib, device.type)


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h>
KEEP_FREED_BYTES = 2**31 - 1  # mallopt takes a C int: the largest threshold it accepts


def reuse_freed_memory() -> bool:
    """Serve large CPU allocations from the reusable heap instead of fresh pages (glibc only).

    glibc gives every block over 32 MiB (a 96³ activation with 32 channels is 54 MiB in
    bfloat16) its own mmap and unmaps it on free, so each layer's output is faulted in and
    zeroed by the kernel anew. On 2 cores that was two thirds of a bfloat16 forward pass
    (1.1 s -> 0.33 s, identical output; benchmarks/README.md). ``M_MMAP_MAX=0`` keeps large
    blocks in the heap and ``M_TRIM_THRESHOLD`` keeps up to 2 GiB of its freed top for reuse
    (a float32 forward at 96³ frees ~1.4 GB at its end: with 1 GiB the heap was returned and
    faulted in again on every forward).
    The cost is fragmentation: peak RSS of CPU training grows by about a third.

    Left alone when another allocator is preloaded (jemalloc, tcmalloc), when ``GLIBC_TUNABLES``
    already tunes malloc, or when ``BIDS_TSPO_MALLOC=system``. Returns whether it took effect.
    """
    if (os.environ.get("BIDS_TSPO_MALLOC", "").lower() == "system"
            or "malloc" in os.environ.get("LD_PRELOAD", "")
            or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
