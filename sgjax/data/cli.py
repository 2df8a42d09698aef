"""`sgjax data`: generate one split and write it in the original text format."""

from __future__ import annotations

import argparse

from sgjax import data
from sgjax.data import formats
from sgjax.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=list(data.TASKS), help="the task whose split to generate")
    p.add_argument(
        "--split",
        required=True,
        choices=["train", "val", "test", "gen"],
        help="the split to write (Dyck has train, val and test, its generalization split)",
    )
    p.add_argument("--size", type=int, default=None, help="lines in this split (default: the paper's)")
    p.add_argument("--seed", type=int, default=0, help="data seed (the whole split set is a function of it)")
    add_generation_argument(p)
    p.add_argument("--out", required=True, help="output file")


def add_generation_argument(p: argparse.ArgumentParser) -> None:
    """--generation, as the config's data.generation (QF/TI)."""
    from sgjax.config import GENERATIONS

    p.add_argument(
        "--generation",
        choices=GENERATIONS,
        default=GENERATIONS[0],
        help="QF/TI: train_first (McCoy's process, the default) or heldout_first (sgjax's data before; docs/data.md)",
    )


def run(args) -> int:
    """Generate the task's splits with this split's size overridden and write the requested one."""
    data.check_task(args.task)
    if args.split not in data.SPLITS[args.task]:
        raise UserError(f"{args.task} has no {args.split!r} split: use one of {', '.join(data.SPLITS[args.task])}")
    sizes = data.resolve_sizes(args.task, {args.split: args.size} if args.size is not None else {})
    if args.task != "dyck" and args.split != "train" and args.generation == "heldout_first":
        sizes["train"] = 0  # there the held-out splits do not depend on the train size
    lines = data.generate(args.task, sizes, args.seed, args.generation)[args.split]
    formats.write_lines(args.out, args.task, lines)
    print(f"wrote {len(lines)} {args.task} {args.split} lines to {args.out}")
    return 0
