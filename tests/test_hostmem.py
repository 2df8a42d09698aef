"""sgjax.run.hostmem: freed host memory is reused (no fresh page faults), and the opt-outs are honoured."""

import ctypes.util
import json
import os
import subprocess
import sys

import pytest

from sgjax import cli
from sgjax.run import hostmem

# Allocate, touch and free a 64 MB buffer 6 times; report the minor page faults of the last 5.
FAULTS = """
import ctypes, json, resource, sys
from sgjax.run import hostmem
applied = hostmem.keep_freed_memory() if sys.argv[1] == "tuned" else False
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
n = 64 << 20
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": sum(faults[1:])}))
"""

# Under the tuned malloc, free a 128 MB buffer below one still in use (so the heap cannot shrink from its top)
# and report how much resident memory release_freed_memory hands back.
RELEASE = """
import ctypes, json, resource
from sgjax.run import hostmem
assert hostmem.keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
n = 128 << 20
low = libc.malloc(n)
ctypes.memset(low, 1, n)
top = libc.malloc(1 << 20)
ctypes.memset(top, 1, 1 << 20)
libc.free(low)
held = rss()
released = hostmem.release_freed_memory()
print(json.dumps({"released": released, "handed_back_mb": (held - rss()) / 2**20}))
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "libc.so" not in (ctypes.util.find_library("c") or ""),
    reason="malloc tuning is glibc-only",
)


def faults(mode: str, env: dict | None = None) -> dict:
    base = {k: v for k, v in os.environ.items() if k != "SGJAX_MALLOC"}
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode],
        capture_output=True,
        text=True,
        check=True,
        env=base | {"JAX_PLATFORMS": "cpu"} | (env or {}),
    )
    return json.loads(out.stdout.splitlines()[-1])


@glibc
def test_tuned_malloc_reuses_freed_pages():
    default, tuned = faults("default"), faults("tuned")
    assert tuned["applied"] and not default["applied"]
    # by default every malloc maps 64 MB afresh (16k faults, or 32 with transparent huge pages);
    # the tuned process maps them once, in the first (uncounted) round
    assert default["faults"] >= 5 * 32
    assert tuned["faults"] * 10 <= default["faults"]


@glibc
def test_release_hands_back_freed_pages_held_by_the_tuned_heap():
    out = subprocess.run(
        [sys.executable, "-c", RELEASE],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "SGJAX_MALLOC"} | {"JAX_PLATFORMS": "cpu"},
    )
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["released"] and result["handed_back_mb"] > 100  # the 128 MB freed below the heap's top


@glibc
def test_opt_out_and_accelerators_leave_malloc_alone(monkeypatch):
    assert not faults("tuned", {"SGJAX_MALLOC": "default"})["applied"]
    monkeypatch.setattr(hostmem, "accelerator_plugin", lambda: True)
    assert hostmem.keep_freed_memory() is False


def test_cli_tunes_malloc_for_heavy_commands(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(hostmem, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main(["bench", "--project", "question:6=10"]) == 0
    assert calls == [1] and "Projected total" in capsys.readouterr().out
    cli.main(["summarize", "/nonexistent/run"])  # a light command leaves malloc alone
    assert calls == [1]
