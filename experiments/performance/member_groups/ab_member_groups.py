"""Dyck trained in member groups (train.member_groups) against one population: rounds interleaved.

    python experiments/performance/member_groups/ab_member_groups.py --groups 1,2,10 --rounds 3 \
        --out experiments/performance/member_groups/results/ab_member_groups_cpu_dyck_l6_s10.json
    python experiments/performance/member_groups/ab_member_groups.py --groups 2,2:length,5,5:length --rounds 2 \
        --steps 5 \
        --out experiments/performance/member_groups/results/ab_group_by_cpu_dyck_l6_s10.json

An arm `G` groups contiguous seeds; `G:length` (train.group_by=length) regroups each call's members by
their batch lengths, so members with long batches pad one another.

Each round measures every arm once, in its own child process (`bench.measure_isolated`, as `sgjax
bench` does): the paper's Dyck model at `--depth`, the paper's first S seeds, `--steps` one-step calls
after one warm-up call, every width compiled before timing. An arm with G groups runs each group's
calls at that group's own width, so its members pad to their group's longest batch, not the
population's. Reported per arm: seed-steps/s of each round, and per round its ratio to the first arm.
"""

from __future__ import annotations

import argparse
import json
import statistics

from sgjax.bench import speed as bench


def arm(spec: str, args, rnd: int) -> dict:
    """One measurement's parameters: an sgjax bench of the Dyck population in member groups (`G` or `G:length`)."""
    groups, _, by = spec.partition(":")
    return {
        "kind": "sgjax",
        "task": args.task,
        "depth": args.depth,
        "population": args.seeds,
        "precision": "highest",
        "seq_len": 37,
        "overrides": [f"train.member_groups={groups}", f"train.group_by={by or 'seed'}"],
        "eval": False,
        "round": rnd,
        "steps_per_call": 1,
        "calls": args.steps,
        "warmup": 1,
        "xla_flags": "",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="dyck")
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--seeds", type=int, default=10, help="population size S")
    p.add_argument(
        "--groups",
        default="1,2,10",
        help="arms: member group counts G, or G:length to group by batch length; the first is the baseline",
    )
    p.add_argument("--steps", type=int, default=6, help="timed one-step calls per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    groups = args.groups.split(",")
    results = []
    for rnd in range(args.rounds):
        for g in groups:
            r = bench.measure_isolated(arm(g, args, rnd))
            r["member_groups"] = g
            results.append(r)
            print(
                f"round {rnd} groups {g}: "
                + (
                    r.get("error")
                    or f"{r['seed_steps_per_s']:.3f} seed-steps/s, "
                    f"{r['flops_per_seed_step'] / 1e9:.1f} GFLOP per seed-step"
                ),
                flush=True,
            )
            with open(args.out, "w") as f:  # after every measurement: a cut run keeps what it measured
                json.dump(
                    {
                        "command": "python experiments/performance/member_groups/ab_member_groups.py "
                        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
                        "machine": bench.machine(),
                        "results": results,
                    },
                    f,
                    indent=1,
                )
    rate = {(r["round"], r["member_groups"]): r["seed_steps_per_s"] for r in results if "error" not in r}
    for g in groups:
        rates = [rate[(k, g)] for k in range(args.rounds) if (k, g) in rate]
        ratios = [
            rate[(k, g)] / rate[(k, groups[0])] for k in range(args.rounds) if (k, g) in rate and (k, groups[0]) in rate
        ]
        print(
            f"groups {g}: median {statistics.median(rates):.3f} seed-steps/s; / groups {groups[0]}: "
            f"median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
