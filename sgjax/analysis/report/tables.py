"""report.md: the sweep's tables beside the paper's numbers, its notes, and the figures' links."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sgjax.analysis.report.runs import Run
from sgjax.analysis.report.stats import (
    against_paper_seeds,
    best_of,
    curve_gaps,
    layers,
    mean_curve_gaps,
    probe_against_paper_seeds,
    ranks_among_paper_seeds,
)
from sgjax.run import jsonl


def fmt(x, digits: int = 3) -> str:
    """A number for a table cell ('–' for missing)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def paper_cells(task: str, depth: int) -> dict:
    """The paper's values for one table row (Fig 3a count, log aggregates, tree projections at 300k)."""
    from sgjax.analysis import paper

    agg = paper.aggregate(task, depth) or {}
    tp = paper.tree_projection(task, depth) or {}
    f3 = paper.fig3a_counts(task).get(depth)
    return {
        "fig3a": None if f3 is None else f"{f3}/10",
        "logs": None if not agg else f"{agg['n_final_gen_ge_0p8']}/{agg['n_seeds']}",
        "final": agg.get("mean_final_gen"),
        "max": agg.get("mean_max_gen"),
        "es": agg.get("mean_gen_at_es_first_max_val"),
        "tscore": tp.get("tscore_mean"),
        "tparseval": tp.get("tparseval_mean"),
    }


ACC_HEADER = (
    "| task | layers | last eval step | seeds final gen ≥ 0.8 | paper Fig 3a | paper logs | mean final val "
    "| mean final gen | paper | mean max gen | paper | mean ES gen | paper | ES gen (patience 3) "
    "| gen at first val ≥ 0.99 |"
)


def accuracy_table(stats: list[dict], best: dict[str, int | None]) -> list[str]:
    """Markdown rows: this sweep's accuracy numbers per task/depth beside the paper's."""
    lines = [ACC_HEADER, "|" + "---|" * ACC_HEADER.count(" | ") + "---|"]
    for r in stats:
        p = paper_cells(r["task"], r["depth"])
        star = " **(best)**" if best.get(r["task"]) == r["depth"] else ""
        lines.append(
            f"| {r['task']} | {r['depth']}{star} | {fmt(r['last_eval_step'])} | {r['n_grok']}/{r['n_eval_seeds']} | "
            f"{fmt(p['fig3a'])} "
            f"| {fmt(p['logs'])} | {fmt(r['mean_final_val'])} | {fmt(r['mean_final_gen'])} | {fmt(p['final'])} "
            f"| {fmt(r['mean_max_gen'])} | {fmt(p['max'])} "
            f"| {fmt(r['mean_es_gen'])} | {fmt(p['es'])} | {fmt(r['mean_es_gen_patience3'])} | "
            f"{fmt(r['mean_gen_at_val_ge_99'])} |"
        )
    return lines


def tree_table(stats: list[dict]) -> list[str]:
    """Markdown rows: tscore and tparseval at the last probed step beside the paper's at 300k."""
    lines = [
        "| task | layers | probed step | tscore | tscore (sampled baseline) | paper (300k; Dyck 400k) | tparseval "
        "| paper (300k; Dyck 400k) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in stats:
        p = paper_cells(r["task"], r["depth"])
        lines.append(
            f"| {r['task']} | {r['depth']} | {fmt(r['probe_step'])} | {fmt(r['tscore'])} | "
            f"{fmt(r['tscore_sampled'])} | {fmt(p['tscore'])} "
            f"| {fmt(r['tparseval'])} | {fmt(p['tparseval'])} |"
        )
    return lines


def gap_table(best_runs: dict[str, Run]) -> list[str]:
    """Markdown rows: Fig 2's early-stopping point and gaps on the mean curve, beside the paper's Δ labels."""
    from sgjax.analysis import paper

    lines = [
        "| task | layers | ES step | mean gen at ES | Δ at ES (pts) | paper's curve, this rule: Δ at ES (step) "
        "| paper's label Δ at ES | end step | mean gen at end | Δ at end (pts) | paper's curve Δ at end | paper's "
        "label Δ at end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    pct = lambda x: None if x is None else 100 * x  # noqa: E731
    for task, run in best_runs.items():
        g = mean_curve_gaps(run.evals) or {}
        pg = paper.fig2_gaps(task) or {}
        c = paper.fig2_curve(task)
        pc = (curve_gaps(c["step"], c["val"], c["gen"]) if c else None) or {}  # the same rule on the paper's own seeds
        lines.append(
            f"| {task} | {run.depth} | {fmt(g.get('es_step'))} | {fmt(g.get('es_gen'))} | "
            f"{fmt(pct(g.get('gap_es')), 1)} "
            f"| {fmt(pct(pc.get('gap_es')), 1)} ({fmt(pc.get('es_step'))}) | {fmt(pg.get('gap_es_pct'))} "
            f"| {fmt(g.get('end_step'))} | {fmt(g.get('end_gen'))} | {fmt(pct(g.get('gap_end')), 1)} "
            f"| {fmt(pct(pc.get('gap_end')), 1)} | {fmt(pg.get('gap_end_pct'))} |"
        )
    return lines


def seed_table(runs: list[Run]) -> list[str]:
    """Markdown rows: every seed's summary (D17/D18 variants)."""
    lines = [
        "| task | layers | seed | final gen | max gen (@step) | first ≥0.8 | stays ≥0.8 from | ES gen (@step) "
        "| ES patience-3 gen | gen at first val ≥0.99 | non-finite from |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for seed, s in run.summaries.items():
            lines.append(
                f"| {run.task} | {run.depth} | {seed} | {fmt(s['final_gen'])} | {fmt(s['max_gen'])} "
                f"({fmt(s['step_of_max_gen'])}) "
                f"| {fmt(s['first_step_gen_ge_80'])} | {fmt(s['step_gen_stays_ge_80'])} | "
                f"{fmt(s['es_gen_at_first_max_val'])} "
                f"({fmt(s['es_step_first_max_val'])}) | {fmt(s['es_gen_patience3'])} | "
                f"{fmt(s['gen_at_first_val_ge_99'])} "
                f"| {fmt(run.nonfinite.get(seed))} |"
            )
    return lines


def placement_lines(run: Run, rows: list[dict], keys: tuple[str, ...]) -> list[str]:
    """One run's place among the paper's seeds (place_among's rows): a count per key beside the count expected of
    seeds like the paper's, then the checkpoints as a table (the paper's median [min–max] beside this run's seeds)."""
    keys = tuple(k for k in keys if k in rows[0])  # the quantities the paper logged (Dyck: no tparseval)
    # A seed like the paper's n falls within their range with probability (n - 1) / (n + 1): the expected count.
    count = lambda key: (
        sum(r[key]["inside"] for r in rows),
        sum(len(r[key]["seeds"]) for r in rows),  # noqa: E731
        sum(len(r[key]["seeds"]) * (r["n_paper"] - 1) / (r["n_paper"] + 1) for r in rows),
    )
    counts = [count(k) for k in keys]
    within = " and ".join(f"{i}/{n} {k}" for k, (i, n, _) in zip(keys, counts))
    expected = " and ".join(f"{e:.1f}" for _, _, e in counts)
    values = "value lies" if len(keys) == 1 and counts[0][1] == 1 else "values lie"
    out = [
        f"- {run.task} {layers(run.depth)}: at {len(rows)} shared checkpoint{'s' * (len(rows) != 1)} "
        f"({fmt(rows[0]['step'])}–{fmt(rows[-1]['step'])}), {within} {values} within the range of the paper's "
        f"{max(r['n_paper'] for r in rows)} logged seeds (seeds like the paper's: about {expected}).",
        "",
        "<details><summary>checkpoint by checkpoint</summary>",
        "",
        "| step | paper seeds | "
        + " | ".join(f"paper {k} median [min–max] | {k}, this run's seeds" for k in keys)
        + " |",
        "|---|---|" + "---|---|" * len(keys),
    ]
    cell = lambda p: f"{fmt(p['median'])} [{fmt(p['min'])}–{fmt(p['max'])}]"  # noqa: E731
    seeds = lambda d: ", ".join(fmt(v) for _, v in sorted(d.items())) or "–"  # noqa: E731
    for r in rows:
        out.append(
            f"| {fmt(r['step'])} | {r['n_paper']} | "
            + " | ".join(f"{cell(r[k]['paper'])} | {seeds(r[k]['seeds'])}" for k in keys)
            + " |"
        )
    return out + ["", "</details>", ""]


def rank_lines(run: Run, ranks: dict[str, dict]) -> list[str]:
    """One run's seeds ranked among the paper's (ranks_among_paper_seeds): a table, a row per quantity."""
    out = [
        f"- {run.task} {layers(run.depth)}, seed by seed: each seed's percentile among the paper's seeds (0 below "
        "them all, 1 above them all), averaged over the shared checkpoints, beside the paper's own seeds' (each "
        "among the others). As low / as high: the share of subsets of as many seeds, drawn from the paper's and "
        "this run's together, whose mean percentile (each seed among all the others) is as low / as high as this "
        "run's seeds' (a permutation test: small where this run's seeds are unlike the paper's).",
        "",
        "| | checkpoints | this run's seeds | paper seeds median [min–max] | this run's mean | as low | as high |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in ranks.items():
        paper_pct = np.array(r["paper"])
        seeds = ", ".join(f"{s}: {fmt(v, 2)}" for s, v in sorted(r["run"].items()))
        out.append(
            f"| {key} | {len(r['steps'])} ({fmt(r['steps'][0])}–{fmt(r['steps'][-1])}) | {seeds} "
            f"| {fmt(float(np.median(paper_pct)), 2)} [{fmt(paper_pct.min(), 2)}–{fmt(paper_pct.max(), 2)}] "
            f"| {fmt(float(np.mean(list(r['run'].values()))), 2)} | {100 * r['p_low']:.1f}% | "
            f"{100 * r['p_high']:.1f}% |"
        )
    return out + [""]


# Dyck's tscore sums over a string's nodes, so it moves with the probe sample's lengths (docs/probe.md, D24).
DYCK_DRAW_NOTE = [
    "  Dyck's tscore is a sum over a string's nodes, so the probe sample's lengths move it: another draw of 500 "
    "training strings moves a run's tscores by about 8% of their value (sd, on seed 42 at 10k). The paper's seeds "
    "most likely shared one draw at 10k (their own after it), and this run's seeds share another. Compare a Dyck "
    "tscore's place among the paper's seeds with that in mind; a larger `--sample` pins this run's side "
    "(docs/probe.md).",
    "",
]


def paper_seeds_lines(runs: list[Run]) -> list[str]:
    """Every run at a depth the paper logged per seed: its accuracies, then its tree projections, among the paper's
    seeds.
    """
    out = []
    for run in runs:
        if rows := against_paper_seeds(run):
            out += placement_lines(run, rows, ("gen", "val"))
        if rows := probe_against_paper_seeds(run):
            out += placement_lines(run, rows, ("tscore", "tparseval")) + (DYCK_DRAW_NOTE if run.task == "dyck" else [])
        if ranks := ranks_among_paper_seeds(run):
            out += rank_lines(run, ranks)
    return out or [
        "No run is at a depth the paper logged per seed (accuracies: QF 6, TI 4, Dyck 6 layers; tree "
        "projections: QF 2/6/10, TI 2/4/6, Dyck 2/4/6/12), or none shares its checkpoint steps.",
        "",
    ]


def nonfinite_lines(runs: list[Run]) -> list[str]:
    """Which seeds went non-finite (frozen by the trainer), per run."""
    bad = [(r, s, step) for r in runs for s, step in sorted(r.nonfinite.items())]
    if not bad:
        return ["No seed went non-finite."]
    return [f"- {r.task} {layers(r.depth)}: seed {s} non-finite from step {step:,}" for r, s, step in bad]


def horizon_lines(stats: list[dict]) -> list[str]:
    """A warning for a task whose depths were last evaluated at different steps: their grokking counts
    do not compare.
    """
    out = []
    for task in dict.fromkeys(r["task"] for r in stats):
        ends = {r["depth"]: r["last_eval_step"] for r in stats if r["task"] == task and r["last_eval_step"] is not None}
        if len(set(ends.values())) > 1:
            out.append(
                f"**Note:** {task}'s depths were last evaluated at different steps "
                f"({', '.join(f'{layers(d)}: {s}' for d, s in sorted(ends.items()))}); a seed groks by its final "
                "accuracy, so the best depth and Fig 3a compare runs at different points of training."
            )
    return out + ([""] if out else [])


def mixed_lr_lines(runs: list[Run]) -> list[str]:
    """A warning for runs whose members trained at several learning rates: the report averages them as seeds."""
    from sgjax.analysis.summarize import member_lrs

    mixed = [(r, sorted({lr for p in r.paths for lr in member_lrs(p).values()})) for r in runs]
    mixed = [(r, lrs) for r, lrs in mixed if len(lrs) > 1]
    return [
        f"**Note:** {r.task} {layers(r.depth)} trained its members at {len(lrs)} learning rates "
        f"({', '.join(f'{lr:g}' for lr in lrs)}); this report averages them as if they were seeds. Each lr's own "
        f"numbers: `summary.json` → `aggregate_by_lr` (sgjax summarize)."
        for r, lrs in mixed
    ] + ([""] if mixed else [])


def pooled_lines(runs: list[Run]) -> list[str]:
    """A note for each (task, depth) whose seeds come from several runs, and which seeds from which."""
    out = []
    for r in (r for r in runs if r.parts):
        out.append(
            f"**Pooled:** {r.task} {layers(r.depth)} pools {len(r.seeds)} seeds from {len(r.parts)} runs of one "
            "experiment: " + "; ".join(f"`{p.paths[0]}` ({', '.join(map(str, p.seeds))})" for p in r.parts) + "."
        )
    return out + ([""] if out else [])


def best_depth_lines(stats: list[dict], best: dict, shown: dict) -> list[str]:
    """Per task: the best depth and how many seeds grok there, or that no depth groks."""
    out = []
    for task, d in shown.items():
        if d is None:
            out.append(f"- {task}: no evaluations")
            continue
        row = next(r for r in stats if r["task"] == task and r["depth"] == d)
        if best.get(task) is not None:
            out.append(f"- {task}: {layers(d)} ({row['n_grok']}/{row['n_eval_seeds']} seeds' final gen ≥ 0.8)")
        else:
            out.append(
                f"- {task}: **no depth groks** (no seed's final gen ≥ 0.8); Fig 2 shows {layers(d)}, the highest mean "
                f"final gen ({fmt(row['mean_final_gen'])})"
            )
    return out


def provenance_lines(runs: list[Run]) -> list[str]:
    """Per run directory: when, by what command, on what device, with which versions and source commit."""
    from sgjax.run import provenance

    out = []
    for path in (p for r in runs for p in r.paths):
        recs = provenance.read(path)
        if not recs:
            out.append(f"- `{path.name}`: no provenance.jsonl (trained before runs recorded it)")
            continue
        first, last = recs[0], recs[-1]
        v = last.get("versions") or {}
        cmd = " ".join(last["command"]) if isinstance(last.get("command"), list) else "the Python API"
        out.append(
            f"- `{path.name}`: {len(recs)} invocation{'s' * (len(recs) > 1)}, {first.get('date')} to "
            f"{last.get('date')}; last: `{cmd}` on {last.get('device')}, sgjax {v.get('sgjax')} (commit "
            f"{last.get('commit') or 'unknown'}), jax {v.get('jax')}, Python {last.get('python')}"
        )
    return out


def markdown(
    sources: list[Path], runs: list[Run], stats: list[dict], best: dict, shown: dict, figures: dict[str, list[Path]]
) -> str:
    """The whole report.md of the sweeps (or run directories) in `sources`."""
    best_runs = best_of(runs, shown)
    out = [f"# Structural grokking report: {' + '.join(f'`{d.name}`' for d in sources)}", ""]
    for manifest in (d / "sweep.json" for d in sources):
        if manifest.exists():
            m = jsonl.read_json(manifest, "the sweep's manifest")
            out += [
                "Sweep: "
                + ", ".join(f"{k} `{', '.join(map(str, v)) if isinstance(v, list) else v}`" for k, v in m.items()),
                "",
            ]
    out += [
        "Rules (docs/report.md): a seed groks when its **final** generalization accuracy is ≥ 0.8 (D17); ES = early "
        "stopping at the first checkpoint where in-domain (val) accuracy reaches its maximum (D18); the best depth "
        "has the "
        "largest share of grokking seeds (ties: higher mean final gen, then fewer layers); where no seed groks there "
        "is "
        "none. Paper values: 10 paper seeds at 300k steps (Dyck 400k); Fig 3a counts read from the figure, 'paper "
        "logs' from the original repository's logs.",
        "",
    ]
    out += pooled_lines(runs) + mixed_lr_lines(runs) + horizon_lines(stats)
    out += ["## Best depth", ""] + best_depth_lines(stats, best, shown)
    out += ["", "## Accuracy (this sweep beside the paper)", ""] + accuracy_table(stats, best)
    out += ["", "## Early stopping vs extended training (Fig 2's mean curves)", ""] + gap_table(best_runs)
    out += [
        "",
        "## Tree projections at the last probed step",
        "",
        "tscore uses the probe's baseline (by default the exact mean over random splits, D20); the paper's used one "
        "sampled split per node, as the 'sampled baseline' column. tparseval includes the root span (D23).",
        "",
    ]
    out += tree_table(stats)
    out += [
        "",
        "## Against the paper's seeds, checkpoint by checkpoint",
        "",
        "The original repo's logs hold every seed's accuracies at each checkpoint of the paper's plotted depth "
        "(QF 6 and TI 4 layers: 20 seeds; Dyck 6: 6–10 a checkpoint), and its tree projections (QF and TI, three "
        "depths each: 10 seeds; Dyck's tscore at 2, 4, 6 and 12 layers: 2–10 seeds a checkpoint, comparable when "
        "probed on the original's sample, training strings of every length, D24). Where this sweep evaluated or "
        "probed at the same steps, its seeds are placed among them. tscore here is the probe's (D20's exact "
        "baseline, the same expectation as the paper's sampled one). "
        "A seed that behaves like the paper's n seeds falls within their range with probability (n − 1)/(n + 1), "
        "90% for 20; the expected counts are given beside the observed ones.",
        "",
    ]
    out += paper_seeds_lines(runs)
    out += ["## Non-finite seeds", ""] + nonfinite_lines(runs)
    out += ["", "## Figures", ""]
    for name, paths in figures.items():
        if paths:
            png = next(p for p in paths if p.suffix == ".png")
            out += [
                f"### {name}",
                "",
                f"![{name}]({png.name})",
                "",
                "Files: " + ", ".join(f"`{p.name}`" for p in paths),
                "",
            ]
        else:
            out += [f"### {name}", "", "_Not drawn: nothing to plot (no evaluations or no probe.jsonl)._", ""]
    out += (
        ["## Per-seed summary", "", "<details><summary>every seed</summary>", ""]
        + seed_table(runs)
        + ["", "</details>", ""]
    )
    out += ["## Provenance", ""] + provenance_lines(runs) + [""]
    return "\n".join(out)
