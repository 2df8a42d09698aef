"""Host malloc settings for XLA's CPU backend: reuse freed memory instead of handing it back to the OS.

Each call of a compiled step on the CPU allocates its temporaries (850 MB for QF, 6 layers, S = 10)
and frees them at the end. glibc serves big blocks with mmap and returns them with munmap, so every
call touches fresh pages: 261k page faults per one-step call on a 2-core VM, which made that step
1.06-1.20x slower (experiments/performance/host_memory/results/ab_malloc_cpu_s10.json; within noise at 5 steps
per call).
One arena with no mmap and no trimming keeps those pages mapped; the next call reuses them.
The cost: the process's resident memory stays at its peak, and until the heap holds every width's
temporaries, a freed block too small or cut into makes it grow by a block (seconds per GB on a VM
slow to hand out fresh memory; docs/performance.md). `SGJAX_MALLOC=default` opts out.
Work whose programs each run once on large buffers (the probe's long Dyck strings) gains nothing from
the kept pages and hands them back between programs (`release_freed_memory`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.metadata
import importlib.util
import os

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
INT_MAX = 2**31 - 1


def accelerator_plugin() -> bool:
    """Whether a GPU/TPU backend is installed (found without starting any backend)."""
    if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
        return False
    if importlib.metadata.entry_points(group="jax_plugins"):  # how jax finds CUDA/ROCm plugins
        return True
    return any(importlib.util.find_spec(name) is not None for name in ("jax_plugins", "libtpu"))


@functools.cache
def _libc():
    """glibc's handle with mallopt and malloc_trim typed, or None (macOS, musl: nothing to tune); loaded once."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the OS now (glibc's malloc_trim); True if any were released."""
    libc = _libc()
    return libc is not None and libc.malloc_trim(0) == 1


def keep_freed_memory() -> bool:
    """On glibc, for a CPU-only JAX: one malloc arena, no mmap, no trimming; True if applied.

    Call it before JAX starts its backend: threads that already allocated keep their own arenas.
    """
    if os.environ.get("SGJAX_MALLOC", "").lower() == "default" or accelerator_plugin():
        return False
    libc = _libc()
    if libc is None:
        return False
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, INT_MAX))
    return all(libc.mallopt(param, value) == 1 for param, value in settings)
