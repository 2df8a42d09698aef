"""Greedy decoding: the K/V-cached and recomputing decoders equal a naive step-by-step decode; edge cases."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax.config import ModelConfig
from sgjax.core import model
from sgjax.evaluation import decode

CFG = ModelConfig(vocab_size=12, n_layers=2, d_model=32, n_heads=2, d_ff=64, dropout=0.0)
EOS, SOS = 10, 11  # a 10-word vocabulary (pad + 9 words): EOS = |V|, SOS = |V| + 1
MAX_STEPS = 8


@pytest.fixture(scope="module")
def params():
    return jax.jit(lambda k: model.init_params(CFG, k))(jax.random.PRNGKey(3))


def prefixes(b=6, w=7, seed=0):
    """[SOS] + random words, right-padded: lengths include a lone SOS and a full-width prefix."""
    rng = np.random.default_rng(seed)
    lens = np.array([1, 2, w, 4, 5, 3][:b], dtype=np.int32)
    pre = np.zeros((b, w), np.int32)
    for i in range(b):
        pre[i, 0] = SOS
        pre[i, 1 : lens[i]] = rng.integers(1, EOS, lens[i] - 1)
    return pre, lens


def with_bias(params, cls: int, big: float = 100.0, keep_w: bool = False):
    """Params whose output prefers class `cls` by a bias (zero output weights unless keep_w)."""
    out_b = jnp.zeros_like(params["out_b"]).at[cls].set(big)
    return {**params, "out_w": params["out_w"] if keep_w else jnp.zeros_like(params["out_w"]), "out_b": out_b}


# One compiled program per decoder for the edge cases (params are arguments).
CACHED = jax.jit(functools.partial(decode.greedy_decode, CFG, max_steps=MAX_STEPS, eos_id=EOS))
RECOMPUTE = jax.jit(functools.partial(decode.greedy_decode_recompute, CFG, max_steps=MAX_STEPS, eos_id=EOS))


def test_cached_forward_matches_model(params):
    """The model's cached forward, on the prefix in one pass and then a token at a time, gives its plain logits."""
    pre, _ = prefixes()
    b, w = pre.shape
    half = w // 2
    pos = jnp.broadcast_to(jnp.arange(w)[None], (b, w))
    step = jax.jit(lambda p, x, at, c: model.forward(CFG, p, x, positions_BxT=at, cache=c))
    logits, cache = step(params, jnp.asarray(pre[:, :half]), pos[:, :half], model.empty_cache(CFG, b, w))
    pieces = [logits]
    for t in range(half, w):
        logits, cache = step(params, jnp.asarray(pre[:, t : t + 1]), pos[:, t : t + 1], cache)
        pieces.append(logits)
    want = decode.jit_forward(CFG)(params, jnp.asarray(pre))
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), want, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(cache.tokens_BxS, pre)


def test_decoders_equal_reference(params):
    """The cached decoder vmapped over 2 members, and the recomputing one, equal the naive reference decode."""
    eos = 3  # a word id as "EOS": with these models and prefixes, sequences stop at step 0, later, or never
    pre, lens = prefixes()
    p2 = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), params, with_bias(params, 3, big=0.5, keep_w=True))
    fn = lambda p: decode.greedy_decode(CFG, p, pre, lens, max_steps=MAX_STEPS, eos_id=eos)  # noqa: E731
    g_S, l_S = jax.jit(jax.vmap(fn))(p2)
    g2, l2 = jax.jit(lambda p: decode.greedy_decode_recompute(CFG, p, pre, lens, max_steps=MAX_STEPS, eos_id=eos))(
        params
    )
    assert g_S.shape == (2, len(lens), MAX_STEPS)
    lengths = set()
    for s in range(2):
        p = jax.tree_util.tree_map(lambda a: a[s], p2)
        for i in range(len(lens)):
            ref = decode.reference_decode(CFG, p, list(pre[i, : lens[i]]), max_steps=MAX_STEPS, eos_id=eos)
            assert list(np.asarray(g_S[s, i, : l_S[s, i]])) == ref
            assert np.all(np.asarray(g_S[s, i, l_S[s, i] :]) == 0)  # zero beyond the length
            if s == 0:
                assert list(np.asarray(g2[i, : l2[i]])) == ref
            lengths.add(len(ref))
    assert {0, MAX_STEPS} < lengths  # an immediate stop, a late stop and no stop are all covered


def test_eos_first_gives_empty_output(params):
    """EOS as the very first token: length 0, all-zero output (scored wrong downstream)."""
    pre, lens = prefixes()
    for fn in (CACHED, RECOMPUTE):
        g, l = fn(with_bias(params, EOS), pre, lens)
        assert np.all(np.asarray(l) == 0) and np.all(np.asarray(g) == 0)


def test_sos_generated_runs_to_max_steps(params):
    """A model that only emits SOS never stops early: max_steps SOS tokens, representable, no crash."""
    pre, lens = prefixes()
    for fn in (CACHED, RECOMPUTE):
        g, l = fn(with_bias(params, SOS), pre, lens)
        assert np.all(np.asarray(l) == MAX_STEPS) and np.all(np.asarray(g) == SOS)


def test_pad_generated_matches_reference(params):
    """A generated pad (id 0) is masked as a key afterwards, as model.forward would; the decoders agree."""
    pre, lens = prefixes()
    p0 = with_bias(params, 0, big=0.5, keep_w=True)  # a mild preference: logits still depend on context
    (g1, l1), (g2, l2) = CACHED(p0, pre, lens), RECOMPUTE(p0, pre, lens)
    assert np.any(np.asarray(g1) == 0)
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(l1, l2)
