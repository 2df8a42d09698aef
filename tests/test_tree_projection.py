"""Tree projections: fast charts ≡ per-span charts, context-free models, decoders, scores, F1."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax.analysis.probe import tree_projection as TP
from sgjax.config import ModelConfig
from sgjax.core import model as M
from sgjax.data import parses

CFG = ModelConfig(vocab_size=20, n_layers=2, d_model=32, n_heads=4, d_ff=64, dropout=0.0)
SOS = 19
TOKENS = np.array(
    [[SOS, 3, 4, 5, 6, 7, 0, 0, 0], [SOS, 5, 6, 7, 8, 9, 10, 11, 12], [SOS, 2, 0, 0, 0, 0, 0, 0, 0]], np.int32
)
LENGTHS = [5, 8, 1]
_fast = jax.jit(TP.charts_fast, static_argnums=(0, 4))
fast = lambda cfg, p, tok, packed=True: _fast(cfg, p, tok, None, packed)


_PARAMS = {}


def params(seed=0):
    if seed not in _PARAMS:
        _PARAMS[seed] = M.init_params(CFG, jax.random.PRNGKey(seed))
    return dict(_PARAMS[seed])  # shallow copy: tests may replace entries


def test_fast_charts_equal_per_span_charts():
    for seed in (0, 1):
        p = params(seed)
        f = np.asarray(fast(CFG, p, jnp.asarray(TOKENS)))
        d = TP.charts_direct(CFG, p, TOKENS, span_batch=48, pad=True)
        unpacked = np.asarray(fast(CFG, p, jnp.asarray(TOKENS), packed=False))
        np.testing.assert_allclose(unpacked, d, atol=2e-6)
        np.testing.assert_array_equal(np.isnan(f), np.isnan(d))
        np.testing.assert_allclose(f, d, atol=2e-6, equal_nan=True)
        assert (~np.isnan(f[0])).sum() == 15 and (~np.isnan(f[2])).sum() == 1
        # spans starting at the first word see their whole causal context: c = 1 exactly (D22)
        np.testing.assert_allclose(f[1, 0, :8], 1.0, atol=1e-6)


def test_context_free_model_has_unit_chart_and_zero_tscore():
    p = params()
    p["layers"] = dict(p["layers"])
    # no attention output: every position depends only on its own token and position
    p["layers"]["o"] = jnp.zeros_like(p["layers"]["o"])
    chart = np.asarray(fast(CFG, p, jnp.asarray(TOKENS)))
    valid = ~np.isnan(chart)
    np.testing.assert_allclose(chart[valid], 1.0, atol=1e-6)
    trees, exp, smp = TP.decode(chart, LENGTHS)
    np.testing.assert_allclose(exp, 0.0, atol=1e-5)
    np.testing.assert_allclose(smp, 0.0, atol=1e-5)
    assert trees[2] == 0


def planted_chart(tree, n, noise_rng=None):
    """c = 1 on the tree's constituents (words included), small values elsewhere."""
    spans = parses.tree_spans(tree) | {(i, i) for i in range(n)}
    c = np.full((n, n), np.nan)
    for a in range(n):
        for b in range(a, n):
            c[a, b] = 1.0 if (a, b) in spans else (0.0 if noise_rng is None else noise_rng.uniform(0, 0.3))
    return c


def random_tree(rng, lo, hi):
    if lo == hi:
        return lo
    k = int(rng.integers(lo, hi))
    return (random_tree(rng, lo, k), random_tree(rng, k + 1, hi))


def test_planted_chart_decodes_to_planted_tree():
    rng = np.random.default_rng(0)
    for n in (2, 3, 6, 9):
        for _ in range(5):
            tree = random_tree(rng, 0, n - 1)
            c = planted_chart(tree, n, rng)
            assert TP.greedy_tree(c) == tree
            assert TP.exact_tree(c) == tree
            trees, exp, smp = TP.decode(c[None], [n])
            assert trees[0] == tree and exp[0] >= 0 and smp[0] >= 0


def test_greedy_ties_pick_smallest_split():
    c = np.ones((4, 4))
    assert TP.greedy_tree(c) == (0, (1, (2, 3)))  # all splits tie -> k = a at every node


def all_trees(lo, hi):
    if lo == hi:
        yield lo
        return
    for k in range(lo, hi):
        for left, right in itertools.product(list(all_trees(lo, k)), list(all_trees(k + 1, hi))):
            yield (left, right)


def objective(c, tree):
    """Σ c over all non-root nodes (words included)."""
    spans = parses.tree_spans(tree) | {(i, i) for i in range(c.shape[0])}
    return sum(c[a, b] for a, b in spans) - c[0, c.shape[0] - 1]


def test_exact_tree_is_optimal_and_beats_greedy():
    rng = np.random.default_rng(1)
    for _ in range(10):
        n = 6
        c = np.triu(rng.uniform(size=(n, n)))
        best = max(objective(c, t) for t in all_trees(0, n - 1))
        assert objective(c, TP.exact_tree(c)) == pytest.approx(best)
        assert objective(c, TP.greedy_tree(c)) <= best + 1e-12


def test_tscore_expected_baseline_by_hand():
    # n = 3: root (0,2) splits k=0: c00+c12, k=1: c01+c22; then one child node of two words.
    c = np.array([[1.0, 0.2, 1.0], [np.nan, 1.0, 0.9], [np.nan, np.nan, 1.0]])
    trees, exp, _ = TP.decode(c[None], [3])
    assert trees[0] == (0, (1, 2))
    root_gain = (1.0 + 0.9) - ((1.0 + 0.9) + (0.2 + 1.0)) / 2
    child_gain = 0.0  # a two-word node has one split: gain 0
    assert exp[0] == pytest.approx(root_gain + child_gain)


def test_sampled_baseline_is_seeded():
    rng = np.random.default_rng(3)
    c = np.triu(rng.uniform(size=(2, 7, 7))) + np.tril(np.full((7, 7), np.nan), -1)
    a = TP.decode(c, [7, 7], rng=np.random.default_rng(5))[2]
    b = TP.decode(c, [7, 7], rng=np.random.default_rng(5))[2]
    np.testing.assert_array_equal(a, b)


def test_gold_vs_gold_f1_and_right_branching():
    words = "our walruses do accept the xylophones".split()
    gold = parses.parse("question", words)
    assert parses.parse_f1([gold], [gold]) == pytest.approx(1.0)
    assert parses.parse_f1([gold], [gold], include_root=False) == pytest.approx(1.0)
    rb = parses.right_branching(len(words))
    f1 = parses.parse_f1([rb], [gold])
    assert 0 < f1 < 1


def test_row_chunks_give_the_same_charts():
    # a long sentence's restricted rows run a few at a time (lax.map); the chart must not change
    p = params()
    whole = np.asarray(fast(CFG, p, jnp.asarray(TOKENS)))
    chunked = jax.jit(TP.charts_fast, static_argnums=(0, 4, 5))
    for rows in (1, 3):
        np.testing.assert_allclose(
            np.asarray(chunked(CFG, p, jnp.asarray(TOKENS), None, True, rows)), whole, atol=2e-6, equal_nan=True
        )


def test_long_sentence_decodes_without_recursion_or_n3_table():
    # a right-branching chart of 1,500 words: deeper than Python's stack, and 27 GB as an (a, b, k) table
    n = 1500
    c = np.triu(np.full((n, n), 0.1)) + np.tril(np.full((n, n), np.nan), -1)
    c[np.arange(n), np.arange(n)] = 1.0
    c[:, n - 1] = 1.0  # spans (a, n-1) are constituents
    trees, exp, smp = TP.decode(c[None], [n])
    _, nodes = TP.build_tree(lambda a, b: TP.greedy_split(c, a, b), n)
    assert nodes == [(a, n - 1, a) for a in range(n - 1)]
    # at node (a, n-1) the best split scores 1 + 1 and the others 0.1 + 1: gain 0.9 (1 - 1/(n-1-a))
    want = sum(0.9 * (1 - 1 / (n - 1 - a)) for a in range(n - 1))
    assert exp[0] == pytest.approx(want, rel=1e-9) and 0 <= smp[0] <= 0.9 * (n - 2) + 1e-9
    assert trees[0][0] == 0 and trees[0][1][0] == 1
