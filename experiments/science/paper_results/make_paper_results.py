"""Build sgjax/resources/paper_results.json (the paper's numbers the report compares against).

    python experiments/science/paper_results/make_paper_results.py /path/to/reference/paper-results \
        [--out sgjax/resources/paper_results.json]

Reads the CSVs extracted from the original paper/repo once, at build time; the
package only ever reads the small JSON this writes. Accuracies are stored as fractions in [0, 1].
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from pathlib import Path

# The reference CSVs' dataset names -> sgjax task names.
TASKS = {"question_formation": "question", "tense_inflection": "tense", "dyck_20_10": "dyck"}
DEFAULT_OUT = Path(__file__).resolve().parents[3] / "sgjax" / "resources" / "paper_results.json"


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV as dicts of strings."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def num(text: str):
    """A CSV cell as int, float, None (empty/NaN) or the original string."""
    if text is None or text.strip() == "" or text.strip().lower() == "nan":
        return None
    try:
        v = float(text)
    except ValueError:
        return text
    if math.isnan(v):
        return None
    return int(v) if v.is_integer() and "." not in text else round(v, 6)


def typed(row: dict) -> dict:
    """A row with numeric cells converted and the dataset renamed to the sgjax task."""
    out = {k: num(v) for k, v in row.items()}
    if "dataset" in row:
        out["task"] = TASKS[row["dataset"]]
        del out["dataset"]
    return out


def fig3a(rows: list[dict]) -> dict:
    """{task: {depth: seeds of 10 crossing 80%}} from Fig 3a."""
    out: dict = defaultdict(dict)
    for r in rows:
        out[TASKS[r["dataset"]]][str(int(r["depth"]))] = int(r["n_seeds_of_10"])
    return dict(out)


def fig2_curves(rows: list[dict], depths: dict) -> dict:
    """{task: {depth, step[], val[], gen[], n_seeds[]}} (fractions) of the Fig 2 mean curves."""
    out: dict = {}
    for r in rows:
        task = TASKS[r["dataset"]]
        c = out.setdefault(task, {"depth": depths[task], "step": [], "val": [], "gen": [], "n_seeds": []})
        c["step"].append(int(r["step"]))
        c["val"].append(round(float(r["mean_indomain_val_acc_pct"]) / 100, 5))
        c["gen"].append(round(float(r["mean_generalization_acc_pct"]) / 100, 5))
        c["n_seeds"].append(int(r["n_seeds"]))
    return out


def gaps(rows: list[dict]) -> dict:
    """{task: Fig 2's Δ annotations (points, in-domain minus generalization)}."""
    return {
        TASKS[r["dataset"]]: {
            "depth": int(r["depth_plotted"]),
            "gap_es_pct": num(r["gap_indomain_minus_gen_at_early_stopping_pct_from_fig2"]),
            "gap_end_pct": num(r["gap_at_end_of_training_pct_from_fig2"]),
            "gap_end_recomputed_pct": num(r["gap_at_end_recomputed_from_repo_csv_pct"]),
            "end_step": int(r["end_step_used"]),
        }
        for r in rows
    }


def tree_curves(rows: list[dict]) -> dict:
    """{task: {depth: {step[], tscore[], tparseval[], n_seeds[]}}}: seed means per checkpoint (QF/TI)."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["dataset"] == "dyck_20_10":
            continue  # sparse checkpoints and no parses: not plotted in the paper
        acc[(TASKS[r["dataset"]], int(r["depth"]))][int(r["step"])].append((float(r["tscore"]), num(r["tparseval"])))
    out: dict = defaultdict(dict)
    for (task, depth), by_step in sorted(acc.items()):
        steps = sorted(by_step)
        mean = lambda xs: round(sum(xs) / len(xs), 5) if xs else None  # noqa: E731
        out[task][str(depth)] = {
            "step": steps,
            "tscore": [mean([t for t, _ in by_step[s]]) for s in steps],
            "tparseval": [mean([p for _, p in by_step[s] if p is not None]) for s in steps],
            "n_seeds": [len(by_step[s]) for s in steps],
        }
    return dict(out)


def seed_curves(rows: list[dict], columns: dict[str, str], skip=("dyck_20_10",)) -> dict:
    """{task: {depth: {step[], seed[], <key>[step][seed] ...}}}: every logged seed's value per checkpoint (None where
    a seed has none). `columns` maps the keys written to the CSV columns read; datasets in `skip` are left out."""
    acc: dict = defaultdict(dict)
    for r in rows:
        if r["dataset"] not in skip:
            acc[(TASKS[r["dataset"]], int(r["depth"]))][(int(r["step"]), int(r["seed"]))] = [
                num(r[c]) for c in columns.values()
            ]
    out: dict = defaultdict(dict)
    for (task, depth), cells in sorted(acc.items()):
        steps, seeds = sorted({st for st, _ in cells}), sorted({sd for _, sd in cells})
        curves = {"step": steps, "seed": seeds}
        for i, key in enumerate(columns):
            curves[key] = [[cells[(st, sd)][i] if (st, sd) in cells else None for sd in seeds] for st in steps]
        out[task][str(depth)] = curves
    return dict(out)


def build(ref: Path) -> dict:
    """Everything the report needs, from the reference CSV directory."""
    agg = [typed(r) for r in read_csv(ref / "aggregate_summary.csv")]
    trees = read_csv(ref / "tree_projection_scores_per_checkpoint.csv")
    depths = {r["task"]: r["depth"] for r in agg}
    return {
        "about": "Numbers of Murty et al. 2023 (ACL), extracted from the paper's figures and the original repo's "
        "logs; built by experiments/science/paper_results/make_paper_results.py. Accuracies are fractions.",
        "task_names": {v: k for k, v in TASKS.items()},
        "fig3a_n_of_10": fig3a(read_csv(ref / "inverted_u_fig3a.csv")),
        "fig2_curves": fig2_curves(read_csv(ref / "fig2_mean_curves_paper_seeds.csv"), depths),
        "fig2_gaps": gaps(read_csv(ref / "fig2_gap_annotations.csv")),
        "aggregate": agg,
        "per_seed": [typed(r) for r in read_csv(ref / "per_seed_summary.csv")],
        "tree_projection_summary": [typed(r) for r in read_csv(ref / "tree_projection_summary.csv")],
        "seed_curves": seed_curves(
            read_csv(ref / "accuracy_curves_per_checkpoint.csv"),
            {"val": "indomain_val_acc", "gen": "generalization_acc"},
            skip=(),
        ),
        # Dyck has no parses: its seeds' tscore alone (checkpoints sparser than QF/TI's, 2-10 seeds each).
        "probe_seed_curves": seed_curves(trees, {"tscore": "tscore", "tparseval": "tparseval"})
        | seed_curves([r for r in trees if r["dataset"] == "dyck_20_10"], {"tscore": "tscore"}, skip=()),
        "tree_projection_curves": tree_curves(trees),
        "right_branching": [typed(r) for r in read_csv(ref / "right_branching_baselines.csv")],
    }


def main(argv=None) -> int:
    """Write the JSON and print its size."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", type=Path, help="directory holding the paper-results CSVs")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    data = build(args.reference)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
