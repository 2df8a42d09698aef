"""`sgjax compare RUN_A RUN_B`: do two runs of the same seeds train alike, within seed-to-seed noise?

    compare_runs(run_a, run_b) -> {metric: {...}}   format_table(result) -> markdown

Made to decide whether a speed lever keeps the training dynamics (TF32 or bf16 matmuls against
fp32, a data layout, a new dropout draw): train the same seeds both ways, then compare. Seeds are
paired: for train_loss, val_acc and gen_acc, at the steps both runs logged, the difference B − A per
seed, averaged over the steps and at the final step, gets an exact sign-flip permutation p-value over
the paired seeds (docs/performance.md, "Is a lever faithful?").
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from sgjax.analysis import summarize
from sgjax.errors import UserError

METRICS = ("train_loss", "val_acc", "gen_acc")
EXACT_SEEDS = 16  # up to 2^16 sign patterns are enumerated; more seeds are sampled
ALPHA = 0.05  # the chance that two runs of one distribution are called different (split over two tests)
# The fewest seeds with which a sign-flip test can reach p < ALPHA / 2 (its smallest p is 2 / 2^n):
# with fewer, 'no significant difference' says nothing.
MIN_SEEDS = next(n for n in range(1, 64) if 2 / 2**n < ALPHA / 2)
SPREAD_GAP = 3.0  # a mean gap this many seed standard deviations wide is a difference whatever the test says


def curves(records: list[dict], key: str) -> dict[int, dict[int, float]]:
    """seed -> {step: value} of the finite values of `key` in metrics records."""
    out: dict[int, dict[int, float]] = {}
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v) and "seed" in r:
            out.setdefault(int(r["seed"]), {})[int(r["step"])] = float(v)
    return out


def paired(a: dict[int, dict[int, float]], b: dict[int, dict[int, float]]):
    """(seeds, steps, a_SxT, b_SxT): the seeds in both runs, at the steps every one of them logged in both."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return seeds, [], np.zeros((0, 0)), np.zeros((0, 0))
    steps = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds)))
    a_SxT = np.array([[a[s][t] for t in steps] for s in seeds]).reshape(len(seeds), len(steps))
    b_SxT = np.array([[b[s][t] for t in steps] for s in seeds]).reshape(len(seeds), len(steps))
    return seeds, steps, a_SxT, b_SxT


def sign_flip_p(diff_S: np.ndarray, samples: int = 20_000) -> float:
    """Two-sided p of mean(diff) under 'each seed's difference is as likely negative' (scipy's sign-flip
    permutation test): exact for ≤ 16 seeds, else `samples` random flips from a fixed generator."""
    from scipy import stats

    d = np.asarray(diff_S, float)
    if d.size == 0 or not np.any(d):
        return 1.0
    resamples = np.inf if d.size <= EXACT_SEEDS else samples
    return float(
        stats.permutation_test(
            (d,),
            np.mean,
            permutation_type="samples",
            n_resamples=resamples,
            alternative="two-sided",
            rng=np.random.default_rng(0),
        ).pvalue
    )


def compare_metric(a_SxT: np.ndarray, b_SxT: np.ndarray, steps: list[int]) -> dict:
    """Paired differences of one metric: the largest gap of the mean curves, seed spread, the final step."""
    n_seeds = a_SxT.shape[0]
    gap_T = (b_SxT - a_SxT).mean(0)
    k = int(np.argmax(np.abs(gap_T)))
    spread_T = a_SxT.std(0, ddof=1) if n_seeds > 1 else np.full(len(steps), math.nan)
    final = b_SxT[:, -1] - a_SxT[:, -1]
    curve_S = (b_SxT - a_SxT).mean(
        1
    )  # each seed's gap averaged over the steps: one number per seed, as the steps correlate
    return {
        "seeds": n_seeds,
        "steps": len(steps),
        "last_step": int(steps[-1]),
        "max_mean_gap": float(gap_T[k]),
        "max_gap_step": int(steps[k]),
        "seed_std": float(np.median(spread_T)),
        "curve_gap": float(curve_S.mean()),
        "curve_p": sign_flip_p(curve_S),
        "final_a": float(a_SxT[:, -1].mean()),
        "final_b": float(b_SxT[:, -1].mean()),
        "final_gap": float(final.mean()),
        "final_p": sign_flip_p(final),
    }


def verdict(m: dict) -> str:
    """'yes' (B within A's seed noise), 'no', or 'too few seeds' to tell.

    'no': a seed diverged (non-finite) in one run only; or the whole-curve or final gap is significant
    (a sign-flip p < 0.025 each, 0.05 for the two; the per-seed averages keep the curve test valid
    however a run's steps correlate); or a mean gap is wider than SPREAD_GAP seed standard deviations.
    Otherwise 'yes' when there are MIN_SEEDS seeds or more, since with fewer the test cannot reject.
    """
    if m.get("diverged_a", []) != m.get("diverged_b", []):
        return "no"
    if m["curve_p"] < ALPHA / 2 or m["final_p"] < ALPHA / 2:
        return "no"
    wide = SPREAD_GAP * m["seed_std"]
    if m["seed_std"] > 0 and max(abs(m["curve_gap"]), abs(m["final_gap"])) > wide:
        return "no"
    return "yes" if m["seeds"] >= MIN_SEEDS else "too few seeds"


def within_noise(m: dict) -> bool:
    """verdict(m) == 'yes'."""
    return verdict(m) == "yes"


def diverged(records: list[dict]) -> list[int]:
    """Seeds a run logged as non-finite (frozen after a NaN or Inf)."""
    return sorted({int(r["seed"]) for r in records if r.get("nonfinite")})


def read_run(run_dir) -> list[dict]:
    """metrics.jsonl of a run directory (a missing or empty one is a UserError)."""
    return summarize.read_metrics(Path(run_dir) / "metrics.jsonl")


def compare_runs(run_a, run_b, metrics=METRICS) -> dict[str, dict]:
    """metric -> compare_metric of two run directories (metrics neither run logged are left out)."""
    return compare_records(read_run(run_a), read_run(run_b), metrics)


def compare_records(rec_a: list[dict], rec_b: list[dict], metrics=METRICS) -> dict[str, dict]:
    """compare_runs on metrics records already read; seeds that diverged in either run are left out of the
    paired statistics and named in each metric's diverged_a / diverged_b."""
    out = {}
    div_a, div_b = diverged(rec_a), diverged(rec_b)
    keep = lambda c: {s: v for s, v in c.items() if s not in div_a and s not in div_b}  # noqa: E731
    for key in metrics:
        seeds, steps, a_SxT, b_SxT = paired(keep(curves(rec_a, key)), keep(curves(rec_b, key)))
        if seeds and steps:
            out[key] = {**compare_metric(a_SxT, b_SxT, steps), "diverged_a": div_a, "diverged_b": div_b}
    if not out:
        raise UserError("the two runs share no seed and step with a logged metric")
    return out


def format_table(result: dict[str, dict]) -> str:
    """Markdown: one row per metric, and whether B stays within A's seed noise."""
    lines = [
        "| metric | seeds | steps | largest mean gap B−A (at step) | seed std (A) | curve gap (p) "
        "| final A | final B | final gap (p) | within noise |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, m in result.items():
        lines.append(
            f"| {key} | {m['seeds']} | {m['steps']} (to {m['last_step']}) | {m['max_mean_gap']:+.4f} "
            f"({m['max_gap_step']}) "
            f"| {m['seed_std']:.4f} | {m['curve_gap']:+.4f} ({m['curve_p']:.3f}) | {m['final_a']:.4f} | "
            f"{m['final_b']:.4f} "
            f"| {m['final_gap']:+.4f} ({m['final_p']:.3f}) | {verdict(m)} |"
        )
    first = next(iter(result.values()))
    for side in ("a", "b"):
        if first.get(f"diverged_{side}"):
            lines.append(
                f"\nDiverged (non-finite) in {side.upper()}: seeds {', '.join(map(str, first[f'diverged_{side}']))} "
                "(left out of the paired statistics)."
            )
    if first["seeds"] < MIN_SEEDS:
        lines.append(
            f"\nWith {first['seeds']} seeds the sign-flip test cannot reach p < {ALPHA / 2} (it needs "
            f"{MIN_SEEDS}): 'too few seeds' unless a gap is wider than {SPREAD_GAP:g} seed std."
        )
    return "\n".join(lines)


def plot(rec_a: list[dict], rec_b: list[dict], out_dir: Path, labels=("A", "B")) -> list[Path]:
    """compare.png/.pdf: per metric, each run's mean curve over seeds with its min-max band."""
    from sgjax.analysis.report import figures

    rec = [rec_a, rec_b]
    fig, axes = figures.new_figure(len(METRICS))
    for ax, key in zip(axes, METRICS):
        for records, label, color, style in zip(rec, labels, ("tab:blue", "tab:orange"), ("-", "--")):
            c = curves(records, key)
            steps = sorted(set().union(*c.values())) if c else []
            v_SxT = np.array([[c[s].get(t, np.nan) for t in steps] for s in c]) if steps else np.zeros((0, 0))
            if v_SxT.size:
                ax.plot(steps, np.nanmean(v_SxT, 0), style, color=color, label=f"{label} (mean of {len(c)})")
                ax.fill_between(steps, np.nanmin(v_SxT, 0), np.nanmax(v_SxT, 0), color=color, alpha=0.2, lw=0)
        ax.set(title=key, xlabel="step")
        if ax.lines:  # a metric neither run logged stays an empty panel
            ax.legend(fontsize=8)
    out_dir.mkdir(parents=True, exist_ok=True)
    return figures.save(fig, out_dir, "compare")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", help="the reference run directory (e.g. fp32)")
    parser.add_argument("run_b", help="the run to compare with it (same seeds, e.g. TF32)")
    parser.add_argument("--out", help="also write compare.md and compare.png/.pdf to this directory")


def run(args) -> int:
    rec_a, rec_b = read_run(args.run_a), read_run(args.run_b)
    result = compare_records(rec_a, rec_b)
    table = f"A = {args.run_a}\nB = {args.run_b}\n\n{format_table(result)}\n"
    print(table)
    if args.out:
        out = Path(args.out)
        paths = plot(rec_a, rec_b, out, labels=(Path(args.run_a).name, Path(args.run_b).name))
        (out / "compare.md").write_text(table)
        print(f"wrote {out / 'compare.md'} and {', '.join(str(p) for p in paths)}")
    return 0
