"""Attention sparsity = negative attention entropy (D8, D9).

Two definitions, both from the real per-layer attention of `forward(..., return_internals=True)`:
  * original (D9): per layer, average the H heads' distributions; entropy (nats) of each query
    position t = 0..n (SOS included, entropy 0); sum over positions, average over layers; mean over
    sentences. Longer sentences weigh more.
  * per-distribution mean: entropy of every (layer, head, query t = 1..n) distribution, pooled mean
    over all of them and all sentences (SOS's point mass left out).
`bug=True` reproduces the original's D8 bug: every layer's attention is computed from that layer's
q/k weights applied to the *embedding output* instead of the previous layer's output; we compute it
here directly from params["layers"]["q"/"k"] (stacked on L), mirroring sgjax.core.model's attention.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sgjax.config import ModelConfig
from sgjax.core import model as M


def entropy(p_XxK: jax.Array) -> jax.Array:
    """Shannon entropy (nats) over the last axis, with 0 log 0 = 0."""
    return -jnp.sum(jnp.where(p_XxK > 0, p_XxK * jnp.log(jnp.where(p_XxK > 0, p_XxK, 1.0)), 0.0), axis=-1)


def embedding_attention(cfg: ModelConfig, params, tokens_BxT: jax.Array) -> jax.Array:
    """attn_LxBxHxTxT with every layer fed the embedding output (the original's D8 bug)."""
    b, t = tokens_BxT.shape
    d, h = cfg.d_model, cfg.n_heads
    dh = d // h
    pe_TxD = jnp.asarray(M.sinusoidal_table(cfg.max_len, d))[:t]
    x_BxTxD = params["embed"][tokens_BxT] * math.sqrt(d) + pe_TxD[None]
    q_LxBxTxHxK = jnp.einsum("btd,lde->lbte", x_BxTxD, params["layers"]["q"]).reshape(-1, b, t, h, dh)
    k_LxBxTxHxK = jnp.einsum("btd,lde->lbte", x_BxTxD, params["layers"]["k"]).reshape(-1, b, t, h, dh)
    scores_LxBxHxTxT = jnp.einsum("lbqhk,lbshk->lbhqs", q_LxBxTxHxK, k_LxBxTxHxK) / math.sqrt(dh)
    keep_BxTxT = jnp.tril(jnp.ones((t, t), bool))[None] & (tokens_BxT != 0)[:, None, :]
    scores_LxBxHxTxT = jnp.where(keep_BxTxT[None, :, None], scores_LxBxHxTxT, M.NEG_INF)
    return jax.nn.softmax(scores_LxBxHxTxT, axis=-1)


def sentence_entropies(attn_LxBxHxTxT: jax.Array, tokens_BxT: jax.Array) -> dict[str, jax.Array]:
    """Per sentence: "orig_B" (D9 definition), "dist_sum_B" and "dist_count_B" (per-distribution sums)."""
    n_layers, _, n_heads, t, _ = attn_LxBxHxTxT.shape
    valid_BxT = tokens_BxT != 0  # SOS and words; padding queries are dropped
    ent_avg_LxBxT = entropy(attn_LxBxHxTxT.mean(axis=2))
    orig_B = jnp.sum(jnp.where(valid_BxT[None], ent_avg_LxBxT, 0.0), axis=(0, 2)) / n_layers
    words_BxT = valid_BxT & (jnp.arange(t) > 0)[None]
    ent_LxBxHxT = entropy(attn_LxBxHxTxT)
    dist_sum_B = jnp.sum(jnp.where(words_BxT[None, :, None], ent_LxBxHxT, 0.0), axis=(0, 2, 3))
    dist_count_B = words_BxT.sum(axis=1) * (n_layers * n_heads)
    return {"orig_B": orig_B, "dist_sum_B": dist_sum_B, "dist_count_B": dist_count_B.astype(jnp.float32)}


def attention_entropies(cfg: ModelConfig, params, tokens_BxT: jax.Array, *, bug: bool = False) -> dict[str, jax.Array]:
    """`sentence_entropies` of one member's real attention, or of the D8-bug attention."""
    if bug:
        attn = embedding_attention(cfg, params, tokens_BxT)
    else:
        attn = M.forward(cfg, params, tokens_BxT, return_internals=True)[1]["attn_LxBxHxTxT"]
    return sentence_entropies(attn, tokens_BxT)


def sparsity_from_sums(orig_sum: float, n_sentences: int, dist_sum: float, dist_count: float) -> dict[str, float]:
    """Aggregate per-sentence sums into the reported numbers (negative entropies)."""
    return {
        "sparsity": -orig_sum / max(n_sentences, 1),
        "sparsity_mean": -dist_sum / max(dist_count, 1.0),
    }
