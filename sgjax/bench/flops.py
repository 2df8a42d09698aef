"""Analytic FLOPs of a training step, and the dense peaks of known GPUs (what `sgjax bench` measures against)."""

from __future__ import annotations

# Dense peak FLOP/s (no sparsity) by device and matmul precision; SXM parts. Sources: NVIDIA data sheets.
GPU_PEAK_FLOPS = {
    "H200": {"highest": 67e12, "tensorfloat32": 494.7e12, "bfloat16": 989.4e12},
    "H100 PCIe": {"highest": 51e12, "tensorfloat32": 378e12, "bfloat16": 756e12},
    "H100": {"highest": 67e12, "tensorfloat32": 494.7e12, "bfloat16": 989.4e12},
    "A100": {"highest": 19.5e12, "tensorfloat32": 156e12, "bfloat16": 312e12},
}


def train_flops_per_step(
    depth: int, d_model: int, d_ff: int, vocab: int, tokens: int, attn_rows: int, attn_len: int
) -> float:
    """Analytic FLOPs of one training step of one member: 3 x forward (forward + 2x backward).

    Forward = 2 x matmul params x tokens (4 d^2 + 2 d d_ff per layer, plus the d x V output layer;
    the embedding is a gather) + the two attention products 2 x 2 T^2 d per layer and attention row
    (the full T x T square, as computed). Elementwise work (softmax, LayerNorm, Adam) is not counted.
    """
    matmul_params = depth * (4 * d_model**2 + 2 * d_model * d_ff) + d_model * vocab
    attention = depth * attn_rows * 4 * attn_len**2 * d_model
    return 3.0 * (2.0 * matmul_params * tokens + attention)


def computed_shape(layout: str, width, batch: int) -> tuple[int, int, int]:
    """(tokens through the position-wise layers, attention rows, attention row length) of one member's step."""
    if layout == "rows":
        return batch * (width - 1), batch, width - 1
    if layout == "packed":
        return width, 1, width
    packed, row = width  # unpadded
    return packed, batch, row


def device_peak(device_kind: str, precision: str) -> float | None:
    """Peak FLOP/s of a known GPU at this precision, else None (CPUs: n/a)."""
    for name, peaks in GPU_PEAK_FLOPS.items():
        if name.lower() in device_kind.lower():
            return peaks.get(precision)
    return None
