"""How long a checkpoint blocks the training loop: the probe checkpoint (.npz per seed) and the resume state.

    python experiments/performance/checkpoint_save/bench_checkpoint_save.py --task question --depth 6 --seeds 10 \
        --rounds 3 \
        --out experiments/performance/checkpoint_save/results/bench_checkpoint_save_cpu_l6_s10.json

Saves the paper model's freshly initialised population as the loop does at a checkpoint step
(`RunCheckpoints.save_params` then `save_state`), `--rounds` times into a scratch directory, and
times what the loop waits for (the calls' return) apart from the background writes (until
`wait()` returns). The first round is reported but left out of the means (Orbax's first save sets
up its threads and directories).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax

from sgjax import config
from sgjax.core import engine
from sgjax.run import checkpoint
from sgjax.run.loop import meta


def one_round(ckpts: checkpoint.RunCheckpoints, cfg, step: int, state) -> dict[str, float]:
    """Seconds the loop is blocked by each save, and until both have committed."""
    frozen_S = engine.to_host(state["frozen"])
    t0 = time.perf_counter()
    host = engine.host_params(state["params"])  # the loop's device-to-host gather, part of its wait
    t1 = time.perf_counter()
    ckpts.save_params(step, host, meta(cfg, step, frozen_S))
    t2 = time.perf_counter()
    ckpts.save_state(step, state, meta(cfg, step, frozen_S))
    t3 = time.perf_counter()
    ckpts.wait()
    t4 = time.perf_counter()
    return {
        "gather_s": t1 - t0,
        "save_params_s": t2 - t1,
        "save_state_s": t3 - t2,
        "blocked_s": t3 - t0,
        "background_s": t4 - t3,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="question")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", help="scratch directory (default: a temporary one beside the repo's runs/)")
    p.add_argument("--out")
    args = p.parse_args()
    cfg = config.preset("paper", args.task, args.depth)
    cfg = dataclasses.replace(cfg, seeds=config.PAPER_SEEDS[: args.seeds])
    state = jax.block_until_ready(engine.init_population(cfg))
    scratch = Path(
        args.dir or tempfile.mkdtemp(prefix="ckpt_bench_", dir=Path("runs") if Path("runs").is_dir() else None)
    )
    ckpts = checkpoint.RunCheckpoints(scratch)
    rows = []
    try:
        for r in range(args.rounds + 1):
            rows.append(one_round(ckpts, cfg, step=1000 * (r + 1), state=state))
            print(f"round {r}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()), flush=True)
    finally:
        ckpts.close()
    timed = rows[1:]
    params_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(state["params"]))  # as stacked into the .npz files
    out = {
        "command": "python experiments/performance/checkpoint_save/bench_checkpoint_save.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        "host": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "device": jax.devices()[0].device_kind,
        "task": args.task,
        "depth": args.depth,
        "population": args.seeds,
        "probe_checkpoint_mb": params_bytes / 1e6,
        "rounds": rows,
        "mean": {k: statistics.mean(r[k] for r in timed) for k in rows[0]},
    }
    print(json.dumps(out["mean"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
