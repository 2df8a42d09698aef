"""One run's val and gen accuracy per seed against step: the search's figure.

python experiments/science/laptop_grokking/plot_curves.py RESULTS_DIR --out FIGURE.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from table import curves  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="a folder holding metrics.jsonl")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--title", default=None)
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (seed, evals) in enumerate(curves(args.results / "metrics.jsonl").items()):
        steps = [s / 1000 for s, _, _ in evals]
        color = f"C{i}"
        ax.plot(steps, [g for _, _, g in evals], color=color, label=f"seed {seed}: gen")
        ax.plot(steps, [v for _, v, _ in evals], color=color, linestyle=":", alpha=0.7)
    ax.plot([], [], color="gray", linestyle=":", label="val (dotted)")
    ax.set_xlabel("step (thousands)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(args.title or args.results.name, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
