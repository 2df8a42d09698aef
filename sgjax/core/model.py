"""The original's causal TransformerLM in Flax Linen: post-LN, sinusoidal positions, untied output.

Every forward goes through `forward`: training (dropout, packed or unpadded layouts), evaluation,
the probe's masked passes, and KV-cached decoding (`cache=`). `init_params` stacks the layers on a
leading L axis (the checkpoint form); training splits them into one tree per layer (`split_layers`).
Layers run as a Python loop (fastest) or, with `scan_layers=True`, with `nn.scan` (compile time flat
in depth). The speed variants (dropout draws, the unpadded regather) live in ops.py. Use
`init_params` and `forward`; vmap them over a population axis S yourself.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sgjax.config import ModelConfig
from sgjax.core.ops import Dropout, SequenceRows, regather

Params = Any
NEG_INF = -1e30  # finite, so a fully masked row cannot produce NaN


def uniform(bound: float):
    """U(-bound, bound) initializer (PyTorch's defaults are all of this form)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def xavier(fan_in: int, fan_out: int, gain: float = 1.0):
    """Xavier-uniform as torch.nn.init.xavier_uniform_ for a fan_in -> fan_out matrix."""
    return uniform(gain * math.sqrt(6.0 / (fan_in + fan_out)))


@functools.lru_cache(maxsize=4)
def sinusoidal_table(max_len: int, d_model: int) -> np.ndarray:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...), positions from 0."""
    pos_Px1 = np.arange(max_len, dtype=np.float64)[:, None]
    div_half = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    pe_PxD = np.zeros((max_len, d_model), dtype=np.float32)
    pe_PxD[:, 0::2] = np.sin(pos_Px1 * div_half)
    pe_PxD[:, 1::2] = np.cos(pos_Px1 * div_half)
    return pe_PxD


class KVCache(NamedTuple):
    """What KV-cached decoding carries between steps: every position's token and each layer's keys and values."""

    tokens_BxS: jax.Array  # 0 (pad) where nothing is written yet
    k_LxBxSxHxK: jax.Array
    v_LxBxSxHxK: jax.Array


def empty_cache(cfg: ModelConfig, b: int, s: int, dtype=jnp.float32) -> KVCache:
    """An empty cache for B sequences of S positions."""
    shape = (cfg.n_layers, b, s, cfg.n_heads, cfg.d_model // cfg.n_heads)
    return KVCache(jnp.zeros((b, s), jnp.int32), jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


class Block(nn.Module):
    """One post-LN layer: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x)))."""

    cfg: ModelConfig
    deterministic: bool
    return_internals: bool

    @nn.compact
    def __call__(self, x_BxTxD, mask_Bx1xTxS, rows: SequenceRows | None = None, kv=None):
        """`kv` = (k_LxBxSxHxK, v_LxBxSxHxK, layer, positions_BxT) when decoding: the T new tokens' keys
        and values are written at their positions in this layer's cache, and attention runs over all S."""
        cfg = self.cfg
        d, h = cfg.d_model, cfg.n_heads
        dh = d // h
        drop = lambda y: Dropout(cfg.dropout, self.deterministic, cfg.dropout_draw)(y)
        # The original fuses K and V into one 512->1024 Linear but initializes each half as its
        # own 512x512 Xavier matrix; two separate matrices are the same function and init.
        wq_DxD = self.param("q", xavier(d, d), (d, d))
        wk_DxD = self.param("k", xavier(d, d), (d, d))
        wv_DxD = self.param("v", xavier(d, d), (d, d))
        wo_DxD = self.param("o", xavier(d, d), (d, d))
        b, t, _ = x_BxTxD.shape
        if rows is None:  # attention on the rows the tokens came in
            to_rows = lambda y: y.reshape(b, t, h, dh)
            from_rows = lambda y: y.reshape(b, t, d)
        else:  # unpadded: tokens [1, P] to sequences [R, T] for attention, and back
            r, tr = rows.slot_BxT.shape
            to_rows = lambda y: regather(y[0], rows.slot_BxT.reshape(-1), rows.at_P).reshape(r, tr, h, dh)
            from_rows = lambda y: regather(y.reshape(r * tr, d), rows.at_P, rows.slot_BxT.reshape(-1))[None]
        q_BxTxHxK = to_rows(x_BxTxD @ wq_DxD)
        k_BxSxHxK = to_rows(x_BxTxD @ wk_DxD)
        v_BxSxHxK = to_rows(x_BxTxD @ wv_DxD)
        if kv is not None:  # decoding: the new keys and values join the cache
            # One scatter into the whole L-layer buffer, which XLA then updates in place.
            k_all, v_all, l, pos_BxT = kv
            rows_BxT = jnp.broadcast_to(jnp.arange(b)[:, None], pos_BxT.shape)
            k_all = k_all.at[l, rows_BxT, pos_BxT].set(k_BxSxHxK)
            v_all = v_all.at[l, rows_BxT, pos_BxT].set(v_BxSxHxK)
            k_BxSxHxK, v_BxSxHxK = k_all[l], v_all[l]
        scores_BxHxTxS = jnp.einsum("bqhk,bshk->bhqs", q_BxTxHxK, k_BxSxHxK) / math.sqrt(dh)
        scores_BxHxTxS = jnp.where(mask_Bx1xTxS, scores_BxHxTxS, NEG_INF)
        attn_BxHxTxS = jax.nn.softmax(scores_BxHxTxS, axis=-1)
        ctx_BxTxHxK = jnp.einsum("bhqs,bshk->bqhk", drop(attn_BxHxTxS), v_BxSxHxK)
        x_BxTxD = nn.LayerNorm(epsilon=1e-5, name="norm1")(x_BxTxD + drop(from_rows(ctx_BxTxHxK) @ wo_DxD))

        f = cfg.d_ff
        w1_DxF = self.param("ff1_w", xavier(d, f, gain=math.sqrt(2.0)), (d, f))
        b1_F = self.param("ff1_b", uniform(1 / math.sqrt(d)), (f,))
        w2_FxD = self.param("ff2_w", xavier(f, d), (f, d))
        b2_D = self.param("ff2_b", uniform(1 / math.sqrt(f)), (d,))
        ff_BxTxD = drop(jax.nn.relu(x_BxTxD @ w1_DxF + b1_F)) @ w2_FxD + b2_D
        x_BxTxD = nn.LayerNorm(epsilon=1e-5, name="norm2")(x_BxTxD + drop(ff_BxTxD))
        if kv is not None:
            return x_BxTxD, (k_all, v_all)
        internals = (x_BxTxD, attn_BxHxTxS) if self.return_internals else None
        return x_BxTxD, internals


class TransformerLM(nn.Module):
    """Embedding x sqrt(d) + PE, L post-LN blocks, untied output Linear with bias."""

    cfg: ModelConfig
    deterministic: bool = True
    return_internals: bool = False

    @nn.compact
    def __call__(self, tokens_BxT, allowed_BxTxT=None, positions_BxT=None, layer_params=None, rows=None, cache=None):
        cfg = self.cfg
        v, d = cfg.vocab_size, cfg.d_model
        b, t = tokens_BxT.shape
        emb_VxD = self.param("embed", xavier(v, d), (v, d))
        pe_PxD = jnp.asarray(sinusoidal_table(cfg.max_len, d))
        # Packed batches restart positions at every sequence; plain batches count from 0.
        pe_BxTxD = pe_PxD[:t][None] if positions_BxT is None else pe_PxD[positions_BxT]
        x_BxTxD = emb_VxD[tokens_BxT] * math.sqrt(d) + pe_BxTxD
        x_BxTxD = Dropout(cfg.dropout, self.deterministic, cfg.dropout_draw)(x_BxTxD)

        if cache is not None:  # decoding: keys are cached positions up to the query's, not pad
            rows_BxT = jnp.broadcast_to(jnp.arange(b)[:, None], positions_BxT.shape)
            cache = cache._replace(tokens_BxS=cache.tokens_BxS.at[rows_BxT, positions_BxT].set(tokens_BxT))
            s = cache.tokens_BxS.shape[1]
            causal_BxTxS = jnp.arange(s)[None, None, :] <= positions_BxT[:, :, None]
            keep_BxTxS = causal_BxTxS & (cache.tokens_BxS != 0)[:, None, :]
        elif rows is None:
            causal_TxT = jnp.tril(jnp.ones((t, t), dtype=bool))
            keep_BxTxS = causal_TxT[None] & (tokens_BxT != 0)[:, None, :]
        else:  # attention on the sequences as rows: keys must be real tokens of the same sequence
            tr = rows.slot_BxT.shape[1]
            keep_BxTxS = jnp.tril(jnp.ones((tr, tr), dtype=bool))[None] & (rows.slot_BxT < t)[:, None, :]
        if allowed_BxTxT is not None:
            keep_BxTxS = keep_BxTxS & allowed_BxTxT
        if cache is not None:
            x_BxTxD, cache = self.cached_layers(x_BxTxD, keep_BxTxS[:, None], layer_params, cache, positions_BxT)
            internals = None
        elif layer_params is not None:  # the per-layer form (split_layers) that training keeps
            x_BxTxD, internals = self.unrolled_layers(x_BxTxD, keep_BxTxS[:, None], layer_params, rows)
        elif self.is_initializing() or cfg.scan_layers:  # the scan creates the stacked parameters
            blocks = nn.scan(
                Block,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast),
                length=cfg.n_layers,
            )(cfg, self.deterministic, self.return_internals, name="layers")
            x_BxTxD, internals = blocks(x_BxTxD, keep_BxTxS[:, None], rows)
        else:
            per_layer = _unstack(self.variables["params"]["layers"], cfg.n_layers)
            x_BxTxD, internals = self.unrolled_layers(x_BxTxD, keep_BxTxS[:, None], per_layer, rows)

        w_DxV = self.param("out_w", xavier(d, v), (d, v))
        b_V = self.param("out_b", uniform(1 / math.sqrt(d)), (v,))
        logits_BxTxV = x_BxTxD @ w_DxV + b_V
        if cache is not None:
            return logits_BxTxV, cache
        if not self.return_internals:
            return logits_BxTxV
        hidden_LxBxTxD, attn_LxBxHxTxT = internals
        return logits_BxTxV, {"hidden_LxBxTxD": hidden_LxBxTxD, "attn_LxBxHxTxT": attn_LxBxHxTxT}

    def unrolled_layers(self, x_BxTxD, mask_Bx1xTxT, per_layer, rows=None):
        """The L layers as a Python loop over per-layer parameter trees.

        Without a while loop XLA needs no per-layer dynamic slices of the weights or
        dynamic-update-slices into stacked gradients; layer l's dropout key is fold_in(key, l).
        """
        cfg = self.cfg
        key = None if self.deterministic or cfg.dropout == 0.0 else self.make_rng("dropout")
        hidden, attn = [], []
        for l, p in enumerate(per_layer):
            rngs = {} if key is None else {"dropout": jax.random.fold_in(key, l)}
            block = Block(cfg, self.deterministic, self.return_internals, parent=None)
            x_BxTxD, inter = block.apply({"params": p}, x_BxTxD, mask_Bx1xTxT, rows, rngs=rngs)
            if inter is not None:
                hidden.append(inter[0])
                attn.append(inter[1])
        return x_BxTxD, ((jnp.stack(hidden), jnp.stack(attn)) if self.return_internals else None)

    def cached_layers(self, x_BxTxD, mask_Bx1xTxS, per_layer, cache: KVCache, positions_BxT):
        """The L layers in eval mode, each writing its new keys and values into the cache.

        A Python loop (not scan) so the cache stays one buffer XLA updates in place.
        """
        k_all, v_all = cache.k_LxBxSxHxK, cache.v_LxBxSxHxK
        block = Block(self.cfg, True, False, parent=None)
        for l, p in enumerate(per_layer):
            kv = (k_all, v_all, l, positions_BxT)
            x_BxTxD, (k_all, v_all) = block.apply({"params": p}, x_BxTxD, mask_Bx1xTxS, None, kv)
        return x_BxTxD, cache._replace(k_LxBxSxHxK=k_all, v_LxBxSxHxK=v_all)


def _unstack(tree, n: int) -> list:
    """[tree of [L, ...]] -> L trees; lax.split's transpose is one concatenate (slices would pad and add)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    pieces = [jnp.split(leaf, n, axis=0) for leaf in leaves]
    return [treedef.unflatten([pc[l][0] for pc in pieces]) for l in range(n)]


def split_layers(params: Params) -> Params:
    """Stacked `layers` ([L, ...] leaves) -> a tuple of L per-layer trees: the form training keeps.

    With a population axis in front, slicing layer l out of [S, L, ...] and concatenating its
    gradient back cost every step about a fifth of a CPU step at S = 10; separate leaves cost nothing.
    """
    layers = params["layers"]
    return {**params, "layers": tuple(_unstack(layers, jax.tree_util.tree_leaves(layers)[0].shape[0]))}


def stack_layers(params: Params, axis: int = 0) -> Params:
    """Inverse of split_layers (axis 1 when leaves carry a population axis): the checkpoint form."""
    layers = params["layers"]
    if not isinstance(layers, tuple):
        return params
    xp = np if isinstance(jax.tree_util.tree_leaves(layers)[0], np.ndarray) else jnp
    return {**params, "layers": jax.tree_util.tree_map(lambda *ls: xp.stack(ls, axis=axis), *layers)}


def init_params(cfg: ModelConfig, key: jax.Array) -> Params:
    """Parameters of one model, PyTorch-style initialization."""
    tokens_1x2 = jnp.ones((1, 2), dtype=jnp.int32)
    return TransformerLM(cfg).init({"params": key}, tokens_1x2)["params"]


def forward(
    cfg: ModelConfig,
    params: Params,
    tokens_BxT: jax.Array,
    *,
    dropout_key: jax.Array | None = None,
    allowed_BxTxT: jax.Array | None = None,
    positions_BxT: jax.Array | None = None,
    rows: SequenceRows | None = None,
    cache: KVCache | None = None,
    return_internals: bool = False,
):
    """Logits for every position; `dropout_key=None` is eval mode; see docs/architecture.md.

    `params` may hold its layers stacked (init_params, checkpoints) or split (split_layers). With `rows`,
    tokens_1xP is a packed row whose attention runs per sequence (the unpadded layout, batching.py).
    With `cache`, tokens_BxT are new tokens at `positions_BxT` that attend to every cached position up
    to their own; returns (logits, the updated cache).
    """
    model = TransformerLM(cfg, deterministic=dropout_key is None, return_internals=return_internals)
    rngs = {} if dropout_key is None else {"dropout": dropout_key}
    layers = params["layers"]
    if cache is not None and not isinstance(layers, tuple):  # decoding runs the per-layer loop
        layers = split_layers(params)["layers"]
    if isinstance(layers, tuple):
        rest = {k: v for k, v in params.items() if k != "layers"}
        args = (tokens_BxT, allowed_BxTxT, positions_BxT, layers, rows, cache)
        return model.apply({"params": rest}, *args, rngs=rngs)
    return model.apply({"params": params}, tokens_BxT, allowed_BxTxT, positions_BxT, None, rows, rngs=rngs)


def param_count(params: Params) -> int:
    """Total number of scalars in a parameter tree (one member)."""
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
