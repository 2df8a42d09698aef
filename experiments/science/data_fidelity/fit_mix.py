"""Fit the "train_first" structure mix (sgjax.data.qf_ti.TRAIN_FIRST_MIX) to McCoy's files.

QF: the first 10,000 lines of the real question.train. Every line is a draw that passed the marker
filter and was not a repeat; only the 4-word cell (`D N AUX V .`, 5,616 possible inputs) repeats
often enough to matter, so its draws are recovered from its lines: A lines out of a pool of P
inputs took D = -P ln(1 - A/P) draws. A subject-RC declarative passes the filter half the time
(its questions are withheld), so its cell counts twice.
TI: tense.train is not public. The .dev+.test PAST lines (unfiltered) give every cell but the
3-word one, which train used up; that cell follows from the independence QF shows.

    python experiments/science/data_fidelity/fit_mix.py REF --out experiments/science/data_fidelity/results/fit_mix.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from sgjax.data import formats, qf_ti, stats
from sgjax.data import grammar as G

KINDS, OBJ_KINDS = qf_ti.KINDS, qf_ti.OBJ_KINDS


def cell_counts(task: str, lines, marker: str | None = None) -> np.ndarray:
    """Lines per (subject kind, object kind) cell, optionally only those with `marker`."""
    out = np.zeros((len(KINDS), len(OBJ_KINDS)))
    for line in lines:
        d = stats.describe(task, line)
        if marker is None or d["marker"] == marker:
            out[KINDS.index(d["subj"]), OBJ_KINDS.index(d["obj"])] += 1
    return out


def short_pool(task: str) -> int:
    """Distinct inputs of the shortest cell (bare subject, intransitive verb): sentences x 2 markers."""
    f, sk = qf_ti.features(task), G.skeletons(task)
    short = (f["subj_K"] == 0) & (f["obj_K"] == 0)
    return int(2 * sk.count_K[short].sum())


def draws_from_lines(lines: float, pool: int) -> float:
    """Uniform draws from `pool` inputs that leave `lines` distinct ones."""
    return -pool * math.log(1 - lines / pool)


def independence(cells: np.ndarray) -> dict:
    """The product fit: subject shares, P(intransitive), object shares given a transitive verb."""
    subject = cells.sum(1) / cells.sum()
    intrans = cells[:, 0].sum() / cells.sum()
    obj = cells[:, 1:].sum(0) / cells[:, 1:].sum()
    return {
        "subject": dict(zip(KINDS, subject)),
        "object": dict(zip(OBJ_KINDS, np.r_[intrans, (1 - intrans) * obj])),
        "intransitive_given_subject": dict(zip(KINDS, cells[:, 0] / cells.sum(1))),
    }


def fit_question(ref: Path) -> dict:
    lines = formats.read_lines(ref / "question" / "question.train.first10k", "question")
    n = cell_counts("question", lines)
    pool = short_pool("question")
    draws = draws_from_lines(n[0, 0], pool)
    weights = n.copy()
    weights[2:] *= 2  # subject RC: only the decl half passed the filter
    weights[0, 0] = draws
    fit = independence(weights)
    fit.update(
        short_pool=pool,
        short_lines=int(n[0, 0]),
        short_draws=draws,
        short_share_of_draws=draws / (n.sum() - n[0, 0] + draws),
    )
    return fit


def fit_tense(ref: Path) -> dict:
    lines = [line for s in ("dev", "test") for line in formats.read_lines(ref / "tense" / f"tense.{s}", "tense")]
    n = cell_counts("tense", lines, marker="PAST")
    rest = n[1:]  # the 3-word cell is depleted: take P(intransitive) from the other subjects
    intrans = rest[:, 0].sum() / rest.sum()
    weights = n.copy()
    weights[0, 0] = n[0, 1:].sum() * intrans / (1 - intrans)
    fit = independence(weights)
    fit.update(
        short_pool=short_pool("tense"),
        short_lines_dev_test_past=int(n[0, 0]),
        intransitive_given_subject=dict(zip(KINDS, n[:, 0] / n.sum(1))),
    )
    return fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ref", type=Path, help="folder holding question/ and tense/ reference files")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    fits = {"question": fit_question(args.ref), "tense": fit_tense(args.ref)}
    rounded = json.loads(json.dumps(fits), parse_float=lambda x: round(float(x), 4))
    for task, fit in rounded.items():
        print(task, {k: fit[k] for k in ("subject", "object")})
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rounded, indent=1) + "\n")


if __name__ == "__main__":
    main()
