"""Vocabulary as the original: <pad> = 0, words in code-point order, then EOS = |V|, SOS = |V|+1."""

from __future__ import annotations

import dataclasses

import numpy as np

from sgjax.errors import DataError

PAD = "<pad>"


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Word <-> id map; `size` counts the classes the model sees (|V| + 2)."""

    words: tuple[str, ...]  # index 0 is PAD, then sorted words

    @classmethod
    def from_words(cls, words) -> "Vocab":
        """Build from any iterable of words (PAD is added, order is sorted)."""
        return cls((PAD,) + tuple(sorted(set(words) - {PAD})))

    @property
    def pad(self) -> int:
        return 0

    @property
    def eos(self) -> int:
        return len(self.words)

    @property
    def sos(self) -> int:
        return len(self.words) + 1

    @property
    def size(self) -> int:
        """Number of model classes: |V| words (with pad) + EOS + SOS."""
        return len(self.words) + 2

    @property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def encode(self, words: list[str], where: str = "") -> list[int]:
        """Words to ids; an unknown word raises DataError naming it (and `where`)."""
        index = self.index
        try:
            return [index[w] for w in words]
        except KeyError as e:
            at = f" at {where}" if where else ""
            raise DataError(f"unknown word {e.args[0]!r}{at}") from None

    def decode(self, ids) -> list[str]:
        """Ids to words; EOS/SOS/out-of-range ids become '<eos>', '<sos>', '<unk:N>'."""
        out = []
        for i in np.asarray(ids).tolist():
            if 0 <= i < len(self.words):
                out.append(self.words[i])
            elif i == self.eos:
                out.append("<eos>")
            elif i == self.sos:
                out.append("<sos>")
            else:
                out.append(f"<unk:{i}>")
        return out
