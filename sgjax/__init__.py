"""sgjax: structural grokking (Murty et al., ACL 2023) in JAX, built for seed sweeps.

Programmatic API:
    cfg = sgjax.preset("smoke", "question", depth=2)       # or sgjax.Config(...), sgjax.override(cfg, [...])
    run_dir = sgjax.train(cfg, "runs/qf_l2")                # resumable
    sgjax.metrics(run_dir)                                  # metrics.jsonl as records
    sgjax.evaluate_checkpoint(run_dir, 400)                 # {seed: {val_acc, gen_acc, ...}}
    sgjax.generate(run_dir, 400, 42, "my newt does swim")   # the member's greedy output
    sgjax.tree(run_dir, 400, 42, "my newt does swim")       # its tree projection of the sentence
    sgjax.analysis.summarize.summarize_run(run_dir)     # early stopping vs extended training
    sgjax.analysis.probe.probe_run(run_dir)             # weight norms, sparsity, tree projections
    sgjax.sweep.run_sweep(...); sgjax.analysis.report.write_report(sweep_dir)
"""

from sgjax.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig, override, preset
from sgjax.lazy import lazy_modules

__version__ = "0.2.0"


def train(config: Config, run_dir, **kwargs):
    """Train (or resume) a population of seeds in `run_dir`; see sgjax.run.loop.run for options."""
    from sgjax.run import loop

    return loop.run(config, run_dir, **kwargs)


def metrics(run_dir) -> list[dict]:
    """The run's metrics.jsonl as records, one per (step, seed)."""
    from sgjax import api

    return api.metrics(run_dir)


def evaluate_checkpoint(run_dir, step: int, seeds=None) -> dict:
    """{seed: {metric: value}} of a probe checkpoint, scored as training scores it."""
    from sgjax import api

    return api.evaluate_checkpoint(run_dir, step, seeds)


def generate(run_dir, step: int, seed: int, sentence: str, marker: str | None = None) -> str:
    """One member's greedy output for an input sentence (QF: its question; TI: its present tense)."""
    from sgjax import api

    return api.generate(run_dir, step, seed, sentence, marker)


def tree(run_dir, step: int, seed: int, sentence: str) -> dict:
    """One member's tree projection of a sentence: chart, tree, gold tree, tscore, tparseval."""
    from sgjax import api

    return api.tree(run_dir, step, seed, sentence)


__all__ = [
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "TrainConfig",
    "evaluate_checkpoint",
    "generate",
    "metrics",
    "override",
    "preset",
    "train",
    "tree",
]

__getattr__, __dir__ = lazy_modules(__name__, __path__, __all__)
