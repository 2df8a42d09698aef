"""Would compiling a run's chunk programs in parallel threads save time? Two one after another, then two others at once.

    python experiments/performance/parallel_compile/parallel_compile.py --depth 6 --seeds 10 \
        --out experiments/performance/parallel_compile/results/parallel_compile_cpu_l6.json

A run compiles one program per call length (docs/training.md): QF 3, Dyck 16 over a paper run, about
a minute each on an H200 at fp32. The programs are the paper's QF model at four unpadded lengths (K
steps per call, the state not yet donated: lowering only reads it). The first two compile one after
another, the other two in a pool of two threads: XLA compiles outside the GIL, so the threads overlap
only where the compiler leaves cores idle.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from sgjax.bench import speed as bench
from sgjax.core import batching, engine
from sgjax.run import loop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--chunk", type=int, default=100, help="K: steps per call")
    p.add_argument("--precision", default="highest", choices=("highest", "tensorfloat32", "bfloat16"))
    p.add_argument("--out", help="write the timings to this .json")
    args = p.parse_args()

    cfg = bench.bench_config("question", args.depth, args.seeds, args.chunk, args.precision, [])
    tdata = bench.bench_data(cfg)
    state = engine.init_population(cfg)
    rest = (
        jnp.asarray(cfg.seeds, jnp.int32),
        jnp.asarray(cfg.member_lrs, jnp.float32),
        jnp.asarray(batching.chunk_indices(cfg.seeds, 0, args.chunk, tdata.n, cfg.train.batch_size)),
        0,
        *tdata.device_arrays(),
    )

    def compile_at(length: int) -> None:
        with jax.default_matmul_precision(args.precision):  # a config context: each thread enters its own
            engine.make_chunk(cfg, tdata.layout, (length, tdata.row_width - 1)).lower(state, *rest).compile()

    t0 = time.perf_counter()
    for length in (240, 256):
        compile_at(length)
    sequential_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(compile_at, (272, 288)))
    threads_s = time.perf_counter() - t0
    out = {
        "args": vars(args),
        "device": jax.devices()[0].device_kind,
        "cores": os.cpu_count(),
        "two_sequential_s": sequential_s,
        "two_in_threads_s": threads_s,
        "speedup": sequential_s / threads_s,
    }
    print(json.dumps(out, indent=1))
    if args.out:
        loop.write_json(Path(args.out), out)


if __name__ == "__main__":
    main()
