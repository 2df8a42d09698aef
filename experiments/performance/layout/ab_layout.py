"""Batch layouts for QF/TI on the same real batches: each compiled in one process, timed in turn.

    python experiments/performance/layout/ab_layout.py --task question --seeds 10 --rounds 12 \
        --out experiments/performance/layout/results/ab_layout_cpu_s10.json

Rows pad every sequence to the longest training line (37 ids for QF: 1.54 positions per real token at
S = 10). Packed lays the batch end to end (fewer positions) but attends over a P x P block-diagonal
square. Unpadded (the default for QF/TI) runs the position-wise layers on the packed tokens and
attention on the sequences as rows. Each round draws the next chunk of K steps of every seed's real
batches and runs it in every layout (new lengths are compiled as they appear, untimed); the per-step
medians are compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from sgjax import config, data
from sgjax.core import batching, engine
from sgjax.run import loop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="question", choices=("question", "tense"))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--chunk", type=int, default=2, help="K steps per call")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--layouts", default="packed,unpadded", help="layouts timed against rows")
    p.add_argument("--out")
    args = p.parse_args()
    cfg = config.preset("paper", args.task, args.depth)
    cfg = dataclasses.replace(cfg, seeds=tuple(42 + 10 * i for i in range(args.seeds)))
    cfg = config.override(cfg, ["data.layout=rows"])  # the baseline's batches; each arm names its layout
    split = data.load_splits(args.task, sizes={"train": 20_000, "val": 10, "gen": 10})["train"]
    rows = loop.make_train_data(cfg, split, data.vocab_for(args.task))
    layouts = {"rows": rows} | {
        name: engine.TrainData(rows.flat_M, rows.starts_N, rows.seq_len_N, name)
        for name in args.layouts.split(",")
        if name != "rows"
    }
    seeds_S, lrs_S = jnp.asarray(cfg.seeds, jnp.int32), jnp.ones(args.seeds, jnp.float32)
    arms = {
        name: {
            "data": td,
            "resident": td.device_arrays(),
            "fns": {},
            "state": engine.init_population(cfg),
            "s_per_step": [],
            "widths": [],
        }
        for name, td in layouts.items()
    }
    step = 10_000
    for _ in range(args.rounds):
        idx_SxKxB = batching.chunk_indices(cfg.seeds, step, args.chunk, rows.n, cfg.train.batch_size)
        for arm in arms.values():
            width = arm["data"].width_for(idx_SxKxB)
            args_in = (seeds_S, lrs_S, jnp.asarray(idx_SxKxB), step, *arm["resident"])
            if width not in arm["fns"]:  # compile this width, untimed
                arm["fns"][width] = engine.make_chunk(cfg, arm["data"].layout, width)
                arm["state"], _ = jax.block_until_ready(arm["fns"][width](arm["state"], *args_in))
            t0 = time.perf_counter()
            arm["state"], _ = jax.block_until_ready(arm["fns"][width](arm["state"], *args_in))
            arm["s_per_step"].append((time.perf_counter() - t0) / args.chunk)
            arm["widths"].append(width)
        step += args.chunk
    out = {
        name: {
            "median_s_per_step": float(np.median(a["s_per_step"])),
            "s_per_step": a["s_per_step"],
            "widths": a["widths"],
        }
        for name, a in arms.items()
    }
    for name, o in out.items():
        print(f"{name:7s} median {o['median_s_per_step']:.3f} s per population step, widths {sorted(set(o['widths']))}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "command": "python experiments/performance/layout/ab_layout.py "
                    f"--task {args.task} --seeds {args.seeds} --chunk {args.chunk} --rounds {args.rounds}",
                    "device": str(jax.devices()[0]),
                    "arms": out,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
