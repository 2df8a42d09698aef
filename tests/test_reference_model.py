"""sgjax's model, loss and AdamW steps against an independent numpy reference (tests/reference_model.py)."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax.config import Config, ModelConfig, TrainConfig
from sgjax.core import engine, model
from tests import reference_model as R

HEADS = 2
CFG = ModelConfig(vocab_size=13, n_layers=2, d_model=16, n_heads=HEADS, d_ff=24, dropout=0.1, max_len=64)


def batches(n: int, seed: int = 0):
    """n batches of (inputs, targets): 3 rows of ids 1..12 of lengths 9, 6 and 4, padded with 0."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        seq = np.zeros((3, 10), np.int32)
        for row, length in enumerate((10, 7, 5)):
            seq[row, :length] = rng.integers(1, 13, size=length)
        out.append((seq[:, :-1], seq[:, 1:]))
    return out


def sgjax_params(seed=0):
    return model.init_params(CFG, jax.random.key(seed))


def test_reference_backward_matches_finite_differences():
    """The reference's hand-written gradient, checked coordinate by coordinate."""
    ref = R.from_sgjax(sgjax_params())
    ((tokens, targets),) = batches(1)
    logits, cache = R.forward(ref, tokens, HEADS)
    grads = R.backward(ref, cache, targets, HEADS)
    rng = np.random.default_rng(1)
    for x, g in zip(R.leaves(ref), R.leaves(grads)):
        for _ in range(3):
            i = tuple(rng.integers(0, n) for n in x.shape)
            if x.ndim == 2 and x.shape[0] == 13 and x.shape[1] == 16:  # embedding: pick a used row
                i = (int(tokens[0, 0]), i[1])
            keep = x[i]
            x[i] = keep + 1e-6
            up = R.loss(R.forward(ref, tokens, HEADS)[0], targets)
            x[i] = keep - 1e-6
            down = R.loss(R.forward(ref, tokens, HEADS)[0], targets)
            x[i] = keep
            assert abs((up - down) / 2e-6 - g[i]) < 1e-6 + 1e-4 * abs(g[i]), (x.shape, i)


def test_forward_and_loss_match_the_reference():
    """Eval mode (no dropout key): the logits of every position and the token-mean loss."""
    params = sgjax_params()
    ref = R.from_sgjax(params)
    for tokens, targets in batches(2, seed=3):
        want, _ = R.forward(ref, tokens, HEADS)
        got = np.asarray(model.forward(CFG, params, jnp.asarray(tokens)), np.float64)
        mask = tokens != 0  # padded positions' logits are never read
        np.testing.assert_allclose(got[mask], want[mask], rtol=2e-5, atol=2e-5)
        loss = float(engine.token_mean_ce(jnp.asarray(got, jnp.float32), jnp.asarray(targets)))
        assert loss == pytest.approx(R.loss(want, targets), rel=1e-5)


def hf_linear(warmup: int, total: int):
    """The original's schedule, written out: step/warmup below warmup, then linear to 0 at total."""
    return lambda s: s / warmup if s < warmup else max(0.0, (total - s) / (total - warmup))


def reference(tc: TrainConfig, steps: int, lr: float, clip: float):
    """The reference's AdamW steps from member 7's init, on the batches `train` takes."""
    cfg = Config(model=dataclasses.replace(CFG, dropout=0.0), train=tc)
    sched = hf_linear(tc.warmup_steps, tc.decay_steps)
    return R.adamw_steps(
        R.from_sgjax(engine.init_member(cfg, 7)["params"]),
        batches(steps, seed=5),
        HEADS,
        lr_at=lambda s: lr * sched(s),
        eps=tc.adam_eps,
        weight_decay=tc.weight_decay,
        clip=clip,
    )


def train(tc: TrainConfig, steps: int, lr: float):
    """sgjax's member_step for `steps` steps of dropout-free training from member 7's init: (params, losses)."""
    cfg = Config(model=dataclasses.replace(CFG, dropout=0.0), train=tc)
    state = engine.init_member(cfg, 7)
    step_fn = jax.jit(engine.member_step, static_argnums=0)
    losses = []
    for step, (tokens, targets) in enumerate(batches(steps, seed=5)):
        state, out = step_fn(cfg, state, 7, lr, step, (jnp.asarray(tokens), jnp.asarray(targets), None, None))
        losses.append(float(out["loss"]))
    return state["params"], losses


def max_gap(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(R.leaves(a), R.leaves(b)))


@pytest.mark.parametrize("eps, weight_decay", [(1e-7, 0.0), (1e-2, 0.1)])
def test_adamw_steps_match_the_reference(eps, weight_decay):
    """Four steps with the original's schedule (warmup, then decay), clipping some steps and not others.

    The first case is the paper's optimizer (eps 1e-7, no weight decay); the second makes eps and
    decoupled weight decay large enough to matter. Adam's first step is nearly sign(g) x lr, so
    only later steps see the clipping and eps; four steps with lr 1e-2 move weights by ~3e-2.
    """
    tc = TrainConfig(warmup_steps=2, decay_steps=6, adam_eps=eps, weight_decay=weight_decay)
    _, _, norms = reference(tc, 4, 1e-2, clip=math.inf)
    clip = (min(norms) + max(norms)) / 2  # the steps' gradients fall on both sides of it
    assert max(norms) > 1.2 * min(norms)
    ref, ref_losses, _ = reference(tc, 4, 1e-2, clip)
    unclipped, _, _ = reference(tc, 4, 1e-2, math.inf)
    assert max_gap(ref, unclipped) > 1e-4  # the threshold changes where the steps end
    params, losses = train(dataclasses.replace(tc, clip_norm=clip), 4, 1e-2)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    got = jax.tree_util.tree_leaves(params)
    want = jax.tree_util.tree_leaves(R.to_sgjax_layout(ref))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=0, atol=2e-6)
