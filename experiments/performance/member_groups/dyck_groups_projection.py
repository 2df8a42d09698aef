"""Dyck's share of the paper sweep on a GPU, for each way of grouping its 10 seeds: from the quick phase's files.

    python experiments/performance/member_groups/dyck_groups_projection.py \
        --results experiments/performance/gpu_session/results --depth 6 \
        --out experiments/performance/gpu_session/results/quick_dyck_groups_projection.json

`gpu_session.sh quick` times Dyck programs at one width (every call at the widest planned call):
S = 10 (`quick_depth_dyck_l6`, one program: member_groups 1), S = 1, 2, 5 (`quick_dyck_groups_l6`:
the programs of 10, 5 and 2 groups by seed), and 2 groups of 5 by length (`quick_dyck_group_by_length_l6`,
each call gathering its members). Each file gives a program size's FLOP/s. A grouping's hours are its
whole-run FLOPs (`projection.sweep_flops_per_seed_step`: every call at its own group's width) over that
FLOP/s, for 10 seeds x 400k steps at each of the sweep's depths, the FLOP/s taken as the measured
depth's. Rows measured at the widest width run larger matmuls than a run's typical call, so the hours
are a lower bound; evaluation and compiles are not included (`sgjax bench --project` adds them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sgjax.bench import projection

# (member groups, grouped by, the file and the program's population that measure it)
ARMS = (
    (1, "seed", "quick_depth_dyck_l{d}", 10),
    (2, "seed", "quick_dyck_groups_l{d}", 5),
    (2, "length", "quick_dyck_group_by_length_l{d}", 10),
    (5, "seed", "quick_dyck_groups_l{d}", 2),
    (10, "seed", "quick_dyck_groups_l{d}", 1),
)


def measured_flops(path: Path, population: int) -> float | None:
    """The achieved FLOP/s of sgjax's measurement at `population` in a bench file, if there."""
    if not path.exists():
        return None
    rows = [
        r
        for r in json.loads(path.read_text())["results"]
        if r.get("kind") == "sgjax" and r.get("population") == population and r.get("achieved_flops")
    ]
    return rows[0]["achieved_flops"] if rows else None


def dyck_hours(groups: int, group_by: str, flops_per_s: float) -> float:
    """Hours of Dyck training in the paper sweep (10 seeds x 400k steps at each depth) at this FLOP/s."""
    return projection.sweep_train_flops("dyck", groups, group_by) / flops_per_s / 3600


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--results",
        default="experiments/performance/gpu_session/results",
        help="the folder of the quick phase's bench files",
    )
    p.add_argument("--depth", type=int, default=6, help="the depth the files measured")
    p.add_argument("--out", help="write the rows to this .json")
    args = p.parse_args()
    rows = []
    print(
        "| member groups | grouped by | members per program | TFLOP/s measured | GFLOP per seed-step at L6 | Dyck "
        "training hours (5 depths) |"
    )
    print("|---|---|---|---|---|---|")
    for groups, by, name, population in ARMS:
        path = Path(args.results) / (name.format(d=args.depth) + ".json")
        rate = measured_flops(path, population)
        per_step = projection.sweep_flops_per_seed_step("dyck", 6, groups, by)
        hours = dyck_hours(groups, by, rate) if rate else None
        rows.append(
            {
                "member_groups": groups,
                "group_by": by,
                "file": str(path),
                "population": population,
                "achieved_flops": rate,
                "gflop_per_seed_step_L6": per_step / 1e9,
                "dyck_hours": hours,
            }
        )
        print(
            f"| {groups} | {by} | {projection.SWEEP_SEEDS // groups} | "
            f"{'-' if rate is None else f'{rate / 1e12:.1f}'} | "
            f"{per_step / 1e9:.1f} | {'not measured' if hours is None else f'{hours:.2f}'} |"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "command": "python experiments/performance/member_groups/dyck_groups_projection.py --results "
                    f"{args.results} --depth {args.depth} --out {args.out}",
                    "rows": rows,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
