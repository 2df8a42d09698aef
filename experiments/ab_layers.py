"""A/B of the layer loop against nn.scan: one population train step, both compiled in one process, timed alternately.

    python experiments/ab_layers.py --seeds 10 --depth 6 --rounds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from sgjax import config, engine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", help="write the timings to this .json")
    args = p.parse_args()
    tokens_SxBxT = jnp.asarray(np.random.default_rng(0).integers(1, 60, (args.seeds, 8, 36)), jnp.int32)
    seeds_S = jnp.arange(args.seeds)
    runs = {}
    for scan in (True, False):
        cfg = config.preset("paper", "question", args.depth)
        cfg = dataclasses.replace(cfg, seeds=tuple(range(args.seeds)), model=dataclasses.replace(cfg.model, scan_layers=scan))
        step = jax.jit(jax.vmap(lambda st, s, x, y, cfg=cfg: engine.member_step(cfg, st, s, 1.0, 5, (x, y, None, None))))
        state = engine.init_population(cfg)
        t0 = time.perf_counter()
        jax.block_until_ready(step(state, seeds_S, tokens_SxBxT, tokens_SxBxT))
        runs["scan" if scan else "loop"] = {"step": step, "state": state, "first_call_s": time.perf_counter() - t0, "times_s": []}
    for _ in range(args.rounds):
        for r in runs.values():
            t0 = time.perf_counter()
            jax.block_until_ready(r["step"](r["state"], seeds_S, tokens_SxBxT, tokens_SxBxT))
            r["times_s"].append(time.perf_counter() - t0)
    out = {k: {"first_call_s": r["first_call_s"], "times_s": r["times_s"], "median_s": float(np.median(r["times_s"]))} for k, r in runs.items()}
    out["loop_speedup_median"] = out["scan"]["median_s"] / out["loop"]["median_s"]
    out["args"] = vars(args)
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
