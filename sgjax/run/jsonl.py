"""The readers of sgjax's JSON files (metrics.jsonl, probe.jsonl, config.json, ...): one place that decides
what a damaged file is.

A JSON-lines log keeps the records it can read and counts the lines it skips (a line torn by a kill,
bytes that are not UTF-8, a record whose step or seed is not an integer or whose values are not
numbers); a whole-file JSON document that cannot be read is a DataError naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from sgjax.errors import DataError
from sgjax.run.compat import renamed

TEXT_KEYS = frozenset({"decoder", "baseline"})  # the probe's string fields; every other value is a number


class Records(NamedTuple):
    """A log's readable records, and the line numbers (from 1) of those it skipped."""

    records: list[dict]
    skipped: list[int]


def scan(path) -> Records:
    """The (step, seed) records of a .jsonl file and the lines skipped; a missing file has neither."""
    path = Path(path)
    if not path.exists():
        return Records([], [])
    out, skipped = [], []
    for i, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        rec = parse_line(raw)
        if rec is None:
            skipped.append(i)
        else:
            out.append(renamed(rec))
    return Records(out, skipped)


def read_records(path) -> list[dict]:
    """The readable records of a .jsonl file (see `scan`); missing file -> []."""
    return scan(path).records


def parse_line(raw: bytes, check=None) -> dict | None:
    """One record, or None when the line is not one (torn, not UTF-8, or failing `check`: is_record by default)."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return rec if (check or is_record)(rec) else None


def is_record(rec) -> bool:
    """An object with integer step >= 0 and seed, and numbers (or null, or true/false) elsewhere."""
    if not isinstance(rec, dict) or not all(_is_int(rec.get(k)) for k in ("step", "seed")) or rec["step"] < 0:
        return False
    return all(isinstance(v, str) if k in TEXT_KEYS else _is_number(v) for k, v in rec.items())


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return v is None or isinstance(v, (bool, int, float))  # NaN too: the probe writes it where a value is undefined


def read_json(path, what: str = "") -> dict:
    """A JSON object file; unreadable text, bad JSON or another shape is one DataError naming the file."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{label} is corrupt: not UTF-8 text") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{label} is corrupt: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{label} is corrupt: a JSON {type(doc).__name__} where an object belongs")
    return doc
