"""`sgjax summarize RUN_DIR`: per seed, early stopping vs extended training (D17, D18); docs/metrics.md.

    summarize_run(run_dir) -> list[dict]   # one row per seed; writes summary.csv and summary.json

Reads run_dir/metrics.jsonl (records with `step`, `seed`, and at evaluation steps `val_acc`,
`gen_acc`). Column names follow the paper-results per_seed_summary.csv where they mean the same.
Rules (an "eval" is a record of the seed whose accuracy is a finite number; evals are in step order):

* final_gen / final_val: at the last eval; max_gen / max_val: the maximum; step_of_max_gen: its first step.
* crossed_80: max_gen > 0.8; final_ge_80: final_gen >= 0.8 (D17's primary "groks").
* first_step_gen_ge_80: first eval with gen >= 0.8; step_gen_stays_ge_80: first eval from which gen
  is >= 0.8 at every later eval up to the last (None if the last is below 0.8).
* es_*_first_max_val: the first eval where val equals its run maximum (D18 a).
* es_*_patience3 (D18 b): walk the evals in order keeping the best val (strictly greater improves it);
  every eval that does not improve adds 1 to a counter that an improvement resets; at 3 stop. The
  checkpoint kept is the best-val one seen so far (its first occurrence). If the run ends first, it is
  the first maximum of val over the run, i.e. the same as (a).
* first_step_val_ge_99 / gen_at_first_val_ge_99: first eval with val >= 0.99 (D18 c).
* mean_gen_last10_evals: mean gen of the last 10 evals; nonfinite: any record with `nonfinite: true`
  (nonfinite_step: the first such step).
Evals whose val (gen) is missing are skipped by the val (gen) rules; a gen read at a val-chosen step
is None when that eval has no gen.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from sgjax import config as config_lib
from sgjax.errors import UserError
from sgjax.run import compat, jsonl

GROK = 0.8  # D17
VAL_SATURATED = 0.99  # D18 (c)
PATIENCE = 3  # D18 (b)
LAST_N = 10

COLUMNS = [
    "task",
    "depth",
    "seed",
    "n_evals",
    "first_step",
    "last_step",
    "final_gen",
    "final_val",
    "max_gen",
    "step_of_max_gen",
    "crossed_80",
    "final_ge_80",
    "first_step_gen_ge_80",
    "step_gen_stays_ge_80",
    "max_val",
    "es_step_first_max_val",
    "es_gen_at_first_max_val",
    "es_step_patience3",
    "es_gen_patience3",
    "first_step_val_ge_99",
    "gen_at_first_val_ge_99",
    "mean_gen_last10_evals",
    "nonfinite",
    "nonfinite_step",
    "lr",  # the member's learning rate (config.json), beyond the paper's columns: --lrs runs mix several
]


# ---------------------------------------------------------------- rules on one seed's series


def first_max_index(x: np.ndarray) -> int | None:
    """Index of the first maximum ignoring NaN (None if all NaN or empty)."""
    return None if x.size == 0 or np.all(np.isnan(x)) else int(np.nanargmax(x))


def first_index(mask: np.ndarray) -> int | None:
    """Index of the first true entry (None if none)."""
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def stays_index(x: np.ndarray, threshold: float = GROK) -> int | None:
    """First index from which x >= threshold at every later finite entry (None if the last is below)."""
    ok = np.isnan(x) | (x >= threshold)
    finite = np.flatnonzero(~np.isnan(x))
    if finite.size == 0 or not ok[finite[-1]]:
        return None
    below = np.flatnonzero(~ok)
    start = int(below[-1]) + 1 if below.size else 0
    return int(finite[finite >= start][0])


def patience_index(val: np.ndarray, patience: int = PATIENCE) -> int | None:
    """Checkpoint kept by early stopping with patience: stop after `patience` evals without a strict improvement."""
    best, best_i, wait = -math.inf, None, 0
    for i, v in enumerate(val):
        if np.isnan(v):
            continue  # a missing eval is not an eval
        if v > best:
            best, best_i, wait = v, i, 0
        else:
            wait += 1
            if wait >= patience:
                break
    return best_i


def seed_row(steps: np.ndarray, val: np.ndarray, gen: np.ndarray) -> dict:
    """The per-seed columns from its evals (steps sorted; NaN where an accuracy is missing)."""
    at = lambda x, i: None if i is None or np.isnan(x[i]) else float(x[i])  # noqa: E731
    step = lambda i: None if i is None else int(steps[i])  # noqa: E731
    has_gen, has_val = ~np.isnan(gen), ~np.isnan(val)
    last_gen = int(np.flatnonzero(has_gen)[-1]) if has_gen.any() else None
    last_val = int(np.flatnonzero(has_val)[-1]) if has_val.any() else None
    i_max, i_vmax, i_p3 = first_max_index(gen), first_max_index(val), patience_index(val)
    i99 = first_index(has_val & (np.nan_to_num(val, nan=-1.0) >= VAL_SATURATED))
    i80 = first_index(has_gen & (np.nan_to_num(gen, nan=-1.0) >= GROK))
    final_gen, max_gen = at(gen, last_gen), at(gen, i_max)
    tail = gen[has_gen][-LAST_N:]
    return {
        "n_evals": int(len(steps)),
        "first_step": step(0 if len(steps) else None),
        "last_step": step(len(steps) - 1 if len(steps) else None),
        "final_gen": final_gen,
        "final_val": at(val, last_val),
        "max_gen": max_gen,
        "step_of_max_gen": step(i_max),
        "crossed_80": None if max_gen is None else bool(max_gen > GROK),
        "final_ge_80": None if final_gen is None else bool(final_gen >= GROK),
        "first_step_gen_ge_80": step(i80),
        "step_gen_stays_ge_80": step(stays_index(gen)),
        "max_val": at(val, i_vmax),
        "es_step_first_max_val": step(i_vmax),
        "es_gen_at_first_max_val": at(gen, i_vmax),
        "es_step_patience3": step(i_p3),
        "es_gen_patience3": at(gen, i_p3),
        "first_step_val_ge_99": step(i99),
        "gen_at_first_val_ge_99": at(gen, i99),
        "mean_gen_last10_evals": float(np.mean(tail)) if tail.size else None,
    }


# ---------------------------------------------------------------- reading and aggregating


def _num(x) -> float:
    """A JSON value as float; None and non-numbers are NaN."""
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan


def scan_metrics(path: Path) -> jsonl.Records:
    """Records of metrics.jsonl and the lines skipped (torn or damaged); a missing or empty file is a UserError."""
    if not path.exists():
        raise UserError(f"{path} does not exist: is {path.parent} a run directory (sgjax train writes metrics.jsonl)?")
    scanned = jsonl.scan(path)
    if not scanned.records:
        raise UserError(f"{path} has no metric records (is the run still starting?)")
    return scanned


def read_metrics(path: Path) -> list[dict]:
    """Records of metrics.jsonl (see scan_metrics)."""
    return scan_metrics(path).records


def skipped_note(path: Path, skipped: list[int]) -> str | None:
    """What a reader should know about lines it did not count."""
    if not skipped:
        return None
    lines = ", ".join(map(str, skipped[:5])) + (", …" if len(skipped) > 5 else "")
    return f"skipped {len(skipped)} unreadable line{'s' if len(skipped) > 1 else ''} of {path.name} (line {lines})"


def seed_rows(records: list[dict], task=None, depth=None, lrs: dict | None = None) -> list[dict]:
    """One row per seed (sorted), from all of its records; `lrs` maps seed -> its learning rate."""
    by_seed: dict[int, dict[int, tuple[float, float]]] = {}
    bad: dict[int, int | None] = {}
    for r in records:
        s = int(r["seed"])
        by_seed.setdefault(s, {})
        bad.setdefault(s, None)
        if r.get("nonfinite"):
            bad[s] = int(r["step"]) if bad[s] is None else min(bad[s], int(r["step"]))
        if r.get("val_acc") is not None or r.get("gen_acc") is not None:
            by_seed[s][int(r["step"])] = (_num(r.get("val_acc")), _num(r.get("gen_acc")))  # a rewrite wins
    rows = []
    for s, evals in sorted(by_seed.items()):
        steps = np.array(sorted(evals), dtype=np.int64)
        val = np.array([evals[k][0] for k in steps], dtype=np.float64)
        gen = np.array([evals[k][1] for k in steps], dtype=np.float64)
        row = {
            "task": task,
            "depth": depth,
            "seed": s,
            **seed_row(steps, val, gen),
            "nonfinite": bad[s] is not None,
            "nonfinite_step": bad[s],
            "lr": (lrs or {}).get(s),
        }
        rows.append({c: row.get(c) for c in COLUMNS})
    return rows


def aggregate(rows: list[dict]) -> dict:
    """Per-run aggregates over seeds (aggregate_summary.csv names; std is the population std, ddof 0)."""
    vals = lambda k: np.array([r[k] for r in rows if r[k] is not None], dtype=np.float64)  # noqa: E731
    mean = lambda k: float(np.mean(vals(k))) if vals(k).size else None  # noqa: E731
    final = vals("final_gen")
    return {
        "n_seeds": len(rows),
        "n_seeds_evaluated": int(final.size),
        "mean_final_gen": mean("final_gen"),
        "std_final_gen": float(np.std(final)) if final.size else None,
        "median_final_gen": float(np.median(final)) if final.size else None,
        "mean_max_gen": mean("max_gen"),
        "n_final_gen_ge_0p8": int(np.sum(final >= GROK)),
        "n_max_gen_gt_0p8": int(np.sum(vals("max_gen") > GROK)),
        "mean_final_val": mean("final_val"),
        "mean_es_step_first_max_val": mean("es_step_first_max_val"),
        "mean_gen_at_es_first_max_val": mean("es_gen_at_first_max_val"),
        "mean_gen_at_es_patience3": mean("es_gen_patience3"),
        "mean_gen_at_first_val_ge_0p99": mean("gen_at_first_val_ge_99"),
        "mean_gen_last10_evals": mean("mean_gen_last10_evals"),
        "n_nonfinite": sum(bool(r["nonfinite"]) for r in rows),
    }


def member_lrs(run_dir: Path) -> dict[int, float]:
    """Seed -> learning rate (Config.member_lrs) from config.json; empty without a readable one."""
    try:
        cfg = compat.saved_config(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError, TypeError, config_lib.ConfigError):
        return {}
    return {int(s): float(lr) for s, lr in zip(cfg.seeds, cfg.member_lrs)}


def by_lr(rows: list[dict]) -> dict[str, dict] | None:
    """Aggregates per learning rate when the run's members have more than one (None otherwise)."""
    lrs = sorted({r["lr"] for r in rows if r["lr"] is not None})
    return {f"{lr:g}": aggregate([r for r in rows if r["lr"] == lr]) for lr in lrs} if len(lrs) > 1 else None


def run_identity(run_dir: Path) -> tuple[str | None, int | None]:
    """(task, depth) from config.json when present."""
    try:
        d = json.loads((run_dir / "config.json").read_text())
        return str(d["task"]), int(d["model"]["n_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def summarize_run(run_dir, write: bool = True) -> list[dict]:
    """Per-seed rows of a run; `write`: also run_dir/summary.csv (rows) and summary.json (rows, aggregate, rules)."""
    return summary(Path(run_dir), write)["seeds"]


def summary(run_dir: Path, write: bool) -> dict:
    """summary.json's document (rows, aggregate, rules, skipped lines), written with summary.csv if asked."""
    path = run_dir / "metrics.jsonl"
    scanned = scan_metrics(path)
    rows = seed_rows(scanned.records, *run_identity(run_dir), member_lrs(run_dir))
    rules = {
        "grok": f"final_gen >= {GROK} (D17)",
        "crossed_80": f"max_gen > {GROK}",
        "patience": f"stop after {PATIENCE} evals without a strict val improvement; gen at the best-val eval (D18 b)",
        "val_saturated": f"val >= {VAL_SATURATED} (D18 c)",
    }
    doc = {"seeds": rows, "aggregate": aggregate(rows), "rules": rules}
    split = by_lr(rows)
    if split:  # the overall aggregate mixes learning rates: each one's own as well
        doc["aggregate_by_lr"] = split
    if scanned.skipped:
        doc["skipped"] = skipped_note(path, scanned.skipped)
    if write:
        write_summary(run_dir, doc)
    return doc


def write_summary(run_dir: Path, doc: dict) -> None:
    """summary.csv (the rows) and summary.json (the whole document)."""
    rows = doc["seeds"]
    with open(run_dir / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_csv_value(r[c]) for c in COLUMNS])
    (run_dir / "summary.json").write_text(json.dumps(doc, indent=2))


# ---------------------------------------------------------------- CLI


def format_table(rows: list[dict], agg: dict) -> str:
    """A readable fixed-width table of the main columns plus the aggregates."""
    cols = [
        ("seed", "seed"),
        ("final_gen", "final gen"),
        ("final_val", "final val"),
        ("max_gen", "max gen"),
        ("step_of_max_gen", "@step"),
        ("first_step_gen_ge_80", "first>=.8"),
        ("step_gen_stays_ge_80", "stays>=.8"),
        ("es_gen_at_first_max_val", "ES gen"),
        ("es_step_first_max_val", "@step"),
        ("es_gen_patience3", "P3 gen"),
        ("gen_at_first_val_ge_99", "val>=.99 gen"),
        ("mean_gen_last10_evals", "last10 gen"),
        ("nonfinite", "nonfinite"),
    ]
    fmt = lambda v: (
        "-"
        if v is None
        else (f"{v:.3f}" if isinstance(v, float) else ("yes" if v is True else "" if v is False else str(v)))
    )  # noqa: E731
    table = [[h for _, h in cols]] + [[fmt(r[k]) for k, _ in cols] for r in rows]
    widths = [max(len(row[j]) for row in table) for j in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in table]
    a = {k: fmt(v) for k, v in agg.items()}
    lines.append("")
    lines.append(
        f"seeds {a['n_seeds']}: final gen mean {a['mean_final_gen']} median {a['median_final_gen']} "
        f"std {a['std_final_gen']}; final >= 0.8: {a['n_final_gen_ge_0p8']}; ever > 0.8: {a['n_max_gen_gt_0p8']}; "
        f"mean ES gen {a['mean_gen_at_es_first_max_val']} (patience-3 {a['mean_gen_at_es_patience3']}); "
        f"nonfinite {a['n_nonfinite']}"
    )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run directory (holds metrics.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    parser.add_argument(
        "--write",
        action="store_true",
        help="also write summary.csv and summary.json into the run directory (sgjax sweep does)",
    )


def run(args) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory")
    doc = summary(run_dir, args.write)
    rows = doc["seeds"]
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        task, depth = rows[0]["task"], rows[0]["depth"]
        title = f"{task} L{depth}: " if task else ""
        print(f"{title}{run_dir}")
        print(format_table(rows, aggregate(rows)))
        for lr, agg in (by_lr(rows) or {}).items():
            mean = "-" if agg["mean_final_gen"] is None else f"{agg['mean_final_gen']:.3f}"  # none evaluated yet
            print(
                f"lr {lr}: {agg['n_seeds']} members, final gen mean {mean}, final >= 0.8: {agg['n_final_gen_ge_0p8']}"
            )
        if doc.get("skipped"):
            print(f"note: {doc['skipped']}: a kill mid-write, or a damaged file")
        if args.write:
            print(f"wrote {run_dir / 'summary.csv'} and {run_dir / 'summary.json'}")
    return 0
