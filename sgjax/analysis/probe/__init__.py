"""Analyses of saved checkpoints: weight norms, attention sparsity, tree projections.

    norms.weight_norms(params_S, model_cfg) -> {name: array_S}
    sparsity.attention_entropies(cfg, params, tokens_BxT, lengths_B, bug=False) -> per-sentence sums
    tree_projection.charts_fast(cfg, params, tokens_BxT) -> chart_BxNxN (and a direct reference)
    run.probe_run(run_dir, ...) -> run_dir/probe.jsonl;  run.probe_checkpoint(cfg, params, words) -> dict

Never imports sgjax.train/engine: the probe reads checkpoints only (docs/probe.md).
"""

from sgjax.analysis.probe.run import probe_checkpoint, probe_run  # noqa: E402  (the API the README names)

__all__ = ["probe_checkpoint", "probe_run"]
