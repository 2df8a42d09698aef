"""The original's causal TransformerLM in Flax Linen: post-LN, sinusoidal positions, untied output.

This is the only module that defines Flax modules. `init_params` stacks the layers on a leading L axis (the
checkpoint form); training splits them into one tree per layer (`split_layers`). Layers run as a
Python loop (fastest) or, with `scan_layers=True`, with `nn.scan` (compile time flat in depth). Use
`init_params` and `forward`; vmap them over a population axis S yourself.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.extend.random as jax_random_ext
import jax.numpy as jnp
import numpy as np

from sgjax.config import ModelConfig

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


def packed_bits16(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform uint16 draws, four per threefry block: threefry2x32(key, counter) split into 16-bit halves.

    jax.random.bits spends one whole threefry block (64 bits) per element whatever the width; here a
    counter of ceil(n/2) words gives n 16-bit draws, 3-7x cheaper for the masks of a step on a CPU.
    """
    n = math.prod(shape)
    words_W = jax_random_ext.threefry_2x32(jax.random.key_data(key), jnp.arange((n + 1) // 2, dtype=jnp.uint32))
    return jax.lax.bitcast_convert_type(words_W, jnp.uint16).reshape(-1)[:n].reshape(shape)


def counter_bits16(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform uint16 draws, four per threefry block, each element's bits a function of its index alone.

    For shape (*lead, m, n), elements [l, i, 4j .. 4j+3] share threefry2x32(key, (l << 16 | i, j)), l the
    flat index of `lead`. A token's bits then do not depend on how many tokens follow it, in an
    activation [1, P, d] or an attention square [1, H, P, P]: a member trains the same in any
    population and chunk, whatever P those give. As cheap as packed_bits16, whose threefry_2x32 pairs
    counter i with counter i + n/2, so its bits move when the array's size does.
    """
    *lead, m, n = (1,) * max(0, 2 - len(shape)) + tuple(shape)  # a vector is one row
    lead_count = math.prod(lead)
    if lead_count > 1 << 16 or m > 1 << 16:
        raise ValueError(f"counter_bits16 indexes at most 2^16 leading rows and 2^16 rows, got shape {shape}")
    blocks = -(-n // 4)
    l_L11 = jnp.arange(lead_count, dtype=jnp.uint32)[:, None, None]
    i_1M1 = jnp.arange(m, dtype=jnp.uint32)[None, :, None]
    j_11J = jnp.arange(blocks, dtype=jnp.uint32)[None, None, :]
    row_LxMxJ = jnp.broadcast_to((l_L11 << 16) | i_1M1, (lead_count, m, blocks))
    col_LxMxJ = jnp.broadcast_to(j_11J, (lead_count, m, blocks))
    words = jax_random_ext.threefry_2x32(
        jax.random.key_data(key), jnp.concatenate([row_LxMxJ.ravel(), col_LxMxJ.ravel()])
    )
    half = lead_count * m * blocks
    words_Nx2 = jnp.stack([words[:half], words[half:]], axis=-1)
    bits_LxMx4J = jax.lax.bitcast_convert_type(words_Nx2, jnp.uint16).reshape(lead_count, m, 4 * blocks)
    return bits_LxMx4J[:, :, :n].reshape(shape)


class Dropout(nn.Module):
    """Inverted dropout with 16-bit random masks (`draw`: "counter", "packed" or "per_element" bits; see
    counter_bits16).

    16 bits per element keep an element with probability round((1-rate)·2^16)/2^16 (0.899994 for
    rate 0.1), and the output is scaled by exactly the inverse of that, so its expectation is unchanged.
    """

    rate: float
    deterministic: bool
    draw: str = "counter"

    @nn.compact
    def __call__(self, x):
        if self.deterministic or self.rate == 0.0:
            return x
        threshold = round((1.0 - self.rate) * 65536)
        key = self.make_rng("dropout")
        threefry = str(jax.random.key_impl(key)) == "threefry2x32"
        if self.draw == "counter" and threefry:
            bits = counter_bits16(key, x.shape)
        elif self.draw == "packed" and threefry:
            bits = packed_bits16(key, x.shape)
        else:  # "per_element" (runs saved before the option), or a non-threefry default PRNG
            bits = jax.random.bits(key, x.shape, jnp.uint16)
        keep = bits < jnp.uint16(min(threshold, 65535))
        return jnp.where(keep, x * (65536.0 / threshold), 0.0).astype(x.dtype)


class SequenceRows(NamedTuple):
    """Where the sequences of a packed row sit when attention runs on them as rows (the unpadded layout)."""

    slot_BxT: jax.Array  # packed position of sequence b's t-th token; P (out of range) for an empty slot
    at_P: jax.Array  # row slot b * T + t of each packed position; B * T (out of range) for the padding tail


@jax.custom_vjp
def regather(x_NxD: jax.Array, src_M: jax.Array, inv_N: jax.Array) -> jax.Array:
    """out[m] = x[src[m]] (0 where src[m] is out of range); `inv` is src's inverse, so the gradient is a gather too.

    Autodiff of a plain gather gives a scatter-add (atomics on a GPU); the inverse gather is the same
    numbers, and 2% faster per unpadded step on a 2-core CPU (2.50/2.58 against 2.54/2.65 s at S = 10).
    """
    return jnp.take(x_NxD, src_M, axis=0, mode="fill", fill_value=0)


def _regather_fwd(x_NxD, src_M, inv_N):
    return regather(x_NxD, src_M, inv_N), (src_M, inv_N)


def _regather_bwd(res, g_MxD):
    src_M, inv_N = res
    return regather(g_MxD, inv_N, src_M), None, None


regather.defvjp(_regather_fwd, _regather_bwd)


class Block(nn.Module):
    """One post-LN layer: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x)))."""

    cfg: ModelConfig
    deterministic: bool
    return_internals: bool

    @nn.compact
    def __call__(self, x_BxTxD, mask_Bx1xTxT, rows: SequenceRows | None = None):
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
        k_BxTxHxK = to_rows(x_BxTxD @ wk_DxD)
        v_BxTxHxK = to_rows(x_BxTxD @ wv_DxD)
        scores_BxHxTxT = jnp.einsum("bqhk,bshk->bhqs", q_BxTxHxK, k_BxTxHxK) / math.sqrt(dh)
        scores_BxHxTxT = jnp.where(mask_Bx1xTxT, scores_BxHxTxT, NEG_INF)
        attn_BxHxTxT = jax.nn.softmax(scores_BxHxTxT, axis=-1)
        ctx_BxTxHxK = jnp.einsum("bhqs,bshk->bqhk", drop(attn_BxHxTxT), v_BxTxHxK)
        x_BxTxD = nn.LayerNorm(epsilon=1e-5, name="norm1")(x_BxTxD + drop(from_rows(ctx_BxTxHxK) @ wo_DxD))

        f = cfg.d_ff
        w1_DxF = self.param("ff1_w", xavier(d, f, gain=math.sqrt(2.0)), (d, f))
        b1_F = self.param("ff1_b", uniform(1 / math.sqrt(d)), (f,))
        w2_FxD = self.param("ff2_w", xavier(f, d), (f, d))
        b2_D = self.param("ff2_b", uniform(1 / math.sqrt(f)), (d,))
        ff_BxTxD = drop(jax.nn.relu(x_BxTxD @ w1_DxF + b1_F)) @ w2_FxD + b2_D
        x_BxTxD = nn.LayerNorm(epsilon=1e-5, name="norm2")(x_BxTxD + drop(ff_BxTxD))
        internals = (x_BxTxD, attn_BxHxTxT) if self.return_internals else None
        return x_BxTxD, internals


class TransformerLM(nn.Module):
    """Embedding x sqrt(d) + PE, L scanned post-LN blocks, untied output Linear with bias."""

    cfg: ModelConfig
    deterministic: bool = True
    return_internals: bool = False

    @nn.compact
    def __call__(self, tokens_BxT, allowed_BxTxT=None, positions_BxT=None, layer_params=None, rows=None):
        cfg = self.cfg
        v, d = cfg.vocab_size, cfg.d_model
        b, t = tokens_BxT.shape
        emb_VxD = self.param("embed", xavier(v, d), (v, d))
        pe_PxD = jnp.asarray(sinusoidal_table(cfg.max_len, d))
        # Packed batches restart positions at every sequence; plain batches count from 0.
        pe_BxTxD = pe_PxD[:t][None] if positions_BxT is None else pe_PxD[positions_BxT]
        x_BxTxD = emb_VxD[tokens_BxT] * math.sqrt(d) + pe_BxTxD
        x_BxTxD = Dropout(cfg.dropout, self.deterministic, cfg.dropout_draw)(x_BxTxD)

        if rows is None:
            causal_TxT = jnp.tril(jnp.ones((t, t), dtype=bool))
            keep_BxTxT = causal_TxT[None] & (tokens_BxT != 0)[:, None, :]
        else:  # attention on the sequences as rows: keys must be real tokens of the same sequence
            tr = rows.slot_BxT.shape[1]
            keep_BxTxT = jnp.tril(jnp.ones((tr, tr), dtype=bool))[None] & (rows.slot_BxT < t)[:, None, :]
        if allowed_BxTxT is not None:
            keep_BxTxT = keep_BxTxT & allowed_BxTxT
        if layer_params is not None:  # the per-layer form (split_layers) that training keeps
            x_BxTxD, internals = self.unrolled_layers(x_BxTxD, keep_BxTxT[:, None], layer_params, rows)
        elif self.is_initializing() or cfg.scan_layers:  # the scan creates the stacked parameters
            blocks = nn.scan(
                Block,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast),
                length=cfg.n_layers,
            )(cfg, self.deterministic, self.return_internals, name="layers")
            x_BxTxD, internals = blocks(x_BxTxD, keep_BxTxT[:, None], rows)
        else:
            per_layer = _unstack(self.variables["params"]["layers"], cfg.n_layers)
            x_BxTxD, internals = self.unrolled_layers(x_BxTxD, keep_BxTxT[:, None], per_layer, rows)

        w_DxV = self.param("out_w", xavier(d, v), (d, v))
        b_V = self.param("out_b", uniform(1 / math.sqrt(d)), (v,))
        logits_BxTxV = x_BxTxD @ w_DxV + b_V
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


def layer_params(params: Params, l: int) -> Params:
    """Parameters of layer l, from either form."""
    layers = params["layers"]
    return layers[l] if isinstance(layers, tuple) else jax.tree_util.tree_map(lambda a: a[l], layers)


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
    return_internals: bool = False,
):
    """Logits for every position; `dropout_key=None` is eval mode; see docs/architecture.md.

    `params` may hold its layers stacked (init_params, checkpoints) or split (split_layers). With `rows`,
    tokens_1xP is a packed row whose attention runs per sequence (the unpadded layout, batching.py).
    """
    model = TransformerLM(cfg, deterministic=dropout_key is None, return_internals=return_internals)
    rngs = {} if dropout_key is None else {"dropout": dropout_key}
    layers = params["layers"]
    if isinstance(layers, tuple):
        rest = {k: v for k, v in params.items() if k != "layers"}
        return model.apply({"params": rest}, tokens_BxT, allowed_BxTxT, positions_BxT, layers, rows, rngs=rngs)
    return model.apply({"params": params}, tokens_BxT, allowed_BxTxT, positions_BxT, None, rows, rngs=rngs)


def param_count(params: Params) -> int:
    """Total number of scalars in a parameter tree (one member)."""
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params))
