"""Benchmark the tree-projection fast path (one forward per start) against per-span forwards.

    .venv/bin/python experiments/performance/probe/bench_probe.py [--sentences 8] [--words 12] [--models tiny,paper6]

Sentences/second of one member's SCI chart, compile time excluded (one warm-up call each).
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from sgjax.analysis.probe import tree_projection as TP
from sgjax.config import ModelConfig
from sgjax.core import model as M

MODELS = {
    "tiny": ModelConfig(vocab_size=71, n_layers=2, d_model=32, n_heads=4, d_ff=64, dropout=0.0),
    "paper6": ModelConfig(vocab_size=71, n_layers=6, d_model=512, n_heads=8, d_ff=2048, dropout=0.0),
}


def sentences(b: int, n: int) -> np.ndarray:
    """b random sentences of n words: [SOS] w1..wn."""
    rng = np.random.default_rng(0)
    tok = np.zeros((b, n + 1), np.int32)
    tok[:, 0] = 70
    tok[:, 1:] = rng.integers(1, 68, (b, n))
    return tok


def timed(fn, repeats: int = 2) -> float:
    """Best wall time of `fn()` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=8)
    ap.add_argument("--words", type=int, default=12, help="words per sentence (QF declaratives: ~5-17)")
    ap.add_argument("--models", default="tiny,paper6")
    ap.add_argument("--span-batch", type=int, default=256, help="direct path: spans per forward (the original's 256)")
    args = ap.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}, "
        f"{args.sentences} sentences x {args.words} words"
    )
    tok = sentences(args.sentences, args.words)
    fast = jax.jit(TP.charts_fast, static_argnums=(0, 4))
    print("model   | fast packed sent/s | fast unpacked sent/s | direct sent/s | speed-up (packed/direct) | max |Δc|")
    for name in args.models.split(","):
        cfg = MODELS[name]
        params = M.init_params(cfg, jax.random.PRNGKey(0))
        with jax.default_matmul_precision("highest"):
            t_fast = timed(lambda: jax.block_until_ready(fast(cfg, params, jnp.asarray(tok), None, True)), repeats=5)
            t_unp = timed(lambda: jax.block_until_ready(fast(cfg, params, jnp.asarray(tok), None, False)), repeats=5)
            t_direct = timed(lambda: TP.charts_direct(cfg, params, tok, span_batch=args.span_batch), repeats=1)
            diff = np.nanmax(
                np.abs(
                    np.asarray(fast(cfg, params, jnp.asarray(tok), None, True))
                    - TP.charts_direct(cfg, params, tok, args.span_batch)
                )
            )
        b = args.sentences
        print(
            f"{name:7s} | {b / t_fast:18.1f} | {b / t_unp:20.1f} | {b / t_direct:13.1f} | "
            f"{t_direct / t_fast:23.1f}x | {diff:.1e}"
        )


if __name__ == "__main__":
    main()
