"""Time and memory of one long string's probe (chart + sparsity) on the paper's model, as `sgjax probe` plans it.

    .venv/bin/python experiments/performance/probe/bench_probe_long.py [--tokens 704] [--layers 6] [--out FILE.json]

One member, one string of `--tokens` positions (SOS + words, a padded width as the probe makes them): the row
chunk and member mode `run.batch_plan` picks, compile time, one timed call, XLA's temporary buffer size and the
process's peak resident memory. Run it in a fresh process per width: peak RSS is the process's whole life.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from sgjax.analysis.probe import run as R
from sgjax.analysis.probe import tree_projection as TP
from sgjax.config import ModelConfig
from sgjax.core import model as M


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tokens", type=int, default=704, help="padded width T (the 694-word string of a run's sample: 704)"
    )
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--out", help="write the result here as JSON")
    args = ap.parse_args()
    cfg = ModelConfig(vocab_size=43, n_layers=args.layers, d_model=512, n_heads=8, d_ff=2048, dropout=0.0)
    params = M.init_params(cfg, jax.random.PRNGKey(0))
    t = args.tokens
    tok = np.zeros((1, t), np.int32)
    tok[0, 0] = 42  # SOS, then words (Dyck ids 1..40), the last few positions padding
    tok[0, 1 : t - 5] = np.random.default_rng(0).integers(1, 41, t - 6)
    row_chunk, one_by_one = R.batch_plan(cfg, 1, 1, t)
    with jax.default_matmul_precision("highest"):
        t0 = time.perf_counter()
        compiled = (
            jax.jit(R.member_batch, static_argnums=(0, 1, 4))
            .lower(cfg, False, params, jnp.asarray(tok), row_chunk)
            .compile()
        )
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, jnp.asarray(tok)))
        run_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
        f"jax {jax.__version__}",
        "tokens": t,
        "layers": args.layers,
        "packed_rows": int(TP.packed_layout(t)[0].shape[0]),
        "row_chunk": row_chunk,
        "compile_s": round(compile_s, 2),
        "run_s": round(run_s, 2),
        "xla_temp_gb": round(mem.temp_size_in_bytes / 1e9, 3) if mem is not None else None,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }
    print(json.dumps(out))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
