"""A/B of one full evaluation between source trees or eval settings, in alternating child processes.

    git worktree add ../sgjax_before HEAD~1
    python experiments/performance/evaluation/ab_eval.py --run runs/qf6 --arm before=../sgjax_before --arm after=. \
        --arm after_1group=.:eval.width_groups=1 --rounds 3 \
            --out experiments/performance/evaluation/results/ab_eval.json

An arm is NAME=SOURCE_TREE[:FIELD=VALUE,...]: the child imports sgjax from SOURCE_TREE (PYTHONPATH) and
applies the overrides to the run's config. Every child loads the same checkpoint (`--step`, the last by
default), copies its first member `--members` times (a population of S identical members costs what S
trained members cost), builds the evaluator on val and gen (`--gen-size` lines), and times the first
call (compiles included) and `--calls` more. The scores of every arm must agree: a speed lever may not
change a metric.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def readable_config(run_dir):
    """The run's Config, without fields this sgjax does not know (a run written by a newer tree)."""
    import dataclasses

    from sgjax import config

    d = json.loads((Path(run_dir) / "config.json").read_text())
    base = config.Config()
    for name, value in list(d.items()):
        if name not in config.Config.__dataclass_fields__:
            del d[name]
        elif isinstance(value, dict):
            d[name] = {k: v for k, v in value.items() if k in {f.name for f in dataclasses.fields(getattr(base, name))}}
    return config.from_dict(d)


def child(args) -> dict:
    """Time one arm in this process (sgjax comes from PYTHONPATH)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import sgjax
    from sgjax import config, data
    from sgjax.evaluation import evaluate
    from sgjax.run import checkpoint, loop

    cfg = config.override(readable_config(args.run), [o for o in args.overrides.split(",") if o])
    step = args.step if args.step is not None else checkpoint.list_steps(args.run)[-1]
    _, params = checkpoint.load_params(args.run, step)
    params_S = jax.tree_util.tree_map(lambda a: jnp.repeat(jnp.asarray(a)[:1], args.members, axis=0), params)
    gen = loop.gen_split_name(cfg.task)
    sizes = {"train": 10, "val": args.val_size, gen: args.gen_size}
    sizes.update({s: 10 for s in data.SPLITS[cfg.task] if s not in sizes})
    splits = data.load_splits(cfg.task, sizes=sizes)
    ev = evaluate.make_evaluator(
        cfg.model,
        cfg.eval,
        cfg.task,
        data.vocab_for(cfg.task),
        {"val": splits["val"], gen: splits[gen]},
        member_seeds=range(args.members),
    )
    t0 = time.perf_counter()
    scores = jax.block_until_ready(ev(params_S, step))
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.calls):
        t0 = time.perf_counter()
        jax.block_until_ready(ev(params_S, step))
        times.append(time.perf_counter() - t0)
    return {
        "sgjax_file": sgjax.__file__,
        "first_s": first,
        "call_s": times,
        "rows": ev.rows(),
        "temp_bytes": (ev.fit or {}).get("temp_bytes"),
        "step": step,
        "scores": {k: np.asarray(v).tolist() for k, v in scores.items()},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a run directory with checkpoints")
    p.add_argument("--step", type=int, default=None)
    p.add_argument("--arm", action="append", default=[], help="NAME=SOURCE_TREE[:FIELD=VALUE,...]")
    p.add_argument("--members", type=int, default=1, help="population size S (copies of the first member)")
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--gen-size", type=int, default=2000)
    p.add_argument("--calls", type=int, default=2, help="timed calls after the first")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    arms = []
    for spec in args.arm:
        name, _, rest = spec.partition("=")
        tree, _, overrides = rest.partition(":")
        arms.append((name, str(Path(tree).resolve()), overrides))
    common = [
        "--run",
        args.run,
        "--members",
        str(args.members),
        "--val-size",
        str(args.val_size),
        "--gen-size",
        str(args.gen_size),
        "--calls",
        str(args.calls),
    ]
    common += ["--step", str(args.step)] if args.step is not None else []
    results = {name: [] for name, _, _ in arms}
    for r in range(args.rounds):
        for name, tree, overrides in arms:
            env = dict(os.environ, PYTHONPATH=tree)
            proc = subprocess.run(
                [sys.executable, __file__, "--child", "--overrides", overrides, *common],
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                sys.exit(f"arm {name} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results[name].append(res)
            print(
                f"round {r + 1} {name}: first {res['first_s']:.1f} s, calls "
                f"{', '.join(f'{t:.1f}' for t in res['call_s'])} s, {res['rows']} rows",
                flush=True,
            )
    base = arms[0][0]
    ref = results[base][0]["scores"]
    for name, _, _ in arms:
        for res in results[name]:
            assert res["scores"] == ref, f"{name} scores differ from {base}'s: {res['scores']} vs {ref}"
    summary = {name: statistics.median(t for res in rs for t in res["call_s"]) for name, rs in results.items()}
    for name, med in summary.items():
        print(f"{name}: median {med:.2f} s per evaluation, {summary[base] / med:.2f}x {base}'s speed")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"argv": sys.argv, "arms": arms, "results": results, "median_s": summary}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
