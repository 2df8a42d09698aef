"""Frozen dataclass configs and presets (`paper`: the original's settings; `smoke`: seconds on a CPU)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from sgjax.errors import UserError

TASKS = ("question", "tense", "dyck")
PAPER_SEEDS = tuple(range(42, 133, 10))  # 42, 52, ..., 132
SEED_LIMIT = 2**31  # seeds are int32 on the device


class ConfigError(UserError):
    """A config value that cannot work; the message names the field."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The original TransformerLM: post-LN, 8 heads, untied output, sinusoidal positions."""

    vocab_size: int = 71  # |V| + 2 (pad, words, EOS, SOS); set from the task's vocabulary
    n_layers: int = 6
    d_model: int = 512
    n_heads: int = 8  # the original's code ran 8 (D1); the paper says 4
    d_ff: int = 2048
    dropout: float = 0.1
    max_len: int = 5000  # sinusoidal table length, as the original
    # Layers as nn.scan over stacked parameters (compile time flat in depth) or a Python loop over
    # per-layer parameters (no while loop: 1.37x faster per step on CPU at S = 10; docs/performance.md).
    scan_layers: bool = False
    # How dropout draws its 16-bit masks: "counter" (four per threefry block of the element's index,
    # the same bits at any array length), "packed" (four per block, bits move with the array's
    # length; runs saved before "counter"), or "per_element" (one block per element, as
    # jax.random.bits; several times slower on CPU: docs/performance.md).
    dropout_draw: str = "counter"


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data to train and evaluate on: generated in-package, or original files."""

    train_size: int | None = None  # None: the paper's (100k QF/TI, 200k Dyck)
    val_size: int | None = None  # None: the paper's (1k QF/TI, 20k Dyck)
    gen_size: int | None = None  # None: the paper's (10k QF/TI, 20k Dyck)
    seed: int = 0  # data generation seed (the split is a function of it)
    # QF/TI: "train_first" draws as McCoy did (train first, held-out splits from what it left);
    # "heldout_first" is the data sgjax generated before (held-out splits first; docs/data.md).
    generation: str = "train_first"
    train_file: str | None = None  # original-format files replace generated splits
    val_file: str | None = None
    gen_file: str | None = None
    max_train_len: int | None = None  # Dyck: drop training strings longer than this (None keeps all)
    # Training batches (sgjax/core/batching.py): "rows" (each sequence padded to the longest training line),
    # "packed" (the batch end to end in one row, attention within each sequence by a P x P mask),
    # "unpadded" (packed tokens, attention on the sequences as rows), or "auto": unpadded for QF/TI,
    # packed for Dyck (whose long tail makes B x T x T rows dearer than P x P). A run records the
    # layout "auto" chose. Every layout takes the same steps; only the dropout masks differ.
    layout: str = "auto"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimizer, schedule and loop cadence, per population member."""

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
    member_groups: int = (
        1  # packed/unpadded: the population runs as this many groups, each call at its own group's width
    )
    # member groups of contiguous seeds (each group's state apart), or "length": each call's members sorted by
    # batch length

    group_by: str = "seed"
    log_every: int = 100
    eval_every: int = 3000
    ckpt_every: int = 3000  # probe checkpoints kept at this cadence
    keep_checkpoints: bool = True  # keep every probe checkpoint (False: latest only)
    matmul_precision: str = "highest"  # "highest" = true fp32; "tensorfloat32"/"bfloat16" are faster
    tensorboard: bool = False  # also TensorBoard event files, one directory per seed (RUN_DIR/tb/seed_<seed>)
    wandb: str = (
        "off"  # also Weights & Biases, one run per seed: "offline" (no network; `wandb sync` later) or "online"
    )


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What evaluation computes."""

    tense_gen_sample: int | None = None  # None: all gen lines (D15); 2000 = the original's subsample
    tense_sample_per_member: bool = True  # each member draws its own subsample, as each original run did (D33)
    dyck_max_prefixes: int | None = 5000  # the original stops after >= 5000 closing prefixes
    max_decode_steps: int = 50
    exact_match: bool = True  # QF full-sequence exact match (what greedy decoding would give; an sgjax extra)
    tense_drop_last: bool = True  # TI scored one token short of EOS, as the original's run_greedy (D29)
    lm_loss: bool = False  # val_loss / gen_loss, the original's eval LM loss (D31): a forward pass over every line
    batch_size: int = 512  # rows per member per batch, at most: halved until the program fits memory (docs/metrics.md)
    width_groups: int = 3  # QF/TI lines sorted by length into at most this many padded widths, a program each


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


def flat_items(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        out.update(flat_items(v, key) if isinstance(v, dict) else {key: v})
    return out


def from_dict(d: dict[str, Any]) -> Config:
    """Inverse of Config.to_dict (lists become tuples)."""
    subs = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig}
    # A saved config.json that is valid JSON but another shape (a list, a number) is corrupt, not a crash.
    if not isinstance(d, dict):
        raise ConfigError(
            f"the saved config is not a config object (a JSON {type(d).__name__}, not an object of fields)"
        )
    bad = [k for k in subs if k in d and not isinstance(d[k], dict)]
    if bad:
        raise ConfigError(f"the saved config is not a config object ({bad[0]!r} is not an object of fields)")
    kw = {}
    for k, v in d.items():
        if k in subs:
            kw[k] = subs[k](**v)
        elif isinstance(v, list):
            kw[k] = tuple(v)
        else:
            kw[k] = v
    return Config(**kw)


PRESETS = ("paper", "laptop", "quick", "smoke")
GENERATIONS = ("train_first", "heldout_first")  # sgjax.data.qf_ti.GENERATIONS, without importing numpy
LAYOUTS = ("rows", "packed", "unpadded")
VOCAB_SIZES = {"question": 71, "tense": 101, "dyck": 43}  # |V| + 2, as the original


def concrete_layout(cfg: Config) -> Config:
    """`cfg` with data.layout "auto" replaced by the layout it picks: packed for Dyck, unpadded for QF/TI."""
    if cfg.data.layout != "auto":
        return cfg
    layout = "packed" if cfg.task == "dyck" else "unpadded"
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, layout=layout))


def preset(name: str, task: str, depth: int = 6) -> Config:
    """A named preset for a task at a depth: `paper` (the original), `laptop` (QF's small search result, CPU),
    `quick` (an unvalidated GPU guess), `smoke` (CPU, seconds)."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    dyck = task == "dyck"
    model = ModelConfig(vocab_size=VOCAB_SIZES[task], n_layers=depth)
    if name == "paper":
        cadence = 10_000 if dyck else 3_000
        train = TrainConfig(steps=400_000 if dyck else 300_000, eval_every=cadence, ckpt_every=cadence)
        return Config(task=task, preset=name, model=model, train=train)
    if name == "laptop":
        # The paper's data, objective and optimizer at width 128 (a fiftieth of the cost per step), a higher
        # learning rate decayed to 0 at the end: experiments/science/laptop_grokking/README.md says what it shows.
        model = dataclasses.replace(model, d_model=128, n_heads=4, d_ff=512)
        train = TrainConfig(
            steps=40_000, lr=3e-4, warmup_steps=1_000, decay_steps=40_000, eval_every=2_000, ckpt_every=10_000
        )
        return Config(task=task, preset=name, model=model, train=train)
    if name == "quick":
        # Full-size model and optimizer, shorter horizon: see experiments/science/quick_preset/README.md
        # for what it shows.
        cadence = 5_000 if dyck else 2_000
        train = TrainConfig(steps=60_000, eval_every=cadence, ckpt_every=cadence, chunk_steps=500, log_every=500)
        data = DataConfig(max_train_len=200) if dyck else DataConfig()
        return Config(task=task, preset=name, model=model, data=data, train=train)
    # smoke: a tiny model on tiny data, seconds per depth on a laptop CPU.
    model = dataclasses.replace(model, d_model=64, n_heads=4, d_ff=256)
    sizes = (
        dict(train_size=2000, val_size=200, gen_size=200) if dyck else dict(train_size=2000, val_size=200, gen_size=500)
    )
    data = DataConfig(**sizes, max_train_len=60 if dyck else None)
    train = TrainConfig(
        steps=400,
        lr=1e-3,
        warmup_steps=50,
        decay_steps=2000,
        chunk_steps=50,
        log_every=50,
        eval_every=100,
        ckpt_every=100,
    )
    evalc = EvalConfig(dyck_max_prefixes=None, batch_size=256)
    return Config(task=task, preset=name, seeds=(42, 52), model=model, data=data, train=train, eval=evalc)


def override(cfg: Config, assignments: list[str]) -> Config:
    """Apply `section.field=value` (or `field=value` at the top) overrides, parsed by the field's type."""
    for a in assignments:
        if "=" not in a:
            raise ConfigError(f"override {a!r} is not of the form field=value (e.g. train.lr=3e-4)")
        path, raw = a.split("=", 1)
        parts = path.strip().split(".")
        if len(parts) == 1:
            cfg = _replace_field(cfg, parts[0], raw, path)
        elif len(parts) == 2 and parts[0] in ("model", "data", "train", "eval"):
            sub = _replace_field(getattr(cfg, parts[0]), parts[1], raw, path)
            cfg = dataclasses.replace(cfg, **{parts[0]: sub})
        else:
            raise ConfigError(f"unknown config field {path!r}")
    return cfg


def _replace_field(obj, name: str, raw: str, path: str):
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if name not in fields:
        raise ConfigError(f"unknown config field {path!r}; {type(obj).__name__} has {', '.join(fields)}")
    current = getattr(obj, name)
    return dataclasses.replace(obj, **{name: _parse(raw, current, fields[name].type, path)})


def _parse(raw: str, current, type_str, path: str):
    """Parse a CLI string to the type of the field (using the annotation when the value is None)."""
    raw = raw.strip()
    t = str(type_str)
    try:
        if raw.lower() == "none" and "None" in t:
            return None
        if "tuple" in t:
            elem = float if "float" in t else int
            return tuple(elem(x) for x in raw.split(",") if x)
        if isinstance(current, bool) or t.startswith("bool"):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if isinstance(current, int) or t.startswith("int"):
            value = float(raw) if "e" in raw.lower() else int(raw)
            if not math.isfinite(value) or value != int(value):
                raise ValueError(raw)
            return int(value)
        if isinstance(current, float) or t.startswith("float"):
            return float(raw)
        return raw
    except (ValueError, OverflowError):
        raise ConfigError(f"bad value {raw!r} for {path} (expected {t})") from None


def validate(cfg: Config) -> Config:
    """Refuse configs that cannot work, naming the field."""
    m, t, d, e = cfg.model, cfg.train, cfg.data, cfg.eval
    checks = [
        (cfg.task in TASKS, f"task {cfg.task!r} is not one of {', '.join(TASKS)}"),
        (len(cfg.seeds) > 0, "seeds: at least one seed is needed"),
        (len(set(cfg.seeds)) == len(cfg.seeds), "seeds: each seed may appear once"),
        (all(0 <= s < SEED_LIMIT for s in cfg.seeds), f"seeds must be integers in [0, 2^31), got {list(cfg.seeds)}"),
        (0 <= d.seed < 2**32, f"data.seed must be in [0, 2^32), got {d.seed}"),
        (cfg.lrs is None or len(cfg.lrs) == len(cfg.seeds), "lrs: one learning rate per seed is needed"),
        # `0 < x < inf` is False for nan too: a non-finite lr makes every member non-finite at once.
        (cfg.lrs is None or all(0 < lr < float("inf") for lr in cfg.lrs), "lrs: learning rates must be finite and > 0"),
        (m.n_layers >= 1, "model.n_layers must be >= 1"),
        (
            m.d_model > 0 and m.n_heads > 0 and m.d_model % m.n_heads == 0,
            "model.d_model must be a multiple of model.n_heads",
        ),
        (m.d_ff > 0, "model.d_ff must be > 0"),
        (m.max_len >= 1, "model.max_len must be >= 1"),
        (0.0 <= m.dropout < 1.0, "model.dropout must be in [0, 1)"),
        (
            m.dropout_draw in ("counter", "packed", "per_element"),
            "model.dropout_draw must be counter|packed|per_element",
        ),
        (
            m.vocab_size == VOCAB_SIZES[cfg.task] if cfg.task in TASKS else True,
            f"model.vocab_size must be {VOCAB_SIZES.get(cfg.task)} for {cfg.task}",
        ),
        (t.steps > 0, "train.steps must be > 0"),
        (t.batch_size > 0, "train.batch_size must be > 0"),
        (0 < t.lr < float("inf"), "train.lr must be finite and > 0"),
        (
            t.warmup_steps >= 0 and t.decay_steps > t.warmup_steps,
            "train.decay_steps must exceed train.warmup_steps >= 0",
        ),
        (
            t.chunk_steps > 0 and t.log_every > 0 and t.ckpt_every > 0,
            "train.chunk_steps, log_every, ckpt_every must be > 0",
        ),
        (t.eval_every >= 0, "train.eval_every must be >= 0 (0 turns evaluation off)"),
        (1 <= t.member_groups <= len(cfg.seeds), "train.member_groups must be between 1 and the number of seeds"),
        (t.clip_norm > 0, "train.clip_norm must be > 0"),
        (
            t.matmul_precision in ("highest", "float32", "tensorfloat32", "bfloat16", "default"),
            "train.matmul_precision must be highest|tensorfloat32|bfloat16|default",
        ),
        (all(s is None or s > 0 for s in (d.train_size, d.val_size, d.gen_size)), "data sizes must be > 0"),
        (d.layout in ("auto",) + LAYOUTS, "data.layout must be auto|rows|packed|unpadded"),
        (d.generation in GENERATIONS, f"data.generation must be {'|'.join(GENERATIONS)}"),
        (t.group_by in ("seed", "length"), "train.group_by must be seed|length"),
        (t.wandb in ("off", "offline", "online"), "train.wandb must be off|offline|online"),
        (
            t.member_groups == 1 or d.layout != "rows",  # rows are all one width: G calls would gain nothing
            "train.member_groups > 1 needs data.layout packed, unpadded or auto (rows are all one width)",
        ),
        (
            e.batch_size > 0 and e.width_groups > 0 and e.max_decode_steps > 0,
            "eval.batch_size, width_groups and max_decode_steps must be > 0",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    return cfg
