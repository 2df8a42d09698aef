"""sgjax: structural grokking (Murty et al., ACL 2023) in JAX, built for seed sweeps.

Programmatic API:
    cfg = sgjax.preset("smoke", "question", depth=2)       # or sgjax.Config(...), sgjax.override(cfg, [...])
    run_dir = sgjax.train(cfg, "runs/qf_l2")                # resumable
    sgjax.summarize.summarize_run(run_dir)                  # early stopping vs extended training
    sgjax.probe.probe_run(run_dir)                          # weight norms, sparsity, tree projections
    sgjax.sweep.run_sweep(...); sgjax.report.write_report(sweep_dir)
"""

from sgjax.config import Config, DataConfig, EvalConfig, ModelConfig, TrainConfig, override, preset

__version__ = "0.1.0"


def train(config: Config, run_dir, **kwargs):
    """Train (or resume) a population of seeds in `run_dir`; see sgjax.loop.run for options."""
    from sgjax import loop

    return loop.run(config, run_dir, **kwargs)


def __getattr__(name):
    """Import submodules on first use (sgjax.summarize, sgjax.probe, ...), keeping `import sgjax` cheap."""
    import importlib

    try:
        return importlib.import_module(f"sgjax.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"sgjax.{name}":  # a submodule that exists but fails to import: say why
            raise
        raise AttributeError(f"module 'sgjax' has no attribute {name!r}") from None


__all__ = ["Config", "DataConfig", "EvalConfig", "ModelConfig", "TrainConfig", "override", "preset", "train"]
