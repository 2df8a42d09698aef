"""Reading a sweep: its run directories (runs of one experiment with other seeds pooled), each seed's evaluations,
non-finite seeds (docs/report.md)."""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from pathlib import Path

import numpy as np

from sgjax import config as config_lib
from sgjax.analysis import summarize
from sgjax.errors import UserError
from sgjax.run import compat, jsonl

PROBE_OPTIONS = "probe_options.json"  # sgjax.analysis.probe.run.OPTIONS_FILE, not imported: the report runs without jax
RUN_NAME = re.compile(r"^(?P<task>.+)_L(?P<depth>\d+)$")
# Config fields that may differ among runs whose seeds are pooled: who the members are, and how fast a run went or
# what it kept, not what a seed computes.
POOLABLE_FIELDS = frozenset(
    {
        "seeds",
        "lrs",
        "train.chunk_steps",
        "train.member_groups",
        "train.group_by",
        "train.log_every",
        "train.ckpt_every",
        "train.keep_checkpoints",
        "train.tensorboard",
        "eval.batch_size",
        "eval.width_groups",
    }
)


@dataclasses.dataclass
class Series:
    """One seed's evaluations: steps and accuracies (NaN where missing)."""

    steps: np.ndarray
    val: np.ndarray
    gen: np.ndarray


@dataclasses.dataclass
class Run:
    """One (task, depth): its run directories (one, or several runs of other seeds) and what the report derives from
    them.
    """

    task: str
    depth: int
    paths: tuple[Path, ...]
    metrics: list[dict]
    probe: list[dict]
    evals: dict[int, Series]
    summaries: dict[int, dict]
    nonfinite: dict[int, int]
    parts: tuple[Run, ...] = ()  # the one-directory Runs this one pools (none for a single run directory)

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
    if cfg.exists():  # a damaged one is said so, not passed over
        d = jsonl.read_json(cfg, "the run's config")
        try:
            return str(d["task"]), int(d["model"]["n_layers"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{cfg} is corrupt: it names no task and depth (task, model.n_layers)") from None
    m = RUN_NAME.match(path.name)
    return (m["task"], int(m["depth"])) if m else None


def is_run_dir(path: Path) -> bool:
    """A directory with a config.json or a metrics.jsonl."""
    return path.is_dir() and ((path / "config.json").exists() or (path / "metrics.jsonl").exists())


def load_run(path: Path, task: str, depth: int) -> Run:
    """Read metrics.jsonl and probe.jsonl of one run and derive per-seed summaries."""
    metrics = read_jsonl(path / "metrics.jsonl")
    evals = eval_series(metrics)
    return Run(
        task,
        depth,
        (path,),
        metrics,
        read_jsonl(path / "probe.jsonl"),
        evals,
        {s: seed_summary(e) for s, e in evals.items()},
        nonfinite_seeds(metrics),
    )


def pool(runs: list[Run]) -> Run:
    """Runs of one (task, depth) with disjoint seeds (check_poolable) as one Run of all their seeds;
    one run as it is.
    """
    if len(runs) == 1:
        return runs[0]
    return Run(
        runs[0].task,
        runs[0].depth,
        tuple(p for r in runs for p in r.paths),
        [x for r in runs for x in r.metrics],
        [x for r in runs for x in r.probe],
        by_seed([r.evals for r in runs]),
        by_seed([r.summaries for r in runs]),
        by_seed([r.nonfinite for r in runs]),
        tuple(runs),
    )


def by_seed(maps: list[dict]) -> dict:
    """{seed: value} maps of disjoint seeds as one, in seed order."""
    return dict(sorted((kv for m in maps for kv in m.items()), key=lambda kv: kv[0]))


def experiment(path: Path) -> dict:
    """A run's config.json as {section.field: value}, less the POOLABLE_FIELDS; {} without a readable one."""
    try:
        d = jsonl.read_json(path / "config.json")
    except (OSError, UserError):
        return {}
    try:
        d = compat.saved_config(d).to_dict()  # as it trained: the fields saved before an option filled in
    except (TypeError, ValueError, config_lib.ConfigError):
        pass  # a partial config (written by hand): compared as it is
    if not isinstance(d, dict):
        return {}
    return {k: v for k, v in config_lib.flat_items(d).items() if k not in POOLABLE_FIELDS}


def probe_options(path: Path) -> dict:
    """The options a run's probe.jsonl was made with, as {probe.option: value}; {} before it was probed."""
    try:
        return {f"probe.{k}": v for k, v in jsonl.read_json(path / PROBE_OPTIONS).items()}
    except (OSError, UserError):
        return {}


def check_poolable(runs: list[Run]) -> None:
    """Raise unless runs of one (task, depth) are one experiment with other seeds: configs equal but for
    POOLABLE_FIELDS,
    and probes (where both were probed) made with the same options."""
    first, seen = runs[0], {s: runs[0].paths[0] for s in runs[0].seeds}
    for other in runs[1:]:
        shared = sorted(set(seen) & set(other.seeds))
        a, b = (seen[shared[0]] if shared else first.paths[0]), other.paths[0]
        why = [f"seed {', '.join(map(str, shared))} in both"] if shared else []
        seen |= {s: b for s in other.seeds}
        ea, eb = experiment(a), experiment(b)
        if (pa := probe_options(a)) and (pb := probe_options(b)):  # probes of both: made alike
            ea, eb = ea | pa, eb | pb
        why += [f"{k} {ea.get(k)!r} vs {eb.get(k)!r}" for k in sorted(set(ea) | set(eb)) if ea.get(k) != eb.get(k)]
        if why:
            raise UserError(
                f"{a} and {b} are both {first.task} at depth {first.depth}, but not one experiment with other "
                f"seeds ({'; '.join(why[:4])}{'; ...' if len(why) > 4 else ''}): a report pools runs of one (task, "
                "depth) only then. Report them apart, or move one out of the sweep directory"
            )


def run_dirs(sweep_dir: Path) -> list[Path]:
    """The run directories of a sweep, or the directory itself if it is one run."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a directory")
    return [sweep_dir] if is_run_dir(sweep_dir) else sorted(p for p in sweep_dir.iterdir() if is_run_dir(p))


def discover_runs(*sweep_dirs: Path) -> list[Run]:
    """Every run of the sweeps (or run directories), sorted by task then depth; runs of one (task, depth) that are one
    experiment with other seeds (check_poolable) become one Run of all their seeds."""
    found: dict[tuple[str, int], list[Path]] = {}
    for p in (p for d in sweep_dirs for p in run_dirs(d)):
        ident = run_identity(p)
        if ident is not None:
            found.setdefault(ident, []).append(p)
        else:  # a run this report cannot place: say so rather than leave it out silently
            warnings.warn(
                f"{p} left out of the report: no task and depth (a readable config.json, or a name <task>_L<depth>)",
                stacklevel=2,
            )
    out = []
    for ident, paths in found.items():
        runs = [load_run(p, *ident) for p in paths]
        check_poolable(runs)
        out.append(pool(runs))
    return sorted(out, key=lambda r: (task_order(r.task), r.depth))


def task_order(task: str) -> tuple[int, str]:
    """The paper's order (QF, TI, Dyck), then any other task by name."""
    return (config_lib.TASKS.index(task), "") if task in config_lib.TASKS else (len(config_lib.TASKS), task)


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
        by_seed.setdefault(int(r["seed"]), {})[int(r["step"])] = (
            as_float(r.get("val_acc")),
            as_float(r.get("gen_acc")),
        )
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
    """The per-seed columns of sgjax.analysis.summarize (one definition of the D17/D18 rules)."""
    return summarize.seed_row(e.steps, e.val, e.gen)
