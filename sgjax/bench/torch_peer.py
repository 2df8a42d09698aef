"""A PyTorch peer of sgjax's model and train step, written from the original's description, for speed comparisons.

Two training modes over a population of S seeds:
- `SequentialTrainer`: one eager model + torch.optim.AdamW per seed, stepped one seed after another
  (the original code's style: a single-seed training loop, run S times);
- `VmapTrainer`: the S models' parameters stacked, per-seed gradients from
  `torch.func.vmap(torch.func.grad_and_value(functional_call ...), randomness="different")`,
  per-seed gradient clipping, then one AdamW over the stacked tensors (elementwise, so it is
  exactly per-seed AdamW with a shared learning rate).

Both take the same inputs as sgjax's engine: padded [SOS] w.. [EOS] rows `seq_NxT` and per-seed,
per-step row indices `idx_SxKxB`. `load_sgjax_params` copies one sgjax member's weights into a peer
model (used by tests/test_bench.py to check both give the same loss).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...), positions from 0."""
    pos_Px1 = torch.arange(max_len, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    pe_PxD = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe_PxD[:, 0::2] = torch.sin(pos_Px1 * div)
    pe_PxD[:, 1::2] = torch.cos(pos_Px1 * div)
    return pe_PxD.float()


class Layer(nn.Module):
    """One post-LN layer: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x))), dropout at 4 sites."""

    def __init__(self, d: int, h: int, f: int, dropout: float):
        super().__init__()
        self.h = h
        self.q = nn.Linear(d, d, bias=False)
        self.kv = nn.Linear(d, 2 * d, bias=False)  # the original's fused K/V projection
        self.o = nn.Linear(d, d, bias=False)
        self.ff1 = nn.Linear(d, f)
        self.ff2 = nn.Linear(f, d)
        self.norm1 = nn.LayerNorm(d, eps=1e-5)
        self.norm2 = nn.LayerNorm(d, eps=1e-5)
        self.drop = nn.Dropout(dropout)

    def forward(self, x_BxTxD, keep_Bx1xTxT):
        b, t, d = x_BxTxD.shape
        dh = d // self.h
        q_BxHxTxK = self.q(x_BxTxD).view(b, t, self.h, dh).transpose(1, 2)
        k_BxTxD, v_BxTxD = self.kv(x_BxTxD).chunk(2, dim=-1)
        k_BxHxTxK = k_BxTxD.reshape(b, t, self.h, dh).transpose(1, 2)
        v_BxHxTxK = v_BxTxD.reshape(b, t, self.h, dh).transpose(1, 2)
        scores_BxHxTxT = (q_BxHxTxK @ k_BxHxTxK.transpose(-1, -2)) / math.sqrt(dh)
        scores_BxHxTxT = scores_BxHxTxT.masked_fill(~keep_Bx1xTxT, float("-inf"))
        attn_BxHxTxT = torch.softmax(scores_BxHxTxT, dim=-1)
        ctx_BxTxD = (self.drop(attn_BxHxTxT) @ v_BxHxTxK).transpose(1, 2).reshape(b, t, d)
        x_BxTxD = self.norm1(x_BxTxD + self.drop(self.o(ctx_BxTxD)))
        ff_BxTxD = self.ff2(self.drop(F.relu(self.ff1(x_BxTxD))))
        return self.norm2(x_BxTxD + self.drop(ff_BxTxD))


class PeerLM(nn.Module):
    """Embedding x sqrt(d) + sinusoidal PE, L post-LN layers (no final LN), untied output Linear with bias."""

    def __init__(
        self,
        vocab_size: int,
        n_layers: int,
        d_model: int = 512,
        n_heads: int = 8,
        d_ff: int = 2048,
        dropout: float = 0.1,
        max_len: int = 512,
    ):
        super().__init__()
        self.d = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("pe_PxD", sinusoidal_table(max_len, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(Layer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.out = nn.Linear(d_model, vocab_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform everywhere, K and V halves separately, FFN1 with ReLU gain."""
        nn.init.xavier_uniform_(self.embed.weight)
        nn.init.xavier_uniform_(self.out.weight)  # out bias keeps nn.Linear's U(±1/sqrt(d))
        for layer in self.layers:
            nn.init.xavier_uniform_(layer.q.weight)
            nn.init.xavier_uniform_(layer.o.weight)
            d = self.d
            with torch.no_grad():
                for half in (layer.kv.weight[:d], layer.kv.weight[d:]):
                    half.copy_(nn.init.xavier_uniform_(torch.empty_like(half)))
            nn.init.xavier_uniform_(layer.ff1.weight, gain=math.sqrt(2.0))
            nn.init.xavier_uniform_(layer.ff2.weight)  # ff biases keep nn.Linear's default bounds

    def forward(self, tokens_BxT):
        """Logits at every position; id 0 is padding and never attended to."""
        t = tokens_BxT.shape[1]
        x_BxTxD = self.drop(self.embed(tokens_BxT) * math.sqrt(self.d) + self.pe_PxD[:t])
        causal_TxT = torch.ones(t, t, dtype=torch.bool, device=tokens_BxT.device).tril()
        keep_Bx1xTxT = (causal_TxT[None] & (tokens_BxT != 0)[:, None, :])[:, None]
        for layer in self.layers:
            x_BxTxD = layer(x_BxTxD, keep_Bx1xTxT)
        return self.out(x_BxTxD)


def lm_loss(logits_BxTxV, targets_BxT):
    """Token-mean cross-entropy over every non-pad target (the original's normalize=True)."""
    ce_BxT = F.cross_entropy(logits_BxTxV.flatten(0, 1), targets_BxT.flatten(), reduction="none").view_as(targets_BxT)
    mask_BxT = (targets_BxT != 0).to(ce_BxT.dtype)
    return (ce_BxT * mask_BxT).sum() / mask_BxT.sum().clamp(min=1.0)


def lr_mult(step: int, warmup: int = 10_000, total: int = 2_000_000) -> float:
    """HF get_linear_schedule_with_warmup as a multiplier of the base lr."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def make_models(seeds, vocab_size: int, n_layers: int, device="cpu", **kw) -> list[PeerLM]:
    """One model per seed, each initialized from torch's global RNG seeded with that seed."""
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(PeerLM(vocab_size, n_layers, **kw).to(device))
    return models


class SequentialTrainer:
    """S independent eager models and AdamW optimizers, stepped one seed after another."""

    def __init__(self, models: list[PeerLM], *, lr=1e-4, eps=1e-7, clip=1.0, warmup=10_000, total=2_000_000):
        self.models = models
        self.opts = [
            torch.optim.AdamW(m.parameters(), lr=lr, betas=(0.9, 0.999), eps=eps, weight_decay=0.0) for m in self.models
        ]
        self.lr, self.clip, self.warmup, self.total = lr, clip, warmup, total

    def step(self, step: int, batches) -> list[float]:
        """One update of every seed on its own (inputs_BxT, targets_BxT); returns the losses."""
        losses = []
        for model, opt, (inp, tgt) in zip(self.models, self.opts, batches):
            model.train()
            opt.zero_grad(set_to_none=True)
            loss = lm_loss(model(inp), tgt)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
            for g in opt.param_groups:
                g["lr"] = self.lr * lr_mult(step, self.warmup, self.total)
            opt.step()
            losses.append(loss.detach())
        return [float(l) for l in losses]


class VmapTrainer:
    """S models as stacked tensors: torch.func.vmap(grad) per seed, per-seed clipping, one stacked AdamW."""

    def __init__(self, models: list[PeerLM], *, lr=1e-4, eps=1e-7, clip=1.0, warmup=10_000, total=2_000_000):
        from torch.func import functional_call, grad_and_value, stack_module_state, vmap

        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().requires_grad_(False) for k, v in params.items()}
        self.buffers = {k: v[0] for k, v in buffers.items()}  # the PE table is the same for every seed
        base = copy.deepcopy(models[0]).to("meta")
        base.train()

        def loss_of(p, inp, tgt):
            return lm_loss(functional_call(base, (p, self.buffers), (inp,)), tgt)

        self.grad_fn = vmap(grad_and_value(loss_of), in_dims=(0, 0, 0), randomness="different")
        self.opt = torch.optim.AdamW(
            list(self.params.values()), lr=lr, betas=(0.9, 0.999), eps=eps, weight_decay=0.0, foreach=True
        )
        self.lr, self.clip, self.warmup, self.total = lr, clip, warmup, total

    def step(self, step: int, inputs_SxBxT, targets_SxBxT) -> list[float]:
        """One update of every seed at once; returns the losses."""
        grads, loss_S = self.grad_fn(self.params, inputs_SxBxT, targets_SxBxT)
        sq_S = sum(g.flatten(1).pow(2).sum(1) for g in grads.values())
        scale_S = (self.clip / (sq_S.sqrt() + 1e-6)).clamp(max=1.0)  # as clip_grad_norm_, per seed
        for k, p in self.params.items():
            g = grads[k]
            p.grad = g * scale_S.view(-1, *([1] * (g.dim() - 1)))
        for g in self.opt.param_groups:
            g["lr"] = self.lr * lr_mult(step, self.warmup, self.total)
        self.opt.step()
        return loss_S.tolist()

    def member_params(self, i: int) -> dict:
        """Seed i's parameters as a state dict for PeerLM."""
        return {k: v[i] for k, v in self.params.items()}


def batches_for(seq_NxT: torch.Tensor, idx_SxB: torch.Tensor):
    """(inputs_SxBxT, targets_SxBxT) for one step of every seed: rows padded as sgjax's rows layout."""
    seq_SxBxT = seq_NxT[idx_SxB]
    return seq_SxBxT[..., :-1], seq_SxBxT[..., 1:]


def trim_padding(inputs_xBxT, targets_xBxT):
    """Drop the trailing columns that are padding in every row: the original's per-batch padding."""
    width = int((inputs_xBxT != 0).sum(-1).max())
    return inputs_xBxT[..., :width], targets_xBxT[..., :width]


def load_sgjax_params(model: PeerLM, params) -> None:
    """Copy one sgjax member's parameter tree (sgjax.core.model layout) into `model` (Linear weights transposed)."""
    t = lambda x: torch.from_numpy(np.array(x, dtype=np.float32))
    lay = params["layers"]
    with torch.no_grad():
        model.embed.weight.copy_(t(params["embed"]))
        model.out.weight.copy_(t(params["out_w"]).T)
        model.out.bias.copy_(t(params["out_b"]))
        for i, layer in enumerate(model.layers):
            layer.q.weight.copy_(t(lay["q"][i]).T)
            layer.kv.weight.copy_(torch.cat([t(lay["k"][i]).T, t(lay["v"][i]).T], dim=0))
            layer.o.weight.copy_(t(lay["o"][i]).T)
            layer.ff1.weight.copy_(t(lay["ff1_w"][i]).T)
            layer.ff1.bias.copy_(t(lay["ff1_b"][i]))
            layer.ff2.weight.copy_(t(lay["ff2_w"][i]).T)
            layer.ff2.bias.copy_(t(lay["ff2_b"][i]))
            for name in ("norm1", "norm2"):
                getattr(layer, name).weight.copy_(t(lay[name]["scale"][i]))
                getattr(layer, name).bias.copy_(t(lay[name]["bias"][i]))
