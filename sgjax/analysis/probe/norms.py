"""Global L2 weight norms of population members (D6/D7).

The original's norm covers every parameter, including an unused 6-layer decoder that stays at its
initialization; we never build it, and instead add its expected squared norm at init (a constant,
≈ 48,546 at d_model 512 / d_ff 2048) when asked to emulate the original.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sgjax.config import ModelConfig

EMBED_KEYS = ("embed", "out_w", "out_b")  # "embeddings" = input embedding + output layer
DECODER_LAYERS = 6  # the original builds nn.Transformer's default 6 decoder layers


def decoder_sq_norm(d_model: int = 512, d_ff: int = 2048, n_layers: int = DECODER_LAYERS) -> float:
    """Expected squared norm at init of the original's unused decoder (≈ 48,546.1 at 512/2048).

    Per decoder layer, with PyTorch-style init as in sgjax.core.model:
      self- and cross-attention: 8 Xavier d×d matrices, E‖W‖² = d²·2/(2d) = d each -> 8d;
      linear1 (gain √2): d·f·2·2/(d+f) = 4df/(d+f); linear2: 2df/(d+f);
      biases U(±1/√fan_in): f/(3d) + d/(3f); three LayerNorm γ = 1: 3d (β = 0).
    """
    d, f = float(d_model), float(d_ff)
    per_layer = 8 * d + 6 * d * f / (d + f) + f / (3 * d) + d / (3 * f) + 3 * d
    return n_layers * per_layer


def sq_norms(params) -> tuple[jax.Array, jax.Array]:
    """(squared norm of all params, squared norm of embed + out_w + out_b) of one member."""
    total = sum(jnp.sum(jnp.square(p.astype(jnp.float32))) for p in jax.tree_util.tree_leaves(params))
    emb = sum(jnp.sum(jnp.square(jnp.asarray(params[k], jnp.float32))) for k in EMBED_KEYS if k in params)
    return total, emb


def weight_norms(params_S, model_cfg: ModelConfig) -> dict[str, jax.Array]:
    """Every D7 variant per member: {"weight_norm[_noemb][_dec][_perL|_persqrtL]": array_S}.

    `_noemb` drops embed/out_w/out_b; `_dec` adds the decoder constant to the squared norm;
    `_perL` divides by n_layers, `_persqrtL` by √n_layers.
    """
    total_S, emb_S = jax.vmap(sq_norms)(params_S)
    dec = decoder_sq_norm(model_cfg.d_model, model_cfg.d_ff)
    L = model_cfg.n_layers
    out = {}
    for emb_tag, sq_S in (("", total_S), ("_noemb", total_S - emb_S)):
        for dec_tag, add in (("", 0.0), ("_dec", dec)):
            norm_S = jnp.sqrt(jnp.maximum(sq_S + add, 0.0))
            base = f"weight_norm{emb_tag}{dec_tag}"
            out[base] = norm_S
            out[base + "_perL"] = norm_S / L
            out[base + "_persqrtL"] = norm_S / math.sqrt(L)
    return out
