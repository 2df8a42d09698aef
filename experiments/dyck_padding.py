"""Padding overhead of Dyck training batches: packed rows (sgjax) vs padding each batch to its longest string.

    python experiments/dyck_padding.py --steps 2000 --out experiments/results/dyck_padding.json

Uses the exact batches a run would draw (same seeds, same epoch permutations, same chunking), on
the full 200k generated training set; no model is run.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sgjax import batching, data


def overhead(seq_len_N: np.ndarray, seeds, steps: int, chunk: int) -> dict:
    """Positions computed per real target token, and dispatches, as sgjax's loop chunks a Dyck run."""
    packed_pos = rows_pos = real = dispatches = 0
    step = 0
    while step < steps:
        idx_SxKxB = batching.chunk_indices(seeds, step, min(chunk, steps - step), len(seq_len_N), 8)
        k = batching.same_length_run(seq_len_N, idx_SxKxB)  # as sgjax/loop.py does
        idx_SxKxB = idx_SxKxB[:, :k]
        tokens_SxKxB = seq_len_N[idx_SxKxB] - 1
        real += int(tokens_SxKxB.sum())
        packed_pos += idx_SxKxB.shape[0] * k * batching.packed_length(seq_len_N, idx_SxKxB)
        rows_pos += int(8 * tokens_SxKxB.max(axis=-1).sum())  # the original: each batch padded to its longest
        dispatches += 1
        step += k
    return {"packed_positions_per_real_token": packed_pos / real, "packed_pad_per_real_token": packed_pos / real - 1,
            "rows_positions_per_real_token": rows_pos / real, "steps_per_dispatch": steps / dispatches}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--out")
    args = p.parse_args()
    split = data.load_splits("dyck")["train"]
    seq_len_N = split.lengths_N.astype(np.int64) + 2
    rows = []
    for s in (1, 10):
        for k in (100,):
            r = {"S": s, "K": k, **overhead(seq_len_N, tuple(42 + 10 * i for i in range(s)), args.steps, k)}
            rows.append(r)
            print(f"S={s:2d} K={k:3d}  packed: {r['packed_positions_per_real_token']:.2f} positions/real token "
                  f"(pad/real {r['packed_pad_per_real_token']:.2f});  per-batch padding (original): "
                  f"{r['rows_positions_per_real_token']:.2f};  {r['steps_per_dispatch']:.1f} steps per dispatch")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"command": f"python experiments/dyck_padding.py --steps {args.steps}", "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
