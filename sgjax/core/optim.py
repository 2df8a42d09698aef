"""The original's optimizer as one update: global-norm clipping, Adam(W) moments, learning rate.

The state is optax's (`optimizer(tc).init`), so checkpoints keep their form; `update` computes what
`optimizer(tc).update` followed by `p - lr * u` computes, written out per leaf because XLA copied
both moments of every leaf each step when optax's chain was followed by the frozen-member select
(about a tenth of a CPU step at S = 10; docs/performance.md). tests/test_optim.py holds the two equal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from sgjax.config import TrainConfig


def optimizer(tc: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping then Adam(W) moments; the learning rate is applied in the step."""
    parts = [optax.clip_by_global_norm(tc.clip_norm), optax.scale_by_adam(tc.adam_b1, tc.adam_b2, tc.adam_eps)]
    if tc.weight_decay:
        parts.append(optax.add_decayed_weights(tc.weight_decay))
    return optax.chain(*parts)


def update(tc: TrainConfig, params, opt_state, grads, grad_norm, lr, frozen):
    """(params, opt_state) after one step; a `frozen` member keeps both unchanged.

    `grad_norm` is the global norm of `grads` (clipping uses it); `opt_state` is optimizer(tc)'s.
    """
    clip_state, adam, *decay_state = opt_state
    b1, b2, eps = tc.adam_b1, tc.adam_b2, tc.adam_eps
    # optax.clip_by_global_norm: unchanged below the threshold, else rescaled to norm clip_norm.
    clip = lambda g: jnp.where(grad_norm < tc.clip_norm, g, (g / grad_norm) * tc.clip_norm)
    mu = jax.tree_util.tree_map(lambda m, g: jnp.where(frozen, m, (1 - b1) * clip(g) + b1 * m), adam.mu, grads)
    nu = jax.tree_util.tree_map(
        lambda v, g: jnp.where(frozen, v, (1 - b2) * jnp.square(clip(g)) + b2 * v), adam.nu, grads
    )
    count = optax.safe_increment(adam.count)
    bias1, bias2 = 1 - b1**count, 1 - b2**count

    def new_param(p, m, v):
        u = (m / bias1) / (jnp.sqrt(v / bias2) + eps)
        if tc.weight_decay:
            u = u + tc.weight_decay * p
        return jnp.where(frozen, p, p - lr * u)

    params = jax.tree_util.tree_map(new_param, params, mu, nu)
    adam = adam._replace(count=jnp.where(frozen, adam.count, count), mu=mu, nu=nu)
    return params, (clip_state, adam, *decay_state)
