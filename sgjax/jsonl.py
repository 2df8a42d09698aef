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
            out.append(renamed(rec))
    return out


def renamed(rec: dict) -> dict:
    """A record in today's keys. Dyck runs logged before 2026-12-07 wrote the distance-≥10 test accuracy as
    `gen_acc` and all closings as `gen_acc_all`; `gen_acc` is now all closings (D10) and the other `gen_acc_far`."""
    if "gen_acc_all" not in rec:
        return rec
    rec = dict(rec)
    rec["gen_acc_far"] = rec.pop("gen_acc", None)
    rec["gen_acc"] = rec.pop("gen_acc_all")
    return rec
