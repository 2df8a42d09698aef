"""The paper preset, setting by setting, against the original code's values (docs/deviations.md)."""

import pytest

from sgjax import config as C
from sgjax import data

# The original's settings, read from its code and logs (not from sgjax): per task, then shared.
ORIGINAL = {
    "question": {"train.steps": 300_000, "train.eval_every": 3_000, "train.ckpt_every": 3_000, "model.vocab_size": 71},
    "tense": {"train.steps": 300_000, "train.eval_every": 3_000, "train.ckpt_every": 3_000, "model.vocab_size": 101},
    "dyck": {
        "train.steps": 400_000,
        "train.eval_every": 10_000,
        "train.ckpt_every": 10_000,
        "model.vocab_size": 43,
        "eval.dyck_max_prefixes": 5_000,
    },
}
SHARED = {
    "model.d_model": 512,
    "model.n_heads": 8,
    "model.d_ff": 2048,
    "model.dropout": 0.1,
    "model.max_len": 5000,
    "train.lr": 1e-4,
    "train.adam_b1": 0.9,
    "train.adam_b2": 0.999,
    "train.adam_eps": 1e-7,
    "train.weight_decay": 0.0,
    "train.clip_norm": 1.0,
    "train.warmup_steps": 10_000,
    "train.decay_steps": 2_000_000,
    "train.batch_size": 8,
    "eval.max_decode_steps": 50,
    "seeds": (42, 52, 62, 72, 82, 92, 102, 112, 122, 132),
}
SPLIT_SIZES = {
    "question": {"train": 100_000, "val": 1_000, "test": 10_000, "gen": 10_000},
    "tense": {"train": 100_000, "val": 1_000, "test": 10_000, "gen": 10_000},
    "dyck": {"train": 200_000, "val": 20_000, "test": 20_000},
}


@pytest.mark.parametrize("task", list(ORIGINAL))
@pytest.mark.parametrize("depth", [2, 6, 10])
def test_paper_preset_holds_the_originals_settings(task, depth):
    flat = C.flat_items(C.preset("paper", task, depth).to_dict())
    want = {**SHARED, **ORIGINAL[task], "model.n_layers": depth}
    got = {k: (tuple(flat[k]) if isinstance(flat[k], list) else flat[k]) for k in want}
    assert got == want
    # the paper's data: every size at its default, drawn train first
    assert all(flat[f"data.{s}_size"] is None for s in ("train", "val", "gen"))
    assert flat["data.generation"] == "train_first"
    assert data.resolve_sizes(task, None) == SPLIT_SIZES[task]


def test_laptop_preset_is_the_configuration_the_search_ran():
    """`laptop` trains what the laptop search's s2 run trained (its saved config), apart from the preset's name."""
    import json
    from pathlib import Path

    run = Path(__file__).resolve().parents[1] / "experiments/science/laptop_grokking/results/s2_d128_l6_lr3e-4_lin40k"
    saved = C.from_dict(json.loads((run / "config.json").read_text()))
    laptop = C.concrete_layout(C.preset("laptop", "question", 6))
    assert laptop.model == saved.model and laptop.train == saved.train and laptop.data == saved.data
    assert laptop.eval == saved.eval
