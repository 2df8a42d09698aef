"""Tree projections for a causal LM (Murty et al. 2023 App. C): SCI charts, decoders, scores.

Token positions: 0 is SOS, words w1..wn sit at positions 1..n. Charts use *word* indices:
chart[a, b] (0 <= a <= b < n) is the cosine between the context-free and the contextual span
vector of words a..b (token positions a+1..b+1); other cells are NaN.

Fast path (`charts_fast`): with keys restricted to {0} ∪ {a..b} in every layer, a causal query
i <= b only ever sees keys {0} ∪ {a..i}, so its output does not depend on b. One forward per start
a with keys {0} ∪ {a..} therefore yields h̃_i^(a,b) for every b at once, and a cumulative sum over i
gives ṽ_ab for every span starting at a: n runs per sentence instead of n(n+1)/2 (and, packed two
starts per row with absolute positions kept, about n/2 rows of n+3 tokens; `packed_layout`). Long
strings run their rows a chunk at a time, each chunk reduced to its chart rows before the next.
`charts_direct` is the per-span reference (one masked forward per span, as the original).
Decoding works node by node on the chart (O(n²) memory), iteratively (Dyck strings run to ~1,100 words).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sgjax.config import ModelConfig
from sgjax.core import model as M


def final_hidden(cfg: ModelConfig, params, tokens_BxT: jax.Array, allowed_BxTxT=None, positions_BxT=None) -> jax.Array:
    """Final layer's (post-LN) output h_BxTxD, optionally with restricted attention and given positions."""
    _, internals = M.forward(
        cfg, params, tokens_BxT, allowed_BxTxT=allowed_BxTxT, positions_BxT=positions_BxT, return_internals=True
    )
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
    Returns (src_RxW token position or -1, seg_RxW run id or -1, start_RxJ, col_RxJxT): row r's run j
    (J = 2) is start a = start[r, j] (0: none), and col[r, j, i] is the slot of its position i >= a.
    """
    w = t + 2
    pairs = [(a, t - a) if a < t - a else (a,) for a in range(1, t) if a <= t - a]
    src = np.full((len(pairs), w), -1, np.int32)
    seg = np.full((len(pairs), w), -1, np.int32)
    start = np.zeros((len(pairs), 2), np.int32)
    col = np.zeros((len(pairs), 2, t), np.int32)
    for r, pair in enumerate(pairs):
        c = 0
        for j, a in enumerate(pair):
            run = [0] + list(range(a, t))
            src[r, c : c + len(run)] = run
            seg[r, c : c + len(run)] = j
            start[r, j] = a
            col[r, j, a:] = c + np.arange(1, len(run))
            c += len(run)
    return src, seg, start, col


def restricted_rows(cfg: ModelConfig, params, tokens_BxT, src_CxW, seg_CxW, positions_CxW) -> jax.Array:
    """h_BxCxWxD: the final layer over C packed rows, each run attending only within itself."""
    b = tokens_BxT.shape[0]
    c, w = src_CxW.shape
    tokens_BxCxW = jnp.where(src_CxW[None] >= 0, tokens_BxT[:, jnp.maximum(src_CxW, 0)], 0)
    same_CxWxW = (seg_CxW[:, :, None] == seg_CxW[:, None, :]) & (seg_CxW[:, None, :] >= 0)
    allowed_BCxWxW = jnp.broadcast_to(same_CxWxW[None], (b, c, w, w)).reshape(b * c, w, w)
    positions_BCxW = jnp.broadcast_to(positions_CxW[None], (b, c, w)).reshape(b * c, w)
    h_BCxWxD = final_hidden(cfg, params, tokens_BxCxW.reshape(b * c, w), allowed_BCxWxW, positions_BCxW)
    return h_BCxWxD.reshape(b, c, w, -1)


def span_cosines(hr_BxKxTxD: jax.Array, start_K: jax.Array, cum_BxTxD: jax.Array) -> jax.Array:
    """c_BxKxT: c(a, b) for K starts a (0: none) and every end b, from each start's restricted run hr.

    ṽ_ab = Σ_{i=a..b} h̃_i^(a) is the cumulative sum over i of the run, zeroed before a;
    v_ab = Σ_{i=a..b} h_i = cum[b] - cum[a-1].
    """
    in_span_KxT = jnp.arange(hr_BxKxTxD.shape[2])[None] >= start_K[:, None]
    vt_BxKxTxD = jnp.cumsum(jnp.where(in_span_KxT[None, :, :, None], hr_BxKxTxD, 0.0), axis=2)
    v_BxKxTxD = cum_BxTxD[:, None] - cum_BxTxD[:, jnp.maximum(start_K - 1, 0)][:, :, None]
    return cosine(vt_BxKxTxD, v_BxKxTxD)


def packed_chart_rows(
    cfg: ModelConfig, params, tokens_BxT, cum_BxTxD, src_CxW, seg_CxW, positions_CxW, start_CxJ, col_CxJxT
) -> jax.Array:
    """c_BxCxJxT: the chart rows of the starts packed in C rows (J = 2 runs a row), every end b."""
    c, j = start_CxJ.shape
    h_BxCxWxD = restricted_rows(cfg, params, tokens_BxT, src_CxW, seg_CxW, positions_CxW)
    hr_BxCxJxTxD = h_BxCxWxD[:, jnp.arange(c)[:, None, None], col_CxJxT]
    b, t, d = hr_BxCxJxTxD.shape[0], hr_BxCxJxTxD.shape[3], hr_BxCxJxTxD.shape[4]
    c_BxKxT = span_cosines(hr_BxCxJxTxD.reshape(b, c * j, t, d), start_CxJ.reshape(-1), cum_BxTxD)
    return c_BxKxT.reshape(b, c, j, t)


def packed_chart(cfg: ModelConfig, params, tokens_BxT, cum_BxTxD, row_chunk: int | None = None) -> jax.Array:
    """c_BxAxT (start a = 1..T-1, end b) from the packed restricted runs, `row_chunk` rows at a time.

    Chunked (`lax.map`), only a chunk's attention scores and run states are held at once, so a
    sentence of a thousand tokens fits in a few GB; None runs every row in one go.
    """
    b, t = tokens_BxT.shape
    src_RxW, seg_RxW, start_RxJ, col_RxJxT = packed_layout(t)
    r = src_RxW.shape[0]
    chunk = r if row_chunk is None else max(1, min(int(row_chunk), r))
    n_chunks = -(-r // chunk)
    pad = lambda x, v: np.pad(x, [(0, n_chunks * chunk - r)] + [(0, 0)] * (x.ndim - 1), constant_values=v)  # noqa: E731
    start_RxJ = pad(start_RxJ, 0)
    layout = (pad(src_RxW, -1), pad(seg_RxW, -1), pad(np.maximum(src_RxW, 0), 0), start_RxJ, pad(col_RxJxT, 0))
    # behind a barrier, XLA does not fold the position-encoding gather into a constant of R·W·D floats
    layout = jax.lax.optimization_barrier(tuple(jnp.asarray(x) for x in layout))
    rows = lambda xs: packed_chart_rows(cfg, params, tokens_BxT, cum_BxTxD, *xs)  # noqa: E731
    if n_chunks == 1:
        c_BxRxJxT = rows(layout)
    else:
        split = lambda x: x.reshape(n_chunks, chunk, *x.shape[1:])  # noqa: E731
        c_NxBxCxJxT = jax.lax.map(rows, tuple(split(x) for x in layout))
        c_BxRxJxT = jnp.moveaxis(c_NxBxCxJxT, 0, 1).reshape(b, n_chunks * chunk, 2, t)
    # row r's run j holds start a: its chart row is a-1; empty runs (a = 0) go out of bounds and are dropped
    row_K = np.where(start_RxJ > 0, start_RxJ - 1, t - 1).reshape(-1)
    c_BxAxT = jnp.full((b, t - 1, t), jnp.nan, c_BxRxJxT.dtype)
    return c_BxAxT.at[:, row_K].set(c_BxRxJxT.reshape(b, -1, t), mode="drop")


def unpacked_chart(cfg: ModelConfig, params, tokens_BxT, cum_BxTxD) -> jax.Array:
    """c_BxAxT with one full-width restricted run per start, as the definition reads (a reference)."""
    b, t = tokens_BxT.shape
    s_T = jnp.arange(t)
    allowed_AxT = (s_T[None] == 0) | (s_T[None] >= jnp.arange(1, t)[:, None])
    allowed_BAxTxT = jnp.broadcast_to(allowed_AxT[None, :, None, :], (b, t - 1, t, t)).reshape(b * (t - 1), t, t)
    tokens_BAxT = jnp.repeat(tokens_BxT, t - 1, axis=0)
    hr_BxAxTxD = final_hidden(cfg, params, tokens_BAxT, allowed_BAxTxT).reshape(b, t - 1, t, -1)
    return span_cosines(hr_BxAxTxD, jnp.arange(1, t), cum_BxTxD)


def charts_fast(
    cfg: ModelConfig,
    params,
    tokens_BxT: jax.Array,
    h_BxTxD: jax.Array | None = None,
    packed: bool = True,
    row_chunk: int | None = None,
) -> jax.Array:
    """chart_BxNxN (N = T-1) of one member by one restricted run per start position.

    `h_BxTxD`: the unrestricted final-layer output, if the caller already has it. `packed` puts two
    starts' runs in one row (`packed_layout`, about half the compute); False: one row per start.
    `row_chunk`: packed rows run at a time (`packed_chart`).
    """
    h_BxTxD = final_hidden(cfg, params, tokens_BxT) if h_BxTxD is None else h_BxTxD
    cum_BxTxD = jnp.cumsum(h_BxTxD, axis=1)
    if packed:
        c_BxAxT = packed_chart(cfg, params, tokens_BxT, cum_BxTxD, row_chunk)
    else:
        c_BxAxT = unpacked_chart(cfg, params, tokens_BxT, cum_BxTxD)
    chart_BxNxN = c_BxAxT[:, :, 1:]  # token position b -> word index b-1
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
# Per node, not per (a, b, k) table: an O(n³) table of a 1,000-word Dyck string is 8 GB.


def node_pairs(c_NxN: np.ndarray, a: int, b: int) -> np.ndarray:
    """pair_K = c(a, k) + c(k+1, b) for the splits k = a..b-1 of node (a, b); -inf where not finite."""
    k_K = np.arange(a, b)
    pair_K = c_NxN[a, k_K] + c_NxN[k_K + 1, b]
    return np.where(np.isfinite(pair_K), pair_K, -np.inf)


def greedy_split(c_NxN: np.ndarray, a: int, b: int) -> int:
    """argmax_k of c(a,k)+c(k+1,b); ties -> smallest k (the original's strict '>')."""
    return a + int(np.argmax(node_pairs(c_NxN, a, b)))


def exact_splits(c_NxN: np.ndarray) -> np.ndarray:
    """split_NxN of the tree maximizing the summed c over all non-root nodes (O(n³) DP; ties -> smallest k)."""
    c = np.asarray(c_NxN, np.float64)
    n = c.shape[0]
    score = np.zeros((n, n))
    split = np.zeros((n, n), np.int64)
    for length in range(2, n + 1):
        a_A = np.arange(n - length + 1)
        b_A = a_A + length - 1
        k_AxJ = a_A[:, None] + np.arange(length - 1)[None]
        pair_AxJ = c[a_A[:, None], k_AxJ] + c[k_AxJ + 1, b_A[:, None]]
        tot = (
            np.where(np.isfinite(pair_AxJ), pair_AxJ, -np.inf)
            + score[a_A[:, None], k_AxJ]
            + score[k_AxJ + 1, b_A[:, None]]
        )
        j = np.argmax(tot, axis=-1)
        score[a_A, b_A] = tot[np.arange(len(a_A)), j]
        split[a_A, b_A] = a_A + j
    return split


def build_tree(choose, n: int):
    """(tree, internal nodes [(a, b, k)] in pre-order) with k = choose(a, b); one word -> leaf 0.

    Iterative, not recursive: a right-branching tree over 1,000 words is deeper than Python's stack.
    """
    nodes: list[tuple[int, int, int]] = []
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        if a < b:
            k = choose(a, b)
            nodes.append((a, b, k))
            stack += [(k + 1, b), (a, k)]  # left subtree first, as a recursion would
    built: dict[tuple[int, int], object] = {}
    for a, b, k in reversed(nodes):  # children before parents
        left = a if a == k else built.pop((a, k))
        right = b if k + 1 == b else built.pop((k + 1, b))
        built[(a, b)] = (left, right)
    return (built[(0, n - 1)] if nodes else 0), nodes


def decode(chart_XxNxN: np.ndarray, lengths_X, *, exact: bool = False, rng: np.random.Generator | None = None):
    """Trees and per-sentence tscores: (trees, tscore_expected_X, tscore_sampled_X).

    gain(node) = [c(a,k*) + c(k*+1,b)] - baseline: the mean over all splits k (expected) or one
    uniformly random split per node (sampled, the original's baseline; `rng` seeded by the caller).
    """
    c_XxNxN = np.asarray(chart_XxNxN, np.float64)
    x, n = c_XxNxN.shape[:2]
    rng = rng if rng is not None else np.random.default_rng(0)
    u_XxNxN = rng.random((x, n, n))  # node (a, b)'s random split: a + floor(u · (b - a))
    trees, exp_X, smp_X = [], np.zeros(x), np.zeros(x)
    for s, length in enumerate(np.asarray(lengths_X).tolist()):
        c = c_XxNxN[s]
        if exact:
            split_NxN = exact_splits(c[:length, :length])
            choose = lambda a, b: int(split_NxN[a, b])
        else:
            choose = functools.partial(greedy_split, c)
        tree, nodes = build_tree(choose, int(length))
        trees.append(tree)
        for a, b, k in nodes:
            pair_K = node_pairs(c, a, b)
            finite_K = np.isfinite(pair_K)
            exp_X[s] += pair_K[k - a] - np.where(finite_K, pair_K, 0.0).sum() / max(finite_K.sum(), 1)
            smp_X[s] += pair_K[k - a] - pair_K[int(np.floor(u_XxNxN[s, a, b] * (b - a)))]
    return trees, exp_X, smp_X


def greedy_tree(chart_NxN: np.ndarray):
    """The original's greedy top-down tree of one sentence's chart."""
    c = np.asarray(chart_NxN, np.float64)
    return build_tree(functools.partial(greedy_split, c), c.shape[0])[0]


def exact_tree(chart_NxN: np.ndarray):
    """The exact best tree (DP) of one sentence's chart."""
    split_NxN = exact_splits(chart_NxN)
    return build_tree(lambda a, b: int(split_NxN[a, b]), split_NxN.shape[0])[0]
