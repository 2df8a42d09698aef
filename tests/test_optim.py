"""optim.update is optax's clip + Adam(W) chain followed by p - lr * u, and a frozen member stays put."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax.config import TrainConfig
from sgjax.core import engine, optim


def tree(rng, scale):
    return {
        "w": jnp.asarray(rng.normal(size=(4, 3)) * scale, jnp.float32),
        "b": (jnp.asarray(rng.normal(size=(3,)) * scale, jnp.float32),),
    }


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_update_equals_optax_chain(weight_decay):
    """Five steps, with the gradient norm both under and over clip_norm, as optax would take them."""
    tc = dataclasses.replace(TrainConfig(), weight_decay=weight_decay, clip_norm=1.0)
    rng = np.random.default_rng(0)
    ref = mine = tree(rng, 1.0)
    ref_state = mine_state = optim.optimizer(tc).init(ref)
    for k, scale in enumerate([0.01, 5.0, 0.1, 20.0, 0.3]):  # norms below and above 1.0
        grads, lr = tree(rng, scale), 1e-3 * (k + 1)
        u, ref_state = optim.optimizer(tc).update(grads, ref_state, ref)
        ref = jax.tree_util.tree_map(lambda p, u: p - lr * u, ref, u)
        mine, mine_state = optim.update(tc, mine, mine_state, grads, engine.global_norm(grads), lr, jnp.bool_(False))
        for a, b in zip(jax.tree_util.tree_leaves((ref, ref_state)), jax.tree_util.tree_leaves((mine, mine_state))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_frozen_member_keeps_params_and_moments():
    tc = TrainConfig()
    rng = np.random.default_rng(1)
    params = tree(rng, 1.0)
    state = optim.optimizer(tc).init(params)
    grads = jax.tree_util.tree_map(lambda g: g.at[0].set(jnp.nan), tree(rng, 1.0))
    new, new_state = optim.update(tc, params, state, grads, engine.global_norm(grads), 1e-3, jnp.bool_(True))
    for a, b in zip(jax.tree_util.tree_leaves((params, state)), jax.tree_util.tree_leaves((new, new_state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    moved, _ = optim.update(tc, params, state, tree(rng, 1.0), 1.0, 1e-3, jnp.bool_(False))
    assert not np.allclose(np.asarray(moved["w"]), np.asarray(params["w"]))
