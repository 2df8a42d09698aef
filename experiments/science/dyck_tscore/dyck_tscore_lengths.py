"""Dyck tscore string by string: how it grows with length, and what a 500-string draw of the split gives.

    .venv/bin/python experiments/science/dyck_tscore/dyck_tscore_lengths.py RUN_DIR \
        --step 10000 [--max-tokens 400] [--out FILE.json]
    # analyse again, no probing
    .venv/bin/python experiments/science/dyck_tscore/dyck_tscore_lengths.py RUN_DIR --step 10000 --records FILE.json

Dyck's tscore is a sum over a string's nodes, so the probe sample's lengths set its scale (D24).
This probes one member (the run's first seed) on a 500-string draw of the training split, as `sgjax probe` draws
it, keeping the strings under --max-tokens, and records every string's score. From those it estimates the gain
per node in length bins, the tscore an average draw of the whole split would have (strings past the longest
bin at the last bin's gain), the spread of 500-string draws, and the prediction for the probe's own draw and for a
larger one (`--larger-sample`, which `sgjax probe --sample N` checks); beside them, the spread of the paper's seeds
at the same step, depth by depth. Independent 500-string draws would spread every depth's seeds at least as widely
as the draws alone; seeds that all shared one draw need not.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from sgjax.analysis import paper
from sgjax.analysis.probe import run as R
from sgjax.analysis.probe import tree_projection as TP
from sgjax.data import vocab_for
from sgjax.run import checkpoint, loop

BINS = [4, 10, 20, 50, 100, 200, 400]  # per-node gain per bin [lo, hi) of string lengths


def per_string(run_dir: str, step: int, sents: list[list[str]], max_tokens: int) -> list[dict]:
    """{n, tscore, tscore_sampled} of every string of `sents` under max_tokens (the run's first seed)."""
    cfg = checkpoint.load_config(run_dir)
    keep = [w for w in sents if len(w) < max_tokens]
    seeds, params_S = checkpoint.load_params(run_dir, step)
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x[0]), params_S)
    out = []
    with jax.default_matmul_precision("highest"):
        for b in R.make_batches(keep, vocab_for(cfg.task), 32):
            row_chunk, _ = R.batch_plan(cfg.model, 1, *b.tokens_BxT.shape)
            o = jax.device_get(R._member_batch_jit(cfg.model, False, params, jnp.asarray(b.tokens_BxT), row_chunk))
            real = b.index >= 0
            _, e, s = TP.decode(o["chart_BxNxN"][real], b.lengths_B[real], rng=np.random.default_rng(0))
            out += [
                {"n": int(n), "tscore": float(x), "tscore_sampled": float(y)}
                for n, x, y in zip(b.lengths_B[real], e, s)
            ]
    return out


def gains_by_length(records: list[dict]) -> dict:
    """{bin: gain per node}: the records' summed tscore over their summed nodes, bin by bin of string length."""
    n = np.array([r["n"] for r in records])
    e = np.array([r["tscore"] for r in records])
    gains = {}
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        k = (n >= lo) & (n < hi)
        gains[f"{lo}-{hi - 1}"] = round(float(e[k].sum() / (n[k] - 1).sum()), 4) if k.any() else None
    return gains


def score_by_length(gains: dict, longest: int) -> np.ndarray:
    """score_M: a string of m tokens' expected tscore, (m - 1) × its bin's gain per node (past the last
    bin: the last).
    """
    rates = [g for g in gains.values() if g is not None]
    gain_of = lambda m: rates[min(int(np.searchsorted(BINS, m, side="right")) - 1, len(rates) - 1)]  # noqa: E731
    return np.array([gain_of(max(m, BINS[0])) * (m - 1) for m in range(longest + 1)])


def draw_prediction(score: np.ndarray, split_lengths: np.ndarray, draw_lengths: np.ndarray, sample: int) -> dict:
    """Expected tscore of a `sample`-string draw of the split, its spread, and the prediction for one draw."""
    rng = np.random.default_rng(0)
    draws = np.array([score[rng.choice(split_lengths, sample, replace=False)].mean() for _ in range(2000)])
    return {
        "expected_over_draws": round(float(draws.mean()), 3),
        "draws_sd": round(float(draws.std()), 3),
        "draws_p10_p90": [round(float(x), 3) for x in np.percentile(draws, [10, 90])],
        "predicted_for_the_probe_draw": round(float(score[draw_lengths].mean()), 3),
        "draw_mean_length": round(float(draw_lengths.mean()), 1),
    }


def ratio_over_draws(mine: np.ndarray, other: np.ndarray, split_lengths: np.ndarray, sample: int) -> dict:
    """One checkpoint's tscore over another's (score_by_length each) on the same draws: how far the draw moves it."""
    rng = np.random.default_rng(0)
    r = np.array(
        [
            mine[d].mean() / other[d].mean()
            for d in (rng.choice(split_lengths, sample, replace=False) for _ in range(4000))
        ]
    )
    return {
        "mean": round(float(r.mean()), 3),
        "sd": round(float(r.std()), 3),
        "min": round(float(r.min()), 3),
        "p1_p10_p90_p99": [round(float(x), 3) for x in np.percentile(r, [1, 10, 90, 99])],
    }


def paper_seeds(step: int, draw_cv: float) -> dict:
    """{depth: {n, mean, sd, draws_sd, p_own_draws}}: the paper's Dyck tscores at `step`, seed to seed.

    draws_sd: the sd one 500-string draw alone would give that depth's mean (draw_cv × mean, the coefficient of
    variation measured here); p_own_draws: how often n seeds, each on its own draw, spread as little as the paper's
    (simulated, draw noise only; seeds differing as models would spread them more, so it is an upper bound).
    """
    out, rng = {}, np.random.default_rng(0)
    for depth in paper.depths("dyck"):
        curves = paper.probe_seed_curves("dyck", depth)
        if curves is None or step not in curves["step"]:
            continue
        x = np.array([v for v in curves["tscore"][curves["step"].index(step)] if v is not None])
        if len(x) > 1:
            sd, draws_sd = float(x.std(ddof=1)), draw_cv * float(x.mean())
            sims = rng.normal(0.0, draws_sd, (100_000, len(x))).std(axis=1, ddof=1)
            out[str(depth)] = {
                "n": len(x),
                "mean": round(float(x.mean()), 3),
                "sd": round(sd, 3),
                "draws_sd": round(draws_sd, 3),
                "p_own_draws": round(float((sims <= sd).mean()), 4),
            }
    return out


def fisher_p(ps: list[float]) -> float:
    """Fisher's combined p of independent p-values: P(chi2 with 2k dof >= -2 sum ln p), closed form for even dof."""
    half = -sum(np.log(max(p, 1e-12)) for p in ps)  # the statistic over 2
    return float(np.exp(-half) * sum(half**i / np.prod(np.arange(1, i + 1)) for i in range(len(ps))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--step", type=int, required=True)
    ap.add_argument("--max-tokens", type=int, default=400, help="probe strings under this (the longest cost minutes)")
    ap.add_argument("--sample", type=int, default=500)
    ap.add_argument(
        "--larger-sample", type=int, default=2000, help="also predict a draw of this many (`sgjax probe --sample N`)"
    )
    ap.add_argument("--records", help="take the per-string records of this earlier output instead of probing")
    ap.add_argument(
        "--against", help="another checkpoint's output of this script: the ratio of tscores on the same draws"
    )
    ap.add_argument("--out", help="write records and analysis here as JSON")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = checkpoint.load_config(args.run_dir)
    splits = loop.load_data(cfg)
    sents = R.sample_sentences(cfg, args.sample, 42, splits=splits)  # the probe's default draw: every length
    if args.records:  # the probing time stays the earlier run's
        with open(args.records) as f:
            earlier = json.load(f)
        records, seconds = earlier["records"], earlier["seconds"]
    else:
        records = per_string(args.run_dir, args.step, sents, args.max_tokens)
        seconds = round(time.perf_counter() - t0)
    split_lengths = np.array([len(l.split()) for l in splits["train"].lines])
    lengths_of = lambda draw: np.array([len(w) for w in draw])  # noqa: E731
    gains = gains_by_length(records)
    score = score_by_length(gains, int(split_lengths.max()))
    result = {
        "run_dir": args.run_dir,
        "step": args.step,
        "max_tokens": args.max_tokens,
        "seconds": seconds,
        "gain_per_node": gains,
        "measured_mean_under_max_tokens": round(float(np.mean([r["tscore"] for r in records])), 4),
        "strings": len(records),
        **draw_prediction(score, split_lengths, lengths_of(sents), args.sample),
        "split_mean_length": round(float(split_lengths.mean()), 1),
        "records": records,
    }
    larger = R.sample_sentences(cfg, args.larger_sample, 42, splits=splits)
    result[f"draw_of_{args.larger_sample}"] = draw_prediction(
        score, split_lengths, lengths_of(larger), args.larger_sample
    )
    if args.against:
        with open(args.against) as f:
            other = json.load(f)
        other_score = score_by_length(other["gain_per_node"], int(split_lengths.max()))
        result["against"] = {
            "run_dir": other["run_dir"],
            "step": other["step"],
            "ratio_over_draws": ratio_over_draws(score, other_score, split_lengths, args.sample),
        }
    seeds = paper_seeds(args.step, result["draws_sd"] / result["expected_over_draws"])
    result["paper_seeds_at_step"] = seeds
    result["p_own_draws_all_depths"] = round(fisher_p([d["p_own_draws"] for d in seeds.values()]), 4)
    print(json.dumps({k: v for k, v in result.items() if k != "records"}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
