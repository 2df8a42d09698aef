"""Reading a sweep: its run directories, each seed's evaluations, non-finite seeds (docs/report.md)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np

from sgjax import jsonl, summarize
from sgjax.errors import UserError

RUN_NAME = re.compile(r"^(?P<task>.+)_L(?P<depth>\d+)$")


@dataclasses.dataclass
class Series:
    """One seed's evaluations: steps and accuracies (NaN where missing)."""

    steps: np.ndarray
    val: np.ndarray
    gen: np.ndarray


@dataclasses.dataclass
class Run:
    """One (task, depth) run directory and what the report derives from it."""

    task: str
    depth: int
    path: Path
    metrics: list[dict]
    probe: list[dict]
    evals: dict[int, Series]
    summaries: dict[int, dict]
    nonfinite: dict[int, int]

    @property
    def seeds(self) -> list[int]:
        """Every seed seen in metrics.jsonl or probe.jsonl."""
        return sorted({int(r["seed"]) for r in self.metrics + self.probe if "seed" in r})


def read_jsonl(path: Path) -> list[dict]:
    """JSON records of a .jsonl file; unreadable lines (a torn last write) are skipped."""
    return jsonl.read_records(path)


def run_identity(path: Path) -> tuple[str, int] | None:
    """(task, depth) of a run directory from config.json, else from its `<task>_L<depth>` name."""
    cfg = path / "config.json"
    if cfg.exists():
        try:
            d = json.loads(cfg.read_text())
            return str(d["task"]), int(d["model"]["n_layers"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass
    m = RUN_NAME.match(path.name)
    return (m["task"], int(m["depth"])) if m else None


def is_run_dir(path: Path) -> bool:
    """A directory with a config.json or a metrics.jsonl."""
    return path.is_dir() and ((path / "config.json").exists() or (path / "metrics.jsonl").exists())


def load_run(path: Path, task: str, depth: int) -> Run:
    """Read metrics.jsonl and probe.jsonl of one run and derive per-seed summaries."""
    metrics = read_jsonl(path / "metrics.jsonl")
    evals = eval_series(metrics)
    return Run(task, depth, path, metrics, read_jsonl(path / "probe.jsonl"), evals,
               {s: seed_summary(e) for s, e in evals.items()}, nonfinite_seeds(metrics))


def discover_runs(sweep_dir: Path) -> list[Run]:
    """Every run of a sweep (or the directory itself if it is one run), sorted by task then depth."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a directory")
    candidates = [sweep_dir] if is_run_dir(sweep_dir) else sorted(p for p in sweep_dir.iterdir() if is_run_dir(p))
    found: dict[tuple[str, int], Path] = {}
    for p in candidates:
        ident = run_identity(p)
        if ident in found:  # the figures average one run per (task, depth): two would be mixed or one dropped
            raise UserError(f"{found[ident]} and {p} are both {ident[0]} at depth {ident[1]}: a report takes one run "
                            "per (task, depth); move one of them out of the sweep directory")
        if ident is not None:
            found[ident] = p
        else:  # a run this report cannot place: say so rather than leave it out silently
            warnings.warn(f"{p} left out of the report: no task and depth (a readable config.json, or a name "
                          "<task>_L<depth>)", stacklevel=2)
    return sorted((load_run(p, *ident) for ident, p in found.items()), key=lambda r: (r.task, r.depth))


def as_float(x) -> float:
    """A JSON value as float (None and non-numbers -> NaN)."""
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def eval_series(records: list[dict]) -> dict[int, Series]:
    """Per seed, the evaluation records (those with val_acc or gen_acc) sorted by step."""
    by_seed: dict[int, dict[int, tuple[float, float]]] = {}
    for r in records:
        if r.get("val_acc") is None and r.get("gen_acc") is None:
            continue
        by_seed.setdefault(int(r["seed"]), {})[int(r["step"])] = (as_float(r.get("val_acc")), as_float(r.get("gen_acc")))
    out = {}
    for seed, d in sorted(by_seed.items()):
        steps = np.array(sorted(d), dtype=np.int64)
        out[seed] = Series(steps, np.array([d[s][0] for s in steps]), np.array([d[s][1] for s in steps]))
    return out


def nonfinite_seeds(records: list[dict]) -> dict[int, int]:
    """{seed: first step logged with nonfinite true}."""
    out: dict[int, int] = {}
    for r in records:
        if r.get("nonfinite"):
            s = int(r["seed"])
            out[s] = min(out.get(s, int(r["step"])), int(r["step"]))
    return out


def seed_summary(e: Series) -> dict:
    """The per-seed columns of sgjax.summarize (one definition of the D17/D18 rules)."""
    return summarize.seed_row(e.steps, e.val, e.gen)
