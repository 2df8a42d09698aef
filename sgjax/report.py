"""`sgjax report SWEEP_DIR`: the paper's figures and tables from a sweep, beside the paper's numbers.

    write_report(sweep_dir, out=None) -> SWEEP_DIR/report/report.md  (figures as PNG and PDF beside it)

A sweep directory holds one run directory per (task, depth), named `<task>_L<depth>` (sgjax.sweep);
a single run directory works too. Rules (docs/report.md): a seed "groks" when its final gen ≥ 0.8
(D17); early stopping is the first checkpoint where val reaches its maximum (D18, patience-3 and
first val ≥ 0.99 also tabulated); the best depth has the most grokking seeds, ties broken by the
higher mean final gen, then the smaller depth. Figures use matplotlib's Agg canvas (no pyplot).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np

from sgjax import jsonl, summarize
from sgjax.errors import UserError

TASK_TITLES = {"question": "Question formation", "tense": "Tense inflection", "dyck": "Dyck-(20,10)"}
# probe.jsonl keys, first present wins (sgjax.probe.run; docs/probe.md)
WEIGHT_NORM_KEYS = ("weight_norm_perL", "weight_norm_per_layer", "weight_norm_dec_perL", "weight_norm")
SPARSITY_KEYS = ("sparsity",)
TSCORE_KEYS = ("tscore",)
TSCORE_SAMPLED_KEYS = ("tscore_sampled",)  # the original's one-random-split baseline (D20)
TPARSEVAL_KEYS = ("tparseval",)
RB_KEYS = ("tparseval_rb",)
FORMATS = ("png", "pdf")
RUN_NAME = re.compile(r"^(?P<task>.+)_L(?P<depth>\d+)$")


# ---------------------------------------------------------------- reading runs


@dataclasses.dataclass
class Series:
    """One seed's evaluations: steps and accuracies (NaN where missing)."""

    steps: np.ndarray
    val: np.ndarray
    gen: np.ndarray


@dataclasses.dataclass
class Run:
    """One (task, depth) run directory and what the report derives from it."""

    task: str
    depth: int
    path: Path
    metrics: list[dict]
    probe: list[dict]
    evals: dict[int, Series]
    summaries: dict[int, dict]
    nonfinite: dict[int, int]

    @property
    def seeds(self) -> list[int]:
        """Every seed seen in metrics.jsonl or probe.jsonl."""
        return sorted({int(r["seed"]) for r in self.metrics + self.probe if "seed" in r})


def read_jsonl(path: Path) -> list[dict]:
    """JSON records of a .jsonl file; unreadable lines (a torn last write) are skipped."""
    return jsonl.read_records(path)


def run_identity(path: Path) -> tuple[str, int] | None:
    """(task, depth) of a run directory from config.json, else from its `<task>_L<depth>` name."""
    cfg = path / "config.json"
    if cfg.exists():
        try:
            d = json.loads(cfg.read_text())
            return str(d["task"]), int(d["model"]["n_layers"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass
    m = RUN_NAME.match(path.name)
    return (m["task"], int(m["depth"])) if m else None


def is_run_dir(path: Path) -> bool:
    """A directory with a config.json or a metrics.jsonl."""
    return path.is_dir() and ((path / "config.json").exists() or (path / "metrics.jsonl").exists())


def load_run(path: Path, task: str, depth: int) -> Run:
    """Read metrics.jsonl and probe.jsonl of one run and derive per-seed summaries."""
    metrics = read_jsonl(path / "metrics.jsonl")
    evals = eval_series(metrics)
    return Run(task, depth, path, metrics, read_jsonl(path / "probe.jsonl"), evals,
               {s: seed_summary(e) for s, e in evals.items()}, nonfinite_seeds(metrics))


def discover_runs(sweep_dir: Path) -> list[Run]:
    """Every run of a sweep (or the directory itself if it is one run), sorted by task then depth."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a directory")
    candidates = [sweep_dir] if is_run_dir(sweep_dir) else sorted(p for p in sweep_dir.iterdir() if is_run_dir(p))
    found: dict[tuple[str, int], Path] = {}
    for p in candidates:
        ident = run_identity(p)
        if ident in found:  # the figures average one run per (task, depth): two would be mixed or one dropped
            raise UserError(f"{found[ident]} and {p} are both {ident[0]} at depth {ident[1]}: a report takes one run "
                            "per (task, depth); move one of them out of the sweep directory")
        if ident is not None:
            found[ident] = p
        else:  # a run this report cannot place: say so rather than leave it out silently
            warnings.warn(f"{p} left out of the report: no task and depth (a readable config.json, or a name "
                          "<task>_L<depth>)", stacklevel=2)
    return sorted((load_run(p, *ident) for ident, p in found.items()), key=lambda r: (r.task, r.depth))


def _float(x) -> float:
    """A JSON value as float (None and non-numbers -> NaN)."""
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def eval_series(records: list[dict]) -> dict[int, Series]:
    """Per seed, the evaluation records (those with val_acc or gen_acc) sorted by step."""
    by_seed: dict[int, dict[int, tuple[float, float]]] = {}
    for r in records:
        if r.get("val_acc") is None and r.get("gen_acc") is None:
            continue
        by_seed.setdefault(int(r["seed"]), {})[int(r["step"])] = (_float(r.get("val_acc")), _float(r.get("gen_acc")))
    out = {}
    for seed, d in sorted(by_seed.items()):
        steps = np.array(sorted(d), dtype=np.int64)
        out[seed] = Series(steps, np.array([d[s][0] for s in steps]), np.array([d[s][1] for s in steps]))
    return out


def nonfinite_seeds(records: list[dict]) -> dict[int, int]:
    """{seed: first step logged with nonfinite true}."""
    out: dict[int, int] = {}
    for r in records:
        if r.get("nonfinite"):
            s = int(r["seed"])
            out[s] = min(out.get(s, int(r["step"])), int(r["step"]))
    return out


# ---------------------------------------------------------------- per-seed rules (D17, D18)


def seed_summary(e: Series) -> dict:
    """The per-seed columns of sgjax.summarize (one definition of the D17/D18 rules)."""
    return summarize.seed_row(e.steps, e.val, e.gen)


def layers(depth: int) -> str:
    """'1 layer', '6 layers'."""
    return f"{depth} layer" + ("s" if depth != 1 else "")


def groks(summary: dict) -> bool:
    """D17: final gen >= 0.8."""
    return summary.get("final_gen") is not None and summary["final_gen"] >= summarize.GROK


# ---------------------------------------------------------------- per-depth aggregates


def _nanmean(xs) -> float | None:
    """Mean of the non-None, non-NaN values (None if there are none)."""
    v = [float(x) for x in xs if x is not None and not math.isnan(float(x))]
    return float(np.mean(v)) if v else None


def mean_curve(evals: dict[int, Series]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean val, mean gen) over seeds on the union of their eval steps (NaN-aware)."""
    steps = np.array(sorted({int(s) for e in evals.values() for s in e.steps}), dtype=np.int64)
    val = np.full((len(evals), len(steps)), np.nan)
    gen = np.full_like(val, np.nan)
    for k, e in enumerate(evals.values()):
        idx = np.searchsorted(steps, e.steps)
        val[k, idx], gen[k, idx] = e.val, e.gen
    with warnings.catch_warnings():  # all-NaN steps (a seed without that eval) give NaN quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return steps, np.nanmean(val, 0), np.nanmean(gen, 0)


def mean_curve_gaps(evals: dict[int, Series]) -> dict | None:
    """Fig 2's marks on the mean curve: ES = first max of mean val; gaps val − gen there and at the end."""
    if not evals:
        return None
    return curve_gaps(*mean_curve(evals))


def curve_gaps(steps, val, gen) -> dict | None:
    """ES = the first maximum of the val curve; the gaps val − gen there and at the last step."""
    steps, val, gen = np.asarray(steps), np.asarray(val, float), np.asarray(gen, float)
    i = summarize.first_max_index(val)
    if i is None:
        return None
    return {"es_step": int(steps[i]), "es_val": float(val[i]), "es_gen": float(gen[i]), "gap_es": float(val[i] - gen[i]),
            "end_step": int(steps[-1]), "end_val": float(val[-1]), "end_gen": float(gen[-1]), "gap_end": float(val[-1] - gen[-1])}


def probe_curve(records: list[dict], keys) -> tuple[str, np.ndarray, np.ndarray, np.ndarray] | None:
    """(key, steps, mean, std over seeds) of the first of `keys` present with numbers in probe records."""
    for key in keys:
        by_step: dict[int, list[float]] = {}
        for r in records:
            v = _float(r.get(key))
            if not math.isnan(v):
                by_step.setdefault(int(r["step"]), []).append(v)
        if by_step:
            steps = np.array(sorted(by_step))
            return key, steps, np.array([np.mean(by_step[s]) for s in steps]), np.array([np.std(by_step[s]) for s in steps])
    return None


def last_probe_mean(records: list[dict], keys) -> float | None:
    """Seed mean of a probe quantity at the last probed step."""
    c = probe_curve(records, keys)
    return None if c is None else float(c[2][-1])


def depth_stats(run: Run) -> dict:
    """One table row: seeds, grokking count, mean final/max/ES gen, last step, probe values at the last step."""
    s = list(run.summaries.values())
    col = lambda k: [x.get(k) for x in s]  # noqa: E731
    last = last_probe_step(run.probe)
    return {
        "task": run.task, "depth": run.depth, "n_seeds": len(run.seeds), "n_eval_seeds": len(s),
        "n_grok": sum(groks(x) for x in s), "mean_final_gen": _nanmean(col("final_gen")),
        "mean_max_gen": _nanmean(col("max_gen")), "mean_es_gen": _nanmean(col("es_gen_at_first_max_val")),
        "mean_es_gen_patience3": _nanmean(col("es_gen_patience3")), "mean_gen_at_val_ge_99": _nanmean(col("gen_at_first_val_ge_99")),
        "last_eval_step": max((x["last_step"] for x in s if x["last_step"] is not None), default=None),
        "tscore": last_probe_mean(run.probe, TSCORE_KEYS),
        "tscore_sampled": last_probe_mean(run.probe, TSCORE_SAMPLED_KEYS), "tparseval": last_probe_mean(run.probe, TPARSEVAL_KEYS),
        "probe_step": last, "nonfinite": dict(run.nonfinite),
    }


def last_probe_step(records: list[dict]) -> int | None:
    """The last probed step."""
    return max((int(r["step"]) for r in records), default=None)


def best_depth(stats: list[dict]) -> int | None:
    """The depth with the largest share of seeds final gen ≥ 0.8; ties -> higher mean final gen, then the smaller depth.

    A share, not a count, so a depth with fewer seeds evaluated is not ranked down for it.
    """
    rows = [r for r in stats if r["n_eval_seeds"] > 0]
    if not rows:
        return None
    key = lambda r: (r["n_grok"] / r["n_eval_seeds"], r["mean_final_gen"] if r["mean_final_gen"] is not None else -1.0,  # noqa: E731
                     -r["depth"])
    return max(rows, key=key)["depth"]


def best_of(runs: list[Run], best: dict[str, int | None]) -> dict[str, Run]:
    """{task: the run at its best depth} for tasks that have one."""
    return {r.task: r for r in runs if best.get(r.task) == r.depth}


# ---------------------------------------------------------------- figures


def new_figure(n_panels: int, *, rows: int = 1, panel=(5.2, 3.8)):
    """A Figure on the Agg canvas with a rows x ceil(n/rows) grid of axes (flattened list)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = max(1, math.ceil(n_panels / rows))
    fig = Figure(figsize=(panel[0] * cols, panel[1] * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write the figure in every format; returns the paths."""
    paths = []
    for fmt in FORMATS:
        p = out_dir / f"{name}.{fmt}"
        fig.savefig(p, dpi=130 if fmt == "png" else None)
        paths.append(p)
    return paths


def depth_colors(depths) -> dict[int, tuple]:
    """A colour per depth, shallow (light) to deep (dark)."""
    from matplotlib import colormaps

    depths = sorted(depths)
    cmap = colormaps["viridis"]
    return {d: cmap(0.85 - 0.75 * i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}


def _marker(n_points: int) -> str | None:
    """Markers only when there are few points (so single evaluations stay visible)."""
    return "o" if n_points <= 40 else None


def _kilo(ax) -> None:
    """Format the x axis (steps) with k/M suffixes."""
    from matplotlib.ticker import FuncFormatter

    def fmt(x, _):
        return f"{x / 1e6:g}M" if abs(x) >= 1e6 else f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"

    ax.xaxis.set_major_formatter(FuncFormatter(fmt))


def _gap_arrow(ax, x, lo, hi, label, color, side: str) -> None:
    """A vertical double arrow from lo to hi at x labelled with the gap."""
    ax.annotate("", xy=(x, hi), xytext=(x, lo), arrowprops=dict(arrowstyle="<->", color=color, lw=1.6))
    ax.annotate(label, xy=(x, (lo + hi) / 2), xytext=(6 if side == "right" else -6, 0), textcoords="offset points",
                ha="left" if side == "right" else "right", va="center", color=color, fontsize=9,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color, alpha=0.85))


def fig2_panel(ax, run: Run) -> None:
    """Mean val/gen accuracy (%) vs steps at one depth, with the early-stopping point and both gaps."""
    from sgjax import paper

    steps, val, gen = mean_curve(run.evals)
    m = _marker(len(steps))
    ref = paper.fig2_curve(run.task)
    if ref is not None:
        ps = np.array(ref["step"])
        keep = ps <= steps[-1] * 1.05
        if keep.sum() >= 3:
            lbl = f"paper {ref['depth']}L"
            ax.plot(ps[keep], 100 * np.array(ref["val"])[keep], color="tab:blue", alpha=0.3, lw=1, ls="--", label=f"{lbl} in-domain")
            ax.plot(ps[keep], 100 * np.array(ref["gen"])[keep], color="tab:orange", alpha=0.3, lw=1, ls="--", label=f"{lbl} generalization")
    ax.plot(steps, 100 * val, color="tab:blue", marker=m, ms=3, lw=2, label="in-domain (val)")
    ax.plot(steps, 100 * gen, color="tab:orange", marker=m, ms=3, lw=2, label="generalization (gen)")
    g = mean_curve_gaps(run.evals)
    if g is not None:
        ax.axvline(g["es_step"], color="gray", ls=":", lw=1.2, label=f"early stopping ({g['es_step']:,})")
        span = steps[-1] - steps[0] if len(steps) > 1 else 1
        if not math.isnan(g["gap_es"]):
            _gap_arrow(ax, g["es_step"], 100 * g["es_gen"], 100 * g["es_val"], f"Δ={100 * g['gap_es']:.0f}% (ES)", "tab:red",
                       "right" if g["es_step"] - steps[0] < 0.6 * span else "left")
        if not math.isnan(g["gap_end"]) and g["end_step"] != g["es_step"]:
            _gap_arrow(ax, g["end_step"], 100 * g["end_gen"], 100 * g["end_val"], f"Δ={100 * g['gap_end']:.0f}% (end)", "tab:purple", "left")
    title = f"{TASK_TITLES.get(run.task, run.task)}: {layers(run.depth)}, {len(run.evals)} seed{'s' * (len(run.evals) != 1)}"
    pg = paper.fig2_gaps(run.task)
    if pg is not None:
        title += f"\npaper ({pg['depth']}L): Δ≈{pg['gap_es_pct']:g}% at early stopping, ≈{pg['gap_end_pct']:g}% at the end"
    ax.set(title=title, xlabel="training step", ylabel="accuracy (%)", ylim=(-3, 103))
    _kilo(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def fig2(best: dict[str, Run], out_dir: Path) -> list[Path]:
    """Fig 2: one panel per task at its best depth."""
    fig, axes = new_figure(len(best), panel=(6.0, 4.4))
    for ax, run in zip(axes, best.values()):
        fig2_panel(ax, run)
    fig.suptitle("Structural grokking: mean accuracy at the best depth", fontsize=12)
    return save(fig, out_dir, "fig2_grokking")


def fig3a_panel(ax, task: str, stats: list[dict]) -> None:
    """Fraction of seeds with final gen ≥ 0.8 per depth, this sweep beside the paper's Fig 3a."""
    from sgjax import paper

    ours = {r["depth"]: r for r in stats if r["n_eval_seeds"] > 0}
    ref = paper.fig3a_counts(task)
    depths = sorted(set(ours) | set(ref))
    x = np.arange(len(depths))
    w = 0.38 if ref else 0.6
    fr = [ours[d]["n_grok"] / ours[d]["n_eval_seeds"] if d in ours else 0 for d in depths]
    bars = ax.bar(x - (w / 2 if ref else 0), fr, w, color="tab:green", label="this sweep")
    for b, d in zip(bars, depths):
        txt = f"{ours[d]['n_grok']}/{ours[d]['n_eval_seeds']}" if d in ours else "–"
        ax.annotate(txt, (b.get_x() + b.get_width() / 2, b.get_height()), xytext=(0, 2), textcoords="offset points",
                    ha="center", fontsize=8)
    if ref:
        pb = ax.bar(x + w / 2, [ref.get(d, 0) / 10 for d in depths], w, color="lightgray", edgecolor="gray", label="paper (Fig 3a)")
        for b, d in zip(pb, depths):
            ax.annotate(f"{ref[d]}/10" if d in ref else "–", (b.get_x() + b.get_width() / 2, b.get_height()), xytext=(0, 2),
                        textcoords="offset points", ha="center", fontsize=8, color="gray")
    ax.set_xticks(x, [str(d) for d in depths])
    ax.set(title=TASK_TITLES.get(task, task), xlabel="layers", ylabel="fraction of seeds with final gen ≥ 80%", ylim=(0, 1.12))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")


def fig3a(stats_by_task: dict[str, list[dict]], out_dir: Path) -> list[Path]:
    """Fig 3a: the inverted U, one panel per task."""
    fig, axes = new_figure(len(stats_by_task), panel=(5.0, 3.8))
    for ax, (task, stats) in zip(axes, stats_by_task.items()):
        fig3a_panel(ax, task, stats)
    fig.suptitle("Inverted U: which depths grok (final gen ≥ 80%, D17)", fontsize=12)
    return save(fig, out_dir, "fig3a_inverted_u")


TSCORE_FROM = 50_000  # the paper plots tscore from 50k steps on (SPEC §5.5, st_idx)


def curve_lines(ax, runs: list[Run], keys, colors: dict, best: int | None = None, start: int = 0) -> str | None:
    """Seed-mean ± std of a probe quantity per run from step `start`; returns the key plotted (None if nothing)."""
    used = None
    for run in runs:
        c = probe_curve(run.probe, keys)
        if c is None:
            continue
        used, steps, mean, std = c
        keep = steps >= start
        steps, mean, std = steps[keep], mean[keep], std[keep]
        label = layers(run.depth) + (" (best)" if run.depth == best else "")
        ax.plot(steps, mean, color=colors[run.depth], marker=_marker(len(steps)), ms=3, lw=2, label=label)
        ax.fill_between(steps, mean - std, mean + std, color=colors[run.depth], alpha=0.15, lw=0)
    return used


FIG3B_PANELS = (
    (WEIGHT_NORM_KEYS, "weight norm", {"weight_norm_perL": "weight norm / layers", "weight_norm_per_layer": "weight norm / layers",
                                       "weight_norm_dec_perL": "weight norm (+ decoder) / layers", "weight_norm": "weight norm"}),
    (SPARSITY_KEYS, "attention sparsity", {"sparsity": "−Σ attention entropy (nats)",
                                           "sparsity_bug": "−Σ attention entropy, the original's D8 bug (nats)"}),
    (TSCORE_KEYS, "tree-structuredness", {"tscore": "tscore"}),
)
ORIGINAL_KEYS = {"weight norm": ("weight_norm_dec_perL",), "attention sparsity": ("sparsity_bug",)}  # D6, D8


def fig3b_panels(as_original: bool) -> tuple:
    """Fig 3b's panels; `as_original` prefers what the paper plotted: the decoder constant (D6), the sparsity bug (D8)."""
    if not as_original:
        return FIG3B_PANELS
    return tuple((ORIGINAL_KEYS.get(title, ()) + keys, title, labels) for keys, title, labels in FIG3B_PANELS)


def pick_depths(runs: list[Run], best: int | None) -> list[Run]:
    """The shallowest, best and deepest grokking runs (distinct), as the paper picks (SPEC §5.5: TI 2/4/6).

    Deepest = the largest depth with at least one seed final gen ≥ 0.8; the largest depth if none groks.
    """
    by_depth = {r.depth: r for r in runs}
    grokking = [r.depth for r in runs if any(groks(x) for x in r.summaries.values())]
    chosen = {min(by_depth), max(grokking or by_depth)} | ({best} if best in by_depth else set())
    return [by_depth[d] for d in sorted(chosen)]


def fig3b(tasks: dict[str, list[Run]], best: dict[str, int | None], out_dir: Path, as_original: bool = False) -> list[Path]:
    """Fig 3b: weight norm, attention sparsity and tscore over training (shallowest/best/deepest); [] if no probe."""
    rows = [(t, pick_depths(runs, best.get(t))) for t, runs in tasks.items() if any(r.probe for r in runs)]
    if not rows:
        return []
    fig, axes = new_figure(3 * len(rows), rows=len(rows), panel=(4.6, 3.5))
    for k, (task, runs) in enumerate(rows):
        colors = depth_colors([r.depth for r in tasks[task]])
        # tscore from 50k as the paper draws it, when the runs went that far (a short run is drawn whole)
        late = TSCORE_FROM if any((last_probe_step(r.probe) or 0) > TSCORE_FROM for r in runs) else 0
        for j, (keys, title, labels) in enumerate(fig3b_panels(as_original)):
            ax = axes[3 * k + j]
            key = curve_lines(ax, runs, keys, colors, best.get(task), start=late if title == "tree-structuredness" else 0)
            if key is None:
                ax.text(0.5, 0.5, "not in probe.jsonl", ha="center", va="center", transform=ax.transAxes, color="gray")
            ax.set(title=f"{TASK_TITLES.get(task, task)}: {title}", xlabel="training step", ylabel=labels.get(key, key or ""))
            _kilo(ax)
            ax.grid(alpha=0.3)
            if key is not None:
                ax.legend(fontsize=8)
    fig.suptitle("Weight norm, attention sparsity and tree-structuredness (seed mean ± std)", fontsize=12)
    return save(fig, out_dir, "fig3b_probe")


def rb_value(task: str, runs: list[Run]) -> tuple[float | None, str]:
    """The right-branching tparseval: the probe's (on this sweep's sample), else the paper's (train)."""
    from sgjax import paper

    for run in runs:
        v = last_probe_mean(run.probe, RB_KEYS)
        if v is not None:
            return v, "right-branching (this sample)"
    return paper.right_branching(task), "right-branching (paper, train)"


def fig4(tasks: dict[str, list[Run]], best: dict[str, int | None], out_dir: Path) -> list[Path]:
    """Fig 4: tparseval over training per depth with the right-branching baseline; [] if no tparseval."""
    rows = {t: runs for t, runs in tasks.items() if any(probe_curve(r.probe, TPARSEVAL_KEYS) for r in runs)}
    if not rows:
        return []
    fig, axes = new_figure(len(rows), panel=(5.6, 4.0))
    for ax, (task, runs) in zip(axes, rows.items()):
        # the depths of Fig 3b, as the paper's Fig 4 (the per-depth numbers are in the tree table)
        curve_lines(ax, pick_depths(runs, best.get(task)), TPARSEVAL_KEYS, depth_colors([r.depth for r in runs]), best.get(task))
        rb, label = rb_value(task, runs)
        if rb is not None:
            ax.axhline(rb, color="tab:red", ls="--", lw=1.5, label=f"{label}: {rb:.3f}")
        ax.set(title=TASK_TITLES.get(task, task), xlabel="training step", ylabel="tparseval (F1 vs gold parses)")
        _kilo(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Tree projections approach gold syntax (tparseval, seed mean ± std)", fontsize=12)
    return save(fig, out_dir, "fig4_tparseval")


def per_seed_figure(task: str, runs: list[Run], out_dir: Path) -> list[Path]:
    """Generalization accuracy of every seed, one panel per depth; [] if no evaluations."""
    runs = [r for r in runs if r.evals]
    if not runs:
        return []
    fig, axes = new_figure(len(runs), rows=math.ceil(len(runs) / 3), panel=(4.6, 3.4))
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for ax, run in zip(axes, runs):
        for k, (seed, e) in enumerate(run.evals.items()):
            bad = seed in run.nonfinite
            ax.plot(e.steps, 100 * e.gen, color=cmap(k % 10), lw=1.1, alpha=0.85, ls=":" if bad else "-",
                    marker=_marker(len(e.steps)), ms=2.5, label=f"seed {seed}" + (" (non-finite)" if bad else ""))
        steps, _, gen = mean_curve(run.evals)
        ax.plot(steps, 100 * gen, color="black", lw=2.2, label="mean")
        ax.axhline(100 * summarize.GROK, color="gray", ls="--", lw=1)
        ax.set(title=f"{layers(run.depth)}: {run_stats_line(run)}", xlabel="training step", ylabel="gen accuracy (%)", ylim=(-3, 103))
        _kilo(ax)
        ax.grid(alpha=0.3)
    handles = {h.get_label(): h for ax in axes for h in ax.get_lines() if not h.get_label().startswith("_")}
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8)
    fig.suptitle(f"{TASK_TITLES.get(task, task)}: generalization accuracy per seed (dashed: 80%)", fontsize=12)
    return save(fig, out_dir, f"per_seed_{task}")


def run_stats_line(run: Run) -> str:
    """'n/N final ≥ 80%' for a panel title."""
    n = sum(groks(s) for s in run.summaries.values())
    return f"{n}/{len(run.summaries)} final ≥ 80%"


def train_loss_figure(tasks: dict[str, list[Run]], out_dir: Path) -> list[Path]:
    """Seed-mean training loss per depth (the paper's App. D); [] if no train_loss records."""
    rows = {t: runs for t, runs in tasks.items() if any(r.get("train_loss") is not None for run in runs for r in run.metrics)}
    if not rows:
        return []
    fig, axes = new_figure(len(rows), panel=(5.2, 3.8))
    for ax, (task, runs) in zip(axes, rows.items()):
        colors = depth_colors([r.depth for r in runs])
        for run in runs:
            c = probe_curve(run.metrics, ("train_loss",))  # same shape: per step, mean over seeds
            if c is not None:
                ax.plot(c[1], c[2], color=colors[run.depth], lw=1.6, marker=_marker(len(c[1])), ms=3, label=layers(run.depth))
        ax.set(title=TASK_TITLES.get(task, task), xlabel="training step", ylabel="training loss (seed mean)", yscale="log")
        _kilo(ax)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Training loss", fontsize=12)
    return save(fig, out_dir, "train_loss")


# ---------------------------------------------------------------- markdown


def fmt(x, digits: int = 3) -> str:
    """A number for a table cell ('–' for missing)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def paper_cells(task: str, depth: int) -> dict:
    """The paper's values for one table row (Fig 3a count, log aggregates, tree projections at 300k)."""
    from sgjax import paper

    agg = paper.aggregate(task, depth) or {}
    tp = paper.tree_projection(task, depth) or {}
    f3 = paper.fig3a_counts(task).get(depth)
    return {
        "fig3a": None if f3 is None else f"{f3}/10",
        "logs": None if not agg else f"{agg['n_final_gen_ge_0p8']}/{agg['n_seeds']}",
        "final": agg.get("mean_final_gen"), "max": agg.get("mean_max_gen"), "es": agg.get("mean_gen_at_es_first_max_val"),
        "tscore": tp.get("tscore_mean"), "tparseval": tp.get("tparseval_mean"),
    }


ACC_HEADER = ("| task | layers | last eval step | seeds final gen ≥ 0.8 | paper Fig 3a | paper logs | mean final gen | paper "
              "| mean max gen | paper | mean ES gen | paper | ES gen (patience 3) | gen at first val ≥ 0.99 |")


def accuracy_table(stats: list[dict], best: dict[str, int | None]) -> list[str]:
    """Markdown rows: this sweep's accuracy numbers per task/depth beside the paper's."""
    lines = [ACC_HEADER, "|" + "---|" * ACC_HEADER.count(" | ") + "---|"]
    for r in stats:
        p = paper_cells(r["task"], r["depth"])
        star = " **(best)**" if best.get(r["task"]) == r["depth"] else ""
        lines.append(
            f"| {r['task']} | {r['depth']}{star} | {fmt(r['last_eval_step'])} | {r['n_grok']}/{r['n_eval_seeds']} | {fmt(p['fig3a'])} "
            f"| {fmt(p['logs'])} | {fmt(r['mean_final_gen'])} | {fmt(p['final'])} | {fmt(r['mean_max_gen'])} | {fmt(p['max'])} "
            f"| {fmt(r['mean_es_gen'])} | {fmt(p['es'])} | {fmt(r['mean_es_gen_patience3'])} | {fmt(r['mean_gen_at_val_ge_99'])} |")
    return lines


def tree_table(stats: list[dict]) -> list[str]:
    """Markdown rows: tscore and tparseval at the last probed step beside the paper's at 300k."""
    lines = ["| task | layers | probed step | tscore | tscore (sampled baseline) | paper (300k; Dyck 400k) | tparseval "
             "| paper (300k; Dyck 400k) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in stats:
        p = paper_cells(r["task"], r["depth"])
        lines.append(f"| {r['task']} | {r['depth']} | {fmt(r['probe_step'])} | {fmt(r['tscore'])} | {fmt(r['tscore_sampled'])} | {fmt(p['tscore'])} "
                     f"| {fmt(r['tparseval'])} | {fmt(p['tparseval'])} |")
    return lines


def gap_table(best_runs: dict[str, Run]) -> list[str]:
    """Markdown rows: Fig 2's early-stopping point and gaps on the mean curve, beside the paper's Δ labels."""
    from sgjax import paper

    lines = ["| task | layers | ES step | mean gen at ES | Δ at ES (pts) | paper's curve, this rule: Δ at ES (step) "
             "| paper's label Δ at ES | end step | mean gen at end | Δ at end (pts) | paper's curve Δ at end | paper's label Δ at end |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    pct = lambda x: None if x is None else 100 * x  # noqa: E731
    for task, run in best_runs.items():
        g = mean_curve_gaps(run.evals) or {}
        pg = paper.fig2_gaps(task) or {}
        c = paper.fig2_curve(task)
        pc = (curve_gaps(c["step"], c["val"], c["gen"]) if c else None) or {}  # the same rule on the paper's own seeds
        lines.append(f"| {task} | {run.depth} | {fmt(g.get('es_step'))} | {fmt(g.get('es_gen'))} | {fmt(pct(g.get('gap_es')), 1)} "
                     f"| {fmt(pct(pc.get('gap_es')), 1)} ({fmt(pc.get('es_step'))}) | {fmt(pg.get('gap_es_pct'))} "
                     f"| {fmt(g.get('end_step'))} | {fmt(g.get('end_gen'))} | {fmt(pct(g.get('gap_end')), 1)} "
                     f"| {fmt(pct(pc.get('gap_end')), 1)} | {fmt(pg.get('gap_end_pct'))} |")
    return lines


def seed_table(runs: list[Run]) -> list[str]:
    """Markdown rows: every seed's summary (D17/D18 variants)."""
    lines = ["| task | layers | seed | final gen | max gen (@step) | first ≥0.8 | stays ≥0.8 from | ES gen (@step) "
             "| ES patience-3 gen | gen at first val ≥0.99 | non-finite from |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for seed, s in run.summaries.items():
            lines.append(
                f"| {run.task} | {run.depth} | {seed} | {fmt(s['final_gen'])} | {fmt(s['max_gen'])} ({fmt(s['step_of_max_gen'])}) "
                f"| {fmt(s['first_step_gen_ge_80'])} | {fmt(s['step_gen_stays_ge_80'])} | {fmt(s['es_gen_at_first_max_val'])} "
                f"({fmt(s['es_step_first_max_val'])}) | {fmt(s['es_gen_patience3'])} | {fmt(s['gen_at_first_val_ge_99'])} "
                f"| {fmt(run.nonfinite.get(seed))} |")
    return lines


def nonfinite_lines(runs: list[Run]) -> list[str]:
    """Which seeds went non-finite (frozen by the trainer), per run."""
    bad = [(r, s, step) for r in runs for s, step in sorted(r.nonfinite.items())]
    if not bad:
        return ["No seed went non-finite."]
    return [f"- {r.task} {layers(r.depth)}: seed {s} non-finite from step {step:,}" for r, s, step in bad]


def horizon_lines(stats: list[dict]) -> list[str]:
    """A warning for a task whose depths were last evaluated at different steps: their grokking counts do not compare."""
    out = []
    for task in dict.fromkeys(r["task"] for r in stats):
        ends = {r["depth"]: r["last_eval_step"] for r in stats if r["task"] == task and r["last_eval_step"] is not None}
        if len(set(ends.values())) > 1:
            out.append(f"**Note:** {task}'s depths were last evaluated at different steps "
                       f"({', '.join(f'{layers(d)}: {s}' for d, s in sorted(ends.items()))}); a seed groks by its final "
                       "accuracy, so the best depth and Fig 3a compare runs at different points of training.")
    return out + ([""] if out else [])


def mixed_lr_lines(runs: list[Run]) -> list[str]:
    """A warning for runs whose members trained at several learning rates: the report averages them as seeds."""
    from sgjax.summarize import member_lrs

    mixed = [(r, sorted(set(member_lrs(r.path).values()))) for r in runs]
    mixed = [(r, lrs) for r, lrs in mixed if len(lrs) > 1]
    return [f"**Note:** {r.task} {layers(r.depth)} trained its members at {len(lrs)} learning rates "
            f"({', '.join(f'{lr:g}' for lr in lrs)}); this report averages them as if they were seeds. Each lr's own "
            f"numbers: `summary.json` → `aggregate_by_lr` (sgjax summarize)." for r, lrs in mixed] + ([""] if mixed else [])


def markdown(sweep_dir: Path, runs: list[Run], stats: list[dict], best: dict, figures: dict[str, list[Path]]) -> str:
    """The whole report.md."""
    best_runs = best_of(runs, best)
    out = [f"# Structural grokking report: `{sweep_dir.name}`", ""]
    manifest = sweep_dir / "sweep.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        out += ["Sweep: " + ", ".join(f"{k} `{', '.join(map(str, v)) if isinstance(v, list) else v}`" for k, v in m.items()), ""]
    out += ["Rules (docs/report.md): a seed groks when its **final** generalization accuracy is ≥ 0.8 (D17); ES = early "
            "stopping at the first checkpoint where in-domain (val) accuracy reaches its maximum (D18); the best depth has the "
            "largest share of grokking seeds (ties: higher mean final gen, then fewer layers). Paper values: 10 paper seeds at 300k steps "
            "(Dyck 400k); Fig 3a counts read from the figure, 'paper logs' from the original repo's logs (SPEC §6).", ""]
    out += mixed_lr_lines(runs) + horizon_lines(stats)
    out += ["## Best depth", ""] + [f"- {t}: {layers(d)}" if d is not None else f"- {t}: no evaluations" for t, d in best.items()]
    out += ["", "## Accuracy (this sweep beside the paper)", ""] + accuracy_table(stats, best)
    out += ["", "## Early stopping vs extended training (Fig 2, mean curve at the best depth)", ""] + gap_table(best_runs)
    out += ["", "## Tree projections at the last probed step", "",
            "tscore uses the probe's baseline (by default the exact mean over random splits, D20); the paper's used one "
            "sampled split per node, as the 'sampled baseline' column. tparseval includes the root span (D23).", ""]
    out += tree_table(stats)
    out += ["", "## Non-finite seeds", ""] + nonfinite_lines(runs)
    out += ["", "## Figures", ""]
    for name, paths in figures.items():
        if paths:
            png = next(p for p in paths if p.suffix == ".png")
            out += [f"### {name}", "", f"![{name}]({png.name})", "", "Files: " + ", ".join(f"`{p.name}`" for p in paths), ""]
        else:
            out += [f"### {name}", "", "_Not drawn: nothing to plot (no evaluations or no probe.jsonl)._", ""]
    out += ["## Per-seed summary", "", "<details><summary>every seed</summary>", ""] + seed_table(runs) + ["", "</details>", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- trees as text


def bracketed(tree, words) -> str:
    """A binary tree over word indices as '((the dog) barked)'."""
    if isinstance(tree, (int, np.integer)):
        return str(words[int(tree)])
    return "(" + " ".join(bracketed(t, words) for t in tree) + ")"


def tree_text(tree, words) -> str:
    """A binary tree over word indices drawn top-down with box-drawing characters, one node per line."""
    lines: list[str] = []

    def walk(t, prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└── " if last else "├── ")
        leaf = isinstance(t, (int, np.integer))
        lines.append(prefix + branch + (str(words[int(t)]) if leaf else "┐"))
        if not leaf:
            child_prefix = prefix + ("" if root else ("    " if last else "│   "))
            for i, c in enumerate(t):
                walk(c, child_prefix, i == len(t) - 1, False)

    walk(tree, "", True, True)
    return "\n".join(lines)


# ---------------------------------------------------------------- entry points


def write_report(sweep_dir, out=None, *, as_original: bool = False) -> Path:
    """Write figures (PNG + PDF) and report.md into `out` (default SWEEP_DIR/report/); returns report.md's path.

    `as_original`: Fig 3b as the paper drew it, where the probe recorded it (`fig3b_panels`).
    """
    sweep_dir = Path(sweep_dir)
    runs = discover_runs(sweep_dir)
    if not runs:
        raise UserError(f"{sweep_dir} holds no run directories (<task>_L<depth>/ with config.json or metrics.jsonl)")
    if not any(r.metrics or r.probe for r in runs):
        raise UserError(f"nothing to plot in {sweep_dir}: its runs have no metrics.jsonl or probe.jsonl records yet")
    out_dir = Path(out) if out is not None else sweep_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks: dict[str, list[Run]] = {}
    for r in runs:
        tasks.setdefault(r.task, []).append(r)
    stats = [depth_stats(r) for r in runs]
    best = {t: best_depth([s for s in stats if s["task"] == t]) for t in tasks}
    best_runs = best_of(runs, best)
    figures = {
        "Fig 2: structural grokking at the best depth": fig2(best_runs, out_dir) if best_runs else [],
        "Fig 3a: inverted U": fig3a({t: [s for s in stats if s["task"] == t] for t in tasks if t in best_runs}, out_dir)
        if best_runs else [],
        "Fig 3b: weight norm, sparsity, tscore": fig3b(tasks, best, out_dir, as_original),
        "Fig 4: tparseval": fig4(tasks, best, out_dir),
    }
    figures.update({f"Per-seed generalization: {t}": per_seed_figure(t, rs, out_dir) for t, rs in tasks.items()})
    figures["Training loss"] = train_loss_figure(tasks, out_dir)
    path = out_dir / "report.md"
    path.write_text(markdown(sweep_dir, runs, stats, best, figures))
    (out_dir / "report.json").write_text(json.dumps({"best_depth": best, "depths": stats}, indent=2, default=str))
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI: `sgjax report SWEEP_DIR [--out DIR]`."""
    p.add_argument("sweep_dir", help="a sweep directory (or a single run directory)")
    p.add_argument("--out", help="where to write the report (default: SWEEP_DIR/report)")
    p.add_argument("--as-original", action="store_true",
                   help="Fig 3b as the paper drew it: weight norm with the unused decoder's constant (D6) and, where the "
                        "probe ran with --sparsity-bug, the original's attention sparsity (D8)")


def run(args) -> int:
    """Write the report and print where it is."""
    path = write_report(args.sweep_dir, args.out, as_original=args.as_original)
    print(f"report: {path}")
    return 0
