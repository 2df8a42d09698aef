"""Page faults and system CPU time per population train step on a CPU backend.

    python experiments/performance/host_memory/host_faults.py --seeds 10
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python experiments/performance/host_memory/host_faults.py --seeds 10

XLA:CPU allocates a step's temporaries (about 1 GiB at S = 10, 6 layers) afresh for every execution,
and glibc serves requests that large with mmap, so every step touches new pages. This prints, per
timed step: wall time, minor page faults, and user / system CPU seconds (getrusage); run it under
different GLIBC_TUNABLES (or LD_PRELOAD allocators) to compare, in alternating processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train_step"))  # ab_step.py, beside profile_step.py
from ab_step import compile_arm, random_tokens  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10, help="population size S")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--warmup", type=int, default=4, help="untimed steps (the allocator settles)")
    p.add_argument("--steps", type=int, default=6, help="timed steps")
    args = p.parse_args()
    tokens_SxBxT = random_tokens(args.seeds)
    arm = compile_arm([], args.seeds, args.depth, tokens_SxBxT)
    step, state, seeds_S = arm["step"], arm["state"], jnp.arange(args.seeds)
    rows = []
    for i in range(args.warmup + args.steps):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        state, _ = jax.block_until_ready(step(state, seeds_S, tokens_SxBxT, tokens_SxBxT))
        r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
        if i >= args.warmup:
            rows.append(
                {
                    "wall_s": wall,
                    "minor_faults": r1.ru_minflt - r0.ru_minflt,
                    "user_s": r1.ru_utime - r0.ru_utime,
                    "sys_s": r1.ru_stime - r0.ru_stime,
                }
            )
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    print(
        json.dumps(
            {
                "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
                "seeds": args.seeds,
                "depth": args.depth,
                "median": med,
                "steps": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
