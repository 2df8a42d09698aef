"""The train step's matmul shapes, timed alone: XLA against torch and numpy's BLAS, in GFLOP/s.

    python experiments/performance/matmul_shapes/matmul_shapes.py --seeds 10 \
        --out experiments/performance/matmul_shapes/results/matmul_shapes_cpu.json

For each (K, N) of the model's projections (d x d for q/k/v/o, d x d_ff and d_ff x d for the FFN) and
the M = 8 x 36 positions of a step, three products per member, batched over S members as the step
runs them: forward x·W ([M,K]·[K,N]), input gradient dy·Wᵀ, weight gradient xᵀ·dy (contracting
over the M positions). Each is jitted alone; implementations run alternately, best and median of
`--rounds`. torch and numpy are measured when importable.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

SHAPES = ((512, 512), (512, 2048), (2048, 512))  # (K, N): attention projections, FFN in, FFN out
POSITIONS = 8 * 36


def products(s: int, k: int, n: int) -> dict:
    """name -> (operand shapes, einsum, the same with numpy's matmul) of one layer's three products."""
    m = POSITIONS
    t = lambda a: a.transpose(0, 2, 1)  # noqa: E731
    return {
        "forward x.W": (((s, m, k), (s, k, n)), "smk,skn->smn", lambda a, b: a @ b),
        "input grad dy.W^T": (((s, m, n), (s, k, n)), "smn,skn->smk", lambda a, b: a @ t(b)),
        "weight grad x^T.dy": (((s, m, k), (s, m, n)), "smk,smn->skn", lambda a, b: t(a) @ b),
    }


def timers(spec, np_fn, operands: list[np.ndarray]) -> dict:
    """Implementation name -> a function that runs the product once and waits for it."""
    out = {}
    jf = jax.jit(lambda a, b: jnp.einsum(spec, a, b))
    ja = [jnp.asarray(x) for x in operands]
    out["xla"] = lambda: jax.block_until_ready(jf(*ja))
    try:
        import torch

        ta = [torch.from_numpy(x) for x in operands]
        out["torch"] = lambda: torch.einsum(spec, *ta)
    except ImportError:
        pass
    out["numpy"] = lambda: np_fn(*operands)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10, help="population size S")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--out", help="write the results to this .json")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for k, n in SHAPES:
        for name, (shapes, spec, np_fn) in products(args.seeds, k, n).items():
            operands = [rng.standard_normal(sh, dtype=np.float32) for sh in shapes]
            fns = timers(spec, np_fn, operands)
            for f in fns.values():
                f()  # compile / warm up
            times = {impl: [] for impl in fns}
            for _ in range(args.rounds):
                for impl, f in fns.items():
                    t0 = time.perf_counter()
                    f()
                    times[impl].append(time.perf_counter() - t0)
            gflop = 2 * args.seeds * POSITIONS * k * n / 1e9
            row = {"K": k, "N": n, "product": name, "gflop": gflop}
            row.update({f"{impl}_best_gflops": gflop / min(t) for impl, t in times.items()})
            row.update({f"{impl}_median_gflops": gflop / float(np.median(t)) for impl, t in times.items()})
            rows.append(row)
            print(
                f"K{k:5d} N{n:5d} {name:20s} "
                + "  ".join(f"{impl} {gflop / min(t):5.0f}/{gflop / np.median(t):5.0f}" for impl, t in times.items())
                + "  GFLOP/s best/median"
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "command": "python experiments/performance/matmul_shapes/matmul_shapes.py --seeds %d --rounds %d"
                    % (args.seeds, args.rounds),
                    "jax": jax.__version__,
                    "device": str(jax.devices()[0]),
                    "results": rows,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
