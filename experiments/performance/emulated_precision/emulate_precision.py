"""Run any `sgjax` command with every fp32 matmul's operands rounded as a GPU's TF32 or bf16 would.

    python experiments/performance/emulated_precision/emulate_precision.py MODE [sgjax arguments ...]
    python experiments/performance/emulated_precision/emulate_precision.py tf32 train --task question --preset smoke \
        --out runs/tf32
    python experiments/performance/emulated_precision/emulate_precision.py --check
        # the rounding, on a matmul and its gradient

Is TF32 faithful? The question needs a GPU to time, but not to answer: a TF32 tensor-core
product reads each fp32 operand with its mantissa cut from 23 bits to 10 and accumulates in fp32. XLA's
CPU backend ignores `train.matmul_precision` (docs/performance.md), so this script emulates it
instead: it replaces the CPU lowering of `dot_general` by one that rounds both fp32 operands first.
Every product of the compiled program rounds -- the forward's, the backward's (which JAX derives as
more dot_generals), inside scans and vmaps alike -- and nothing else changes.

MODE:
  tf32      mantissa truncated to 10 bits (round toward zero): what a tensor core does with fp32
            bits it is handed unconverted (cuBLAS, and XLA's Triton gemms); the coarser, biased case
  tf32_rn   10 bits, round to nearest even (a kernel that converts with cvt.rna first)
  bf16      7 bits, round to nearest even (XLA's f32 -> bf16 conversion)
  null      22 bits, round to nearest even: a one-bit nudge, about the size of the noise a GPU's own
            summation order adds, without a bias; trajectories still part, so its comparison with
            fp32 shows what chaos alone does to `sgjax compare` (a control arm)
  fp32      no rounding: the same process and code path

Accumulation stays fp32, as on the GPU; the order of the sums is the CPU's, not cuBLAS's. A run
made this way records matmul_precision=highest in its config (it is an fp32 program with rounded
inputs); the mode is written to `emulated_precision.txt` in the run's --out directory.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax._src.interpreters import mlir  # the lowering registry: no public API replaces a primitive's rule
from jax._src.lax import lax as lax_internal

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

# Mantissa bits kept (of fp32's 23) and whether to round to nearest even (else toward zero).
MODES = {"tf32": (10, False), "tf32_rn": (10, True), "bf16": (7, True), "null": (22, True), "fp32": (23, False)}


def round_mantissa(x_f32: jax.Array, bits: int, nearest: bool) -> jax.Array:
    """fp32 values with the mantissa cut to `bits` bits, to nearest even or toward zero."""
    drop = 23 - bits
    if drop == 0:
        return x_f32
    u = lax.bitcast_convert_type(x_f32, jnp.uint32)
    if nearest:  # add just under half an ulp, plus the kept lsb, so ties go to even
        lsb = (u >> drop) & jnp.uint32(1)
        u = u + jnp.uint32((1 << (drop - 1)) - 1) + lsb
    u = u & jnp.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)
    return lax.bitcast_convert_type(u, jnp.float32)


def install(mode: str) -> Callable[[], None]:
    """Make every fp32 dot_general compiled for the CPU from now on round its operands as `mode` says.

    Returns a function that puts JAX's own rule back (and drops programs compiled meanwhile)."""
    bits, nearest = MODES[mode]
    fp32 = np.dtype(np.float32)
    rounder = mlir.lower_fun(lambda x: round_mantissa(x, bits, nearest), multiple_results=False)

    def rounded(ctx, v, aval):
        if aval.dtype != fp32 or bits == 23:
            return v
        (out,) = rounder(ctx.replace(avals_in=[aval], avals_out=[aval]), v)
        return out

    def lower(ctx, lhs, rhs, **params):
        lhs_aval, rhs_aval = ctx.avals_in
        lhs, rhs = rounded(ctx, lhs, lhs_aval), rounded(ctx, rhs, rhs_aval)
        return lax_internal._dot_general_lower(ctx, lhs, rhs, platform="cpu", **params)

    cpu_rules = mlir._platform_specific_lowerings["cpu"]
    prim = lax_internal.dot_general_p
    saved = cpu_rules.get(prim)
    mlir.register_lowering(prim, lower, platform="cpu")
    jax.clear_caches()  # programs compiled before would otherwise be reused unrounded

    def restore() -> None:
        if saved is None:
            cpu_rules.pop(prim, None)
        else:
            cpu_rules[prim] = saved
        jax.clear_caches()

    return restore


@contextlib.contextmanager
def emulated(mode: str) -> Iterator[None]:
    """Inside the block, CPU products round their operands as `mode` says; JAX's rule is back after."""
    restore = install(mode)
    try:
        yield
    finally:
        restore()


def check(mode: str = "tf32") -> None:
    """Assert that a jitted product and its gradients now equal fp32 products of rounded operands."""
    bits, nearest = MODES[mode]
    ka, kb = jax.random.split(jax.random.key(0))
    a, b = jax.random.normal(ka, (64, 96)), jax.random.normal(kb, (96, 32))
    r = lambda x: np.asarray(round_mantissa(jnp.asarray(x), bits, nearest))  # noqa: E731
    exact = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    g = np.ones((64, 32), np.float32) * np.float32(1.0001)  # a cotangent with low mantissa bits set
    with emulated(mode):
        got = np.asarray(jax.jit(jnp.matmul)(a, b))
        grad_a = np.asarray(jax.jit(jax.grad(lambda a: jnp.sum((a @ b) * g)))(a))
    want = r(a).astype(np.float64) @ r(b).astype(np.float64)
    assert np.allclose(got, want, rtol=1e-5, atol=1e-5), "forward product is not the rounded one"
    err_got, err_fp32 = np.abs(got - exact).max(), np.abs(np.asarray(a) @ np.asarray(b) - exact).max()
    assert err_got > 10 * err_fp32, f"rounding left no trace ({err_got:.2e} vs fp32 {err_fp32:.2e})"
    assert np.allclose(grad_a, r(g).astype(np.float64) @ r(b).T.astype(np.float64), rtol=1e-5, atol=1e-5), (
        "backward product is not the rounded one"
    )
    print(f"{mode}: forward and backward products round their operands (max error {err_got:.2e}, fp32 {err_fp32:.2e})")


def main(argv: list[str]) -> int:
    """Install MODE's rounding, note it in the run directory, and run the sgjax command."""
    if argv[:1] == ["--check"]:
        for mode in ("tf32", "tf32_rn", "bf16"):
            check(mode)
        return 0
    if not argv or argv[0] not in MODES:
        print(__doc__, file=sys.stderr)
        return 2
    mode, rest = argv[0], argv[1:]
    install(mode)
    if "--out" in rest:
        out = Path(rest[rest.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "emulated_precision.txt").write_text(
            f"{mode}: {MODES[mode][0]} mantissa bits, {'nearest even' if MODES[mode][1] else 'toward zero'}\n"
        )
    from sgjax.cli import main as sgjax_main

    return sgjax_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
