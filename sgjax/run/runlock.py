"""One writer per run directory: an advisory lock that the OS releases when its holder exits or dies."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from sgjax.errors import UserError


@contextlib.contextmanager
def hold(run_dir: Path, command: str):
    """Hold run_dir/.<command>.lock for the block; refuse with the holder's pid and host if another process has it.

    flock is tied to the open file: a killed holder leaves the file behind but not the lock, so a stale
    lock never blocks.
    """
    path = Path(run_dir) / f".{command}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = describe(path)
        os.close(fd)
        raise UserError(
            f"{run_dir} is in use by another `sgjax {command}` ({holder}); wait for it to end or stop it, then rerun"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.write(
            fd,
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            ).encode(),
        )
        yield
    finally:
        os.close(fd)  # releases the lock


def describe(path: Path) -> str:
    """'pid 123 on host h since ...' from a lock file, or what can be said without it."""
    try:
        d = json.loads(path.read_text())
        return f"pid {d['pid']} on {d['host']}, since {d['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its holder is starting"
