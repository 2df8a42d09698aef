"""The paper's figures (Fig 2, 3a, 3b, 4), per-seed curves and training loss, on matplotlib's Agg canvas (no pyplot)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sgjax.analysis import summarize
from sgjax.analysis.report.runs import Run
from sgjax.analysis.report.stats import (
    RB_KEYS,
    SPARSITY_KEYS,
    TPARSEVAL_KEYS,
    TSCORE_KEYS,
    WEIGHT_NORM_KEYS,
    groks,
    last_probe_mean,
    last_probe_step,
    layers,
    mean_curve,
    mean_curve_gaps,
    mean_interval,
    pick_depths,
    probe_curve,
    seed_curves,
    share_interval,
)

TASK_TITLES = {"question": "Question formation", "tense": "Tense inflection", "dyck": "Dyck-(20,10)"}
FORMATS = ("png", "pdf")


def new_figure(n_panels: int, *, rows: int = 1, panel=(5.2, 3.8), legend_width: float = 0.0):
    """A Figure on the Agg canvas with a rows x ceil(n/rows) grid of axes (flattened list), plus room for a legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = max(1, math.ceil(n_panels / rows))
    fig = Figure(figsize=(panel[0] * cols + legend_width, panel[1] * rows), layout="constrained")
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
    ax.annotate(
        label,
        xy=(x, (lo + hi) / 2),
        xytext=(6 if side == "right" else -6, 0),
        textcoords="offset points",
        ha="left" if side == "right" else "right",
        va="center",
        color=color,
        fontsize=9,
        bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color, alpha=0.85),
    )


def fig2_panel(ax, run: Run, is_best: bool) -> None:
    """Mean val/gen accuracy (%) vs steps at one depth (95% intervals over seeds), the early-stopping point and both
    gaps.
    """
    from sgjax.analysis import paper

    steps, val, gen = mean_curve(run.evals)
    _, val_SxT, gen_SxT = seed_curves(run.evals)
    m = _marker(len(steps))
    ref = paper.fig2_curve(run.task)
    if ref is not None:
        ps = np.array(ref["step"])
        keep = ps <= steps[-1] * 1.05
        if keep.sum() >= 3:
            lbl = f"paper {ref['depth']}L"
            ax.plot(
                ps[keep],
                100 * np.array(ref["val"])[keep],
                color="tab:blue",
                alpha=0.3,
                lw=1,
                ls="--",
                label=f"{lbl} in-domain",
            )
            ax.plot(
                ps[keep],
                100 * np.array(ref["gen"])[keep],
                color="tab:orange",
                alpha=0.3,
                lw=1,
                ls="--",
                label=f"{lbl} generalization",
            )
    ax.plot(steps, 100 * val, color="tab:blue", marker=m, ms=3, lw=2, label="in-domain (val)")
    ax.plot(steps, 100 * gen, color="tab:orange", marker=m, ms=3, lw=2, label="generalization (gen)")
    for x_SxT, color in ((val_SxT, "tab:blue"), (gen_SxT, "tab:orange")):
        lo, hi = mean_interval(x_SxT)
        ax.fill_between(steps, 100 * np.clip(lo, 0, 1), 100 * np.clip(hi, 0, 1), color=color, alpha=0.15, lw=0)
    g = mean_curve_gaps(run.evals)
    if g is not None:
        ax.axvline(g["es_step"], color="gray", ls=":", lw=1.2, label=f"early stopping ({g['es_step']:,})")
        span = steps[-1] - steps[0] if len(steps) > 1 else 1
        if not math.isnan(g["gap_es"]):
            _gap_arrow(
                ax,
                g["es_step"],
                100 * g["es_gen"],
                100 * g["es_val"],
                f"Δ={100 * g['gap_es']:.0f} pts (ES)",
                "tab:red",
                "right" if g["es_step"] - steps[0] < 0.6 * span else "left",
            )
        if not math.isnan(g["gap_end"]) and g["end_step"] != g["es_step"]:
            _gap_arrow(
                ax,
                g["end_step"],
                100 * g["end_gen"],
                100 * g["end_val"],
                f"Δ={100 * g['gap_end']:.0f} pts (end)",
                "tab:purple",
                "left",
            )
    n = sum(groks(s) for s in run.summaries.values())
    which = f"{n}/{len(run.summaries)} seeds grok" if is_best else "no depth groks; highest mean final gen"
    title = f"{TASK_TITLES.get(run.task, run.task)}, {layers(run.depth)}\n{which}"
    pg = paper.fig2_gaps(run.task)
    if pg is not None:
        title += f"\npaper ({pg['depth']}L): Δ≈{pg['gap_es_pct']:g} pts at ES, ≈{pg['gap_end_pct']:g} at the end"
    ax.set_title(title, fontsize=9.5)
    ax.set(xlabel="training step", ylabel="accuracy (%)", ylim=(-3, 103))
    _kilo(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def fig2(shown: dict[str, Run], best: dict[str, int | None], out_dir: Path) -> list[Path]:
    """Fig 2: one panel per task, two a row, at its best depth (or, where no seed groks, its highest mean final gen)."""
    fig, axes = new_figure(len(shown), rows=math.ceil(len(shown) / 2), panel=(5.0, 3.7))
    for ax, (task, run) in zip(axes, shown.items()):
        fig2_panel(ax, run, best.get(task) == run.depth)
    fig.suptitle("Mean accuracy over training (bands: 95% intervals over seeds)", fontsize=11)
    return save(fig, out_dir, "fig2_grokking")


def fig3a_panel(ax, task: str, stats: list[dict]) -> None:
    """Fraction of seeds with final gen ≥ 0.8 per depth, this sweep beside the paper's Fig 3a."""
    from sgjax.analysis import paper

    ours = {r["depth"]: r for r in stats if r["n_eval_seeds"] > 0}
    ref = paper.fig3a_counts(task)
    depths = sorted(set(ours) | set(ref))
    x = np.arange(len(depths))
    w = 0.38 if ref else 0.6
    fr = [ours[d]["n_grok"] / ours[d]["n_eval_seeds"] if d in ours else 0 for d in depths]
    # an edge, so a share of 0 still shows where it stands, and the exact 95% interval of each share
    bars = ax.bar(
        x - (w / 2 if ref else 0), fr, w, color="tab:green", edgecolor="darkgreen", lw=1.2, label="this sweep"
    )
    ci = [share_interval(ours[d]["n_grok"], ours[d]["n_eval_seeds"]) if d in ours else (0.0, 0.0) for d in depths]
    centers = [b.get_x() + b.get_width() / 2 for b in bars]
    ax.errorbar(
        centers,
        fr,
        yerr=[[f - lo for f, (lo, _) in zip(fr, ci)], [hi - f for f, (_, hi) in zip(fr, ci)]],
        fmt="none",
        ecolor="black",
        elinewidth=1,
        capsize=3,
        label="95% interval",
    )
    for c, (_, hi), d in zip(centers, ci, depths):
        txt = f"{ours[d]['n_grok']}/{ours[d]['n_eval_seeds']}" if d in ours else "–"
        ax.annotate(txt, (c, hi), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
    if ref:
        pb = ax.bar(
            x + w / 2,
            [ref.get(d, 0) / 10 for d in depths],
            w,
            color="lightgray",
            edgecolor="gray",
            label="paper (Fig 3a)",
        )
        for b, d in zip(pb, depths):
            ax.annotate(
                f"{ref[d]}/10" if d in ref else "–",
                (b.get_x() + b.get_width() / 2, b.get_height()),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color="gray",
            )
    ax.set_xticks(x, [str(d) for d in depths])
    ax.set(
        title=TASK_TITLES.get(task, task),
        xlabel="layers",
        ylabel="fraction of seeds with final gen ≥ 80%",
        ylim=(-0.02, 1.15),
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")


def fig3a(stats_by_task: dict[str, list[dict]], out_dir: Path) -> list[Path]:
    """Fig 3a: the inverted U, one panel per task."""
    fig, axes = new_figure(len(stats_by_task), panel=(5.0, 3.8))
    for ax, (task, stats) in zip(axes, stats_by_task.items()):
        fig3a_panel(ax, task, stats)
    fig.suptitle("Share of seeds whose final gen is ≥ 80%, per depth", fontsize=12)
    return save(fig, out_dir, "fig3a_share_by_depth")


TSCORE_FROM = 50_000  # the paper plots tscore from 50k steps on (st_idx)


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
    (
        WEIGHT_NORM_KEYS,
        "weight norm",
        {
            "weight_norm_perL": "weight norm / layers",
            "weight_norm_per_layer": "weight norm / layers",
            "weight_norm_dec_perL": "weight norm (+ decoder) / layers",
            "weight_norm": "weight norm",
        },
    ),
    (
        SPARSITY_KEYS,
        "attention sparsity",
        {
            "sparsity": "−Σ attention entropy (nats)",
            "sparsity_bug": "−Σ attention entropy, the original's D8 bug (nats)",
        },
    ),
    (TSCORE_KEYS, "tree-structuredness", {"tscore": "tscore"}),
)


ORIGINAL_KEYS = {"weight norm": ("weight_norm_dec_perL",), "attention sparsity": ("sparsity_bug",)}  # D6, D8


def fig3b_panels(as_original: bool) -> tuple:
    """Fig 3b's panels; `as_original` prefers what the paper plotted: the decoder constant (D6), the
    sparsity bug (D8).
    """
    if not as_original:
        return FIG3B_PANELS
    return tuple((ORIGINAL_KEYS.get(title, ()) + keys, title, labels) for keys, title, labels in FIG3B_PANELS)


def fig3b(
    tasks: dict[str, list[Run]], best: dict[str, int | None], out_dir: Path, as_original: bool = False
) -> list[Path]:
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
            key = curve_lines(
                ax, runs, keys, colors, best.get(task), start=late if title == "tree-structuredness" else 0
            )
            if key is None:
                ax.text(0.5, 0.5, "not in probe.jsonl", ha="center", va="center", transform=ax.transAxes, color="gray")
            ax.set(
                title=f"{TASK_TITLES.get(task, task)}: {title}",
                xlabel="training step",
                ylabel=labels.get(key, key or ""),
            )
            _kilo(ax)
            ax.grid(alpha=0.3)
            if key is not None:
                ax.legend(fontsize=8)
    fig.suptitle("Weight norm, attention sparsity and tree-structuredness (seed mean ± std)", fontsize=12)
    return save(fig, out_dir, "fig3b_probe")


def rb_value(task: str, runs: list[Run]) -> tuple[float | None, str]:
    """The right-branching tparseval: the probe's (on this sweep's sample), else the paper's (train)."""
    from sgjax.analysis import paper

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
        curve_lines(
            ax, pick_depths(runs, best.get(task)), TPARSEVAL_KEYS, depth_colors([r.depth for r in runs]), best.get(task)
        )
        rb, label = rb_value(task, runs)
        if rb is not None:
            ax.axhline(rb, color="tab:red", ls="--", lw=1.5, label=f"{label}: {rb:.3f}")
        ax.set(title=TASK_TITLES.get(task, task), xlabel="training step", ylabel="tparseval (F1 vs gold parses)")
        _kilo(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("tparseval over training: tree projections against gold parses (seed mean ± std)", fontsize=12)
    return save(fig, out_dir, "fig4_tparseval")


def paper_band(ax, run: Run) -> None:
    """The paper's logged seeds' generalization behind a run's: range and middle half, up to the run's last eval."""
    from sgjax.analysis import paper

    spread = paper.seed_spread(run.task, run.depth)
    if spread is None:
        return
    last = max((int(e.steps[-1]) for e in run.evals.values() if len(e.steps)), default=0)
    keep = [i for i, s in enumerate(spread["step"]) if s <= last * 1.05]
    if len(keep) < 2:
        return
    steps = np.array(spread["step"])[keep]
    q = {k: 100 * np.array([spread["gen"][i][k] for i in keep]) for k in ("min", "q25", "q75", "max")}
    n = max(spread["n_seeds"][i] for i in keep)
    ax.fill_between(steps, q["min"], q["max"], color="gray", alpha=0.15, lw=0, label=f"paper, {n} seeds: range")
    ax.fill_between(steps, q["q25"], q["q75"], color="gray", alpha=0.3, lw=0, label=f"paper, {n} seeds: middle half")


def per_seed_figure(task: str, runs: list[Run], out_dir: Path) -> list[Path]:
    """Generalization accuracy of every seed, one panel per depth; [] if no evaluations."""
    runs = [r for r in runs if r.evals]
    if not runs:
        return []
    fig, axes = new_figure(len(runs), rows=math.ceil(len(runs) / 3), panel=(4.6, 3.4), legend_width=2.4)
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for ax, run in zip(axes, runs):
        paper_band(ax, run)
        for k, (seed, e) in enumerate(run.evals.items()):
            bad = seed in run.nonfinite
            ax.plot(
                e.steps,
                100 * e.gen,
                color=cmap(k % 10),
                lw=1.1,
                alpha=0.85,
                ls=":" if bad else "-",
                marker=_marker(len(e.steps)),
                ms=2.5,
                label=f"seed {seed}" + (" (non-finite)" if bad else ""),
            )
        steps, _, gen = mean_curve(run.evals)
        ax.plot(steps, 100 * gen, color="black", lw=2.2, label="mean")
        ax.axhline(100 * summarize.GROK, color="gray", ls="--", lw=1)
        ax.set(
            title=f"{layers(run.depth)}: {run_stats_line(run)}",
            xlabel="training step",
            ylabel="gen accuracy (%)",
            ylim=(-3, 103),
        )
        _kilo(ax)
        ax.grid(alpha=0.3)
    handles = {
        h.get_label(): h for ax in axes for h in [*ax.get_lines(), *ax.collections] if not h.get_label().startswith("_")
    }
    fig.legend(list(handles.values()), list(handles), loc="outside right center", fontsize=8)
    fig.suptitle(f"{TASK_TITLES.get(task, task)}:\ngeneralization accuracy per seed (dashed: 80%)", fontsize=12)
    return save(fig, out_dir, f"per_seed_{task}")


def run_stats_line(run: Run) -> str:
    """'n/N final ≥ 80%' for a panel title."""
    n = sum(groks(s) for s in run.summaries.values())
    return f"{n}/{len(run.summaries)} final ≥ 80%"


def train_loss_figure(tasks: dict[str, list[Run]], out_dir: Path) -> list[Path]:
    """Seed-mean training loss per depth (the paper's App. D); [] if no train_loss records."""
    rows = {
        t: runs
        for t, runs in tasks.items()
        if any(r.get("train_loss") is not None for run in runs for r in run.metrics)
    }
    if not rows:
        return []
    fig, axes = new_figure(len(rows), panel=(5.2, 3.8))
    for ax, (task, runs) in zip(axes, rows.items()):
        colors = depth_colors([r.depth for r in runs])
        for run in runs:
            c = probe_curve(run.metrics, ("train_loss",))  # same shape: per step, mean over seeds
            if c is not None:
                ax.plot(
                    c[1],
                    c[2],
                    color=colors[run.depth],
                    lw=1.6,
                    marker=_marker(len(c[1])),
                    ms=3,
                    label=layers(run.depth),
                )
        ax.set(
            title=TASK_TITLES.get(task, task), xlabel="training step", ylabel="training loss (seed mean)", yscale="log"
        )
        _kilo(ax)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Training loss", fontsize=12)
    return save(fig, out_dir, "train_loss")
