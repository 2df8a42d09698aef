"""Where a train step's time goes: XLA ops grouped by kind, from a jax.profiler trace.

    XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true python experiments/profile_step.py --seeds 10
    python experiments/profile_step.py --seeds 10 --set model.scan_layers=true
    XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true python experiments/profile_step.py --seeds 10 --layout unpadded

The process keeps freed host memory as `sgjax train` does on a CPU (sgjax.hostmem). One population step (6 layers, the paper's QF model, state donated) is compiled, run twice untraced,
then `--steps` times under the profiler. `--layout rows` (default) steps on rows of 8 x 36 random
tokens; `unpadded` and `packed` run one-step chunks (engine.make_chunk) on real QF batches. Ops are grouped by their name without the numeric
suffix (`ynn_fusion.12` -> `ynn_fusion`: the matmuls on CPU; `*select*`: Adam and the frozen-member
select; `slice`/`concatenate`/`copy`: layout work). Times are summed over threads, per step.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile

from sgjax import hostmem

hostmem.keep_freed_memory()  # as `sgjax train` runs on a CPU: freed host memory kept, no page faults per step

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from ab_step import compile_arm, random_tokens  # noqa: E402  (experiments/ is this script's directory, so on sys.path)


def real_batch_step(args):
    """A one-step chunk of real QF batches in a packed layout: (step fn, state, seeds, its other arguments)."""
    from sgjax import batching, bench, engine

    cfg = bench.bench_config("question", args.depth, args.seeds, 1, "highest", [*args.overrides, f"data.layout={args.layout}"])
    tdata = bench.bench_data(cfg)
    idx_SxKxB = batching.chunk_indices(cfg.seeds, 10_000, 1, tdata.n, cfg.train.batch_size)
    fn = engine.make_chunk(cfg, tdata.layout, tdata.width_for(idx_SxKxB))
    rest = (jnp.ones(args.seeds, jnp.float32), jnp.asarray(idx_SxKxB), 10_000, *tdata.device_arrays())
    return fn, engine.init_population(cfg), jnp.asarray(cfg.seeds, jnp.int32), rest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=1, help="population size S")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--steps", type=int, default=2, help="traced steps")
    p.add_argument("--top", type=int, default=15, help="op kinds to print")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--layout", default="rows", choices=("rows", "packed", "unpadded"))
    args = p.parse_args()

    if args.layout == "rows":
        tokens_SxBxT = random_tokens(args.seeds)
        batch = (tokens_SxBxT, tokens_SxBxT)
        arm = compile_arm(args.overrides, args.seeds, args.depth, tokens_SxBxT)  # the step as ab_step.py times it
        step, state, seeds_S = arm["step"], arm["state"], jnp.arange(args.seeds)
    else:
        step, state, seeds_S, batch = real_batch_step(args)
    state, _ = jax.block_until_ready(step(state, seeds_S, *batch))

    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        for _ in range(args.steps):
            state, _ = jax.block_until_ready(step(state, seeds_S, *batch))
        jax.profiler.stop_trace()
        (path,) = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)
        events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events

    ms_by_kind: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not e["name"].startswith(("ThunkExecutor", "$", "SlinkyThreadPool")):
            ms_by_kind[re.sub(r"[.0-9]+$", "", e["name"])] += e["dur"] / 1e3 / args.steps
    total = sum(ms_by_kind.values())
    if not total:
        raise SystemExit("no per-op events: on CPU set XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true")
    print(f"S={args.seeds} depth={args.depth} {' '.join(args.overrides)}: {total:.0f} ms of ops per step")
    for kind, ms in ms_by_kind.most_common(args.top):
        print(f"{ms:9.1f} ms {100 * ms / total:5.1f}%  {kind}")


if __name__ == "__main__":
    main()
