"""Per-round ratios of sgjax to each peer from `sgjax bench` JSONs: the numbers a noisy machine can't fake.

    python experiments/performance/cpu_bench/round_ratios.py \
        experiments/performance/cpu_bench/results/bench_cpu_*.json --population 10
    python experiments/performance/cpu_bench/round_ratios.py FILE.json --steady  # rates from bench.typical_call_s,
        # for files made before it

Every round of `sgjax bench --repeat R` runs sgjax and the peers back to back, so the ratio within a
round compares them under the same machine load; the best-of-rounds table does not.
"""

from __future__ import annotations

import argparse
import json
import statistics


def rate_of(r: dict, steady: bool) -> float:
    """A measurement's seed-steps/s: as recorded, or recomputed from its calls by today's statistic."""
    if not steady:
        return r["seed_steps_per_s"]
    from sgjax.bench import typical_call_s

    return r["population"] * r["steps_per_call"] / typical_call_s(r["call_s"], r["widths"])


def round_ratios(paths: list[str], population: int, steady: bool = False) -> dict[str, list[float]]:
    """{peer: [sgjax / peer seed-steps/s for every round of every file]}."""
    ratios: dict[str, list[float]] = {}
    for path in paths:
        with open(path) as f:
            rows = [r for r in json.load(f)["all_rounds"] if r["population"] == population]
        for rnd in sorted({r["round"] for r in rows}):
            rate = {r["kind"]: rate_of(r, steady) for r in rows if r["round"] == rnd}
            for peer, peer_rate in rate.items():
                if peer != "sgjax" and "sgjax" in rate:
                    ratios.setdefault(peer, []).append(rate["sgjax"] / peer_rate)
    return ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+")
    p.add_argument("--population", type=int, default=10)
    p.add_argument(
        "--steady",
        action="store_true",
        help="recompute each rate from its calls with bench.typical_call_s (each width's median call)",
    )
    args = p.parse_args()
    for peer, rs in round_ratios(args.paths, args.population, args.steady).items():
        print(
            f"sgjax / {peer}: median {statistics.median(rs):.2f}x, min {min(rs):.2f}x, max {max(rs):.2f}x "
            f"over {len(rs)} rounds ({', '.join(f'{r:.2f}' for r in rs)})"
        )


if __name__ == "__main__":
    main()
