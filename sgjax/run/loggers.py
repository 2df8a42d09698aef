"""Where a run's records go besides metrics.jsonl: TensorBoard, Weights & Biases, or any callable.

A logger is anything with `log(records)` (and, optionally, `close()`): the training loop hands it each
logged step's records, one per seed ({"step", "seed", "train_loss", "val_acc", ...}); the probe hands it
each probed step's ("tscore", "weight_norm", ...; tags prefixed "probe/"). Seeds are separate runs in
both tools, under the same tags, so the tools overlay them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from sgjax.errors import UserError

SKIP = frozenset({"step", "seed", "member"})


class Logger(Protocol):
    def log(self, records: list[dict]) -> None: ...


def scalars(record: dict, prefix: str = "") -> dict[str, float]:
    """The record's numbers (not its step, seed or member, nor true/false flags) under prefixed tags."""
    return {
        prefix + k: float(v)
        for k, v in record.items()
        if k not in SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


class Callback:
    """A plain function as a logger: fn(records)."""

    def __init__(self, fn: Callable[[list[dict]], None]):
        self.fn = fn

    def log(self, records: list[dict]) -> None:
        self.fn(records)


class TensorBoard:
    """One event directory per seed, RUN_DIR/tb/seed_<seed>: TensorBoard shows the seeds as runs, overlaid per tag."""

    def __init__(self, run_dir: Path, prefix: str = ""):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise UserError("TensorBoard logging needs tensorboardX: pip install 'sgjax[tensorboard]'") from e
        self.make = lambda seed: SummaryWriter(str(Path(run_dir) / "tb" / f"seed_{seed}"))
        self.writers: dict[int, object] = {}
        self.prefix = prefix

    def log(self, records: list[dict]) -> None:
        for r in records:
            w = self.writers.get(r["seed"]) or self.writers.setdefault(r["seed"], self.make(r["seed"]))
            for tag, v in scalars(r, self.prefix).items():
                w.add_scalar(tag, v, r["step"])
        for w in self.writers.values():
            w.flush()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


class Wandb:
    """One Weights & Biases run per seed, grouped by the run directory; `mode` "offline" (the default) writes
    under RUN_DIR/wandb without a network or an account (`wandb sync` uploads it later)."""

    def __init__(self, run_dir: Path, config: dict, mode: str = "offline", prefix: str = ""):
        try:
            import wandb
        except ImportError as e:
            raise UserError("Weights & Biases logging needs wandb: pip install 'sgjax[wandb]'") from e
        self.wandb, self.run_dir, self.config, self.mode, self.prefix = wandb, Path(run_dir), config, mode, prefix
        self.runs: dict[int, object] = {}

    def run_for(self, seed: int):
        if seed not in self.runs:
            (self.run_dir / "wandb").mkdir(parents=True, exist_ok=True)
            self.runs[seed] = self.wandb.init(
                project="sgjax",
                group=self.run_dir.resolve().name,
                name=f"{self.run_dir.resolve().name}-seed{seed}",
                id=f"{self.run_dir.resolve().name}-seed{seed}",
                resume="allow",
                dir=str(self.run_dir),
                mode=self.mode,
                config={**self.config, "seed": seed},
                reinit="create_new",
            )
        return self.runs[seed]

    def log(self, records: list[dict]) -> None:
        for r in records:
            self.run_for(r["seed"]).log(scalars(r, self.prefix), step=r["step"])

    def close(self) -> None:
        for run in self.runs.values():
            run.finish()


def for_run(run_dir: Path, config, prefix: str = "") -> list[Logger]:
    """The loggers a run's config asks for (train.tensorboard, train.wandb)."""
    out: list[Logger] = []
    if config.train.tensorboard:
        out.append(TensorBoard(run_dir, prefix))
    if config.train.wandb != "off":
        out.append(Wandb(run_dir, config.to_dict(), config.train.wandb, prefix))
    return out


def close(loggers: list) -> None:
    for logger in loggers:
        getattr(logger, "close", lambda: None)()
