"""One tokenized split: padded int32 word ids plus lengths, and the LM sequences built from them."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from sgjax.data.vocab import Vocab


@dataclasses.dataclass(frozen=True)
class Split:
    """A split of a task: its text lines and their word ids (no SOS/EOS), padded with 0."""

    task: str  # "question" | "tense" | "dyck"
    name: str  # "train" | "val" | "test" | "gen"
    lines: tuple[str, ...]  # original text format without END: QF/TI "in . MARKER\tout"
    flat_M: np.ndarray  # int32 word ids of every line, end to end (ragged: Dyck's tail stays cheap)
    lengths_N: np.ndarray  # int32 number of words per line

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def offsets_N(self) -> np.ndarray:
        """Start of each line in flat_M."""
        return (np.cumsum(self.lengths_N) - self.lengths_N).astype(np.int64)

    @functools.cached_property
    def ids_NxT(self) -> np.ndarray:
        """int32 word ids padded with 0 to the longest line (built on first use)."""
        ids_NxT = np.zeros((len(self.lengths_N), int(self.lengths_N.max(initial=1))), dtype=np.int32)
        ids_NxT[np.arange(ids_NxT.shape[1])[None, :] < self.lengths_N[:, None]] = self.flat_M
        return ids_NxT

    def words(self, i: int) -> list[str]:
        """The whole line as words (TAB replaced by a space, as the original's `process`)."""
        return line_words(self.lines[i])


def line_words(line: str) -> list[str]:
    """Split a line the original's way: strip, TAB -> space, split on single spaces."""
    return line.strip().replace("\t", " ").split(" ")


def encode_lines(task: str, name: str, lines, vocab: Vocab, where: str = "") -> Split:
    """Tokenize text lines into a padded Split; unknown words raise with the line number."""
    lines = tuple(lines)
    encoded = [vocab.encode(line_words(l), where=f"{where or name} line {i + 1}") for i, l in enumerate(lines)]
    lengths_N = np.array([len(e) for e in encoded], dtype=np.int32)
    flat_M = np.fromiter((i for e in encoded for i in e), dtype=np.int32, count=int(lengths_N.sum()))
    return Split(task, name, lines, flat_M, lengths_N)


def lm_flat(split: Split, vocab: Vocab) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every line as [SOS] w1..wn [EOS], end to end: (flat_M int32, starts_N int64, seq_len_N = n + 2)."""
    seq_len_N = split.lengths_N + 2
    starts_N = (np.cumsum(seq_len_N) - seq_len_N).astype(np.int64)
    flat = np.empty(int(seq_len_N.sum()), dtype=np.int32)
    flat[starts_N] = vocab.sos
    flat[starts_N + seq_len_N - 1] = vocab.eos
    inner = np.ones(flat.shape, bool)
    inner[starts_N] = inner[starts_N + seq_len_N - 1] = False
    flat[inner] = split.flat_M
    return flat, starts_N, seq_len_N


def lm_sequences(split: Split, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """[SOS] w1..wn [EOS] per line, 0-padded: (seq_NxT2 int32, seq_len_N = n + 2)."""
    n, t = split.ids_NxT.shape
    seq = np.zeros((n, t + 2), dtype=np.int32)
    seq[:, 0] = vocab.sos
    seq[:, 1 : t + 1] = split.ids_NxT
    seq[np.arange(n), split.lengths_N + 1] = vocab.eos
    return seq, split.lengths_N + 2
