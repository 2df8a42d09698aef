"""Batched greedy decoding for the causal LM, jit-friendly and vmappable over a population.

    greedy_decode(cfg, params, prefix_BxW, prefix_len_B, *, max_steps, eos_id) -> (gen_BxM, gen_len_B)

`prefix_BxW` holds `[SOS] + prefix tokens`, right-padded with 0 to a fixed width W; `prefix_len_B`
counts SOS. Generated token i sits at absolute position `prefix_len + i`. Each sequence stops at its
first EOS (also as the very first token: D16 counts such outputs wrong downstream); the EOS is not
part of the output. `gen_BxM` (M = max_steps) is 0 beyond `gen_len_B`.

Two implementations with the same contract:
* `greedy_decode` (default): one parallel pass over the prefix fills the model's K/V cache
  (`model.forward(..., cache=)`), then one token per step.
* `greedy_decode_recompute`: the full `model.forward` on a fixed (W + max_steps) buffer each step;
  simple and obviously right (causal attention makes the not-yet-written slots irrelevant), ~10x
  more compute. Kept as the reference and as a fallback.

Both loops exit as soon as every sequence is done (under vmap: every member's every sequence).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from sgjax.config import ModelConfig
from sgjax.core import model


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
    # Phase 1: the whole prefix buffer in one pass (pad slots get K/V too; they are masked, then overwritten).
    pos_BxW = jnp.broadcast_to(jnp.arange(w)[None], (b, w))
    cache = model.empty_cache(cfg, b, w + max_steps)
    logits_BxWxV, cache = model.forward(cfg, params, prefix_BxW, positions_BxT=pos_BxW, cache=cache)
    nxt_B = jnp.argmax(at_prefix_end(logits_BxWxV, prefix_len_B), axis=-1).astype(jnp.int32)
    tokens_BxS, gen_len_B, done_B = _accept(
        cache.tokens_BxS,
        nxt_B,
        prefix_len_B,
        jnp.ones((b,), bool),
        jnp.zeros((b,), jnp.int32),
        eos_id,
        max_steps,
        prefix_len_B,
    )
    cache = cache._replace(tokens_BxS=tokens_BxS)

    # Phase 2: step j feeds generated token j-1 (at prefix_len + j - 1) and writes token j.
    def cond(state):
        j, _, _, done_B = state
        return (j < max_steps) & ~jnp.all(done_B)

    def body(state):
        j, cache, gen_len_B, done_B = state
        pos_B = prefix_len_B + j - 1
        tok_B = cache.tokens_BxS[jnp.arange(b), pos_B]
        logits_Bx1xV, cache = model.forward(cfg, params, tok_B[:, None], positions_BxT=pos_B[:, None], cache=cache)
        nxt_B = jnp.argmax(logits_Bx1xV[:, 0], axis=-1).astype(jnp.int32)
        tokens_BxS, gen_len_B, done_new = _accept(
            cache.tokens_BxS, nxt_B, pos_B + 1, ~done_B, gen_len_B, eos_id, max_steps, prefix_len_B
        )
        return j + 1, cache._replace(tokens_BxS=tokens_BxS), gen_len_B, done_B | done_new

    _, cache, gen_len_B, _ = lax.while_loop(cond, body, (jnp.int32(1), cache, gen_len_B, done_B))
    return _extract(cache.tokens_BxS, prefix_len_B, gen_len_B, max_steps), gen_len_B


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
