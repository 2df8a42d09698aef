"""Randomness pinned: each seed's own batches and dropout masks, apart streams, and the five dropout sites."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sgjax.config import Config, ModelConfig, TrainConfig
from sgjax.core import batching, engine, model, ops

CFG = Config(
    model=ModelConfig(vocab_size=13, n_layers=2, d_model=16, n_heads=2, d_ff=24, dropout=0.1),
    train=TrainConfig(warmup_steps=0, decay_steps=10),
)
TOKENS = jnp.asarray(np.random.default_rng(0).integers(1, 13, size=(3, 9)), jnp.int32)
BATCH = (TOKENS[:, :-1], TOKENS[:, 1:], None, None)


def loss_of(cfg: Config, params, seed: int, step: int) -> float:
    """The training loss member `seed` computes on BATCH at `step` (its dropout masks), from `params`."""
    state = {"params": params, "opt": engine.optim.optimizer(cfg.train).init(params), "frozen": jnp.bool_(False)}
    _, out = jax.jit(engine.member_step, static_argnums=0)(cfg, state, seed, 1e-3, step, BATCH)
    return float(out["loss"])


def test_members_draw_their_own_dropout_masks():
    params = engine.init_member(CFG, 42)["params"]
    by_seed = {s: loss_of(CFG, params, s, 3) for s in (42, 52)}
    assert by_seed[42] != by_seed[52]  # same weights and batch: only the masks differ
    assert loss_of(CFG, params, 42, 4) != by_seed[42]  # and a member's masks change every step
    assert loss_of(CFG, params, 42, 3) == by_seed[42]
    no_dropout = dataclasses.replace(CFG, model=dataclasses.replace(CFG.model, dropout=0.0))
    assert loss_of(no_dropout, params, 42, 3) == loss_of(no_dropout, params, 52, 3)


def test_members_draw_their_own_batch_order():
    n, b = 40, 8
    order = {s: np.concatenate([batching.batch_indices(s, k, n, b) for k in range(n // b)]) for s in (42, 52)}
    for s in order:
        assert sorted(order[s]) == list(range(n))  # an epoch visits every line once
    assert not np.array_equal(order[42], order[52])
    next_epoch = np.concatenate([batching.batch_indices(42, k, n, b) for k in range(n // b, 2 * n // b)])
    assert not np.array_equal(next_epoch, order[42])  # a fresh permutation each epoch


def test_init_batches_and_dropout_draw_from_apart_streams():
    """A seed's three purposes are salted apart: no dropout key is the init key folded with the step."""
    assert len({engine.INIT_STREAM, batching.BATCH_STREAM, engine.DROPOUT_STREAM}) == 3
    init_key = jax.random.fold_in(jax.random.key(42), engine.INIT_STREAM)
    params = engine.init_member(CFG, 42)["params"]
    forward = jax.jit(lambda key: model.forward(CFG.model, params, TOKENS, dropout_key=key))
    step0 = forward(jax.random.fold_in(jax.random.fold_in(jax.random.key(42), engine.DROPOUT_STREAM), 0))
    for step in range(4):  # the logits differ iff the masks do
        assert not np.array_equal(step0, forward(jax.random.fold_in(init_key, step)))
    other = jax.random.fold_in(jax.random.key(42), engine.DROPOUT_STREAM)
    assert not np.array_equal(
        model.init_params(CFG.model, init_key)["embed"], model.init_params(CFG.model, other)["embed"]
    )


def dropout_calls(dropout_key):
    """(input shape, dropped anything, output == input) for every Dropout call of one forward."""
    calls = []

    def intercept(next_fun, args, kwargs, context):
        y = next_fun(*args, **kwargs)
        if isinstance(context.module, ops.Dropout) and context.method_name == "__call__":
            x = np.asarray(args[0])
            calls.append((x.shape, bool(np.any((np.asarray(y) == 0) & (x != 0))), np.array_equal(np.asarray(y), x)))
        return y

    params = engine.init_member(CFG, 42)["params"]
    with nn.intercept_methods(intercept):
        model.forward(CFG.model, params, TOKENS, dropout_key=dropout_key)
    return calls


def test_every_dropout_site_is_on_in_training_and_off_in_evaluation():
    """The original's five sites: the embedding, then per layer the attention probabilities, the
    attention output, the FFN's hidden layer and the FFN output."""
    b, t = TOKENS.shape
    d, f, h, layers = CFG.model.d_model, CFG.model.d_ff, CFG.model.n_heads, CFG.model.n_layers
    train = dropout_calls(jax.random.key(0))
    per_layer = sorted([(b, h, t, t), (b, t, d), (b, t, f), (b, t, d)])
    assert sorted(shape for shape, _, _ in train) == sorted([(b, t, d)] + per_layer * layers)
    assert all(dropped for _, dropped, _ in train)
    evaluation = dropout_calls(None)
    assert all(same for _, _, same in evaluation)
    assert len(evaluation) in (0, len(train))
