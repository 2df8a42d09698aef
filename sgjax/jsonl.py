"""JSON-lines logs (metrics.jsonl, probe.jsonl): one reader for every module."""

from __future__ import annotations

import json
from pathlib import Path


def read_records(path) -> list[dict]:
    """The (step, seed) records of a .jsonl file; a torn line (a kill mid-write) is skipped; missing file -> []."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec and "seed" in rec:
            out.append(rec)
    return out
