"""`sgjax probe RUN_DIR`: weight norms, attention sparsity and tree projections of saved checkpoints."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `sgjax probe` (see docs/probe.md)."""
    p.add_argument("run_dir", help="a run directory with config.json and checkpoints/")
    p.add_argument("--steps", default="all", help="'all' (default) or comma-separated steps, e.g. 3000,6000")
    p.add_argument("--sample", type=int, default=None, help="sentences probed (default: 10000 QF/TI, 500 Dyck)")
    p.add_argument("--sample-seed", type=int, default=42, help="seed of the fixed sample and the sampled baseline")
    p.add_argument("--exact-tree", action="store_true", help="exact DP tree instead of the original's greedy decoder")
    p.add_argument(
        "--sampled-baseline",
        action="store_true",
        help="tscore uses the original's one random split per node (default: exact expectation)",
    )
    p.add_argument(
        "--sparsity-bug",
        action="store_true",
        help="also report sparsity with the original's bug (every layer's attention on the embeddings)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="sentences per jitted call (default 32)")
    p.add_argument(
        "--dyck-split",
        default="train",
        choices=("train", "val", "test"),
        help="Dyck: the split sampled (default train, as the original, D24)",
    )
    p.add_argument(
        "--dyck-max-tokens",
        type=max_tokens,
        default="none",
        help="Dyck: only strings shorter than this (default none: all, as the original; 50 is cheap)",
    )
    p.add_argument(
        "--matmul-precision",
        default="highest",
        choices=("highest", "tensorfloat32", "bfloat16"),
        help="highest (default) | tensorfloat32 | bfloat16",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def max_tokens(text: str) -> int | None:
    """--dyck-max-tokens: a positive integer, or 'none' (no cap)."""
    if text.lower() == "none":
        return None
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'none', got {text!r}")
    return int(text)


def run(args) -> int:
    """Probe the run; print the path of probe.jsonl."""
    from sgjax.analysis.probe.run import ProbeOptions, probe_run
    from sgjax.errors import UserError

    if args.sample is not None and args.sample <= 0:
        raise UserError("--sample must be > 0")
    if args.batch_size <= 0:
        raise UserError("--batch-size must be > 0")
    opts = ProbeOptions(
        sample=args.sample,
        sample_seed=args.sample_seed,
        exact_tree=args.exact_tree,
        sampled_baseline=args.sampled_baseline,
        sparsity_bug=args.sparsity_bug,
        batch_size=args.batch_size,
        dyck_split=args.dyck_split,
        dyck_max_tokens=args.dyck_max_tokens,
        matmul_precision=args.matmul_precision,
    )
    path = probe_run(args.run_dir, steps=args.steps, options=opts, progress=not args.quiet)
    print(path)
    return 0
