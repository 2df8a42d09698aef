"""Where a train step's time goes: XLA ops grouped by kind, from a jax.profiler trace.

    XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true python experiments/performance/train_step/profile_step.py --seeds 10
    python experiments/performance/train_step/profile_step.py --seeds 10 --set model.scan_layers=true
    XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true python experiments/performance/train_step/profile_step.py \
        --seeds 10 --layout unpadded

The process keeps freed host memory as `sgjax train` does on a CPU (sgjax.run.hostmem). One population step (6
layers, the paper's QF model, state donated) is compiled, run twice untraced, then `--steps` times under the profiler.
`--layout rows` (default) steps on rows of 8 x 36 random tokens; `unpadded` and `packed` run one-step chunks
(engine.make_chunk) on real QF batches. Ops are grouped by their name without the numeric suffix
(`ynn_fusion.12` -> `ynn_fusion`: the
matmuls on CPU; `*select*`: Adam and the frozen-member select; `slice`/`concatenate`/`copy`: layout work). Times are
summed over threads, per step.

On a GPU the trace's device streams alone are counted (kernels, not the host threads that launch them), and the
kernels are also summed into matmuls (cuBLAS/CUTLASS names) and the rest:

    python experiments/performance/train_step/profile_step.py --seeds 10 --layout unpadded --precision tensorfloat32 \
        --steps 5
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile

from sgjax.run import hostmem

hostmem.keep_freed_memory()  # as `sgjax train` runs on a CPU: freed host memory kept, no page faults per step

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from ab_step import compile_arm, random_tokens  # noqa: E402  (ab_step.py is in this script's directory, so on sys.path)


def real_batch_step(args):
    """A one-step chunk of real QF batches in a packed layout: (step fn, state, seeds, its other arguments)."""
    from sgjax.bench import speed as bench
    from sgjax.core import batching, engine

    cfg = bench.bench_config(
        "question", args.depth, args.seeds, 1, args.precision, [*args.overrides, f"data.layout={args.layout}"]
    )
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
    p.add_argument(
        "--precision",
        default="highest",
        choices=("highest", "tensorfloat32", "bfloat16"),
        help="matmul precision, as train.matmul_precision (default fp32)",
    )
    args = p.parse_args()

    with jax.default_matmul_precision(args.precision):  # read while tracing, as sgjax.run.loop does
        events = traced_events(args)
    ms_by_kind, counted = op_times(events, args.steps)
    total = sum(ms_by_kind.values())
    if not total:
        raise SystemExit("no per-op events: on CPU set XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true")
    print(
        f"{jax.devices()[0].device_kind}, S={args.seeds} depth={args.depth} {args.layout} {args.precision} "
        f"{' '.join(args.overrides)}: {total:.2f} ms of ops per step ({counted})"
    )
    matmul = sum(ms for kind, ms in ms_by_kind.items() if MATMUL.search(kind))
    print(f"{matmul:9.2f} ms {100 * matmul / total:5.1f}%  (all matmul kernels: {MATMUL.pattern})")
    for kind, ms in ms_by_kind.most_common(args.top):
        print(f"{ms:9.2f} ms {100 * ms / total:5.1f}%  {kind}")


# kernel names of matrix products: XLA's CPU dot library, cuBLAS (gemm, nvjet), CUTLASS, Triton gemms
MATMUL = re.compile(r"ynn_fusion|dot|gemm|xmma|cutlass|nvjet|cublas", re.IGNORECASE)


def traced_events(args) -> list[dict]:
    """The trace events of `args.steps` population steps, after two untraced ones."""
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
    return events["traceEvents"] if isinstance(events, dict) else events


def op_times(events: list[dict], steps: int) -> tuple[collections.Counter, str]:
    """Milliseconds per step by op kind (the name without a `.N` or `_N` suffix), and whose events they are.

    On a GPU only its streams count: xprof's trace also repeats them as "XLA Ops" and "XLA Modules"
    lines of the device, and the host threads only launch kernels.
    """
    meta = lambda kind: {
        (e["pid"], e.get("tid")) if kind == "thread_name" else e["pid"]: e.get("args", {}).get("name", "")
        for e in events
        if e.get("ph") == "M" and e.get("name") == kind
    }
    processes, threads = meta("process_name"), meta("thread_name")
    devices = {pid for pid, name in processes.items() if "/device:" in name and "CPU" not in name}
    lanes = {key for key, name in threads.items() if key[0] in devices}
    streams = {key for key in lanes if threads[key].startswith("Stream")}
    keep = streams or lanes  # None on a CPU: every host thread, summed
    ms_by_kind: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") != "X" or (keep and (e.get("pid"), e.get("tid")) not in keep):
            continue
        if not keep and e["name"].startswith(("ThunkExecutor", "$", "SlinkyThreadPool")):
            continue
        ms_by_kind[re.sub(r"[._][0-9]+$", "", e["name"])] += e["dur"] / 1e3 / steps
    counted = sorted({f"{processes[pid]} {threads[pid, tid]}" for pid, tid in keep})
    return ms_by_kind, "; ".join(counted) or "host threads, summed"


if __name__ == "__main__":
    main()
