"""The paper's numbers (Murty et al. 2023), packaged in sgjax/resources/paper_results.json.

Built from the reference CSVs by experiments/science/paper_results/make_paper_results.py; accuracies are fractions.
Tasks use sgjax names (question, tense, dyck); every lookup returns None where the paper has no value.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import numpy as np

RESOURCE = "paper_results.json"
RB_SPLIT_PREFIX = "train"  # the notebook's right-branching baseline (Fig 4's dashed line) used train sentences


@functools.lru_cache(maxsize=1)
def load() -> dict:
    """The whole packaged file (cached)."""
    return json.loads(resources.files("sgjax.resources").joinpath(RESOURCE).read_text())


def fig3a_counts(task: str) -> dict[int, int]:
    """{depth: seeds out of 10 whose generalization crossed 80%} read from Fig 3a ({} if not plotted)."""
    return {int(d): n for d, n in load()["fig3a_n_of_10"].get(task, {}).items()}


def fig2_curve(task: str) -> dict | None:
    """Fig 2's mean curve {depth, step[], val[], gen[], n_seeds[]} at the paper's best depth."""
    return load()["fig2_curves"].get(task)


def fig2_gaps(task: str) -> dict | None:
    """Fig 2's Δ labels {depth, gap_es_pct, gap_end_pct, gap_end_recomputed_pct, end_step}."""
    return load()["fig2_gaps"].get(task)


def aggregate(task: str, depth: int, seed_set: str = "paper_seeds_42_to_132") -> dict | None:
    """The aggregate-summary row (mean final/max/ES gen, counts) for a task/depth at the paper's horizon."""
    rows = [r for r in load()["aggregate"] if r["task"] == task and r["depth"] == depth and r["seed_set"] == seed_set]
    return min(rows, key=lambda r: r["horizon_steps"]) if rows else None


def tree_projection(task: str, depth: int, step=None) -> dict | None:
    """The tree-projection summary row (tscore_mean, tparseval_mean, ...) at `step` (default: the last numeric)."""
    rows = [r for r in load()["tree_projection_summary"] if r["task"] == task and r["depth"] == depth]
    if step is None:
        rows = [r for r in rows if isinstance(r["step"], int)]
        return max(rows, key=lambda r: r["step"]) if rows else None
    return next((r for r in rows if r["step"] == step), None)


def tree_projection_curve(task: str, depth: int) -> dict | None:
    """Seed-mean tscore/tparseval per checkpoint {step[], tscore[], tparseval[]} (QF/TI only)."""
    return load()["tree_projection_curves"].get(task, {}).get(str(depth))


def seed_curves(task: str, depth: int) -> dict | None:
    """Every logged seed's accuracies per checkpoint: {step[], seed[], val[step][seed], gen[step][seed]} (None: not
    logged).

    From the original repo's logs at the paper's plotted depth (QF 6, TI 4: 20 seeds each; Dyck 6: 6-10 seeds a
    checkpoint), so a run of a few seeds can be placed among the paper's seeds step by step.
    """
    return load()["seed_curves"].get(task, {}).get(str(depth))


def probe_seed_curves(task: str, depth: int) -> dict | None:
    """Every logged seed's tree projections per checkpoint: {step[], seed[], tscore[step][seed], tparseval[step][seed]}.

    From the original repo's tree-projection logs (QF and TI at depths 2, 4/6 and 6/10: 10 seeds each; Dyck at 2, 4, 6
    and 12: tscore only, no tparseval key, at 10k and every 50k, 2-10 seeds a checkpoint).
    """
    return load()["probe_seed_curves"].get(task, {}).get(str(depth))


def quantiles(xs) -> dict:
    """min, quartiles (numpy's linear rule), max of a sample, rounded to 5 digits."""
    q = np.quantile(np.asarray(xs, dtype=float), [0, 0.25, 0.5, 0.75, 1])
    return dict(zip(("min", "q25", "median", "q75", "max"), (round(float(v), 5) for v in q)))


def spread(curves: dict | None) -> dict | None:
    """{step[], n_seeds[], <key>{min,q25,median,q75,max}[]} of seed_curves' form: the seeds' quantiles
    per checkpoint.
    """
    if curves is None:
        return None
    keys = [k for k in curves if k not in ("step", "seed")]
    logged = {k: [[v for v in row if v is not None] for row in curves[k]] for k in keys}
    out = {"step": list(curves["step"]), "n_seeds": [len(row) for row in logged[keys[0]]]}
    return out | {k: [quantiles(row) for row in logged[k]] for k in keys}


@functools.lru_cache(maxsize=16)
def seed_spread(task: str, depth: int) -> dict | None:
    """seed_curves' accuracies as quantiles per checkpoint: {step[], n_seeds[], val[], gen[]}, each {min, q25, median,
    q75, max}.
    """
    return spread(seed_curves(task, depth))


@functools.lru_cache(maxsize=16)
def probe_seed_spread(task: str, depth: int) -> dict | None:
    """probe_seed_curves' tscore and tparseval as quantiles per checkpoint, in seed_spread's form."""
    return spread(probe_seed_curves(task, depth))


def right_branching(task: str, split: str = RB_SPLIT_PREFIX) -> float | None:
    """tparseval of right-branching trees against gold on `split` sentences (train = Fig 4's line)."""
    for r in load()["right_branching"]:
        if r["task"] == task and str(r["split_of_sentences"]).startswith(split):
            return r["right_branching_tparseval_f1"]
    return None


def depths(task: str) -> list[int]:
    """Depths for which the paper reports anything for `task`."""
    d = set(fig3a_counts(task)) | {r["depth"] for r in load()["aggregate"] if r["task"] == task}
    d |= {r["depth"] for r in load()["tree_projection_summary"] if r["task"] == task}
    return sorted(d)
