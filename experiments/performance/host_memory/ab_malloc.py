"""sgjax's step with glibc's default malloc against sgjax.run.hostmem's (freed memory kept), in alternating children.

    python experiments/performance/host_memory/ab_malloc.py --seeds 10 --chunks 1,5 --rounds 3 \
        --out experiments/performance/host_memory/results/ab_malloc_cpu_s10.json

Each arm is a `sgjax bench` measurement (bench.measure_isolated: a fresh process, compile untimed,
the same batches) with SGJAX_MALLOC=default or tuned; arms alternate within every round so drift in
the machine's speed hits both. Reports seconds per population step and minor page faults per call
(fresh pages the kernel mapped) for each K (steps per call).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics

import jax

from sgjax.bench import speed as bench


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="question")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--steps", type=int, default=10, help="timed steps per arm")
    p.add_argument("--chunks", default="1,5", help="K values (steps per call) to measure")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args()
    base = {
        "kind": "sgjax",
        "task": args.task,
        "depth": args.depth,
        "population": args.seeds,
        "precision": "highest",
        "seq_len": 37,
        "overrides": [],
        "eval": False,
        "warmup": 1,
    }
    rows = []
    for rnd in range(args.rounds):
        for k in (int(c) for c in args.chunks.split(",")):
            for malloc in ("default", "tuned"):
                os.environ["SGJAX_MALLOC"] = malloc
                r = bench.measure_isolated(
                    {**base, "steps_per_call": k, "calls": math.ceil(args.steps / k), "round": rnd}
                )
                row = {
                    "round": rnd,
                    "K": k,
                    "malloc": malloc,
                    "s_per_step": r["per_call_s"] / k,
                    "faults_per_call": r["page_faults_per_call"],
                    "widths": r["widths"],
                    "malloc_tuned": r.get("malloc_tuned"),
                    "call_s": r["call_s"],
                    "call_faults": r.get("call_faults"),
                    "peak_rss_bytes": r.get("peak_rss_bytes"),
                }
                rows.append(row)
                print(
                    f"round {rnd} K={k:3d} {malloc:7s} {row['s_per_step']:.3f} s/step  "
                    f"{row['faults_per_call']:>8.0f} faults/call",
                    flush=True,
                )
    summary = {}
    for k in sorted({r["K"] for r in rows}):
        arm = {m: [r["s_per_step"] for r in rows if r["K"] == k and r["malloc"] == m] for m in ("default", "tuned")}
        ratios = [d / t for d, t in zip(arm["default"], arm["tuned"])]
        summary[f"K={k}"] = {m: statistics.median(v) for m, v in arm.items()} | {"default/tuned per round": ratios}
        print(
            f"K={k}: default {statistics.median(arm['default']):.3f}, tuned {statistics.median(arm['tuned']):.3f} "
            f"s/step; "
            f"default/tuned per round {', '.join(f'{x:.2f}' for x in ratios)}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "command": "python experiments/performance/host_memory/ab_malloc.py "
                    f"--task {args.task} --depth {args.depth} --seeds {args.seeds} "
                    f"--steps {args.steps} --chunks {args.chunks} --rounds {args.rounds}",
                    "machine": bench.machine(),
                    "device": str(jax.devices()[0]),
                    "summary": summary,
                    "rows": rows,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
