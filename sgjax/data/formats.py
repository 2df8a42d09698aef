"""Readers/writers for the original text formats.

* QF/TI: `input words . MARKER<TAB>output words`, one example per line (MARKER: quest/decl, PAST/PRESENT).
* Dyck: `tokens END`; END is dropped when reading and added when writing.

Malformed lines raise DataError naming the file and the 1-based line number.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sgjax.errors import DataError

MARKERS = {"question": ("quest", "decl"), "tense": ("PAST", "PRESENT")}
END = "END"


def check_line(task: str, line: str, words: frozenset[str], where: str) -> str:
    """Validate one line (without END for Dyck) and return it; raise DataError otherwise."""
    if not line.strip():
        raise DataError(f"{where}: empty line")
    if task in MARKERS:
        if line.count("\t") != 1:
            raise DataError(f"{where}: expected one TAB between input and output, found {line.count(chr(9))}")
        inp, out = line.split("\t")
        toks = inp.split(" ")
        if len(toks) < 3 or toks[-2] != "." or toks[-1] not in MARKERS[task]:
            raise DataError(f"{where}: input must end with ' . {'|'.join(MARKERS[task])}': {inp[-40:]!r}")
        if not out.strip():
            raise DataError(f"{where}: empty output")
        toks = toks + out.split(" ")
    else:
        toks = line.split(" ")
    unknown = [t for t in toks if t not in words]
    if unknown:
        raise DataError(f"{where}: unknown word {unknown[0]!r}")
    return line


def read_lines(path, task: str) -> list[str]:
    """Read and validate a file in the task's original format (Dyck: END stripped)."""
    from sgjax.data import vocab_for  # lazy: the package imports this module

    words = frozenset(vocab_for(task).words[1:])
    path = Path(path)
    out = []
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            where = f"{path}:{i}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
            if task not in MARKERS:
                toks = line.split(" ")
                if toks[-1] != END:
                    raise DataError(f"{where}: Dyck line must end with {END!r}")
                line = " ".join(toks[:-1])
            out.append(check_line(task, line, words, where))
    if not out:
        raise DataError(f"{path}: no lines")
    return out


def write_lines(path, task: str, lines) -> None:
    """Write lines in the original format, atomically (tmp file + rename)."""
    from sgjax.data import vocab_for

    words = frozenset(vocab_for(task).words[1:])
    path = Path(path)
    text = []
    for i, line in enumerate(lines, 1):
        check_line(task, line, words, f"line {i} for {path}")
        text.append(line if task in MARKERS else f"{line} {END}" if line else END)
    atomic_write_bytes(path, ("\n".join(text) + "\n").encode("utf-8"))


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data and cache files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
