"""An independent numpy model of the original's LM and train step, in float64, for tests.

Written from the model's description, not from sgjax's code: token embedding x sqrt(d) plus
sinusoidal positions counted from 0; L post-LN layers, x = LN(x + Attn(x)) then x = LN(x + FFN(x)),
with causal and key-padding masks, Q/K/V/O projections without bias and a ReLU FFN with biases; no
final LayerNorm; an untied output layer with bias. The loss is the cross-entropy averaged over the
non-pad targets. A train step clips the gradient's global norm, then takes an AdamW step. No
dropout: the reference is the model in eval mode, or training with dropout 0.

The backward pass is written out by hand; tests check it against finite differences.
"""

from __future__ import annotations

import math

import numpy as np

LN_EPS = 1e-5


def positions(t: int, d: int) -> np.ndarray:
    """pe[p, 2i] = sin(p / 10000^(2i/d)), pe[p, 2i+1] = cos(p / 10000^(2i/d))."""
    p = np.arange(t)[:, None]
    i = np.arange(0, d, 2)[None, :]
    angle = p / 10000.0 ** (i / d)
    pe = np.zeros((t, d))
    pe[:, 0::2], pe[:, 1::2] = np.sin(angle), np.cos(angle)
    return pe


def from_sgjax(params) -> dict:
    """sgjax's parameter tree (layers stacked or per layer) as this module's flat float64 arrays."""
    layers = params["layers"]
    if not isinstance(layers, (tuple, list)):
        n = np.asarray(layers["q"]).shape[0]
        layers = [
            {k: (v[i] if not isinstance(v, dict) else {kk: vv[i] for kk, vv in v.items()}) for k, v in layers.items()}
            for i in range(n)
        ]
    f = lambda x: np.asarray(x, np.float64)  # noqa: E731
    out = {"embed": f(params["embed"]), "out_w": f(params["out_w"]), "out_b": f(params["out_b"]), "layers": []}
    for p in layers:
        out["layers"].append(
            {
                "q": f(p["q"]),
                "k": f(p["k"]),
                "v": f(p["v"]),
                "o": f(p["o"]),
                "w1": f(p["ff1_w"]),
                "b1": f(p["ff1_b"]),
                "w2": f(p["ff2_w"]),
                "b2": f(p["ff2_b"]),
                "g1": f(p["norm1"]["scale"]),
                "c1": f(p["norm1"]["bias"]),
                "g2": f(p["norm2"]["scale"]),
                "c2": f(p["norm2"]["bias"]),
            }
        )
    return out


def to_sgjax_layout(ref: dict) -> dict:
    """This module's arrays back in sgjax's per-layer naming (for comparing updated weights)."""
    layers = tuple(
        {
            "q": p["q"],
            "k": p["k"],
            "v": p["v"],
            "o": p["o"],
            "ff1_w": p["w1"],
            "ff1_b": p["b1"],
            "ff2_w": p["w2"],
            "ff2_b": p["b2"],
            "norm1": {"scale": p["g1"], "bias": p["c1"]},
            "norm2": {"scale": p["g2"], "bias": p["c2"]},
        }
        for p in ref["layers"]
    )
    return {"embed": ref["embed"], "out_w": ref["out_w"], "out_b": ref["out_b"], "layers": layers}


# --- forward ---------------------------------------------------------------------------------


def layer_norm(y, g, c):
    mu = y.mean(-1, keepdims=True)
    var = ((y - mu) ** 2).mean(-1, keepdims=True)
    xhat = (y - mu) / np.sqrt(var + LN_EPS)
    return g * xhat + c, (xhat, var)


def attention(x, p, keep, heads):
    b, t, d = x.shape
    k_dim = d // heads
    split = lambda y: y.reshape(b, t, heads, k_dim).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = split(x @ p["q"]), split(x @ p["k"]), split(x @ p["v"])
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(k_dim)
    s = np.where(keep[:, None], s, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a = a / a.sum(-1, keepdims=True)
    c = (a @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
    return c @ p["o"], (q, k, v, a, c)


def forward(ref: dict, tokens, heads: int):
    """(logits [B, T, V], cache for backward)."""
    tokens = np.asarray(tokens)
    b, t = tokens.shape
    d = ref["embed"].shape[1]
    keep = np.tril(np.ones((t, t), bool))[None] & (tokens != 0)[:, None, :]
    x = ref["embed"][tokens] * math.sqrt(d) + positions(t, d)[None]
    cache = []
    for p in ref["layers"]:
        attn, a_cache = attention(x, p, keep, heads)
        x1, ln1 = layer_norm(x + attn, p["g1"], p["c1"])
        pre = x1 @ p["w1"] + p["b1"]
        h = np.maximum(pre, 0.0)
        x2, ln2 = layer_norm(x1 + h @ p["w2"] + p["b2"], p["g2"], p["c2"])
        cache.append((x, a_cache, x1, ln1, pre, h, ln2))
        x = x2
    logits = x @ ref["out_w"] + ref["out_b"]
    return logits, (tokens, keep, cache, x)


def loss(logits, targets) -> float:
    """Cross-entropy averaged over the targets that are not padding (id 0)."""
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, np.asarray(targets)[..., None], -1)[..., 0]
    mask = np.asarray(targets) != 0
    return float((nll * mask).sum() / max(mask.sum(), 1))


# --- backward --------------------------------------------------------------------------------


def layer_norm_back(dout, g, xhat, var):
    """(d input, d gain, d bias)."""
    dxhat = dout * g
    n = xhat.shape[-1]
    dy = (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True)) / np.sqrt(var + LN_EPS)
    axes = tuple(range(dout.ndim - 1))
    assert n == g.shape[0]
    return dy, (dout * xhat).sum(axes), dout.sum(axes)


def attention_back(dout, x, p, a_cache, heads):
    q, k, v, a, c = a_cache
    b, t, d = x.shape
    k_dim = d // heads
    grads = {"o": c.reshape(-1, d).T @ dout.reshape(-1, d)}
    dc = (dout @ p["o"].T).reshape(b, t, heads, k_dim).transpose(0, 2, 1, 3)
    da = dc @ v.transpose(0, 1, 3, 2)
    dv = a.transpose(0, 1, 3, 2) @ dc
    ds = a * (da - (da * a).sum(-1, keepdims=True)) / math.sqrt(k_dim)
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    merge = lambda y: y.transpose(0, 2, 1, 3).reshape(b * t, d)  # noqa: E731
    flat_x = x.reshape(-1, d)
    dx = np.zeros_like(flat_x)
    for name, dy in (("q", dq), ("k", dk), ("v", dv)):
        grads[name] = flat_x.T @ merge(dy)
        dx += merge(dy) @ p[name].T
    return dx.reshape(b, t, d), grads


def backward(ref: dict, fwd_cache, targets, heads: int) -> dict:
    """Gradient of `loss` with respect to every parameter, in this module's layout."""
    tokens, keep, cache, x_last = fwd_cache
    targets = np.asarray(targets)
    logits = x_last @ ref["out_w"] + ref["out_b"]
    z = logits - logits.max(-1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    mask = (targets != 0).astype(np.float64)
    onehot = np.eye(logits.shape[-1])[targets]
    dlogits = (prob - onehot) * mask[..., None] / max(mask.sum(), 1.0)
    d = x_last.shape[-1]
    grads = {
        "out_w": x_last.reshape(-1, d).T @ dlogits.reshape(-1, dlogits.shape[-1]),
        "out_b": dlogits.sum((0, 1)),
        "layers": [None] * len(ref["layers"]),
    }
    dx = dlogits @ ref["out_w"].T
    for i in reversed(range(len(ref["layers"]))):
        p = ref["layers"][i]
        x, a_cache, x1, (xhat1, var1), pre, h, (xhat2, var2) = cache[i]
        g = {}
        dy2, g["g2"], g["c2"] = layer_norm_back(dx, p["g2"], xhat2, var2)
        g["w2"] = h.reshape(-1, h.shape[-1]).T @ dy2.reshape(-1, d)
        g["b2"] = dy2.sum((0, 1))
        dpre = (dy2 @ p["w2"].T) * (pre > 0)
        g["w1"] = x1.reshape(-1, d).T @ dpre.reshape(-1, dpre.shape[-1])
        g["b1"] = dpre.sum((0, 1))
        dx1 = dy2 + dpre @ p["w1"].T
        dy1, g["g1"], g["c1"] = layer_norm_back(dx1, p["g1"], xhat1, var1)
        dx_attn, attn_grads = attention_back(dy1, x, p, a_cache, heads)
        g.update(attn_grads)
        grads["layers"][i] = g
        dx = dy1 + dx_attn
    demb = np.zeros_like(ref["embed"])
    np.add.at(demb, tokens, dx * math.sqrt(ref["embed"].shape[1]))
    grads["embed"] = demb
    return grads


# --- optimizer -------------------------------------------------------------------------------


def leaves(tree) -> list[np.ndarray]:
    """The arrays of a parameter or gradient tree in a fixed order."""
    out = [tree["embed"], tree["out_w"], tree["out_b"]]
    for p in tree["layers"]:
        out += [p[k] for k in sorted(p)]
    return out


def adamw_steps(ref: dict, batches, heads: int, *, lr_at, b1=0.9, b2=0.999, eps=1e-7, weight_decay=0.0, clip=1.0):
    """Train `ref` (a copy) on (tokens, targets) batches: clip to `clip`, then AdamW (lr_at(step))."""
    import copy

    ref = copy.deepcopy(ref)
    params = leaves(ref)
    m = [np.zeros_like(x) for x in params]
    v = [np.zeros_like(x) for x in params]
    losses, norms = [], []
    for step, (tokens, targets) in enumerate(batches):
        logits, cache = forward(ref, tokens, heads)
        losses.append(loss(logits, targets))
        grads = leaves(backward(ref, cache, targets, heads))
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
        norms.append(norm)
        scale = 1.0 if norm < clip else clip / norm
        lr = lr_at(step)
        for i, (x, g) in enumerate(zip(params, grads)):
            g = g * scale
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1 ** (step + 1))
            v_hat = v[i] / (1 - b2 ** (step + 1))
            x -= lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * x)  # in place: `params` views `ref`
    return ref, losses, norms
