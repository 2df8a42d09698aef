"""Programs a paper run compiles, with and without the length floor and tail (batching.length_bounds), and what they
pad.

    python experiments/performance/length_floor/length_floor.py \
        --out experiments/performance/length_floor/results/length_floor.json

For each task, the paper preset at depth 6 with the paper's 10 seeds (42, 52, ..., 132) walks every call
of the whole run (300k steps for QF/TI in chunks of 100, 400k one-step calls for Dyck) on the full
generated training set, as the host loop cuts them (eval/log boundaries aside), and counts the packed
lengths: each distinct one is a compiled program, about a minute on an H200 at fp32. Counted three
ways: the raw rungs, with the floor alone, and with floor and tail (what a run compiles now).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json

from sgjax import config, data
from sgjax.core import batching
from sgjax.run import loop


def walk(task: str, depth: int) -> dict:
    """Calls per packed length over a whole run: raw, with the floor, with floor and tail; the positions they add."""
    cfg = dataclasses.replace(config.preset("paper", task, depth), seeds=config.PAPER_SEEDS)
    tdata = loop.make_train_data(cfg, data.load_splits(task)["train"], data.vocab_for(task))
    packed = tdata.layout == "packed"
    k = loop.steps_per_call(cfg, tdata.layout)
    raw_length = batching.packed_length if packed else batching.unpadded_length
    before, floored, after = collections.Counter(), collections.Counter(), collections.Counter()
    for step in range(0, cfg.train.steps, k):
        idx_SxKxB = batching.chunk_indices(cfg.seeds, step, k, tdata.n, cfg.train.batch_size)
        width = tdata.width_for(idx_SxKxB)
        raw = raw_length(tdata.seq_len_N, idx_SxKxB)
        before[raw] += 1
        floored[int(batching.bounded(raw, tdata.min_length))] += 1
        after[width if packed else width[0]] += 1
    positions = lambda c: sum(length * n for length, n in c.items())
    return {
        "layout": tdata.layout,
        "steps": cfg.train.steps,
        "steps_per_call": k,
        "floor": tdata.min_length,
        "tail": tdata.tail,
        "programs_before": len(before),
        "programs_floor_only": len(floored),
        "programs_after": len(after),
        "extra_positions": positions(after) / positions(before) - 1,
        "calls_per_length_before": dict(sorted(before.items())),
        "calls_per_length_after": dict(sorted(after.items())),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="question,tense,dyck")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--out", help="write the counts to this .json")
    args = p.parse_args()
    out = {task: walk(task, args.depth) for task in args.tasks.split(",")}
    print("| task | calls | floor | tail (above, at) | programs raw | floor | floor + tail | extra positions |")
    print("|---|---|---|---|---|---|---|---|")
    for task, r in out.items():
        tail = "none" if r["tail"] is None else f"{r['tail'][0]}, {r['tail'][1]}"
        print(
            f"| {task} | {r['steps'] // r['steps_per_call']:,} | {r['floor']} | {tail} | {r['programs_before']} | "
            f"{r['programs_floor_only']} | {r['programs_after']} | {100 * r['extra_positions']:.3f}% |"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {"command": "python experiments/performance/length_floor/length_floor.py --out " + args.out, **out},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
