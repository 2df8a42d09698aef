"""Padding and compiled shapes of Dyck training batches: packed rows (sgjax) vs padding each batch to its longest.

    python experiments/performance/dyck_padding/dyck_padding.py --steps 20000 \
        --out experiments/performance/dyck_padding/results/dyck_padding.json

Uses the exact batches a run would draw (the paper's seeds, epoch permutations and chunk boundaries), on
the full 200k generated training set; no model is run. Two ways to cut a run into calls are compared:
`one` (sgjax: every packed call takes one step, batching.PACKED_STEPS_PER_CALL) and `cut` (up to
K = 100 steps per call, ended where the packed length moves to another rung of the ladder: what sgjax
did before). Each distinct (steps, length) pair of a call is one compiled program.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sgjax import data
from sgjax.core import batching


def same_length_run(seq_len_N: np.ndarray, idx_SxKxB: np.ndarray) -> int:
    """How many leading steps of a chunk share the first step's packed length (the `cut` policy)."""
    buckets_K = [batching.round_up_bucket(int(n)) for n in (seq_len_N[idx_SxKxB] - 1).sum(axis=-1).max(axis=0)]
    return next((i for i, b in enumerate(buckets_K) if b != buckets_K[0]), len(buckets_K))


def overhead(seq_len_N: np.ndarray, seeds, steps: int, chunk: int, policy: str) -> dict:
    """Positions computed per real target token, calls and compiled shapes over `steps` steps."""
    packed_pos = rows_pos = real = calls = 0
    shapes, step = set(), 0
    while step < steps:
        idx_SxKxB = batching.chunk_indices(seeds, step, min(chunk, steps - step), len(seq_len_N), 8)
        k = 1 if policy == "one" else same_length_run(seq_len_N, idx_SxKxB)
        idx_SxKxB = idx_SxKxB[:, :k]
        tokens_SxKxB = seq_len_N[idx_SxKxB] - 1
        p = batching.packed_length(seq_len_N, idx_SxKxB)
        real += int(tokens_SxKxB.sum())
        packed_pos += idx_SxKxB.shape[0] * k * p
        rows_pos += int(8 * tokens_SxKxB.max(axis=-1).sum())  # the original: each batch padded to its longest
        calls += 1
        shapes.add((k, p))
        step += k
    return {
        "packed_positions_per_real_token": packed_pos / real,
        "packed_pad_per_real_token": packed_pos / real - 1,
        "rows_positions_per_real_token": rows_pos / real,
        "steps_per_call": steps / calls,
        "compiled_shapes": len(shapes),
        "lengths": len({p for _, p in shapes}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--out")
    args = p.parse_args()
    split = data.load_splits("dyck")["train"]
    seq_len_N = split.lengths_N.astype(np.int64) + 2
    rows = []
    for s in (1, 10):
        for policy in ("one", "cut"):
            r = {
                "S": s,
                "policy": policy,
                **overhead(seq_len_N, tuple(42 + 10 * i for i in range(s)), args.steps, 100, policy),
            }
            rows.append(r)
            print(
                f"S={s:2d} {policy}: {r['packed_positions_per_real_token']:.2f} positions/real token "
                f"(the original's per-batch padding {r['rows_positions_per_real_token']:.2f}); "
                f"{r['steps_per_call']:.2f} steps per call; {r['compiled_shapes']} compiled shapes "
                f"({r['lengths']} lengths)"
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "command": f"python experiments/performance/dyck_padding/dyck_padding.py --steps {args.steps}",
                    "rows": rows,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
