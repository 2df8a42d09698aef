"""Tree projections for a causal LM (SPEC §5.3; Murty et al. 2023 App. C): SCI charts, decoders, scores.

Token positions: 0 is SOS, words w1..wn sit at positions 1..n. Charts use *word* indices:
chart[a, b] (0 <= a <= b < n) is the cosine between the context-free and the contextual span
vector of words a..b (token positions a+1..b+1); other cells are NaN.

Fast path (`charts_fast`): with keys restricted to {0} ∪ {a..b} in every layer, a causal query
i <= b only ever sees keys {0} ∪ {a..i}, so its output does not depend on b. One forward per start
a with keys {0} ∪ {a..} therefore yields h̃_i^(a,b) for every b at once, and a cumulative sum over i
gives ṽ_ab for every span starting at a: n runs per sentence instead of n(n+1)/2 (and, packed two
starts per row with absolute positions kept, about n/2 rows of n+3 tokens; `packed_layout`).
`charts_direct` is the per-span reference (one masked forward per span, as the original).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sgjax import model as M
from sgjax.config import ModelConfig


def final_hidden(cfg: ModelConfig, params, tokens_BxT: jax.Array, allowed_BxTxT=None) -> jax.Array:
    """Final layer's (post-LN) output h_BxTxD, optionally with restricted attention."""
    _, internals = M.forward(cfg, params, tokens_BxT, allowed_BxTxT=allowed_BxTxT, return_internals=True)
    return internals["hidden_LxBxTxD"][-1]


def cosine(u_XxD: jax.Array, v_XxD: jax.Array) -> jax.Array:
    """Cosine similarity over the last axis (1 - scipy's cosine distance)."""
    num = jnp.sum(u_XxD * v_XxD, axis=-1)
    den = jnp.linalg.norm(u_XxD, axis=-1) * jnp.linalg.norm(v_XxD, axis=-1)
    return num / jnp.maximum(den, 1e-30)


def word_mask(tokens_BxT: jax.Array) -> jax.Array:
    """valid_BxNxN: a <= b < n in word indices (n = nonpad tokens - 1)."""
    n_B = jnp.sum(tokens_BxT[:, 1:] != 0, axis=1)
    idx_N = jnp.arange(tokens_BxT.shape[1] - 1)
    return (idx_N[:, None] <= idx_N[None, :])[None] & (idx_N[None, None, :] < n_B[:, None, None])


@functools.lru_cache(maxsize=64)
def packed_layout(t: int):
    """Static layout packing the restricted runs of starts a and t-a into one row of width t+2.

    The run of start a needs only token positions {0} ∪ {a..t-1} (t-a+1 tokens; earlier words are
    invisible to every position we read), so starts a and t-a fill exactly t+2 slots; positions keep
    their absolute values through `positions_BxT`, and a block-diagonal mask separates the runs.
    Returns (src_RxW token position or -1, seg_RxW run id or -1, row_AxT, col_AxT) where
    (row, col)[a-1, i] locates position i of start a's run (meaningful for i >= a).
    """
    w = t + 2
    starts = list(range(1, t))
    pairs = [(a, t - a) if a < t - a else (a,) for a in starts if a <= t - a]
    src = np.full((len(pairs), w), -1, np.int32)
    seg = np.full((len(pairs), w), -1, np.int32)
    row = np.zeros((t - 1, t), np.int32)
    col = np.zeros((t - 1, t), np.int32)
    for r, pair in enumerate(pairs):
        c = 0
        for j, a in enumerate(pair):
            run = [0] + list(range(a, t))
            src[r, c : c + len(run)] = run
            seg[r, c : c + len(run)] = j
            row[a - 1, a:] = r
            col[a - 1, a:] = c + np.arange(1, len(run))
            c += len(run)
    return src, seg, row, col


def restricted_hidden(cfg: ModelConfig, params, tokens_BxT: jax.Array, packed: bool = True) -> jax.Array:
    """hr_BxAxTxD: final-layer output at position i with keys {0} ∪ {a..} (start a = 1..T-1), for i >= a."""
    b, t = tokens_BxT.shape
    s_T = jnp.arange(t)
    if not packed:  # one full-width row per start, as the definition reads
        allowed_AxT = (s_T[None] == 0) | (s_T[None] >= jnp.arange(1, t)[:, None])
        allowed_BAxTxT = jnp.broadcast_to(allowed_AxT[None, :, None, :], (b, t - 1, t, t)).reshape(b * (t - 1), t, t)
        tokens_BAxT = jnp.repeat(tokens_BxT, t - 1, axis=0)
        return final_hidden(cfg, params, tokens_BAxT, allowed_BAxTxT).reshape(b, t - 1, t, -1)
    src_RxW, seg_RxW, row_AxT, col_AxT = packed_layout(t)
    r, w = src_RxW.shape
    tokens_BxRxW = jnp.where(src_RxW[None] >= 0, tokens_BxT[:, np.maximum(src_RxW, 0)], 0)
    positions_BxRxW = jnp.broadcast_to(np.maximum(src_RxW, 0)[None], (b, r, w))
    same_RxWxW = (seg_RxW[:, :, None] == seg_RxW[:, None, :]) & (seg_RxW[:, None, :] >= 0)
    allowed_BRxWxW = jnp.broadcast_to(same_RxWxW[None], (b, r, w, w)).reshape(b * r, w, w)
    _, internals = M.forward(cfg, params, tokens_BxRxW.reshape(b * r, w), allowed_BxTxT=allowed_BRxWxW,
                             positions_BxT=positions_BxRxW.reshape(b * r, w), return_internals=True)
    h_BxRxWxD = internals["hidden_LxBxTxD"][-1].reshape(b, r, w, -1)
    return h_BxRxWxD[:, row_AxT, col_AxT]


def charts_fast(cfg: ModelConfig, params, tokens_BxT: jax.Array, h_BxTxD: jax.Array | None = None,
                packed: bool = True) -> jax.Array:
    """chart_BxNxN (N = T-1) of one member by one restricted run per start position.

    `h_BxTxD`: the unrestricted final-layer output, if the caller already has it. `packed` puts two
    starts' runs in one row (`packed_layout`, about half the compute); False: one row per start.
    """
    b, t = tokens_BxT.shape
    a_A = jnp.arange(1, t)  # start token positions 1..T-1
    s_T = jnp.arange(t)
    h_BxTxD = final_hidden(cfg, params, tokens_BxT) if h_BxTxD is None else h_BxTxD
    hr_BxAxTxD = restricted_hidden(cfg, params, tokens_BxT, packed)
    in_span_AxT = s_T[None] >= a_A[:, None]
    # ṽ_ab = Σ_{i=a..b} h̃_i^(a): cumulative over i of the start-a run, zeroed before a.
    vt_BxAxTxD = jnp.cumsum(jnp.where(in_span_AxT[None, :, :, None], hr_BxAxTxD, 0.0), axis=2)
    cum_BxTxD = jnp.cumsum(h_BxTxD, axis=1)
    # v_ab = cum[b] - cum[a-1]
    v_BxAxTxD = cum_BxTxD[:, None] - cum_BxTxD[:, :-1, None]
    chart_BxAxT = cosine(vt_BxAxTxD, v_BxAxTxD)
    chart_BxNxN = chart_BxAxT[:, :, 1:]  # token position b -> word index b-1
    return jnp.where(word_mask(tokens_BxT), chart_BxNxN, jnp.nan)


@functools.partial(jax.jit, static_argnums=0)
def _span_chunk(cfg: ModelConfig, params, tokens_T, a_P, b_P):
    """c for spans (a_P, b_P) (token positions) of one sentence: one masked forward per span."""
    t = tokens_T.shape[0]
    s_T = jnp.arange(t)
    h_TxD = final_hidden(cfg, params, tokens_T[None])[0]
    keys_PxT = (s_T[None] == 0) | ((s_T[None] >= a_P[:, None]) & (s_T[None] <= b_P[:, None]))
    allowed_PxTxT = jnp.broadcast_to(keys_PxT[:, None, :], (a_P.shape[0], t, t))
    tokens_PxT = jnp.broadcast_to(tokens_T[None], (a_P.shape[0], t))
    hr_PxTxD = final_hidden(cfg, params, tokens_PxT, allowed_PxTxT)
    in_PxT = (s_T[None] >= a_P[:, None]) & (s_T[None] <= b_P[:, None])
    vt_PxD = jnp.sum(jnp.where(in_PxT[..., None], hr_PxTxD, 0.0), axis=1)
    v_PxD = jnp.sum(jnp.where(in_PxT[..., None], h_TxD[None], 0.0), axis=1)
    return cosine(vt_PxD, v_PxD)


def charts_direct(cfg: ModelConfig, params, tokens_BxT, span_batch: int = 256, pad: bool = False) -> np.ndarray:
    """Reference chart_BxNxN: every span separately (the original's algorithm), spans in chunks.

    `pad=True` pads every chunk to `span_batch` (one compiled shape, for tests); False: as the
    original, a chunk holds only real spans.
    """
    tokens_BxT = np.asarray(tokens_BxT)
    b, t = tokens_BxT.shape
    chart_BxNxN = np.full((b, t - 1, t - 1), np.nan, np.float32)
    for s in range(b):
        n = int((tokens_BxT[s, 1:] != 0).sum())
        spans = [(a, e) for a in range(n) for e in range(a, n)]
        for lo in range(0, len(spans), span_batch):
            chunk = spans[lo : lo + span_batch]
            width = span_batch if pad else min(span_batch, len(spans))
            padded = chunk + [chunk[-1]] * (width - len(chunk))
            a_P = jnp.asarray([a + 1 for a, _ in padded])
            b_P = jnp.asarray([e + 1 for _, e in padded])
            c_P = np.asarray(_span_chunk(cfg, params, jnp.asarray(tokens_BxT[s]), a_P, b_P))
            for (a, e), c in zip(chunk, c_P):
                chart_BxNxN[s, a, e] = c
    return chart_BxNxN


# ---------------------------------------------------------------- decoding (numpy, float64)


def pair_table(chart_XxNxN: np.ndarray) -> np.ndarray:
    """pair_XxNxNxN[a, b, k] = c(a, k) + c(k+1, b) for a <= k < b, else -inf."""
    c = np.asarray(chart_XxNxN, np.float64)
    x, n, _ = c.shape
    below_XxNxN = np.full_like(c, np.nan)
    below_XxNxN[:, :-1] = c[:, 1:]  # below[k, b] = c(k+1, b)
    pair = c[:, :, None, :] + np.swapaxes(below_XxNxN, 1, 2)[:, None, :, :]  # [a, b, k]
    i = np.arange(n)
    ok_NxNxN = (i[:, None, None] <= i[None, None, :]) & (i[None, None, :] < i[None, :, None])
    return np.where(ok_NxNxN[None] & np.isfinite(pair), pair, -np.inf)


def greedy_splits(pair_XxNxNxN: np.ndarray) -> np.ndarray:
    """split_XxNxN: argmax_k of c(a,k)+c(k+1,b); ties -> smallest k (the original's strict '>')."""
    return np.argmax(pair_XxNxNxN, axis=-1)


def exact_splits(pair_XxNxNxN: np.ndarray) -> np.ndarray:
    """split_XxNxN of the tree maximizing the summed c over all non-root nodes (O(n³) DP; ties -> smallest k)."""
    x, n = pair_XxNxNxN.shape[:2]
    score = np.zeros((x, n, n))
    split = np.zeros((x, n, n), np.int64)
    xi = np.arange(x)[:, None, None]
    for length in range(2, n + 1):
        a_A = np.arange(n - length + 1)
        b_A = a_A + length - 1
        k_AxJ = a_A[:, None] + np.arange(length - 1)[None]
        tot = (pair_XxNxNxN[xi, a_A[None, :, None], b_A[None, :, None], k_AxJ[None]]
               + score[xi, a_A[None, :, None], k_AxJ[None]]
               + score[xi, k_AxJ[None] + 1, b_A[None, :, None]])
        j = np.argmax(tot, axis=-1)
        score[:, a_A, b_A] = np.take_along_axis(tot, j[..., None], -1)[..., 0]
        split[:, a_A, b_A] = a_A[None] + j
    return split


def build_tree(split_NxN: np.ndarray, n: int):
    """(tree, internal nodes [(a, b, k)]) from a split table; one word -> leaf 0."""
    split = split_NxN.tolist()
    nodes: list[tuple[int, int, int]] = []

    def rec(a: int, b: int):
        if a == b:
            return a
        k = split[a][b]
        nodes.append((a, b, k))
        return (rec(a, k), rec(k + 1, b))

    return rec(0, n - 1), nodes


def decode(chart_XxNxN: np.ndarray, lengths_X, *, exact: bool = False, rng: np.random.Generator | None = None):
    """Trees and per-sentence tscores: (trees, tscore_expected_X, tscore_sampled_X).

    gain(node) = [c(a,k*) + c(k*+1,b)] - baseline: the mean over all splits k (expected) or one
    uniformly random split per node (sampled, the original's baseline; `rng` seeded by the caller).
    """
    pair = pair_table(chart_XxNxN)
    x, n = pair.shape[:2]
    split = exact_splits(pair) if exact else greedy_splits(pair)
    finite = np.isfinite(pair)
    mean_XxNxN = np.where(finite, pair, 0.0).sum(-1) / np.maximum(finite.sum(-1), 1)
    rng = rng if rng is not None else np.random.default_rng(0)
    i = np.arange(n)
    width_NxN = np.maximum(i[None, :] - i[:, None], 1)
    r_XxNxN = i[:, None] + np.floor(rng.random((x, n, n)) * width_NxN).astype(np.int64)
    sampled_XxNxN = np.take_along_axis(pair, np.minimum(r_XxNxN, n - 1)[..., None], -1)[..., 0]
    trees, exp_X, smp_X = [], np.zeros(x), np.zeros(x)
    for s, length in enumerate(np.asarray(lengths_X).tolist()):
        tree, nodes = build_tree(split[s], int(length))
        trees.append(tree)
        for a, b, k in nodes:
            exp_X[s] += pair[s, a, b, k] - mean_XxNxN[s, a, b]
            smp_X[s] += pair[s, a, b, k] - sampled_XxNxN[s, a, b]
    return trees, exp_X, smp_X


def greedy_tree(chart_NxN: np.ndarray):
    """The original's greedy top-down tree of one sentence's chart."""
    n = chart_NxN.shape[0]
    return build_tree(greedy_splits(pair_table(chart_NxN[None]))[0], n)[0]


def exact_tree(chart_NxN: np.ndarray):
    """The exact best tree (DP) of one sentence's chart."""
    n = chart_NxN.shape[0]
    return build_tree(exact_splits(pair_table(chart_NxN[None]))[0], n)[0]
