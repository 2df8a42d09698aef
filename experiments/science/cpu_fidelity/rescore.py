"""Re-score a run's saved checkpoints with other evaluation splits or settings, beside what the run logged.

    python experiments/science/cpu_fidelity/rescore.py RUN_DIR --set data.gen_file=REF/tense/tense.gen \
        --set data.val_file=REF/tense/tense.dev \
        --out experiments/science/cpu_fidelity/results/cpu_ti_l4_s62/rescore_original_files.json

The run's config with the `--set` overrides (any `data.*` or `eval.*` field: McCoy's original files for val and
gen, the original's 2,000-line TI subsample, ...) builds the evaluator the training loop would have built, which
scores every member at each checkpoint (`--steps`, default all). Each (step, seed) row holds the logged value and
the rescored one of every metric, so a question like "does sgjax's generated gen set score its models as McCoy's
file would?" is answered by the same weights on both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sgjax import config, data
from sgjax.run import checkpoint, jsonl, loop


def logged_evals(run_dir: Path) -> dict[tuple[int, int], dict]:
    """{(step, seed): the run's evaluation record} from metrics.jsonl."""
    return {
        (int(r["step"]), int(r["seed"])): r for r in jsonl.read_records(run_dir / "metrics.jsonl") if "val_acc" in r
    }


def rescore(run_dir: Path, overrides: list[str], steps: list[int] | None) -> list[dict]:
    """Rows {step, seed, <metric>: {logged, rescored}} for every member at every step."""
    cfg = config.override(checkpoint.load_config(run_dir), overrides)
    if cfg.train.eval_every <= 0:
        cfg = config.override(cfg, ["train.eval_every=1"])  # a run that never evaluated: score it anyway
    vocab = data.vocab_for(cfg.task)
    evaluator = loop.default_evaluator(cfg, vocab, loop.load_data(cfg))
    logged = logged_evals(run_dir)
    rows = []
    for step in steps or checkpoint.list_steps(run_dir):
        seeds, params = checkpoint.load_params(run_dir, step)
        scores = {k: np.asarray(v) for k, v in evaluator(params, step).items()}
        for m, seed in enumerate(seeds):
            old = logged.get((step, int(seed)), {})
            rows.append(
                {"step": step, "seed": int(seed)}
                | {k: {"logged": old.get(k), "rescored": float(v[m])} for k, v in scores.items()}
            )
        print(
            f"step {step}: "
            + "; ".join(
                f"seed {r['seed']} "
                + ", ".join(
                    f"{k} {fmt(r[k]['logged'])} -> {r[k]['rescored']:.4f}" for k in ("val_acc", "gen_acc") if k in r
                )
                for r in rows[-len(seeds) :]
            ),
            flush=True,
        )
    return rows


def fmt(x) -> str:
    return "–" if x is None else f"{x:.4f}"


def summary(rows: list[dict]) -> dict:
    """Per metric: the mean logged and rescored value over the rows both have, and the mean difference."""
    out = {}
    for k in (k for k in rows[0] if k not in ("step", "seed")):
        pairs = [(r[k]["logged"], r[k]["rescored"]) for r in rows if r[k]["logged"] is not None]
        if pairs:
            a = np.array(pairs)
            out[k] = {
                "n": len(a),
                "logged_mean": float(a[:, 0].mean()),
                "rescored_mean": float(a[:, 1].mean()),
                "mean_difference": float((a[:, 1] - a[:, 0]).mean()),
            }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--steps", default=None, help="comma-separated checkpoint steps (default: all)")
    p.add_argument("--out", required=True, help="JSON: the command, rows and summary")
    args = p.parse_args()
    run_dir = Path(args.run_dir)
    rows = rescore(run_dir, args.overrides, [int(s) for s in args.steps.split(",")] if args.steps else None)
    result = {"argv": sys.argv, "overrides": args.overrides, "summary": summary(rows), "rows": rows}
    loop.write_json(Path(args.out), result)
    for k, s in result["summary"].items():
        print(
            f"{k}: logged {s['logged_mean']:.4f}, rescored {s['rescored_mean']:.4f} (mean of {s['n']}; "
            f"difference {s['mean_difference']:+.4f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
