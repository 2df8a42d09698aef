"""`sgjax train`: train a population of seeds (x learning rates) at one depth, resumable."""

from __future__ import annotations

import argparse
import dataclasses

from sgjax import config as C
from sgjax.run import distributed


def comma_list(kind, what: str):
    """An argparse `type` for a comma-separated list of `kind`: a bad element is a one-line usage error."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {what}") from None

    return parse


def add_config_arguments(p: argparse.ArgumentParser, depth_help: str = "number of layers") -> None:
    """Options shared by `train` and `sweep`: task, preset, seeds, steps, overrides."""
    p.add_argument("--task", required=True, help=f"one of {', '.join(C.TASKS)}")
    p.add_argument("--preset", default="smoke", help=f"one of {', '.join(C.PRESETS)} (default: smoke)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds", type=comma_list(int, "integer seeds"), help="comma-separated integer seeds, e.g. 42,52,62"
    )
    seeds.add_argument("--num-seeds", type=int, help="the paper's seeds 42, 52, ... (this many)")
    p.add_argument(
        "--lrs",
        type=comma_list(float, "learning rates"),
        help="comma-separated learning rates; with one seed per lr, or crossed with --seeds via --cross",
    )
    p.add_argument("--cross", action="store_true", help="train every seed with every lr (population = seeds x lrs)")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any config field, e.g. --set train.eval_every=1000 --set model.n_heads=4",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files, one directory per seed (RUN_DIR/tb/seed_<seed>)",
    )
    p.add_argument(
        "--wandb",
        choices=["offline", "online"],
        help="also log to Weights & Biases, one run per seed (offline: no network; `wandb sync` later)",
    )
    distributed.add_arguments(p)


def config_from_args(args, depth: int) -> C.Config:
    """The Config that the command-line options describe (a given 0 is kept, for validate to refuse)."""
    cfg = C.preset(args.preset, args.task, depth)
    seeds = cfg.seeds
    if args.seeds is not None:
        seeds = tuple(args.seeds)
    elif args.num_seeds is not None:
        if args.num_seeds < 1:
            raise C.ConfigError(f"--num-seeds must be >= 1 (got {args.num_seeds})")
        seeds = tuple(42 + 10 * i for i in range(args.num_seeds))
    lrs = None
    if args.lrs is not None:
        lr_list = tuple(args.lrs)
        if args.cross:
            seeds, lrs = tuple(s for s in seeds for _ in lr_list), tuple(lr for _ in seeds for lr in lr_list)
            if len(set(seeds)) < len(seeds):  # a seed with two lrs is two members: give each its own seed
                given = tuple(dict.fromkeys(seeds))
                seeds = tuple(s + 1000 * (i % len(lr_list)) for i, s in enumerate(seeds))
                clash = sorted({s for s in seeds if seeds.count(s) > 1})
                if clash:
                    raise C.ConfigError(
                        f"--cross gives the j-th learning rate the seeds + 1000*j, and {clash[0]} is then two members' "
                        f"(seeds {', '.join(map(str, given))}): use seeds less than 1000 apart, or --seeds and --lrs "
                        "without --cross, one lr per seed"
                    )
        else:
            lrs = lr_list
    cfg = dataclasses.replace(cfg, seeds=seeds, lrs=lrs)
    if args.steps is not None:
        cfg = C.override(cfg, [f"train.steps={args.steps}"])
    logging = (["train.tensorboard=true"] if getattr(args, "tensorboard", False) else []) + (
        [f"train.wandb={args.wandb}"] if getattr(args, "wandb", None) else []
    )
    return C.validate(C.override(cfg, [*logging, *args.overrides]))


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--depth", type=int, default=None, help="number of layers (default: 2 for smoke, 6 otherwise)")
    p.add_argument("--out", required=True, help="run directory (rerunning the same command resumes it)")
    p.add_argument("--override", action="store_true", help="continue a run even though its config changed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved config and the planned work (steps, evaluations, checkpoints, disk), then stop",
    )


def run(args) -> int:
    from sgjax.run import loop

    distributed.maybe_initialize(args)
    depth = args.depth if args.depth is not None else (2 if args.preset == "smoke" else 6)
    cfg = config_from_args(args, depth)
    if args.dry_run:
        from sgjax.run import plan

        print(cfg.to_json())
        print(plan.describe(cfg))
        return 0
    run_dir = loop.run(
        cfg,
        args.out,
        override=args.override,
        progress=not args.no_progress,
        command=["sgjax", *getattr(args, "argv", ["train"])],
    )
    print(f"run directory: {run_dir}")
    return 0
