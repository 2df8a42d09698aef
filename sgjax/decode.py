"""Batched greedy decoding for the causal LM, jit-friendly and vmappable over a population.

    greedy_decode(cfg, params, prefix_BxW, prefix_len_B, *, max_steps, eos_id) -> (gen_BxM, gen_len_B)

`prefix_BxW` holds `[SOS] + prefix tokens`, right-padded with 0 to a fixed width W; `prefix_len_B`
counts SOS. Generated token i sits at absolute position `prefix_len + i`. Each sequence stops at its
first EOS (also as the very first token: D16 counts such outputs wrong downstream); the EOS is not
part of the output. `gen_BxM` (M = max_steps) is 0 beyond `gen_len_B`.

Two implementations with the same contract:
* `greedy_decode` (default): one parallel pass over the prefix fills a per-layer K/V cache, then one
  token per step. It re-implements `sgjax.model`'s forward over the same parameter tree (pure JAX),
  because the Flax module does not expose K/V; tests check it against `model.forward`.
* `greedy_decode_recompute`: the full `model.forward` on a fixed (W + max_steps) buffer each step;
  simple and obviously right (causal attention makes the not-yet-written slots irrelevant), ~10x
  more compute. Kept as the reference and as a fallback.

Both loops exit as soon as every sequence is done (under vmap: every member's every sequence).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from sgjax import model
from sgjax.config import ModelConfig

NEG_INF = model.NEG_INF


def _layer_norm(x_xD, scale_D, bias_D, eps: float = 1e-5):
    """flax.linen.LayerNorm (fast variance E[x²] − E[x]², clipped at 0), so logits match model.forward."""
    mean = jnp.mean(x_xD, axis=-1, keepdims=True)
    var = jnp.maximum(jnp.mean(x_xD * x_xD, axis=-1, keepdims=True) - mean * mean, 0.0)
    return (x_xD - mean) * lax.rsqrt(var + eps) * scale_D + bias_D


def _embed(cfg: ModelConfig, params, tokens_BxQ, pos_BxQ):
    """Token embedding × √d plus the sinusoidal PE at absolute positions."""
    pe_PxD = jnp.asarray(model.sinusoidal_table(cfg.max_len, cfg.d_model))
    return params["embed"][tokens_BxQ] * math.sqrt(cfg.d_model) + pe_PxD[pos_BxQ]


def _block(cfg: ModelConfig, lp, x_BxQxD, k_BxTxHxK, v_BxTxHxK, keep_BxQxT):
    """One post-LN layer on Q queries whose keys/values are already in the (updated) cache."""
    b, q, d = x_BxQxD.shape
    h = cfg.n_heads
    dh = d // h
    q_BxQxHxK = (x_BxQxD @ lp["q"]).reshape(b, q, h, dh)
    scores_BxHxQxT = jnp.einsum("bqhk,bshk->bhqs", q_BxQxHxK, k_BxTxHxK) / math.sqrt(dh)
    scores_BxHxQxT = jnp.where(keep_BxQxT[:, None], scores_BxHxQxT, NEG_INF)
    attn_BxHxQxT = jax.nn.softmax(scores_BxHxQxT, axis=-1)
    ctx_BxQxD = jnp.einsum("bhqs,bshk->bqhk", attn_BxHxQxT, v_BxTxHxK).reshape(b, q, d)
    x_BxQxD = _layer_norm(x_BxQxD + ctx_BxQxD @ lp["o"], lp["norm1"]["scale"], lp["norm1"]["bias"])
    ff_BxQxD = jax.nn.relu(x_BxQxD @ lp["ff1_w"] + lp["ff1_b"]) @ lp["ff2_w"] + lp["ff2_b"]
    return _layer_norm(x_BxQxD + ff_BxQxD, lp["norm2"]["scale"], lp["norm2"]["bias"])


def _kv(cfg: ModelConfig, lp, x_BxQxD):
    """Keys and values of Q new positions for one layer."""
    b, q, d = x_BxQxD.shape
    split = lambda y: y.reshape(b, q, cfg.n_heads, d // cfg.n_heads)  # noqa: E731
    return split(x_BxQxD @ lp["k"]), split(x_BxQxD @ lp["v"])


def cached_forward(cfg: ModelConfig, params, tokens_BxT, cache, tokens_at_BxQ, pos_BxQ):
    """Logits of Q new tokens at absolute positions pos_BxQ, writing their K/V into `cache`.

    `cache` = (k_LxBxTxHxK, v_LxBxTxHxK); `tokens_BxT` is the token buffer (already holding the new
    tokens): keys are kept where key position ≤ query position and the key token is not pad (0),
    exactly model.forward's causal + padding mask. Returns (logits_BxQxV, cache).
    """
    k_all, v_all = cache
    b, t = tokens_BxT.shape
    keep_BxQxT = (jnp.arange(t)[None, None, :] <= pos_BxQ[:, :, None]) & (tokens_BxT != 0)[:, None, :]
    x_BxQxD = _embed(cfg, params, tokens_at_BxQ, pos_BxQ)
    rows_BxQ = jnp.broadcast_to(jnp.arange(b)[:, None], pos_BxQ.shape)
    # A Python loop over layers (not scan) so the cache stays one buffer XLA updates in place.
    for l in range(cfg.n_layers):
        lp = model.layer_params(params, l)
        k_new, v_new = _kv(cfg, lp, x_BxQxD)
        k_all = k_all.at[l, rows_BxQ, pos_BxQ].set(k_new)
        v_all = v_all.at[l, rows_BxQ, pos_BxQ].set(v_new)
        x_BxQxD = _block(cfg, lp, x_BxQxD, k_all[l], v_all[l], keep_BxQxT)
    return x_BxQxD @ params["out_w"] + params["out_b"], (k_all, v_all)


def empty_cache(cfg: ModelConfig, b: int, t: int, dtype=jnp.float32):
    """Zero K/V buffers for L layers, B sequences, T positions."""
    shape = (cfg.n_layers, b, t, cfg.n_heads, cfg.d_model // cfg.n_heads)
    return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)


def _extract(tokens_BxT, prefix_len_B, gen_len_B, max_steps: int):
    """Generated slice [prefix_len, prefix_len + max_steps) of the buffer, zeroed beyond gen_len."""
    idx_BxM = prefix_len_B[:, None] + jnp.arange(max_steps)[None, :]
    gen_BxM = jnp.take_along_axis(tokens_BxT, idx_BxM, axis=1)
    return jnp.where(jnp.arange(max_steps)[None, :] < gen_len_B[:, None], gen_BxM, 0)


def at_prefix_end(logits_BxWxV, prefix_len_B):
    """The logits at each prefix's last position: the prediction of the token after the prefix."""
    return jnp.take_along_axis(logits_BxWxV, (prefix_len_B - 1)[:, None, None], axis=1)[:, 0]


def prefix_logits(cfg: ModelConfig, params, prefix_BxW, prefix_len_B):
    """Next-token logits after each prefix: one teacher-forced model.forward."""
    return at_prefix_end(model.forward(cfg, params, prefix_BxW), prefix_len_B)


def _accept(tokens_BxT, nxt_B, pos_B, active_B, gen_len_B, eos_id: int, max_steps: int, prefix_len_B):
    """Write the argmax at pos_B for active rows; update lengths and done flags."""
    b = tokens_BxT.shape[0]
    tokens_BxT = tokens_BxT.at[jnp.arange(b), pos_B].set(jnp.where(active_B, nxt_B, tokens_BxT[jnp.arange(b), pos_B]))
    is_eos_B = nxt_B == eos_id
    gen_len_B = gen_len_B + (active_B & ~is_eos_B)
    produced_B = pos_B - prefix_len_B + 1  # tokens generated so far, EOS included
    done_B = ~active_B | is_eos_B | (produced_B >= max_steps)
    return tokens_BxT, gen_len_B, done_B


def greedy_decode(cfg: ModelConfig, params, prefix_BxW, prefix_len_B, *, max_steps: int, eos_id: int):
    """Greedy decoding with a K/V cache: (gen_BxM int32, gen_len_B int32); see the module docstring."""
    params = jax.tree_util.tree_map(jnp.asarray, params)  # numpy parameters (checkpoint.load_params) index tracers
    prefix_BxW = jnp.asarray(prefix_BxW, jnp.int32)
    prefix_len_B = jnp.asarray(prefix_len_B, jnp.int32)
    b, w = prefix_BxW.shape
    t = w + max_steps
    tokens_BxT = jnp.pad(prefix_BxW, ((0, 0), (0, max_steps)))
    # Phase 1: the whole prefix buffer in one pass (pad slots get K/V too; they are masked, then overwritten).
    pos_BxW = jnp.broadcast_to(jnp.arange(w)[None], (b, w))
    logits_BxWxV, cache = cached_forward(cfg, params, tokens_BxT, empty_cache(cfg, b, t), prefix_BxW, pos_BxW)
    nxt_B = jnp.argmax(at_prefix_end(logits_BxWxV, prefix_len_B), axis=-1).astype(jnp.int32)
    active_B = jnp.ones((b,), bool)
    tokens_BxT, gen_len_B, done_B = _accept(
        tokens_BxT, nxt_B, prefix_len_B, active_B, jnp.zeros((b,), jnp.int32), eos_id, max_steps, prefix_len_B
    )

    # Phase 2: step j feeds generated token j-1 (at prefix_len + j - 1) and writes token j.
    def cond(state):
        j, _, _, _, done_B = state
        return (j < max_steps) & ~jnp.all(done_B)

    def body(state):
        j, tokens_BxT, cache, gen_len_B, done_B = state
        pos_B = prefix_len_B + j - 1
        tok_B = tokens_BxT[jnp.arange(b), pos_B]
        logits_Bx1xV, cache = cached_forward(cfg, params, tokens_BxT, cache, tok_B[:, None], pos_B[:, None])
        nxt_B = jnp.argmax(logits_Bx1xV[:, 0], axis=-1).astype(jnp.int32)
        tokens_BxT, gen_len_B, done_new = _accept(
            tokens_BxT, nxt_B, pos_B + 1, ~done_B, gen_len_B, eos_id, max_steps, prefix_len_B
        )
        return j + 1, tokens_BxT, cache, gen_len_B, done_B | done_new

    _, tokens_BxT, _, gen_len_B, _ = lax.while_loop(cond, body, (jnp.int32(1), tokens_BxT, cache, gen_len_B, done_B))
    return _extract(tokens_BxT, prefix_len_B, gen_len_B, max_steps), gen_len_B


def greedy_decode_recompute(cfg: ModelConfig, params, prefix_BxW, prefix_len_B, *, max_steps: int, eos_id: int):
    """Greedy decoding by a full model.forward on a fixed buffer per step (same contract as greedy_decode)."""
    prefix_BxW = jnp.asarray(prefix_BxW, jnp.int32)
    prefix_len_B = jnp.asarray(prefix_len_B, jnp.int32)
    b, w = prefix_BxW.shape
    tokens_BxT = jnp.pad(prefix_BxW, ((0, 0), (0, max_steps)))

    def cond(state):
        j, _, _, done_B = state
        return (j < max_steps) & ~jnp.all(done_B)

    def body(state):
        j, tokens_BxT, gen_len_B, done_B = state
        pos_B = prefix_len_B + j - 1  # the position whose logits predict token j
        logits_BxTxV = model.forward(cfg, params, tokens_BxT)
        nxt_B = jnp.argmax(logits_BxTxV[jnp.arange(b), pos_B], axis=-1).astype(jnp.int32)
        tokens_BxT, gen_len_B, done_new = _accept(
            tokens_BxT, nxt_B, pos_B + 1, ~done_B, gen_len_B, eos_id, max_steps, prefix_len_B
        )
        return j + 1, tokens_BxT, gen_len_B, done_B | done_new

    init = (jnp.int32(0), tokens_BxT, jnp.zeros((b,), jnp.int32), jnp.zeros((b,), bool))
    _, tokens_BxT, gen_len_B, _ = lax.while_loop(cond, body, init)
    return _extract(tokens_BxT, prefix_len_B, gen_len_B, max_steps), gen_len_B


@functools.lru_cache(maxsize=8)
def jit_forward(cfg: ModelConfig):
    """model.forward jitted for one config (cached): (params, tokens_BxT) -> logits."""
    return jax.jit(functools.partial(model.forward, cfg))


def reference_decode(cfg: ModelConfig, params, prefix: list[int], *, max_steps: int, eos_id: int) -> list[int]:
    """Naive one-sequence decode for tests: argmax of model.forward on the growing sequence.

    The sequence is right-padded to a power-of-two width (padding is never attended to) only so that
    a handful of shapes compile.
    """
    seq = list(prefix)
    out: list[int] = []
    for _ in range(max_steps):
        width = 1 << (len(seq) - 1).bit_length()
        logits = jit_forward(cfg)(params, jnp.asarray([seq + [0] * (width - len(seq))], jnp.int32))
        nxt = int(jnp.argmax(logits[0, len(seq) - 1]))
        if nxt == eos_id:
            break
        out.append(nxt)
        seq.append(nxt)
    return out
