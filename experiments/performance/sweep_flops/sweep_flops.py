"""The paper sweep's arithmetic: FLOPs each (task, depth) computes, and what 6 GPU-hours would ask of a GPU.

    python experiments/performance/sweep_flops/sweep_flops.py \
        --out experiments/performance/sweep_flops/results/sweep_flops.json

For each task, the paper preset with the paper's 10 seeds and the full generated data: every call
of the whole run (`projection.sweep_calls`: floor and tail applied) at the length sgjax computes it,
counted by `flops.train_flops_per_step` at each depth of the sweep (2, 4, 6, 8, 10). Evaluation is
counted from the evaluator's own padded batches (`evaluate.make_evaluator`) as forward passes:
every padded position of a batch through the layers, attention over its row's width, and for TI
the decoded positions (max_decode_steps after the prefix, a lower bound where decoding stops early
for every line). Elementwise work (softmax, LayerNorm, Adam) is not counted: it is memory traffic,
not FLOPs. No GPU is needed; the output says what sustained FLOP/s the 6-hour goal needs and how
many hours the sweep takes at the FLOP/s sgjax achieved on QF on the H200
(experiments/performance/gpu_session/results/).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from sgjax import config, data
from sgjax.bench import flops, projection
from sgjax.core import batching
from sgjax.evaluation import evaluate, scoring
from sgjax.run import loop

GOAL_HOURS = 6.0


def forward_flops(depth: int, m, positions: float, rows: float, width: int) -> float:
    """Forward FLOPs of `rows` rows of `width` (positions in all): a third of flops.train_flops_per_step's step."""
    return flops.train_flops_per_step(depth, m.d_model, m.d_ff, m.vocab_size, positions, rows, width) / 3.0


def mean_call_length(layout: str, calls) -> float:
    """The calls' mean packed length ((width, calls) pairs of projection.sweep_calls; unpadded widths
    carry their row).
    """
    return sum(n * (w if layout == "packed" else w[0]) for w, n in calls) / sum(n for _, n in calls)


def eval_shapes(cfg) -> list[tuple[float, float, int]]:
    """(positions, rows, width) of every evaluation group of one member, as the evaluator pads them."""
    splits = data.load_splits(cfg.task)
    ev = evaluate.make_evaluator(
        cfg.model, cfg.eval, cfg.task, data.vocab_for(cfg.task), splits, member_seeds=cfg.seeds
    )
    out = []
    for part in ev.parts.values():
        for group in part.groups.values():
            key = next(k for k in ("line", "seq", "prefix") if k in group)
            nb, r, w = group[key].shape
            if key == "prefix":  # TI: the prefix pass, then one position per decoded token
                w += scoring.decode_steps(cfg.eval.max_decode_steps, group["target"].shape[-1])
            out.append((float(nb * r * w), float(nb * r), int(w)))
    return out


def task_flops(task: str) -> dict:
    """Training and evaluation FLOPs of one member's whole paper run at each sweep depth."""
    steps, cadence = projection.SWEEP[task]
    cfg = dataclasses.replace(config.preset("paper", task, 6), seeds=config.PAPER_SEEDS[: projection.SWEEP_SEEDS])
    layout, calls, _ = projection.sweep_calls(task)
    shapes = eval_shapes(cfg)
    out = {"layout": layout, "steps": steps, "eval_every": cadence, "mean_call_length": mean_call_length(layout, calls)}
    for depth in projection.SWEEP_DEPTHS:
        m = dataclasses.replace(cfg.model, n_layers=depth)
        per_step = projection.sweep_flops_per_seed_step(task, depth)
        per_eval = sum(forward_flops(depth, m, *s) for s in shapes)
        out[f"L{depth}"] = {
            "train_flops": per_step * steps,
            "gflop_per_seed_step": per_step / 1e9,
            "eval_flops": per_eval * (steps // cadence),
            "gflop_per_eval": per_eval / 1e9,
        }
    return out


def packed_attention(task: str, every: int = 97) -> dict:
    """Of a packed run's P x P attention (every `every`-th step, depth 6): its share of the forward's FLOPs,
    the share within a sequence (block-diagonal), and rows padded to the call's longest sequence instead."""
    cfg = dataclasses.replace(config.preset("paper", task, 6), seeds=config.PAPER_SEEDS[: projection.SWEEP_SEEDS])
    seq_len_N = loop.train_sequences(cfg, data.load_splits(task)["train"], data.vocab_for(task))[2]
    m, b = cfg.model, cfg.train.batch_size
    matmul = attn = within = rows = 0.0
    for step in range(0, projection.SWEEP[task][0], every):
        len_SxB = seq_len_N[batching.chunk_indices(cfg.seeds, step, 1, len(seq_len_N), b)[:, 0]] - 1
        p = batching.round_up_bucket(int(len_SxB.sum(1).max()))
        t = batching.round_up_bucket(int(len_SxB.max()))
        position_wise = forward_flops(6, m, p, 1, 0)  # a zero-width attention row: the matmuls alone
        matmul += position_wise
        attn += forward_flops(6, m, p, 1, p) - position_wise
        within += 6 * 4 * m.d_model * float((len_SxB.astype(np.float64) ** 2).sum(1).max())
        rows += 6 * 4 * m.d_model * b * float(t) ** 2
    return {
        "every": every,
        "attention_share_of_forward": attn / (matmul + attn),
        "within_sequence_share_of_attention": within / attn,
        "padded_rows_over_packed_attention": rows / attn,
    }


def member_groups(task: str, arms=("1", "2", "2:length", "5", "5:length", "10")) -> dict:
    """A paper run at depth 6 trained in member groups (train.member_groups): each group's calls at its own width;
    an arm `G:length` groups each call's members by batch length (train.group_by=length)."""
    out = {}
    for spec in arms:
        g, _, by = spec.partition(":")
        g, by = int(g), by or "seed"
        layout, calls, _ = projection.sweep_calls(task, g, by)
        out[spec] = {
            "members_per_program": projection.SWEEP_SEEDS // g,
            "group_by": by,
            "programs": len(calls),
            "mean_width": mean_call_length(layout, calls),
            "gflop_per_seed_step_L6": projection.sweep_flops_per_seed_step(task, 6, g, by) / 1e9,
            "train_pflop_10_seeds_5_depths": projection.sweep_train_flops(task, g, by) / 1e15,
        }
    return out


def summary(tasks: dict, seeds: int, rates: dict) -> dict:
    """The whole sweep: FLOPs, the FLOP/s 6 hours need, and hours at each achieved FLOP/s in `rates`."""
    total = sum(
        seeds * (r[f"L{d}"]["train_flops"] + r[f"L{d}"]["eval_flops"])
        for r in tasks.values()
        for d in projection.SWEEP_DEPTHS
    )
    need = total / (GOAL_HOURS * 3600)
    peaks = flops.GPU_PEAK_FLOPS["H100"]
    return {
        "total_flops": total,
        "flops_per_s_for_6h": need,
        "percent_of_h100_peak_for_6h": {p: 100 * need / v for p, v in peaks.items()},
        "hours_at": {name: total / rate / 3600 for name, rate in rates.items()},
    }


def achieved_rates() -> dict:
    """FLOP/s sgjax achieved on the H200 for QF depth 6, S = 10 (docs/performance.md), by precision."""
    rates = {}
    for name, path in (
        ("fp32", "experiments/performance/gpu_session/results/quick_peer_qf_l6_highest.json"),
        ("tf32", "experiments/performance/gpu_session/results/quick_scale_qf_l6_tensorfloat32.json"),
    ):
        try:
            with open(path) as f:
                rows = [r for r in json.load(f)["results"] if r.get("kind") == "sgjax" and r.get("population") == 10]
        except (OSError, KeyError, ValueError):
            continue
        if rows and rows[0].get("achieved_flops"):
            rates[f"qf_h200_{name}"] = rows[0]["achieved_flops"]
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="question,tense,dyck")
    p.add_argument("--out", help="write the counts to this .json")
    args = p.parse_args()
    tasks = {t: task_flops(t) for t in args.tasks.split(",")}
    rates = achieved_rates()
    s = summary(tasks, projection.SWEEP_SEEDS, rates)
    print(
        "| task | layout | mean call length | "
        + " | ".join(f"L{d} GFLOP/seed-step" for d in projection.SWEEP_DEPTHS)
        + " | eval share at L6 | PFLOP, 10 seeds x 5 depths |"
    )
    print("|---|---|---|" + "---|" * (len(projection.SWEEP_DEPTHS) + 2))
    for t, r in tasks.items():
        pf = (
            sum(
                projection.SWEEP_SEEDS * (r[f"L{d}"]["train_flops"] + r[f"L{d}"]["eval_flops"])
                for d in projection.SWEEP_DEPTHS
            )
            / 1e15
        )
        share = r["L6"]["eval_flops"] / (r["L6"]["train_flops"] + r["L6"]["eval_flops"])
        print(
            f"| {t} | {r['layout']} | {r['mean_call_length']:.0f} | "
            + " | ".join(f"{r[f'L{d}']['gflop_per_seed_step']:.1f}" for d in projection.SWEEP_DEPTHS)
            + f" | {100 * share:.1f}% | {pf:,.0f} |"
        )
    print(
        f"\nthe sweep: {s['total_flops'] / 1e18:.2f} EFLOP; in {GOAL_HOURS:g} h: "
        f"{s['flops_per_s_for_6h'] / 1e12:.0f} TFLOP/s sustained = "
        + ", ".join(f"{v:.0f}% of the H100's {k} peak" for k, v in s["percent_of_h100_peak_for_6h"].items())
    )
    for name, h in s["hours_at"].items():
        print(f"at {name} ({rates[name] / 1e12:.1f} TFLOP/s, QF's achieved rate): {h:.1f} GPU-hours")
    attention = packed_attention("dyck") if "dyck" in tasks else None
    if attention:
        print(
            f"dyck, depth 6: attention is {100 * attention['attention_share_of_forward']:.1f}% of a packed forward's "
            f"FLOPs; "
            f"{100 * attention['within_sequence_share_of_attention']:.1f}% of it lies within a sequence; "
            f"rows padded to each call's longest sequence: {attention['padded_rows_over_packed_attention']:.2f}x the "
            f"packed attention"
        )
    grouped = {t: member_groups(t) for t in tasks}
    print(
        "\n| task | member groups | grouped by | members per program | programs | mean width | GFLOP per seed-step "
        "at L6 | training PFLOP, 10 seeds x 5 depths |"
        "\n|---|---|---|---|---|---|---|---|"
    )
    for t, rows in grouped.items():
        for spec, r in rows.items():
            print(
                f"| {t} | {spec.split(':')[0]} | {r['group_by']} | {r['members_per_program']} | {r['programs']} | "
                f"{r['mean_width']:.0f} "
                f"| {r['gflop_per_seed_step_L6']:.1f} | {r['train_pflop_10_seeds_5_depths']:,.0f} |"
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "command": "python experiments/performance/sweep_flops/sweep_flops.py --out " + args.out,
                    "tasks": tasks,
                    "achieved_flops_per_s": rates,
                    "summary": s,
                    "dyck_packed_attention": attention,
                    "member_groups": grouped,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
