"""`sgjax report SWEEP_DIR`: the paper's figures and tables from a sweep, beside the paper's numbers.

    write_report(sweep_dir, out=None) -> SWEEP_DIR/report/report.md  (figures as PNG and PDF beside it)
    write_report([dir_a, dir_b], out)   -> one report of both, runs of one experiment with other seeds pooled

A sweep directory holds one run directory per (task, depth), named `<task>_L<depth>` (sgjax.sweep);
a single run directory works too. Rules (docs/report.md): a seed "groks" when its final gen ≥ 0.8
(D17); early stopping is the first checkpoint where val reaches its maximum (D18, patience-3 and
first val ≥ 0.99 also tabulated); the best depth has the most grokking seeds, ties broken by the
higher mean final gen, then the smaller depth.

    runs     reading the sweep's run directories
    stats    per-depth aggregates, curves, the best depth
    figures  the figures (matplotlib, Agg canvas)
    tables   report.md's tables and notes
    trees    trees as text
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sgjax.analysis.report.figures import fig2, fig3a, fig3b, fig4, per_seed_figure, train_loss_figure
from sgjax.analysis.report.runs import Run, discover_runs, load_run
from sgjax.analysis.report.stats import best_depth, best_of, depth_stats, shown_depth
from sgjax.analysis.report.tables import markdown
from sgjax.analysis.report.trees import bracketed, tree_text
from sgjax.errors import UserError

__all__ = [
    "Run",
    "add_arguments",
    "best_depth",
    "bracketed",
    "depth_stats",
    "discover_runs",
    "load_run",
    "run",
    "tree_text",
    "write_report",
]


def write_report(sweep_dir, out=None, *, as_original: bool = False) -> Path:
    """Write figures (PNG + PDF) and report.md into `out` (default SWEEP_DIR/report/); returns report.md's path.

    `sweep_dir`: a sweep or run directory, or a list of them (then `out` is needed); runs of one (task, depth) that
    are one experiment with other seeds are pooled. `as_original`: Fig 3b as the paper drew it, where the probe
    recorded it (`fig3b_panels`).
    """
    sources = [Path(d) for d in sweep_dir] if isinstance(sweep_dir, (list, tuple)) else [Path(sweep_dir)]
    if out is None and len(sources) > 1:
        raise UserError("a report of several directories needs --out: its own folder, not one of theirs")
    runs = discover_runs(*sources)
    where = " + ".join(map(str, sources))
    if not runs:
        raise UserError(f"{where} holds no run directories (<task>_L<depth>/ with config.json or metrics.jsonl)")
    if not any(r.metrics or r.probe for r in runs):
        raise UserError(f"nothing to plot in {where}: its runs have no metrics.jsonl or probe.jsonl records yet")
    out_dir = Path(out) if out is not None else sources[0] / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks: dict[str, list[Run]] = {}
    for r in runs:
        tasks.setdefault(r.task, []).append(r)
    stats = [depth_stats(r) for r in runs]
    best = {t: best_depth([s for s in stats if s["task"] == t]) for t in tasks}
    shown = {t: shown_depth([s for s in stats if s["task"] == t]) for t in tasks}
    best_runs = best_of(runs, shown)
    figures = {
        "Fig 2: mean accuracy over training (the best depth, else the highest mean final gen)": fig2(
            best_runs, best, out_dir
        )
        if best_runs
        else [],
        "Fig 3a: share of grokking seeds per depth": fig3a(
            {t: [s for s in stats if s["task"] == t] for t in tasks if t in best_runs}, out_dir
        )
        if best_runs
        else [],
        "Fig 3b: weight norm, sparsity, tscore": fig3b(tasks, best, out_dir, as_original),
        "Fig 4: tparseval": fig4(tasks, best, out_dir),
    }
    figures.update({f"Per-seed generalization: {t}": per_seed_figure(t, rs, out_dir) for t, rs in tasks.items()})
    figures["Training loss"] = train_loss_figure(tasks, out_dir)
    path = out_dir / "report.md"
    path.write_text(markdown(sources, runs, stats, best, shown, figures))
    (out_dir / "report.json").write_text(json.dumps({"best_depth": best, "depths": stats}, indent=2, default=str))
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI: `sgjax report SWEEP_DIR [SWEEP_DIR ...] [--out DIR]`."""
    p.add_argument(
        "sweep_dir",
        nargs="+",
        help="a sweep directory (or a single run directory); several are reported together, "
        "runs of one (task, depth) that differ only in their seeds pooled",
    )
    p.add_argument("--out", help="where to write the report (default: SWEEP_DIR/report; needed for several)")
    p.add_argument(
        "--as-original",
        action="store_true",
        help="Fig 3b as the paper drew it: weight norm with the unused decoder's constant (D6) and, where the "
        "probe ran with --sparsity-bug, the original's attention sparsity (D8)",
    )


def run(args) -> int:
    """Write the report and print where it is."""
    path = write_report(args.sweep_dir, args.out, as_original=args.as_original)
    print(f"report: {path}")
    return 0
