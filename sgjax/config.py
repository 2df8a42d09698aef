"""Frozen dataclass configs and presets (`paper`: the original's settings; `smoke`: seconds on a CPU)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

TASKS = ("question", "tense", "dyck")
PAPER_SEEDS = tuple(range(42, 133, 10))  # 42, 52, ..., 132


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The original TransformerLM (SPEC §2): post-LN, 8 heads, untied output, sinusoidal positions."""

    vocab_size: int = 71  # |V| + 2 (pad, words, EOS, SOS); set from the task's vocabulary
    n_layers: int = 6
    d_model: int = 512
    n_heads: int = 8  # the original's code ran 8 (D1); the paper says 4
    d_ff: int = 2048
    dropout: float = 0.1
    max_len: int = 5000  # sinusoidal table length, as the original
    scan_layers: bool = True  # nn.scan over layers: compile time flat in depth


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data to train and evaluate on: generated in-package, or original files."""

    train_size: int | None = None  # None: the paper's (100k QF/TI, 200k Dyck)
    val_size: int | None = None  # None: the paper's (1k QF/TI, 20k Dyck)
    gen_size: int | None = None  # None: the paper's (10k QF/TI, 20k Dyck)
    seed: int = 0  # data generation seed (the split is a function of it)
    train_file: str | None = None  # original-format files replace generated splits
    val_file: str | None = None
    gen_file: str | None = None
    max_train_len: int | None = None  # Dyck: drop training strings longer than this (None keeps all)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimizer, schedule and loop cadence (SPEC §3), per population member."""

    steps: int = 300_000
    batch_size: int = 8
    lr: float = 1e-4
    warmup_steps: int = 10_000
    decay_steps: int = 2_000_000  # linear decay toward 0 at this step (D4)
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-7
    weight_decay: float = 0.0
    clip_norm: float = 1.0  # the code's 1.0, not the paper's 10 (D3)
    chunk_steps: int = 100  # K: steps scanned inside one jitted call
    log_every: int = 100
    eval_every: int = 3000
    ckpt_every: int = 3000  # probe checkpoints kept at this cadence
    keep_checkpoints: bool = True  # keep every probe checkpoint (False: latest only)
    matmul_precision: str = "highest"  # "highest" = true fp32; "tensorfloat32"/"bfloat16" are faster
    tensorboard: bool = False


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What evaluation computes (SPEC §4)."""

    tense_gen_sample: int | None = None  # None: all gen lines (D15); 2000 = the original's subsample
    dyck_max_prefixes: int | None = 5000  # the original stops after >= 5000 closing prefixes
    max_decode_steps: int = 50
    exact_match: bool = True  # QF full-sequence exact match by greedy decoding
    batch_size: int = 512


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run: task, population (seeds x learning rates), model, data, training."""

    task: str = "question"
    preset: str = "paper"
    seeds: tuple[int, ...] = PAPER_SEEDS
    lrs: tuple[float, ...] | None = None  # one per member; None: train.lr for all
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @property
    def population(self) -> int:
        return len(self.seeds)

    @property
    def member_lrs(self) -> tuple[float, ...]:
        return self.lrs if self.lrs is not None else (self.train.lr,) * len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def from_dict(d: dict[str, Any]) -> Config:
    """Inverse of Config.to_dict (lists become tuples)."""
    subs = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig}
    kw = {}
    for k, v in d.items():
        if k in subs:
            kw[k] = subs[k](**v)
        elif isinstance(v, list):
            kw[k] = tuple(v)
        else:
            kw[k] = v
    return Config(**kw)
