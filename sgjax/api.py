"""One call each for what a notebook asks of a run: its metrics, a checkpoint's scores, a generation, a tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sgjax.errors import UserError

MARKERS = {"question": "quest", "tense": "PRESENT"}  # the transformation asked of an input sentence by default


def metrics(run_dir) -> list[dict]:
    """The run's metrics.jsonl as records, one per (step, seed): train_loss, lr, val_acc, gen_acc, ..."""
    from sgjax.analysis import summarize

    return summarize.read_metrics(Path(run_dir) / "metrics.jsonl")


def evaluate_checkpoint(run_dir, step: int, seeds=None) -> dict[int, dict[str, float]]:
    """{seed: {metric: value}} of a probe checkpoint, scored as training scores it (the run's data and settings)."""
    from sgjax.data import vocab_for
    from sgjax.evaluation import evaluate
    from sgjax.run import checkpoint, loop

    cfg = checkpoint.load_config(run_dir)
    seeds, params_S = checkpoint.load_params(run_dir, step, seeds)
    splits = loop.load_data(cfg)
    gen = loop.gen_split_name(cfg.task)
    evaluator = evaluate.make_evaluator(
        cfg.model, cfg.eval, cfg.task, vocab_for(cfg.task), {"val": splits["val"], gen: splits[gen]}, member_seeds=seeds
    )
    scores = evaluator(params_S, step)
    return {int(s): {k: float(np.asarray(v)[i]) for k, v in scores.items()} for i, s in enumerate(seeds)}


def member(run_dir, step: int, seed: int):
    """(config, one member's parameters) of a probe checkpoint."""
    from sgjax.run import checkpoint

    cfg = checkpoint.load_config(run_dir)
    _, params_S = checkpoint.load_params(run_dir, step, [seed])
    return cfg, _first(params_S)


def _first(tree):
    """Member 0 of a tree with a leading member axis."""
    return {k: _first(v) if isinstance(v, dict) else v[0] for k, v in tree.items()}


def generate(run_dir, step: int, seed: int, sentence: str, marker: str | None = None) -> str:
    """The member's greedy output for an input sentence: QF questions it by default ('quest'), TI puts it in the
    present ('PRESENT'), Dyck continues the string. The input may end in its own '. marker'."""
    from sgjax.data import vocab_for
    from sgjax.evaluation import decode

    cfg, params = member(run_dir, step, seed)
    words = sentence.split()
    if cfg.task != "dyck" and words[-1] not in ("quest", "decl", "PAST", "PRESENT"):
        words = [w for w in words if w != "."] + [".", marker or MARKERS[cfg.task]]
    vocab = vocab_for(cfg.task)
    prefix = [vocab.sos] + vocab.encode(words, where="the sentence")
    gen, n = decode.greedy_decode(
        cfg.model,
        params,
        np.asarray([prefix], np.int32),
        np.asarray([len(prefix)], np.int32),
        max_steps=cfg.eval.max_decode_steps,
        eos_id=vocab.eos,
    )
    return " ".join(vocab.words[int(t)] for t in np.asarray(gen)[0, : int(np.asarray(n)[0])])


def tree(run_dir, step: int, seed: int, sentence: str) -> dict:
    """The member's tree projection of one sentence (QF/TI declarative, Dyck string): chart, tree, gold tree,
    tscore, tparseval, sparsity (sgjax.analysis.probe.probe_checkpoint)."""
    from sgjax.analysis.probe.run import probe_checkpoint

    cfg, params = member(run_dir, step, seed)
    words = [w for w in sentence.split() if w not in (".", "?")]
    if not words:
        raise UserError("the sentence is empty")
    return probe_checkpoint(cfg, params, words)
