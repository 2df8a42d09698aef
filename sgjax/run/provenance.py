"""Where a run came from: versions, the source commit, the device, the command and the date, one record per start."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import platform
import subprocess
import time
from pathlib import Path

from sgjax.run import jsonl

FILE = "provenance.jsonl"  # in a run or sweep directory: one line per invocation (a resume adds one)
PACKAGES = ("sgjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def source_commit() -> str | None:
    """The git commit of the sgjax checkout this code runs from ('+dirty' with local changes); None outside one."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def device() -> str:
    """The accelerator (or CPU) JAX computes on, with the count: '1x NVIDIA H100 80GB HBM3', '1x cpu'."""
    import jax

    devices = jax.devices()
    return f"{len(devices)}x {getattr(devices[0], 'device_kind', devices[0].platform)}"


def record(command: list[str] | None, **extra) -> dict:
    """This invocation's provenance."""
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "versions": {p: version(p) for p in PACKAGES},
        "python": platform.python_version(),
        "commit": source_commit(),
        "device": device(),
        "host": platform.node(),
        **extra,
    }


def read(directory: Path) -> list[dict]:
    """The records of directory/provenance.jsonl, oldest first (unreadable lines skipped)."""
    path = Path(directory) / FILE
    lines = path.read_bytes().split(b"\n") if path.exists() else []
    parsed = (jsonl.parse_line(raw, check=lambda rec: isinstance(rec, dict)) for raw in lines)
    return [rec for rec in parsed if rec is not None]


def append(directory: Path, command: list[str] | None, **extra) -> dict:
    """Add this invocation's record to directory/provenance.jsonl; returns it."""
    rec = record(command, **extra)
    with (Path(directory) / FILE).open("a") as f:
        f.write(json.dumps(rec) + "\n")
    return rec
