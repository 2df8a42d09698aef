"""The paper sweep's projected time from measured rates (`sgjax bench --project`), and its FLOPs per seed-step."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from sgjax.bench.flops import computed_shape, train_flops_per_step

# The paper sweep: steps and evaluation cadence per task; 5 depths x 10 seeds each.
SWEEP = {"question": (300_000, 3_000), "tense": (300_000, 3_000), "dyck": (400_000, 10_000)}
SWEEP_DEPTHS = (2, 4, 6, 8, 10)
SWEEP_SEEDS = 10


def parse_rates(specs: list[str]) -> tuple[dict, dict, dict]:
    """{(task, depth): value} for seed-steps/s, eval s and compile s (one program), from bench JSON files or
    `task:depth=rate[/eval_s[/compile_s]]`."""
    from sgjax.errors import UserError

    rates, evals, compiles = {}, {}, {}
    for spec in specs:
        try:
            parse_rate(spec, rates, evals, compiles)
        except (ValueError, KeyError, TypeError) as e:  # a typo'd spec or another JSON file: name it, no traceback
            raise UserError(
                f"--project {spec!r}: not a bench .json nor task:depth=rate[/eval_s[/compile_s]] ({e})"
            ) from None
    return rates, evals, compiles


def parse_rate(spec: str, rates: dict, evals: dict, compiles: dict) -> None:
    """Add one `--project` spec (a bench JSON file or `task:depth=rate[/eval_s[/compile_s]]`) to the tables."""
    if "=" in spec and not Path(spec).exists():
        key, val = spec.split("=", 1)
        task, depth = key.split(":")
        rate, ev, comp = (val.split("/") + ["", ""])[:3]
        if not float(rate) > 0:  # a time per step is 1 / rate
            raise ValueError(f"rate {rate} is not > 0")
        rates[(task, int(depth))] = float(rate)
        if ev:
            evals[(task, int(depth))] = float(ev)
        if comp:
            compiles[(task, int(depth))] = float(comp)
        return
    doc = json.loads(Path(spec).read_text())
    # the largest population measured is what a sweep runs (10 seeds per depth)
    for r in sorted(
        (r for r in doc["results"] if r["kind"] == "sgjax" and "error" not in r), key=lambda r: r["population"]
    ):
        # the timed calls' widths are a few of the run's: its rate is their FLOP/s over the whole run's mean seed-step
        rates[(r["task"], r["depth"])] = r["achieved_flops"] / sweep_flops_per_seed_step(r["task"], r["depth"])
        if r.get("eval_s"):
            evals[(r["task"], r["depth"])] = r["eval_s"]
        if r.get("compile_s"):
            compiles[(r["task"], r["depth"])] = r["compile_s"]


@functools.lru_cache(maxsize=None)
def sweep_calls(task: str, groups: int = 1, group_by: str = "seed") -> tuple[str, tuple[tuple[object, int], ...], int]:
    """(layout, ((width, calls), ...), steps per call) of one paper run of `task` at S = 10 in `groups` member
    groups (grouped by seed or by length, train.group_by): every call's computed width (loop.length_bounds, floor
    and tail applied; unpadded widths with their attention row), counted; with groups, each group's calls."""
    import numpy as np

    from sgjax import config as C
    from sgjax import data
    from sgjax.core import engine
    from sgjax.run import loop

    cfg = C.preset("paper", task, 6)
    train = dataclasses.replace(cfg.train, steps=SWEEP[task][0], member_groups=groups, group_by=group_by)
    cfg = dataclasses.replace(cfg, seeds=C.PAPER_SEEDS[:SWEEP_SEEDS], train=train)
    tdata = engine.TrainData(
        *loop.train_sequences(cfg, data.load_splits(task)["train"], data.vocab_for(task)),
        C.concrete_layout(cfg).data.layout,
    )
    widths, calls = np.unique(loop.length_bounds(cfg, tdata.seq_len_N, tdata.layout)[2], return_counts=True)
    shaped = tuple((tdata.call_width(int(w)), int(n)) for w, n in zip(widths, calls))
    return tdata.layout, shaped, loop.steps_per_call(cfg, tdata.layout)


def sweep_programs(task: str) -> int:
    """Programs one paper run of `task` compiles at S = 10: one per call length."""
    return len(sweep_calls(task)[1])


def sweep_flops_per_seed_step(task: str, depth: int, groups: int = 1, group_by: str = "seed") -> float:
    """Mean FLOPs of a seed-step over one whole paper run of `task` at `depth` (in member `groups`), each call at its
    computed width.
    """
    from sgjax import config as C

    layout, calls, _ = sweep_calls(task, groups, group_by)
    m, b = C.preset("paper", task, depth).model, C.TrainConfig().batch_size
    flops = sum(
        n * train_flops_per_step(depth, m.d_model, m.d_ff, m.vocab_size, *computed_shape(layout, w, b))
        for w, n in calls
    )
    return flops / sum(n for _, n in calls)


def sweep_train_flops(task: str, groups: int = 1, group_by: str = "seed") -> float:
    """FLOPs of training `task` in the paper sweep: its seeds x steps at each of its depths (in member `groups`)."""
    return sum(
        SWEEP_SEEDS * SWEEP[task][0] * sweep_flops_per_seed_step(task, d, groups, group_by) for d in SWEEP_DEPTHS
    )


def fill(table: dict, task: str, depth: int, per_step: bool) -> tuple[float | None, str]:
    """A value for (task, depth): measured; else fitted as a + b*depth over the task's depths; else from one depth."""
    if (task, depth) in table:
        return table[(task, depth)], "measured"
    pts = sorted((d, v) for (t, d), v in table.items() if t == task)
    if not pts:
        return None, "missing"
    # time per step (1/rate) and eval time both grow about linearly with depth
    ys = [(d, 1 / v if per_step else v) for d, v in pts]
    if len(ys) == 1:
        y = ys[0][1] * depth / ys[0][0]
        how = f"scaled from L{ys[0][0]}"
    else:
        n = len(ys)
        mx, my = sum(d for d, _ in ys) / n, sum(y for _, y in ys) / n
        b = sum((d - mx) * (y - my) for d, y in ys) / sum((d - mx) ** 2 for d, _ in ys)
        y = my + b * (depth - mx)
        how = "linear fit in depth"
    return (1 / y if per_step else y), how


def project(specs: list[str]) -> str:
    """The paper sweep's time (3 tasks x 5 depths x 10 seeds, 300k/400k steps, evaluations) from measured rates."""
    rates, evals, compiles = parse_rates(specs)
    lines = [
        "| task | L | steps | seed-steps/s | (source) | train h | evals | eval s | eval h | programs | compile s | "
        "compile h | total h |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    total, missing, programs = 0.0, [], {}
    for task, (steps, every) in SWEEP.items():
        for depth in SWEEP_DEPTHS:
            rate, how = fill(rates, task, depth, per_step=True)
            if rate is None:
                missing.append(f"{task}:L{depth}")
                continue
            ev, _ = fill(evals, task, depth, per_step=False)
            comp, _ = fill(compiles, task, depth, per_step=False)
            if comp is not None and task not in programs:
                programs[task] = sweep_programs(task)
            train_h = SWEEP_SEEDS * steps / rate / 3600
            n_evals = steps // every
            eval_h = n_evals * (ev or 0.0) / 3600
            comp_h = programs[task] * comp / 3600 if comp is not None else 0.0
            total += train_h + eval_h + comp_h
            lines.append(
                f"| {task} | {depth} | {steps} | {rate:.1f} | {how} | {train_h:.2f} | {n_evals} | "
                f"{'-' if ev is None else f'{ev:.2f}'} | {eval_h:.2f} | {programs.get(task, '-')} | "
                f"{'-' if comp is None else f'{comp:.1f}'} | {comp_h:.2f} | {train_h + eval_h + comp_h:.2f} |"
            )
    lines.append(
        f"\nProjected total: {total:.1f} device-hours for the tasks with rates "
        f"({SWEEP_SEEDS} seeds per depth as one population, evaluation every 3k (QF/TI) / 10k (Dyck) steps; "
        "one compile per call length the run meets, at the measured time of one)."
    )
    if missing:
        lines.append(
            f"No rate for {', '.join(missing)}: measure them (Dyck's packed batches are longer than QF/TI rows)."
        )
    if not evals:
        lines.append("No evaluation times given: evaluation is not included.")
    if not compiles:
        lines.append("No compile times given: compiling is not included.")
    return "\n".join(lines)
