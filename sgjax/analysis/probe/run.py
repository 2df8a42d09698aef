"""Probe every saved checkpoint of a run: weight norms, attention sparsity, tree projections.

    probe_run(run_dir, steps=None, sample=None, ...) -> run_dir/probe.jsonl
    probe_checkpoint(cfg, params_one_member, sentence_words) -> {"chart", "tree", "gold_tree", ...}

One record per (step, seed); see docs/probe.md for the keys. The sample of sentences is drawn once
per run (D21) and reused at every checkpoint; a rerun skips steps already in probe.jsonl.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from sgjax.analysis.probe import norms
from sgjax.analysis.probe import sparsity as SP
from sgjax.analysis.probe import tree_projection as TP
from sgjax.config import Config, ModelConfig
from sgjax.core import model as M
from sgjax.errors import UserError
from sgjax.run import hostmem, jsonl, loop, runlock

PROBE_FILE = "probe.jsonl"
OPTIONS_FILE = "probe_options.json"  # the options probe.jsonl's records were made with
DEFAULT_SAMPLE = {"question": 10_000, "tense": 10_000, "dyck": 500}
DYCK_SPLIT, DYCK_MAX_TOKENS = "train", None  # D24: the original's Dyck sample, training strings of any length
SPARSITY_MAX_TOKENS = 200  # the original's attention sparsity reads Dyck strings shorter than this
BATCH_POSITIONS = 2**17  # B·T² of a batch: the chart's B×T×T×D tensors stay near 256 MB (d 512, fp32)
MEMBER_POSITIONS = 2**20  # S·B·T² above this: seeds run one after another, not vmapped together
ATTENTION_SCORES = 2**28  # scores of restricted rows held at once (1 GB fp32); more: rows in chunks
RELEASE_WIDTH = 128  # batches this wide hand their freed host memory back (long Dyck strings: each width runs once)


@dataclasses.dataclass(frozen=True)
class ProbeOptions:
    """What the probe computes and how; defaults are the documented choices (docs/probe.md)."""

    sample: int | None = None  # sentences; None: 10k (QF/TI) or 500 (Dyck)
    sample_seed: int = 42  # the one seed of the sample, the sampled baseline's RNG, ...
    exact_tree: bool = False  # exact DP tree instead of the original's greedy top-down (D19)
    sampled_baseline: bool = False  # `tscore` = the original's one-random-split baseline (D20)
    sparsity_bug: bool = False  # also report sparsity with the original's D8 bug
    batch_size: int = 32  # sentences per jitted call (× start positions × seeds), fewer when long
    dyck_split: str = DYCK_SPLIT  # the Dyck split sampled: "train" as the original (D24), or "val", "test"
    dyck_max_tokens: int | None = DYCK_MAX_TOKENS  # Dyck strings shorter than this; None: all, as the original
    matmul_precision: str = "highest"  # fp32 on GPUs too: charts are cosines near 1


def validate_options(opts: ProbeOptions) -> ProbeOptions:
    """Refuse options the probe cannot run with, naming the option (before any work)."""
    checks = [
        (opts.sample is None or opts.sample > 0, f"--sample must be > 0, got {opts.sample}"),
        (0 <= opts.sample_seed < 2**32, f"--sample-seed must be in [0, 2^32), got {opts.sample_seed}"),
        (opts.batch_size > 0, f"--batch-size must be > 0, got {opts.batch_size}"),
        (
            opts.dyck_split in ("train", "val", "test"),
            f"--dyck-split must be train, val or test, got {opts.dyck_split!r}",
        ),
        (
            opts.dyck_max_tokens is None or opts.dyck_max_tokens > 0,
            f"--dyck-max-tokens must be > 0 or none, got {opts.dyck_max_tokens}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    return opts


# ---------------------------------------------------------------- the sample


def sample_sentences(
    cfg: Config,
    sample: int | None = None,
    sample_seed: int = 42,
    *,
    splits=None,
    dyck_split: str = DYCK_SPLIT,
    dyck_max_tokens: int | None = DYCK_MAX_TOKENS,
) -> list[list[str]]:
    """The run's fixed probe sample (D21): QF quest declaratives, TI declaratives, Dyck strings of a split (D24)."""
    from sgjax.data.parses import strip_sentence

    splits = splits if splits is not None else loop.load_data(cfg)
    if cfg.task == "dyck":
        if dyck_split not in splits:
            raise UserError(f"unknown Dyck split {dyck_split!r} for the probe; choose one of {sorted(splits)}")
        cap = math.inf if dyck_max_tokens is None else dyck_max_tokens
        if dyck_split == "train" and cfg.data.max_train_len is not None:  # only strings the run trained on
            cap = min(cap, cfg.data.max_train_len + 1)
        sents = [l.split() for l in splits[dyck_split].lines if 0 < len(l.split()) < cap]
    else:
        lines = splits["train"].lines
        if cfg.task == "question":  # only quest lines, as the original
            lines = [l for l in lines if l.split("\t")[0].split()[-1] == "quest"]
        # the declarative before the marker, final "." removed
        sents = [strip_sentence(cfg.task, l.replace("\t", " ").split()) for l in lines]
    n = DEFAULT_SAMPLE[cfg.task] if sample is None else int(sample)
    if len(sents) > n:  # seeded once per run, not per checkpoint (D21)
        idx = np.sort(np.random.default_rng(sample_seed).choice(len(sents), n, replace=False))
        sents = [sents[i] for i in idx]
    return sents


def gold_trees(task: str, sentences) -> list | None:
    """Gold parses (QF/TI) or None (Dyck has none, D24)."""
    if task == "dyck":
        return None
    from sgjax.data.parses import parse

    return [parse(task, w) for w in sentences]


@dataclasses.dataclass
class Batch:
    """Sentences of similar length: [SOS] w1..wn, 0-padded; `index` into the sample."""

    tokens_BxT: np.ndarray
    lengths_B: np.ndarray  # words n (not counting SOS)
    index: np.ndarray  # positions in the sample; -1 for filler rows


def padded_width(n_tokens: int) -> int:
    """A multiple of 8 tokens; of T/8 or less above 127, so long strings share few compiled widths (≤ 12.5% padding)."""
    step = max(8, 2 ** (int(n_tokens).bit_length() - 4))
    return step * math.ceil(n_tokens / step)


def batch_rows(t: int, batch_size: int, max_positions: int = BATCH_POSITIONS) -> int:
    """Sentences per batch at width t: `batch_size`, fewer when B·t² would pass `max_positions`."""
    return max(1, min(batch_size, max_positions // (t * t)))


def make_batches(sentences, vocab, batch_size: int, max_positions: int = BATCH_POSITIONS) -> list[Batch]:
    """Length-sorted batches padded to `padded_width` (few compiled shapes); filler rows copy row 0.

    A batch of width T holds `batch_rows(T)` rows: `batch_size` for short strings, fewer for long
    ones (the chart's tensors grow as B·T²), one for a string of a few hundred tokens.
    """
    ids = [vocab.encode(w) for w in sentences]
    order = np.argsort([len(x) for x in ids], kind="stable")
    out, lo = [], 0
    while lo < len(order):
        hi = lo + 1  # the longest string so far sets the width, and the width the rows
        while hi < len(order) and hi - lo < batch_rows(
            padded_width(len(ids[order[hi]]) + 1), batch_size, max_positions
        ):
            hi += 1
        idx = order[lo:hi]
        lo = hi
        t = padded_width(max(len(ids[i]) for i in idx) + 1)
        rows = batch_rows(t, batch_size, max_positions)
        tok = np.zeros((rows, t), np.int32)
        index = np.full(rows, -1)
        for r in range(rows):
            i = idx[r] if r < len(idx) else idx[0]
            tok[r, 0] = vocab.sos
            tok[r, 1 : len(ids[i]) + 1] = ids[i]
            index[r] = i if r < len(idx) else -1
        out.append(Batch(tok, (tok[:, 1:] != 0).sum(1), index))
    return out


# ---------------------------------------------------------------- one jitted program per batch shape


def member_batch(cfg: ModelConfig, bug: bool, params, tokens_BxT, row_chunk: int | None = None) -> dict[str, jax.Array]:
    """Chart and attention-entropy sums of one member on one batch."""
    _, internals = M.forward(cfg, params, tokens_BxT, return_internals=True)
    out = {"chart_BxNxN": TP.charts_fast(cfg, params, tokens_BxT, internals["hidden_LxBxTxD"][-1], row_chunk=row_chunk)}
    out.update(SP.sentence_entropies(internals["attn_LxBxHxTxT"], tokens_BxT))
    if bug:
        ent = SP.sentence_entropies(SP.embedding_attention(cfg, params, tokens_BxT), tokens_BxT)
        out.update({f"bug_{k}": v for k, v in ent.items()})
    return out


_member_batch_jit = jax.jit(member_batch, static_argnums=(0, 1, 4))


@functools.partial(jax.jit, static_argnums=(0, 1, 4, 5))
def population_batch(
    cfg: ModelConfig, bug: bool, params_S, tokens_BxT, row_chunk: int | None = None, one_by_one: bool = False
) -> dict[str, jax.Array]:
    """`member_batch` over the population axis S in one program: vmapped, or `one_by_one` (lax.map) when large."""
    fn = lambda p: member_batch(cfg, bug, p, tokens_BxT, row_chunk)
    return jax.lax.map(fn, params_S) if one_by_one else jax.vmap(fn)(params_S)


def batch_plan(cfg: ModelConfig, n_members: int, b: int, t: int) -> tuple[int | None, bool]:
    """(row_chunk, one_by_one) bounding a batch's memory: seeds in turn past MEMBER_POSITIONS, rows in chunks past
    ATTENTION_SCORES.
    """
    one_by_one = n_members * b * t * t > MEMBER_POSITIONS
    rows, width = TP.packed_layout(t)[0].shape  # packed rows, and their width t + 2
    per_row = (1 if one_by_one else n_members) * b * cfg.n_heads * width * width
    most = max(1, ATTENTION_SCORES // per_row)
    if most >= rows:
        return None, one_by_one
    return -(-rows // -(-rows // most)), one_by_one  # equal chunks: 208 rows, at most 192 -> 2 of 104


# ---------------------------------------------------------------- one checkpoint


def probe_population(
    cfg: Config, params_S, seeds, batches, gold, opts: ProbeOptions, step: int = 0, progress: bool = False
) -> list[dict]:
    """Records (one per member) of every quantity at one checkpoint."""
    from sgjax.data.parses import parse_f1

    n_members = len(seeds)
    n_sent = int(sum((b.index >= 0).sum() for b in batches))
    # the original's sparsity reads only the Dyck strings under 200 tokens
    sparse_cap = SPARSITY_MAX_TOKENS if cfg.task == "dyck" else math.inf
    n_sparse = 0
    acc = {
        k: np.zeros(n_members)
        for k in (
            "orig",
            "dist_sum",
            "dist_count",
            "bug_orig",
            "bug_dist_sum",
            "bug_dist_count",
            "tscore_expected",
            "tscore_sampled",
        )
    }
    trees = [[None] * n_sent for _ in range(n_members)]
    rngs = [np.random.default_rng([opts.sample_seed, step, s]) for s in seeds]
    params_S = jax.tree_util.tree_map(jnp.asarray, params_S)
    ent_keys = ("orig", "dist_sum", "dist_count") + (
        ("bug_orig", "bug_dist_sum", "bug_dist_count") if opts.sparsity_bug else ()
    )
    with jax.default_matmul_precision(opts.matmul_precision):
        run = lambda b: population_batch(
            cfg.model,
            opts.sparsity_bug,
            params_S,
            jnp.asarray(b.tokens_BxT),
            *batch_plan(cfg.model, n_members, *b.tokens_BxT.shape),
        )
        pending = run(batches[0])
        for j, batch in enumerate(tqdm(batches, desc=f"step {step}", leave=False, disable=not progress)):
            out = jax.device_get(pending)
            if batch.tokens_BxT.shape[1] >= RELEASE_WIDTH:  # else the heap keeps every long width's temporaries
                hostmem.release_freed_memory()
            if j + 1 < len(batches):  # dispatch the next batch before decoding this one on the host
                pending = run(batches[j + 1])
            real = batch.index >= 0
            sparse = real & (batch.lengths_B < sparse_cap)
            n_sparse += int(sparse.sum())
            for m in range(n_members):
                for k in ent_keys:
                    acc[k][m] += float(out[f"{k}_B"][m][sparse].sum())
                t, e, s = TP.decode(
                    out["chart_BxNxN"][m][real], batch.lengths_B[real], exact=opts.exact_tree, rng=rngs[m]
                )
                acc["tscore_expected"][m] += e.sum()
                acc["tscore_sampled"][m] += s.sum()
                for i, tree in zip(batch.index[real], t):
                    trees[m][i] = tree
    wn = {k: np.asarray(v) for k, v in norms.weight_norms(params_S, cfg.model).items()}
    records = []
    for m, seed in enumerate(seeds):
        rec = {
            "step": int(step),
            "seed": int(seed),
            "member": int(list(cfg.seeds).index(seed)) if seed in cfg.seeds else m,
            "n_sentences": n_sent,
            "decoder": "exact" if opts.exact_tree else "greedy",
            "baseline": "sampled" if opts.sampled_baseline else "expected",
        }
        rec["tscore_expected"] = float(acc["tscore_expected"][m] / max(n_sent, 1))
        rec["tscore_sampled"] = float(acc["tscore_sampled"][m] / max(n_sent, 1))
        rec["tscore"] = rec["tscore_sampled"] if opts.sampled_baseline else rec["tscore_expected"]
        if gold is not None:
            rec["tparseval"] = parse_f1(trees[m], gold, include_root=True)
            rec["tparseval_noroot"] = parse_f1(trees[m], gold, include_root=False)
        else:
            rec["tparseval"] = rec["tparseval_noroot"] = None
        rec["n_sentences_sparsity"] = n_sparse
        rec.update(SP.sparsity_from_sums(acc["orig"][m], n_sparse, acc["dist_sum"][m], acc["dist_count"][m]))
        if opts.sparsity_bug:
            bug = SP.sparsity_from_sums(acc["bug_orig"][m], n_sparse, acc["bug_dist_sum"][m], acc["bug_dist_count"][m])
            rec.update({"sparsity_bug": bug["sparsity"], "sparsity_bug_mean": bug["sparsity_mean"]})
        rec.update({k: float(v[m]) for k, v in wn.items()})
        records.append(rec)
    return records


def right_branching_f1(gold, lengths) -> tuple[float | None, float | None]:
    """tparseval (with, without root) of right-branching trees against gold."""
    if gold is None:
        return None, None
    from sgjax.data.parses import parse_f1, right_branching

    rb = [right_branching(n) for n in lengths]
    return parse_f1(rb, gold, True), parse_f1(rb, gold, False)


# ---------------------------------------------------------------- probe.jsonl


def read_records(path: Path) -> list[dict]:
    """Valid JSON records of a probe file (a torn last line is dropped)."""
    return jsonl.read_records(path)


def result_options(opts: ProbeOptions, task: str) -> dict:
    """The options that change a record's numbers (not the batch size; Dyck's sample only for Dyck), the sample size
    resolved.
    """
    d = dataclasses.asdict(opts)
    del d["batch_size"]
    if task != "dyck":
        del d["dyck_split"], d["dyck_max_tokens"]
    d["sample"] = DEFAULT_SAMPLE[task] if opts.sample is None else int(opts.sample)
    return d


OPTIONS_BEFORE = {"dyck_split": "val"}  # options added later: what files written before them were made with


def check_options(run_dir: Path, wanted: dict, has_records: bool) -> None:
    """Refuse to add records made with other options to probe.jsonl; record the options of a new one."""
    path = run_dir / OPTIONS_FILE
    if path.exists():
        old = {**OPTIONS_BEFORE, **jsonl.read_json(path, "the probe's options")}
        diff = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in wanted.items() if old.get(k) != v]
        if diff and has_records:
            raise UserError(
                f"{run_dir / PROBE_FILE} was made with other probe options ({'; '.join(diff)}); "
                f"rerun with those, or move {PROBE_FILE} and {OPTIONS_FILE} away to probe again"
            )
    if not has_records:  # (records made before this file existed keep none: they are not checked)
        from sgjax.data.formats import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(wanted, indent=2, sort_keys=True).encode())


def complete_steps(records, seeds) -> set[int]:
    """Steps with a record for every seed."""
    have: dict[int, set] = {}
    for r in records:
        have.setdefault(int(r["step"]), set()).add(int(r["seed"]))
    return {s for s, got in have.items() if set(seeds) <= got}


def rewrite_complete(path: Path, records, done: set[int]) -> None:
    """Keep only complete steps' records (after an interrupted append), atomically."""
    keep = [r for r in records if int(r["step"]) in done]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)


def append_records(path: Path, records) -> None:
    """Append one step's records with a single write + fsync (a step is all there or torn, never mixed)."""
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_steps(steps, available: list[int]) -> list[int]:
    """None/"all" -> every saved step; a list or "3000,6000" -> those (each must exist)."""
    if steps is None or steps == "all":
        return list(available)
    if isinstance(steps, str):
        try:
            steps = [int(float(s)) for s in steps.split(",") if s.strip()]
        except ValueError:
            raise UserError(f"--steps must be 'all' or comma-separated integers, got {steps!r}") from None
    missing = sorted(set(int(s) for s in steps) - set(available))
    if missing:
        raise UserError(f"no checkpoint at step(s) {missing}; saved steps: {available}")
    return sorted(set(int(s) for s in steps))


def probe_run(
    run_dir,
    steps=None,
    sample: int | None = None,
    *,
    options: ProbeOptions | None = None,
    progress: bool = True,
    **kwargs,
) -> Path:
    """Probe every (or the given) saved step of a run into run_dir/probe.jsonl, resuming; returns its path.

    `kwargs` are ProbeOptions fields (exact_tree=True, ...). Raises UserError if there is no checkpoint.
    """
    from sgjax.run import checkpoint

    opts = dataclasses.replace(options or ProbeOptions(), **kwargs, **({} if sample is None else {"sample": sample}))
    validate_options(opts)
    run_dir = Path(run_dir)
    cfg = checkpoint.load_config(run_dir)
    with runlock.hold(run_dir, "probe"):  # one probe appends to a run's probe.jsonl at a time
        return probe_steps(cfg, run_dir, steps, opts, progress)


def probe_steps(cfg: Config, run_dir: Path, steps, opts: ProbeOptions, progress: bool) -> Path:
    """`probe_run` once the run's probe file is this process's."""
    from sgjax.data import vocab_for
    from sgjax.run import checkpoint

    available = checkpoint.list_steps(run_dir)
    if not available:
        raise UserError(f"{run_dir} has no checkpoints to probe (train with train.ckpt_every > 0 first)")
    todo = parse_steps(steps, available)
    path = run_dir / PROBE_FILE
    records = read_records(path)
    done = complete_steps(records, cfg.seeds)
    if path.exists() and (_torn(path) or any(int(r["step"]) not in done for r in records)):
        rewrite_complete(path, records, done)  # drop an interrupted step's partial records
    check_options(run_dir, result_options(opts, cfg.task), bool(done))
    todo = [s for s in todo if s not in done]
    if not todo:
        return path
    vocab = vocab_for(cfg.task)
    sents = sample_sentences(
        cfg, opts.sample, opts.sample_seed, dyck_split=opts.dyck_split, dyck_max_tokens=opts.dyck_max_tokens
    )
    if not sents:
        raise UserError(f"{run_dir}: the probe sample is empty (task {cfg.task})")
    batches = make_batches(sents, vocab, opts.batch_size)
    gold = gold_trees(cfg.task, sents)  # indexed like the sample, as the decoded trees
    rb, rb_noroot = right_branching_f1(gold, [len(w) for w in sents])
    from sgjax.run import loggers

    bar = tqdm(todo, desc=f"probe {run_dir.name}", disable=not progress)
    sinks = loggers.for_run(run_dir, cfg, prefix="probe/")  # the run's TensorBoard / W&B, as training logged to
    try:
        for step in bar:
            seeds, params_S = checkpoint.load_params(run_dir, step)
            recs = probe_population(cfg, params_S, seeds, batches, gold, opts, step, progress=progress)
            for r in recs:
                r["tparseval_rb"], r["tparseval_rb_noroot"] = rb, rb_noroot
            append_records(path, recs)
            for sink in sinks:
                sink.log(recs)
            bar.set_postfix(tscore=f"{np.mean([r['tscore'] for r in recs]):.3f}")
    finally:
        loggers.close(sinks)
    return path


def _torn(path: Path) -> bool:
    """Whether the file does not end in a newline (an interrupted write)."""
    data = path.read_bytes()
    return bool(data) and not data.endswith(b"\n")


# ---------------------------------------------------------------- notebooks


def probe_checkpoint(cfg: Config, params, sentence_words, *, exact: bool = False, seed: int = 0) -> dict:
    """Everything about one sentence (its words, or a string of them) under one member's params: chart, trees,
    scores, sparsity."""
    from sgjax.data import vocab_for
    from sgjax.data.parses import parse, parse_f1

    words = sentence_words.split() if isinstance(sentence_words, str) else list(sentence_words)
    vocab = vocab_for(cfg.task)
    tokens_1xT = jnp.asarray([[vocab.sos] + vocab.encode(words)], jnp.int32)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    row_chunk, _ = batch_plan(cfg.model, 1, 1, tokens_1xT.shape[1])  # a long Dyck string: rows in chunks
    out = jax.device_get(_member_batch_jit(cfg.model, False, params, tokens_1xT, row_chunk))
    chart = out["chart_BxNxN"][0]
    n = len(words)
    trees, e, s = TP.decode(chart[None], [n], exact=exact, rng=np.random.default_rng(seed))
    gold = None if cfg.task == "dyck" else parse(cfg.task, words)
    return {
        "words": words,
        "chart": chart,
        "tree": trees[0],
        "greedy_tree": TP.greedy_tree(chart),
        "exact_tree": TP.exact_tree(chart),
        "gold_tree": gold,
        "tscore": float(e[0]),
        "tscore_sampled": float(s[0]),
        "tparseval": None if gold is None else parse_f1([trees[0]], [gold]),
        "sparsity": -float(out["orig_B"][0]),
        "sparsity_mean": -float(out["dist_sum_B"][0] / max(out["dist_count_B"][0], 1)),
    }
