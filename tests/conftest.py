"""Shared fixtures: tiny configs and a tiny synthetic corpus, so engine tests don't need the generators."""

import dataclasses

import numpy as np
import pytest

from sgjax import config as C
from sgjax.data.split import encode_lines
from sgjax.data.vocab import Vocab

TINY_MODEL = C.ModelConfig(vocab_size=71, n_layers=2, d_model=32, n_heads=4, d_ff=64, dropout=0.1)


def tiny_config(**train_overrides) -> C.Config:
    """A 2-layer d=32 model on the QF vocabulary size, a few steps, two seeds."""
    train = C.TrainConfig(
        steps=20, lr=1e-3, warmup_steps=5, decay_steps=1000, chunk_steps=5, log_every=5, eval_every=0, ckpt_every=10
    )
    return C.Config(
        task="question",
        preset="smoke",
        seeds=(42, 52),
        model=TINY_MODEL,
        train=dataclasses.replace(train, **train_overrides),
    )


@pytest.fixture
def toy_corpus(monkeypatch):
    """A random 68-word corpus patched in as the question task's data (vocabulary sized like QF's)."""
    return patch_toy_corpus(monkeypatch)


def patch_toy_corpus(monkeypatch):
    """toy_corpus's patches through any MonkeyPatch (a module-scoped fixture has no `monkeypatch`)."""
    import sgjax.data as data
    from sgjax.run import loop

    rng = np.random.default_rng(0)
    words = [f"w{i:02d}" for i in range(68)]
    vocab = Vocab.from_words(words)
    lines = [" ".join(rng.choice(words[:12], size=int(rng.integers(4, 16)))) for _ in range(200)]
    split = encode_lines("question", "train", lines, vocab)
    monkeypatch.setattr(data, "vocab_for", lambda task: vocab, raising=False)
    monkeypatch.setattr(loop, "load_data", lambda cfg: {"train": split, "val": split, "gen": split})
    return vocab, split
