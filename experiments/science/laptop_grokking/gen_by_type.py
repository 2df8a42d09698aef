"""QF generalization accuracy by the subject's relative-clause type, per seed, at a run's probe checkpoints.

QF's gen set holds three RC types in about equal shares (intransitive 'who doesn't swim', transitive
'who doesn't admire the yak', object-relative 'that the yaks don't admire'), so an overall gen of 0.67
may be two types solved and one not. This says which.

    python experiments/science/laptop_grokking/gen_by_type.py RUN_DIR [--steps 30000,60000] --out FILE.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sgjax.data import stats, vocab_for
from sgjax.data.split import encode_lines
from sgjax.evaluation import evaluate
from sgjax.run import checkpoint, loop


def by_type(cfg, lines: list[str]) -> dict[str, list[str]]:
    """gen lines grouped by their subject's kind (rc_intr, rc_obj, rc_trans)."""
    out: dict[str, list[str]] = {}
    for line in lines:
        out.setdefault(stats.describe(cfg.task, line)["subj"], []).append(line)
    return dict(sorted(out.items()))


def score(run_dir: Path, steps) -> list[dict]:
    cfg = checkpoint.load_config(run_dir)
    if cfg.task != "question":
        raise SystemExit("gen by RC type is defined for QF runs")
    splits, vocab = loop.load_data(cfg), vocab_for(cfg.task)
    groups = by_type(cfg, list(splits["gen"].lines))
    rows = []
    for step in steps or checkpoint.list_steps(run_dir):
        seeds, params_S = checkpoint.load_params(run_dir, step)
        for kind, lines in groups.items():
            ev = evaluate.make_evaluator(
                cfg.model,
                cfg.eval.__class__(exact_match=False),
                cfg.task,
                vocab,
                {"val": splits["val"], "gen": encode_lines(cfg.task, "gen", lines, vocab)},
                member_seeds=seeds,
            )
            acc = ev(params_S, step)["gen_acc"]
            rows += [
                {"step": step, "seed": int(s), "type": kind, "n": len(lines), "gen_acc": float(a)}
                for s, a in zip(seeds, acc)
            ]
            print(step, kind, " ".join(f"{s}:{a:.2f}" for s, a in zip(seeds, acc)), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--steps", help="comma-separated probe-checkpoint steps (default: all)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    steps = [int(s) for s in args.steps.split(",")] if args.steps else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(score(args.run_dir, steps), indent=1) + "\n")


if __name__ == "__main__":
    main()
