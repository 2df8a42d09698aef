"""The search's table: every configuration tried, its seeds' curves summed up, and whether it groks.

Groks (this search's criterion): for at least 3 of 4 seeds, some evaluation has val >= 0.95 with gen <= 0.5,
and gen >= 0.8 at the last evaluation. Reads results/<name>/{metrics.jsonl, command.txt, gen_by_type.json}.

    python experiments/science/laptop_grokking/table.py > experiments/science/laptop_grokking/results/table.md
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def curves(path: Path) -> dict[int, list[tuple[int, float, float]]]:
    """seed -> [(step, val, gen)] of the evaluations in a metrics.jsonl."""
    out = defaultdict(list)
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r.get("gen_acc") is not None:
            out[r["seed"]].append((r["step"], r["val_acc"], r["gen_acc"]))
    return {s: sorted(v) for s, v in sorted(out.items())}


def seed_groks(evals: list[tuple[int, float, float]]) -> bool:
    """val >= 0.95 with gen <= 0.5 at some evaluation, and gen >= 0.8 at the last."""
    return any(v >= 0.95 and g <= 0.5 for _, v, g in evals) and evals[-1][2] >= 0.8


def row(run: Path) -> str:
    c = curves(run / "metrics.jsonl")
    last = {s: e[-1] for s, e in c.items()}
    step = max(e[0] for e in last.values())
    n = sum(seed_groks(e) for e in c.values())
    finals = " ".join(f"{s}:{e[2]:.2f}" for s, e in last.items())
    maxes = " ".join(f"{max(g for _, _, g in e):.2f}" for e in c.values())
    types = ""
    by_type = run / "gen_by_type.json"
    if by_type.exists():
        recs = [r for r in json.loads(by_type.read_text()) if r["step"] == step]
        per = defaultdict(list)
        for r in recs:
            per[r["type"]].append(r["gen_acc"])
        types = ", ".join(f"{t} {sum(v) / len(v):.2f}" for t, v in sorted(per.items()))
    return f"| `{run.name}` | {step:,} | {finals} | {maxes} | {n}/{len(c)} | {types} |"


def main() -> None:
    print(
        "| configuration | last eval | final gen per seed | max gen per seed | groks "
        "| gen by RC type at the end (mean) |"
    )
    print("|---|---|---|---|---|---|")
    for run in sorted(p for p in RESULTS.iterdir() if (p / "metrics.jsonl").exists()):
        print(row(run))


if __name__ == "__main__":
    main()
