"""Generated Dyck splits vs the released val file (D12): histograms, TV distances, timings.

usage: .venv/bin/python experiments/science/dyck_stats/dyck_stats.py PATH/k-20_d-10_val.txt [--seed 0] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from sgjax.data import dyck


def read_val(path: str) -> list[str]:
    """The released file's lines without the trailing END token."""
    with open(path) as f:
        return [l.strip().removesuffix(" END") for l in f if l.strip()]


def fmt(s: dict) -> list[str]:
    """Display rows of one summary."""
    L = s["length"]
    md = " ".join(f"{d}:{c}" for d, c in s["max_depth"].items())
    return [
        f"{s['n']} ({s['unique']} unique)",
        f"{L['min']} / {L['mean']:.1f} / {L['median']:g} / {L['p90']:g} / {L['p99']:g} / {L['max']}",
        md,
        f"{s['mean_max_depth']:.2f}",
        f"{s['closings_per_string']:.2f}",
        f"{s['far_closing_share']:.3f}",
        f"{s['blocks_per_string']:.2f}",
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference_val")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args(argv)
    real = read_val(a.reference_val)
    t0 = time.perf_counter()
    splits = dyck.generate_splits(dict(dyck.DEFAULT_SIZES), a.seed)
    gen_s = time.perf_counter() - t0
    sums = {"real val": dyck.summary(real), **{f"gen {k}": dyck.summary(v) for k, v in splits.items()}}
    tv = {
        "length": dyck.tv_distance(dyck.length_histogram(real), dyck.length_histogram(splits["val"])),
        "max_depth": dyck.tv_distance(dyck.max_depth_histogram(real), dyck.max_depth_histogram(splits["val"])),
    }
    structures = {p for l in splits["train"] for p in dyck.block_profiles(l.split())}
    train = sums["gen train"]
    reach4 = sum(c for d, c in train["max_depth"].items() if d >= 4) / train["n"]
    reach10 = train["max_depth"].get(10, 0) / train["n"]
    test = sums["gen test"]
    test10 = test["max_depth"].get(10, 0) / test["n"]

    rows = [
        "strings",
        "length min / mean / median / p90 / p99 / max",
        "max-depth histogram",
        "mean max depth",
        "closings per string",
        "share of closings >= 10 from opener",
        "top-level blocks per string",
    ]
    cols = {k: fmt(v) for k, v in sums.items()}
    print(f"seed {a.seed}; generate_splits(DEFAULT_SIZES) took {gen_s:.1f} s\n")
    print("| | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for i, r in enumerate(rows):
        print(f"| {r} | " + " | ".join(c[i] for c in cols.values()) + " |")
    print(f"\nTV(real val, gen val): length {tv['length']:.4f}, max depth {tv['max_depth']:.4f}")
    print(f"train: {len(structures)} distinct block structures; {reach4:.3f} reach depth >= 4, {reach10:.3f} reach 10")
    print(f"test: {test10:.3f} reach depth 10")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {"seed": a.seed, "generate_s": gen_s, "tv": tv, "summaries": sums, "train_structures": len(structures)},
                f,
                indent=1,
            )
    ok = tv["length"] <= 0.03 and tv["max_depth"] <= 0.03
    print("PASS" if ok else "FAIL", "(TV <= 0.03 each)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
