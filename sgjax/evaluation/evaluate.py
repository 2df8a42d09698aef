"""The paper's metrics for every population member, one compiled program per group of lines.

    make_evaluator(model_cfg, eval_cfg, task, vocab, splits) -> Evaluator
    Evaluator(params_S, step) -> {key: float array [S]}

* QF (§4.1, D14): after `<declarative> . quest`, argmax restricted to {does, doesn't, do, don't}
  vs the gold first word (`val_acc`, `gen_acc`); unrestricted argmax (`*_acc_unrestricted`);
  full-output exact match (`*_exact_match`, EvalConfig.exact_match): whether greedy decoding would
  give the target, decided by one teacher-forced pass over the line (`scoring.teacher_forced_match`).
* TI (§4.2, D15, D16, D29): greedy decoding after the marker; right iff the POS sequences match and
  the main verb matches (`val_acc`, `gen_acc`), on the output cut one token short of its EOS as the
  original's `run_greedy` returns it; plus full-output exact match (`*_exact_match`).
* Dyck (§4.3, D10): at each closing bracket, argmax restricted to the 20 closers, all closings of one
  teacher-forced pass per sentence. `val_acc` and `gen_acc` = all closings (the code's, and what the
  paper's logs measured); `val_acc_far`, `gen_acc_far` = closings ≥ 10 tokens from their opener (App. A's).

The rules are pure functions in sgjax.evaluation.scoring; the lines become padded batches once, on the host
(sgjax.evaluation.batches). Here, on the device: one program per group of batches, jit(vmap over S of
lax.map over its batches), returning per-member sums; the host adds the groups and divides by counts
known in advance. A program's temporaries grow with S and R (gigabytes per member at R = 512 for a
6-layer QF model), so the first call compiles each group ahead of time and halves its R until they
fit the device's free memory (`MEMORY_FRACTION`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

from sgjax.config import EvalConfig, ModelConfig
from sgjax.core import engine, model
from sgjax.data.split import Split
from sgjax.data.vocab import Vocab
from sgjax.errors import DataError, UserError
from sgjax.evaluation import decode
from sgjax.evaluation.batches import (
    Part,
    batch_rows,
    dyck_part,
    halved,
    halved_group,
    loss_part,
    qf_part,
    sample_batches,
    ti_part,
)
from sgjax.evaluation.scoring import (
    AUXILIARIES,
    decode_steps,
    exact_match_ids,
    original_output_len,
    restricted_argmax,
    tag_table,
    teacher_forced_match,
    tense_correct_ids,
    tense_tags,
)

MEMORY_FRACTION = 0.6  # of the device's free memory that the evaluation's temporaries may take


# ---------------------------------------------------------------- free memory


def _host_available() -> int | None:
    """The host's MemAvailable in bytes (Linux), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def free_memory(devices) -> int | None:
    """Bytes each of `devices` can still allocate: the least allocator headroom on GPU/TPU, or the host's
    MemAvailable shared among CPU devices; the least over all processes, so every host compiles alike."""
    stats = [d.memory_stats() for d in devices]
    if all(st and "bytes_limit" in st for st in stats):
        free = min(int(st["bytes_limit"]) - int(st.get("bytes_in_use", 0)) for st in stats)
    else:
        host = _host_available()
        free = None if host is None else host // len(devices)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        free = int(np.min(multihost_utils.process_allgather(np.int64(-1 if free is None else free))))
        free = None if free < 0 else free
    return free


# ---------------------------------------------------------------- device-side batch functions


def qf_batch(cfg, params, b, *, aux_K, exact: bool):
    """Correct counts of one QF batch: restricted, unrestricted, and (optionally) exact match."""
    v = b["valid"]
    out = {}
    if exact:  # one pass over the whole lines: the first word's logits and every later argmax
        logits_BxTxV = model.forward(cfg, params, b["line"])
        last_BxV = decode.at_prefix_end(logits_BxTxV, b["prefix_len"])
        match_B = teacher_forced_match(jnp.argmax(logits_BxTxV, -1), b["line"], b["prefix_len"], b["line_len"])
        out["exact_match"] = jnp.sum(v & match_B)
    else:
        last_BxV = decode.prefix_logits(cfg, params, b["prefix"], b["prefix_len"])
    out["acc"] = jnp.sum(v & (restricted_argmax(last_BxV, aux_K) == b["gold"]))
    out["acc_unrestricted"] = jnp.sum(v & (jnp.argmax(last_BxV, -1) == b["gold"]))
    return out


def ti_batch(cfg, params, b, *, tag_V, dot: int, max_steps: int, eos: int, decode_fn, drop_last: bool = True):
    """Correct counts of one TI batch: the paper's main-verb rule and full exact match."""
    steps = decode_steps(max_steps, b["target"].shape[-1])
    gen_BxM, glen_B = decode_fn(cfg, params, b["prefix"], b["prefix_len"], max_steps=steps, eos_id=eos)
    v = b["valid"]
    scored_B = original_output_len(glen_B, steps) if drop_last else glen_B
    ok_B = tense_correct_ids(gen_BxM, scored_B, b["core"], b["core_len"], b["main_verb"], tag_V, dot)
    return {
        "acc": jnp.sum(v & ok_B),
        "exact_match": jnp.sum(v & exact_match_ids(gen_BxM, glen_B, b["target"], b["target_len"])),
    }


def dyck_batch(cfg, params, b, *, close_K):
    """Correct counts of one Dyck batch at every closing position, for the 'all' and 'far' masks."""
    logits_BxTxV = model.forward(cfg, params, b["seq"])
    right_BxT = restricted_argmax(logits_BxTxV, close_K) == b["gold"]
    return {"all": jnp.sum(right_BxT & b["all"]), "far": jnp.sum(right_BxT & b["far"])}


def loss_batch(cfg, params, b):
    """The token-mean LM loss of one batch (0 for a batch of padding rows, which is not counted)."""
    logits_BxTxV = model.forward(cfg, params, b["seq"][:, :-1])
    return {"loss": engine.token_mean_ce(logits_BxTxV, b["seq"][:, 1:])}


# ---------------------------------------------------------------- the evaluator


KEYS = {  # (split, kind, count name) -> metrics.jsonl key
    ("val", "qf", "acc"): "val_acc",
    ("gen", "qf", "acc"): "gen_acc",
    ("val", "qf", "acc_unrestricted"): "val_acc_unrestricted",
    ("gen", "qf", "acc_unrestricted"): "gen_acc_unrestricted",
    ("val", "qf", "exact_match"): "val_exact_match",
    ("gen", "qf", "exact_match"): "gen_exact_match",
    ("val", "ti", "acc"): "val_acc",
    ("gen", "ti", "acc"): "gen_acc",
    ("val", "ti", "exact_match"): "val_exact_match",
    ("gen", "ti", "exact_match"): "gen_exact_match",
    ("val", "dyck", "all"): "val_acc",
    ("val", "dyck", "far"): "val_acc_far",
    ("gen", "dyck", "all"): "gen_acc",
    ("gen", "dyck", "far"): "gen_acc_far",
    ("val", "loss", "loss"): "val_loss",
    ("gen", "loss", "loss"): "gen_loss",
}
TASK_KIND = {"question": "qf", "tense": "ti", "dyck": "dyck"}
GEN_NAMES = {"question": ("gen",), "tense": ("gen",), "dyck": ("test", "gen")}


class Evaluator:
    """Callable(params_S, step) -> {key: float64 [S]}; `counts` holds each key's denominator.

    Each (split, group) is its own compiled program, run one after another: the peak memory is the
    largest group's, not the sum, and each group's batches shrink to fit on their own.
    """

    def __init__(self, task: str, parts: list[Part], batch_fns: dict[str, Callable]):
        self.task = task
        self.parts = {p.key: p for p in parts if sum(p.counts.values()) > 0}  # nothing to score: NaN, no compile
        self.empty_keys = [KEYS[(p.split, p.kind, c)] for p in parts if sum(p.counts.values()) == 0 for c in p.counts]
        self.counts = {KEYS[(p.split, p.kind, c)]: n for p in parts for c, n in p.counts.items()}
        self.fit: dict | None = None  # what the first call chose: rows per batch, temporaries, free memory
        self.note: str | None = None  # a line for the user when the first call had to shrink the batches
        self._compiled: dict | None = None  # (part key, group) -> compiled program

        def group_sums(fn, params, batches):
            """One member's correct counts over one group's batches."""
            return {k: jnp.sum(v) for k, v in lax.map(lambda b: fn(params, b), batches).items()}

        self._fns = {
            kind: jax.jit(jax.vmap(functools.partial(group_sums, fn), in_axes=(0, None)))
            for kind, fn in batch_fns.items()
        }
        # a per-member TI sample (D33) has a leading S axis too, mapped with the parameters'
        self._member_fns = {
            kind: jax.jit(jax.vmap(functools.partial(group_sums, fn))) for kind, fn in batch_fns.items()
        }
        self._member_sharding = None  # where [S, ...] data goes: the parameters' seed axis, set by the first call
        self._device = {}  # (part key, group) -> device copies of the fixed groups (a TI sample is put at each call)
        for p in self.parts.values():
            if p.sample is None:
                for g in p.groups:
                    self._put(p, g)

    def _put(self, part: Part, group: str):
        """Put one fixed group's batches on the device."""
        self._device[(part.key, group)] = jax.device_put(part.groups[group])

    def _fn(self, part: Part):
        """The compiled-on-demand program of a part: batches shared by every member, or one set per member."""
        return self._member_fns[part.kind] if part.sample and part.sample.seeds is not None else self._fns[part.kind]

    def rows(self) -> int:
        """The most rows per member in one batch."""
        return max((batch_rows(p) for p in self.parts.values()), default=0)

    def _compile(self, params_S, step: int) -> tuple[dict, dict]:
        """Compile every group, halving a group's batches until its temporaries fit the free memory.

        Returns the programs and the data of `step` they were compiled for (so the first call uses it).
        """
        free = free_memory(jax.tree_util.tree_leaves(params_S)[0].sharding.addressable_devices)
        data = self.data_for(step)
        compiled, tried = {}, {}
        for (key, g), batches in list(data.items()):
            part = self.parts[key]
            tried[(key, g)] = []
            while True:
                program = self._fn(part).lower(params_S, batches).compile()
                temp = getattr(program.memory_analysis(), "temp_size_in_bytes", None)
                rows = batches["valid"].shape[-1]  # [NB, R], or [S, NB, R] for per-member draws
                tried[(key, g)].append((rows, temp))
                fits = free is None or temp is None or temp <= MEMORY_FRACTION * free
                if fits or rows == 1 or part.kind == "loss":  # the loss keeps the original's 32-line batches
                    break
                part = self.parts[key] = self._halve(part, g)
                batches = data[(key, g)] = self._sample(part, step) if part.sample else self._device[(key, g)]
            compiled[(key, g)] = program
        peak = max(tried.values(), key=lambda t: t[-1][1] or 0)
        self.fit = {
            "rows": self.rows(),
            "temp_bytes": peak[-1][1],
            "free_bytes": free,
            "tried": {f"{s}/{g}": t for (s, g), t in tried.items()},
        }
        shrunk = [t for t in tried.values() if len(t) > 1]
        if shrunk:
            first = max(shrunk, key=lambda t: t[0][1])
            self.note = (
                f"evaluation: {first[0][0]} rows per batch need {first[0][1] / 1e9:.1f} GB, more than "
                f"{MEMORY_FRACTION:.0%} of the {free / 1e9:.1f} GB free; using {first[-1][0]} "
                f"({first[-1][1] / 1e9:.1f} GB)"
            )
        return compiled, data

    def _halve(self, part: Part, group: str) -> Part:
        """`part` with one group's batches (or its TI sample's) in half as many rows, put on the device."""
        if part.sample is not None:
            return halved(part)
        part = dataclasses.replace(part, groups=part.groups | {group: halved_group(part.groups[group])})
        self._put(part, group)
        return part

    def _sample(self, part: Part, step: int) -> dict:
        """A subsampled TI split's lines for `step`, put on the device (one draw per member: along the seed axis)."""
        batches = sample_batches(part.sample, step)
        if part.sample.seeds is None or self._member_sharding is None:
            return jax.device_put(batches)
        return jax.tree_util.tree_map(lambda x: engine.place(x, self._member_sharding), batches)

    def _check_population(self, params_S) -> None:
        """Per-member draws need one seed per member; remember where the members live."""
        leaf = jax.tree_util.tree_leaves(params_S)[0]
        for p in self.parts.values():
            if p.sample and p.sample.seeds is not None and len(p.sample.seeds) != leaf.shape[0]:
                raise UserError(
                    f"the evaluator draws a TI sample for {len(p.sample.seeds)} members "
                    f"(member_seeds), but the population has {leaf.shape[0]}"
                )
        if isinstance(leaf.sharding, NamedSharding) and leaf.sharding.spec:
            self._member_sharding = NamedSharding(leaf.sharding.mesh, PartitionSpec(leaf.sharding.spec[0]))

    def data_for(self, step: int) -> dict:
        """(part key, group) -> device arrays; a subsampled TI split draws its lines for this step."""
        return self._device | {(p.key, "sample"): self._sample(p, step) for p in self.parts.values() if p.sample}

    def __call__(self, params_S, step: int = 0) -> dict[str, np.ndarray]:
        # host arrays (checkpoint.load_params gives numpy) onto the default device; device arrays stay where they are
        params_S = jax.tree_util.tree_map(lambda x: x if isinstance(x, jax.Array) else jax.device_put(x), params_S)
        s = jax.tree_util.tree_leaves(params_S)[0].shape[0]
        sums = {}
        if self.parts:
            if self._compiled is None:
                self._check_population(params_S)
                self._compiled, data = self._compile(params_S, step)
            else:
                data = self.data_for(step)
            # dispatched one after another without waiting; fetched together (gathered from every host)
            sums = engine.to_host({key: self._compiled[key](params_S, b) for key, b in data.items()})
        out = {}
        for p in self.parts.values():
            for c, n in p.counts.items():
                total = sum(np.asarray(v[c], np.float64) for (key, _), v in sums.items() if key == p.key)
                out[KEYS[(p.split, p.kind, c)]] = total / n if n else np.full(s, np.nan)
        for key in self.empty_keys:
            out[key] = np.full(s, np.nan)
        return out


def make_evaluator(
    model_cfg: ModelConfig,
    eval_cfg: EvalConfig,
    task: str,
    vocab: Vocab,
    splits: dict[str, Split],
    *,
    decode_fn: Callable = decode.greedy_decode,
    member_seeds=None,
) -> Evaluator:
    """Precompute every index array for `splits` ("val" plus "gen", or "test" for Dyck) and compile lazily.

    `decode_fn` (`decode.greedy_decode`'s contract) decodes TI; QF's exact match needs no decoding.
    `member_seeds`, the population's seeds, seed each member's own TI subsample (D33) when
    `eval.tense_gen_sample` is set; they are needed only then.
    """
    if task not in TASK_KIND:
        raise UserError(f"unknown task {task!r}; choose one of {', '.join(TASK_KIND)}")
    own_draws = task == "tense" and eval_cfg.tense_gen_sample is not None and eval_cfg.tense_sample_per_member
    if own_draws and member_seeds is None:
        raise UserError(
            "eval.tense_gen_sample draws each member's own lines (D33): pass member_seeds, "
            "the population's seeds, or set eval.tense_sample_per_member=false for one shared draw"
        )
    seeds = tuple(int(s) for s in member_seeds) if own_draws else None
    named = {"val": splits.get("val")}
    gen_name = next((g for g in GEN_NAMES[task] if g in splits), None)
    named["gen"] = splits.get(gen_name) if gen_name else None
    if all(s is None for s in named.values()):
        raise UserError(
            f"no evaluation split for {task}: expected 'val' and {' or '.join(map(repr, GEN_NAMES[task]))}, got "
            f"{sorted(splits)}"
        )
    kind = TASK_KIND[task]
    parts = []
    for name, split in named.items():
        if split is None:
            continue
        if kind == "qf":
            parts.append(qf_part(name, split, vocab, eval_cfg))
        elif kind == "ti":
            parts.append(
                ti_part(name, split, vocab, eval_cfg, eval_cfg.tense_gen_sample if name == "gen" else None, seeds)
            )
        else:
            parts.append(dyck_part(name, split, vocab, eval_cfg, model_cfg.max_len))
        if eval_cfg.lm_loss:
            parts.append(loss_part(name, split, vocab, model_cfg.max_len))
    fns = _batch_fns(model_cfg, eval_cfg, kind, vocab, parts, decode_fn)
    if eval_cfg.lm_loss:
        fns["loss"] = lambda p, b: loss_batch(model_cfg, p, b)
    return Evaluator(task, parts, fns)


def _batch_fns(cfg: ModelConfig, ecfg: EvalConfig, kind: str, vocab: Vocab, parts: list[Part], decode_fn) -> dict:
    """The per-batch function of the task, closed over its static ids and decode length."""
    index = vocab.index
    if kind == "dyck":
        close_K = jnp.asarray([i for i, w in enumerate(vocab.words) if w.endswith(")")], jnp.int32)
        return {"dyck": lambda p, b: dyck_batch(cfg, p, b, close_K=close_K)}
    if kind == "qf":
        if not all(a in index for a in AUXILIARIES):
            if any(p.counts["acc"] for p in parts):
                raise DataError(f"the vocabulary lacks the QF auxiliaries {AUXILIARIES}")
            aux_K = jnp.zeros((1,), jnp.int32)
        else:
            aux_K = jnp.asarray([index[a] for a in AUXILIARIES], jnp.int32)
        return {"qf": lambda p, b: qf_batch(cfg, p, b, aux_K=aux_K, exact=ecfg.exact_match)}
    tag_V = jnp.asarray(tag_table(vocab, tense_tags()))
    dot = index.get(".", -1)
    return {
        "ti": lambda p, b: ti_batch(
            cfg,
            p,
            b,
            tag_V=tag_V,
            dot=dot,
            max_steps=ecfg.max_decode_steps,
            eos=vocab.eos,
            decode_fn=decode_fn,
            drop_last=ecfg.tense_drop_last,
        )
    }
