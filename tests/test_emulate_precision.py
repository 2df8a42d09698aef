"""experiments/performance/emulated_precision/emulate_precision.py: the TF32/bf16 emulation that docs/performance.md's
fidelity check rests on."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

PATH = (
    Path(__file__).resolve().parents[1] / "experiments" / "performance" / "emulated_precision" / "emulate_precision.py"
)


@pytest.fixture(scope="module")
def emu():
    spec = importlib.util.spec_from_file_location("emulate_precision", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("bits", [10, 7])
def test_round_mantissa_matches_float64_rounding(emu, bits):
    ulp = 2.0**-bits  # the spacing of the kept mantissa on [1, 2)
    x = 1.0 + np.arange(0, 2**14, 7, dtype=np.float64) * 2.0**-23  # every low-bit pattern, ties included
    x_f32 = x.astype(np.float32)
    nearest = np.asarray(emu.round_mantissa(jnp.asarray(x_f32), bits, True), np.float64)
    toward_zero = np.asarray(emu.round_mantissa(jnp.asarray(-x_f32), bits, False), np.float64)
    np.testing.assert_array_equal(nearest, np.round(x / ulp) * ulp)  # np.round: ties to even
    np.testing.assert_array_equal(toward_zero, -np.floor(x / ulp) * ulp)


@pytest.mark.parametrize("mode", ["tf32", "bf16"])
def test_products_and_gradients_round_and_the_rule_comes_back(emu, mode):
    emu.check(mode)  # asserts the forward and backward products inside the block are the rounded ones
    a = jax.random.normal(jax.random.key(1), (32, 48))
    b = jax.random.normal(jax.random.key(2), (48, 16))
    exact = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    assert np.abs(np.asarray(jax.jit(jnp.matmul)(a, b)) - exact).max() < 1e-4  # fp32 again after the block
