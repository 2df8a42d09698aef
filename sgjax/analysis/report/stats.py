"""What the report derives from runs: per-depth aggregates, mean curves and their gaps, probe curves, the best
depth (D17, D18; docs/report.md)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from sgjax.analysis import summarize
from sgjax.analysis.report.runs import Run, Series, as_float

# probe.jsonl keys, first present wins (sgjax.analysis.probe.run; docs/probe.md)
WEIGHT_NORM_KEYS = ("weight_norm_perL", "weight_norm_per_layer", "weight_norm_dec_perL", "weight_norm")
SPARSITY_KEYS = ("sparsity",)
TSCORE_KEYS = ("tscore",)
TSCORE_SAMPLED_KEYS = ("tscore_sampled",)  # the original's one-random-split baseline (D20)
TPARSEVAL_KEYS = ("tparseval",)
RB_KEYS = ("tparseval_rb",)


def layers(depth: int) -> str:
    """'1 layer', '6 layers'."""
    return f"{depth} layer" + ("s" if depth != 1 else "")


def groks(summary: dict) -> bool:
    """D17: final gen >= 0.8."""
    return summary.get("final_gen") is not None and summary["final_gen"] >= summarize.GROK


def _nanmean(xs) -> float | None:
    """Mean of the non-None, non-NaN values (None if there are none)."""
    v = [float(x) for x in xs if x is not None and not math.isnan(float(x))]
    return float(np.mean(v)) if v else None


def seed_curves(evals: dict[int, Series]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, val_SxT, gen_SxT) on the union of the seeds' eval steps, NaN where a seed has no eval."""
    steps = np.array(sorted({int(s) for e in evals.values() for s in e.steps}), dtype=np.int64)
    val = np.full((len(evals), len(steps)), np.nan)
    gen = np.full_like(val, np.nan)
    for k, e in enumerate(evals.values()):
        idx = np.searchsorted(steps, e.steps)
        val[k, idx], gen[k, idx] = e.val, e.gen
    return steps, val, gen


def mean_curve(evals: dict[int, Series]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean val, mean gen) over seeds on the union of their eval steps (NaN-aware)."""
    steps, val, gen = seed_curves(evals)
    with warnings.catch_warnings():  # all-NaN steps (a seed without that eval) give NaN quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return steps, np.nanmean(val, 0), np.nanmean(gen, 0)


def mean_interval(x_SxT: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Student-t interval of the seed mean at each step (NaN where fewer than two seeds)."""
    from scipy import stats

    n = np.sum(~np.isnan(x_SxT), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, sem = np.nanmean(x_SxT, 0), np.nanstd(x_SxT, 0, ddof=1) / np.sqrt(n)
        half = np.where(n > 1, stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)) * sem, np.nan)
    return mean - half, mean + half


def share_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a share k/n (exact)."""
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


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
    return {
        "es_step": int(steps[i]),
        "es_val": float(val[i]),
        "es_gen": float(gen[i]),
        "gap_es": float(val[i] - gen[i]),
        "end_step": int(steps[-1]),
        "end_val": float(val[-1]),
        "end_gen": float(gen[-1]),
        "gap_end": float(val[-1] - gen[-1]),
    }


def probe_curve(records: list[dict], keys) -> tuple[str, np.ndarray, np.ndarray, np.ndarray] | None:
    """(key, steps, mean, std over seeds) of the first of `keys` present with numbers in probe records."""
    for key in keys:
        by_step: dict[int, list[float]] = {}
        for r in records:
            v = as_float(r.get(key))
            if not math.isnan(v):
                by_step.setdefault(int(r["step"]), []).append(v)
        if by_step:
            steps = np.array(sorted(by_step))
            return (
                key,
                steps,
                np.array([np.mean(by_step[s]) for s in steps]),
                np.array([np.std(by_step[s]) for s in steps]),
            )
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
        "task": run.task,
        "depth": run.depth,
        "n_seeds": len(run.seeds),
        "n_eval_seeds": len(s),
        "n_grok": sum(groks(x) for x in s),
        "mean_final_gen": _nanmean(col("final_gen")),
        "mean_final_val": _nanmean(col("final_val")),
        "mean_max_gen": _nanmean(col("max_gen")),
        "mean_es_gen": _nanmean(col("es_gen_at_first_max_val")),
        "mean_es_gen_patience3": _nanmean(col("es_gen_patience3")),
        "mean_gen_at_val_ge_99": _nanmean(col("gen_at_first_val_ge_99")),
        "last_eval_step": max((x["last_step"] for x in s if x["last_step"] is not None), default=None),
        "tscore": last_probe_mean(run.probe, TSCORE_KEYS),
        "tscore_sampled": last_probe_mean(run.probe, TSCORE_SAMPLED_KEYS),
        "tparseval": last_probe_mean(run.probe, TPARSEVAL_KEYS),
        "probe_step": last,
        "nonfinite": dict(run.nonfinite),
    }


def last_probe_step(records: list[dict]) -> int | None:
    """The last probed step."""
    return max((int(r["step"]) for r in records), default=None)


def best_depth(stats: list[dict]) -> int | None:
    """The depth with the largest share of seeds final gen ≥ 0.8; ties -> higher mean final gen, then the smaller depth.

    A share, not a count, so a depth with fewer seeds evaluated is not ranked down for it. None when no seed
    groks at any depth: a tie-break among zeros names no best depth.
    """
    rows = [r for r in stats if r["n_eval_seeds"] > 0 and r["n_grok"] > 0]
    if not rows:
        return None
    key = lambda r: (
        r["n_grok"] / r["n_eval_seeds"],
        r["mean_final_gen"] if r["mean_final_gen"] is not None else -1.0,  # noqa: E731
        -r["depth"],
    )
    return max(rows, key=key)["depth"]


def shown_depth(stats: list[dict]) -> int | None:
    """The depth Fig 2 shows: the best one, else (no seed groks) the highest mean final gen; None
    without evaluations.
    """
    best = best_depth(stats)
    if best is not None:
        return best
    rows = [r for r in stats if r["n_eval_seeds"] > 0 and r["mean_final_gen"] is not None]
    return max(rows, key=lambda r: (r["mean_final_gen"], -r["depth"]))["depth"] if rows else None


def best_of(runs: list[Run], best: dict[str, int | None]) -> dict[str, Run]:
    """{task: the run at its best depth} for tasks that have one."""
    return {r.task: r for r in runs if best.get(r.task) == r.depth}


def pick_depths(runs: list[Run], best: int | None) -> list[Run]:
    """The shallowest, best and deepest grokking runs (distinct), as the paper picks (TI 2/4/6).

    Deepest = the largest depth with at least one seed final gen ≥ 0.8; the largest depth if none groks.
    """
    by_depth = {r.depth: r for r in runs}
    grokking = [r.depth for r in runs if any(groks(x) for x in r.summaries.values())]
    chosen = {min(by_depth), max(grokking or by_depth)} | ({best} if best in by_depth else set())
    return [by_depth[d] for d in sorted(chosen)]


def seed_values(records: list[dict], fields: dict[str, str]) -> dict[str, dict[int, dict[int, float]]]:
    """{name: {step: {seed: value}}} of each record field ({name: field}); missing and non-numeric values left out."""
    out: dict[str, dict[int, dict[int, float]]] = {name: {} for name in fields}
    for r in records:
        for name, field in fields.items():
            v = as_float(r.get(field))
            if not math.isnan(v):
                out[name].setdefault(int(r["step"]), {})[int(r["seed"])] = v
    return out


def place_among(spread: dict, values: dict[str, dict[int, dict[int, float]]]) -> list[dict]:
    """Per checkpoint of the paper's `spread` where a run has values: the paper's quantiles, the run's {seed: value}
    and how many lie within the paper's [min, max], for each key of `values` (seed_values' form) the paper logged."""
    rows = []
    values = {key: by_step for key, by_step in values.items() if key in spread}  # Dyck: tscore, no tparseval
    for i, step in enumerate(spread["step"]):
        row = {"step": step, "n_paper": spread["n_seeds"][i]}
        for key, by_step in values.items():
            ours, p = by_step.get(step, {}), spread[key][i]
            row[key] = {"paper": p, "seeds": ours, "inside": sum(p["min"] <= v <= p["max"] for v in ours.values())}
        if any(row[key]["seeds"] for key in values):
            rows.append(row)
    return rows


RANK_SUBSETS = 20_000  # the paper's m-seed subsets drawn when there are more than this; else all of them


def percentile_among(v: float, others_N: np.ndarray) -> float:
    """Fraction of `others_N` below v, ties counted half: 0 below them all, 1 above them all."""
    from scipy import stats

    return float(stats.percentileofscore(others_N, v, kind="mean")) / 100


def subset_p(run_M: np.ndarray, rest_N: np.ndarray, alternative: str) -> float:
    """Share of the pool's splits into m and the rest whose m-mean is as low ('less') or as high ('greater') as
    the run's (scipy's permutation test; exact up to RANK_SUBSETS splits, else that many from a fixed generator)."""
    from scipy import stats

    if len(run_M) == 1 or len(rest_N) == 1:  # scipy wants two or more per side; one value: its rank among all
        pool_P, mean = np.r_[run_M, rest_N], run_M.mean()
        draws_X = pool_P if len(run_M) == 1 else (pool_P.sum() - pool_P) / (len(pool_P) - 1)
        return float(np.mean(draws_X <= mean + 1e-12) if alternative == "less" else np.mean(draws_X >= mean - 1e-12))
    splits = math.comb(len(run_M) + len(rest_N), len(run_M))
    return float(
        stats.permutation_test(
            (run_M, rest_N),
            lambda x, y, axis=-1: np.mean(x, axis=axis),
            permutation_type="independent",
            alternative=alternative,
            vectorized=True,
            n_resamples=np.inf if splits <= RANK_SUBSETS else RANK_SUBSETS,
            rng=np.random.default_rng(0),
        ).pvalue
    )


def mean_percentiles(values_SxN: np.ndarray, among_SxM: np.ndarray | None = None) -> list[float]:
    """Each column's percentile among `among_SxM`'s columns, averaged over the rows where both have values (NaN: none).

    Without `among_SxM`, each column of `values_SxN` is placed among its other columns (a seed among the other seeds).
    """
    out = []
    for j in range(values_SxN.shape[1]):
        others_SxM = np.delete(values_SxN, j, axis=1) if among_SxM is None else among_SxM
        pct = [
            percentile_among(v, o[~np.isnan(o)])
            for v, o in zip(values_SxN[:, j], others_SxM)
            if not np.isnan(v) and np.any(~np.isnan(o))
        ]
        out.append(float(np.mean(pct)) if pct else math.nan)
    return out


def seed_ranks(curves: dict, key: str, ours: dict[int, dict[int, float]]) -> dict | None:
    """Each run seed's mean percentile among the paper's seeds for `key` ({step: {seed: value}}, seed_values' form).

    Over the checkpoints where every run seed and at least two paper seeds have a value. Beside it, each paper seed's
    own mean percentile among the other paper seeds (where a seed like the paper's falls). A mean over checkpoints
    ranks whole seeds, so a seed that runs low at every checkpoint counts once, not at each. `p_low` / `p_high`: a
    permutation test; every seed of the pool (the paper's and the run's) gets its mean percentile among all the
    others, and these are the shares of the pool's subsets of the run's size whose mean is as low / as high as the
    run's seeds' (exact for seeds exchangeable with the paper's; the run's own subset is one of them).
    """
    run_seeds = sorted({s for by_seed in ours.values() for s in by_seed})
    rows = [
        (i, step)
        for i, step in enumerate(curves["step"])
        if all(s in ours.get(step, {}) for s in run_seeds) and sum(v is not None for v in curves[key][i]) >= 2
    ]
    if not run_seeds or not rows:
        return None
    paper_SxN = np.array([[np.nan if v is None else v for v in curves[key][i]] for i, _ in rows], dtype=float)
    run_SxM = np.array([[ours[step][s] for s in run_seeds] for _, step in rows], dtype=float)
    pool_SxP = np.concatenate([paper_SxN, run_SxM], axis=1)
    pooled_P = np.array(mean_percentiles(pool_SxP))
    run_M, rest_N = pooled_P[-len(run_seeds) :], pooled_P[: -len(run_seeds)]
    rest_N = rest_N[~np.isnan(rest_N)]
    paper_N = [p for p in mean_percentiles(paper_SxN) if not math.isnan(p)]
    return {
        "steps": [step for _, step in rows],
        "run": dict(zip(run_seeds, mean_percentiles(run_SxM, paper_SxN))),
        "paper": paper_N,
        "p_low": subset_p(run_M, rest_N, "less"),
        "p_high": subset_p(run_M, rest_N, "greater"),
    }


def ranks_among_paper_seeds(run: Run) -> dict[str, dict]:
    """seed_ranks of the run's gen, val, tscore and tparseval among the paper's logged seeds (those it has)."""
    from sgjax.analysis import paper

    out = {}
    for curves, records, fields in (
        (paper.seed_curves(run.task, run.depth), run.metrics, {"gen": "gen_acc", "val": "val_acc"}),
        (paper.probe_seed_curves(run.task, run.depth), run.probe, {"tscore": "tscore", "tparseval": "tparseval"}),
    ):
        if curves is not None:
            for key, by_step in seed_values(records, fields).items():
                if key in curves and (ranks := seed_ranks(curves, key, by_step)) is not None:  # Dyck: no tparseval
                    out[key] = ranks
    return out


def against_paper_seeds(run: Run) -> list[dict]:
    """place_among for val and gen: the run's evaluations among the paper's logged seeds ([] at a depth
    it did not log).
    """
    from sgjax.analysis import paper

    spread = paper.seed_spread(run.task, run.depth)
    return [] if spread is None else place_among(spread, seed_values(run.metrics, {"val": "val_acc", "gen": "gen_acc"}))


def probe_against_paper_seeds(run: Run) -> list[dict]:
    """place_among for tscore and tparseval: the run's probe records among the paper's logged seeds."""
    from sgjax.analysis import paper

    spread = paper.probe_seed_spread(run.task, run.depth)
    return (
        []
        if spread is None
        else place_among(spread, seed_values(run.probe, {"tscore": "tscore", "tparseval": "tparseval"}))
    )
