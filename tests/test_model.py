"""The TransformerLM: exact parameter count, causality, PyTorch-style initialization, masks."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax.config import ModelConfig
from sgjax.core import model, ops
from tests.conftest import TINY_MODEL


@pytest.mark.parametrize(
    "depth,count", [(2, 6_373_447), (4, 12_674_119), (6, 18_974_791), (8, 25_275_463), (10, 31_576_135)]
)
def test_param_count_equals_original(depth, count):
    cfg = ModelConfig(vocab_size=71, n_layers=depth)
    shapes = jax.eval_shape(lambda k: model.init_params(cfg, k), jax.random.key(0))
    assert model.param_count(shapes) == count


def test_init_std_matches_pytorch():
    cfg = ModelConfig(vocab_size=71, n_layers=2)
    p = model.init_params(cfg, jax.random.key(0))
    d, f, v = 512, 2048, 71
    u = lambda bound: bound / math.sqrt(3)  # std of U(-b, b)
    expected = {
        "embed": u(math.sqrt(6 / (v + d))),
        "out_w": u(math.sqrt(6 / (v + d))),
        "out_b": u(1 / math.sqrt(d)),
        "layers/q": u(math.sqrt(6 / (2 * d))),
        "layers/k": u(math.sqrt(6 / (2 * d))),
        "layers/v": u(math.sqrt(6 / (2 * d))),
        "layers/o": u(math.sqrt(6 / (2 * d))),
        "layers/ff1_w": u(math.sqrt(2) * math.sqrt(6 / (d + f))),
        "layers/ff1_b": u(1 / math.sqrt(d)),
        "layers/ff2_w": u(math.sqrt(6 / (d + f))),
        "layers/ff2_b": u(1 / math.sqrt(f)),
    }
    for name, std in expected.items():
        node = p
        for part in name.split("/"):
            node = node[part]
        assert abs(float(np.std(node)) / std - 1) < 0.05, name
    assert np.all(np.asarray(p["layers"]["norm1"]["scale"]) == 1) and np.all(
        np.asarray(p["layers"]["norm2"]["bias"]) == 0
    )
    # Each layer is initialized on its own: the two stacked layers differ.
    assert not np.allclose(p["layers"]["q"][0], p["layers"]["q"][1])


def test_causality_future_tokens_never_change_the_past():
    p = model.init_params(TINY_MODEL, jax.random.key(1))
    tokens = jnp.array([[70, 3, 4, 5, 6, 7, 8]])
    changed = tokens.at[0, 4:].set(jnp.array([9, 10, 11]))
    a = model.forward(TINY_MODEL, p, tokens)
    b = model.forward(TINY_MODEL, p, changed)
    np.testing.assert_allclose(a[0, :4], b[0, :4], atol=1e-6)
    assert not np.allclose(a[0, 4:], b[0, 4:], atol=1e-4)


def test_padding_is_invisible():
    p = model.init_params(TINY_MODEL, jax.random.key(1))
    short = model.forward(TINY_MODEL, p, jnp.array([[70, 3, 4, 5]]))
    padded = model.forward(TINY_MODEL, p, jnp.array([[70, 3, 4, 5, 0, 0]]))
    np.testing.assert_allclose(short[0], padded[0, :4], atol=1e-5)


def test_internals_and_allowed_mask():
    p = model.init_params(TINY_MODEL, jax.random.key(2))
    tokens = jnp.array([[70, 3, 4, 5, 6]])
    logits, aux = model.forward(TINY_MODEL, p, tokens, return_internals=True)
    assert aux["hidden_LxBxTxD"].shape == (2, 1, 5, 32)
    attn = np.asarray(aux["attn_LxBxHxTxT"])
    assert attn.shape == (2, 1, 4, 5, 5)
    np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(attn[0, 0, 0], k=1) == 0)
    # Only SOS and self visible: position 3's output must not depend on tokens 1..2.
    allowed = jnp.eye(5, dtype=bool) | (jnp.arange(5) == 0)[None, :]
    a = model.forward(TINY_MODEL, p, tokens, allowed_BxTxT=allowed[None])
    b = model.forward(TINY_MODEL, p, tokens.at[0, 1:3].set(9), allowed_BxTxT=allowed[None])
    np.testing.assert_allclose(a[0, 3:], b[0, 3:], atol=1e-5)


def test_dropout_only_in_training_mode():
    p = model.init_params(TINY_MODEL, jax.random.key(3))
    tokens = jnp.array([[70, 3, 4, 5]])
    e1, e2 = model.forward(TINY_MODEL, p, tokens), model.forward(TINY_MODEL, p, tokens)
    np.testing.assert_array_equal(e1, e2)
    t = model.forward(TINY_MODEL, p, tokens, dropout_key=jax.random.key(0))
    assert not np.allclose(e1, t)


def test_sinusoidal_table():
    pe = model.sinusoidal_table(10, 8)
    assert pe[0, 0] == 0 and pe[0, 1] == 1
    np.testing.assert_allclose(pe[3, 2], math.sin(3 / 10000 ** (2 / 8)), rtol=1e-6)
    np.testing.assert_allclose(pe[3, 3], math.cos(3 / 10000 ** (2 / 8)), rtol=1e-6)


@pytest.mark.parametrize("draw", ["counter", "packed", "per_element"])
@pytest.mark.parametrize("shape", [(200_000,), (7, 333, 87)])  # the second has an odd element count
def test_dropout_keeps_the_expectation(draw, shape):
    drop = ops.Dropout(0.1, deterministic=False, draw=draw)
    y = np.asarray(drop.apply({}, jnp.ones(shape), rngs={"dropout": jax.random.key(0)})).reshape(-1)
    kept = y != 0
    assert abs(kept.mean() - 0.9) < 0.003
    assert abs(y.mean() - 1.0) < 0.004
    np.testing.assert_allclose(y[kept], 65536 / 58982, rtol=1e-6)
    # Neighbours share a threefry block in the counter and packed draws: their masks must still be uncorrelated.
    assert abs(np.corrcoef(kept[0:-1:2], kept[1::2])[0, 1]) < 0.01
    assert abs(np.corrcoef(kept[0:-3:4], kept[2:-1:4])[0, 1]) < 0.01


@pytest.mark.parametrize("bits16", [ops.counter_bits16, ops.packed_bits16])
def test_16_bit_draws_differ_by_key_and_cover_16_bits(bits16):
    a = np.asarray(bits16(jax.random.key(0), (50_001,)))
    b = np.asarray(bits16(jax.random.key(1), (50_001,)))
    assert a.dtype == np.uint16 and a.shape == (50_001,)
    assert (a != b).mean() > 0.99
    assert a.min() < 100 and a.max() > 65_435 and abs(a.mean() / 65_535 - 0.5) < 0.01


def test_counter_draws_do_not_move_with_the_array_length():
    """A packed row's token keeps its mask when the row is longer (an unpadded member trains the same at any S)."""
    key = jax.random.key(5)
    short, long = (np.asarray(ops.counter_bits16(key, (1, p, 9))) for p in (13, 40))
    np.testing.assert_array_equal(long[:, :13], short)
    short, long = (np.asarray(ops.counter_bits16(key, (1, 3, p, p))) for p in (13, 40))  # packed attention
    np.testing.assert_array_equal(long[:, :, :13, :13], short)
    assert not np.array_equal(
        np.asarray(ops.packed_bits16(key, (1, 40, 9)))[:, :13], np.asarray(ops.packed_bits16(key, (1, 13, 9)))
    )


def test_layer_loop_and_scan_are_the_same_function():
    """scan_layers only changes how XLA runs the layers: same params, logits, internals and gradients."""
    scan_cfg = dataclasses.replace(TINY_MODEL, scan_layers=True)
    loop_cfg = dataclasses.replace(TINY_MODEL, scan_layers=False)
    p = model.init_params(loop_cfg, jax.random.key(4))
    assert jax.tree_util.tree_structure(p) == jax.tree_util.tree_structure(
        model.init_params(scan_cfg, jax.random.key(4))
    )
    tokens = jnp.array([[70, 3, 4, 5, 6, 0]])
    la, aux_a = model.forward(scan_cfg, p, tokens, return_internals=True)
    lb, aux_b = model.forward(loop_cfg, p, tokens, return_internals=True)
    np.testing.assert_allclose(la, lb, atol=1e-5)
    for k in aux_a:
        np.testing.assert_allclose(aux_a[k], aux_b[k], atol=1e-5)
    # Training keeps the layers split into per-layer trees: the same function, and a lossless round trip.
    split = model.split_layers(p)
    assert isinstance(split["layers"], tuple) and len(split["layers"]) == loop_cfg.n_layers
    np.testing.assert_allclose(model.forward(loop_cfg, split, tokens), lb, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(model.stack_layers(split)), jax.tree_util.tree_leaves(p)):
        np.testing.assert_array_equal(a, b)
    loss = lambda cfg: jax.grad(lambda q: model.forward(cfg, q, tokens).sum())(p)
    for ga, gb in zip(jax.tree_util.tree_leaves(loss(scan_cfg)), jax.tree_util.tree_leaves(loss(loop_cfg))):
        np.testing.assert_allclose(ga, gb, atol=1e-4, rtol=1e-4)
    # Training mode draws dropout masks in the loop too.
    t1 = model.forward(loop_cfg, p, tokens, dropout_key=jax.random.key(0))
    assert not np.allclose(t1, la) and np.isfinite(np.asarray(t1)).all()


def test_configs_saved_before_scan_layers_keep_scan():
    from sgjax import config
    from sgjax.run import compat

    d = config.preset("smoke", "question", 2).to_dict()
    del d["model"]["scan_layers"]
    assert compat.saved_config(d).model.scan_layers is True
    assert config.preset("smoke", "question", 2).model.scan_layers is False


def test_configs_saved_before_dropout_draw_keep_per_element_masks():
    from sgjax import config
    from sgjax.run import compat

    d = config.preset("smoke", "question", 2).to_dict()
    del d["model"]["dropout_draw"]
    assert compat.saved_config(d).model.dropout_draw == "per_element"
    assert config.preset("smoke", "question", 2).model.dropout_draw == "counter"
    with pytest.raises(config.ConfigError, match="dropout_draw"):
        config.validate(config.override(config.preset("smoke", "question", 2), ["model.dropout_draw=fast"]))
