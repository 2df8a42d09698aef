"""The data API: fixed vocabularies, generated (or original-file) splits, and an on-disk cache.

    vocab_for(task) -> Vocab
    load_splits(task, *, sizes=None, seed=0, generation="train_first", cache_dir=None, files=None)
        -> dict[str, Split]
    load_split(task, split, **same) -> Split

Generated splits are cached as one .npz per (task, generation, seed, sizes) under $SGJAX_CACHE (default
~/.cache/sgjax), so a sweep generates once; the write is atomic and a corrupt file is regenerated.
"""

from __future__ import annotations

import functools
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from sgjax.data import formats
from sgjax.data.split import Split, encode_lines
from sgjax.data.vocab import Vocab
from sgjax.errors import UserError

TASKS = ("question", "tense", "dyck")
SPLITS = {
    "question": ("train", "val", "test", "gen"),
    "tense": ("train", "val", "test", "gen"),
    "dyck": ("train", "val", "test"),
}
DEFAULT_SIZES = {
    "question": {"train": 100_000, "val": 1_000, "test": 10_000, "gen": 10_000},
    "tense": {"train": 100_000, "val": 1_000, "test": 10_000, "gen": 10_000},
    "dyck": {"train": 200_000, "val": 20_000, "test": 20_000},
}
CACHE_VERSION = 2  # bump when generation changes: old cache files are then never read


def check_task(task: str) -> None:
    """Raise UserError listing the valid tasks."""
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}: valid tasks are {', '.join(TASKS)}")


def task_words(task: str) -> tuple[str, ...]:
    """Every word the task can produce (its full lexicon plus punctuation and markers)."""
    check_task(task)
    if task == "dyck":
        from sgjax.data.dyck import DYCK_WORDS  # lazy: written separately

        return tuple(DYCK_WORDS)
    from sgjax.data import grammar as G

    lex = {w for ws in G.GRAMMARS[task].lexicon.values() for w in ws}
    if task == "question":
        return tuple(lex | {"?", "quest", "decl"})
    return tuple(lex | set(G.PAST.values()) | {"PAST", "PRESENT"})


@functools.cache
def vocab_for(task: str) -> Vocab:
    """The fixed vocabulary: <pad> = 0, then the task's words in code-point order (as the original)."""
    return Vocab.from_words(task_words(task))


def resolve_sizes(task: str, sizes: dict | None) -> dict[str, int]:
    """Defaults overridden by `sizes`; unknown split names raise UserError."""
    check_task(task)
    sizes = dict(sizes or {})
    bad = set(sizes) - set(SPLITS[task])
    if bad:
        raise UserError(f"unknown split(s) {sorted(bad)} for {task}: valid splits are {', '.join(SPLITS[task])}")
    out = {**DEFAULT_SIZES[task], **{k: int(v) for k, v in sizes.items() if v is not None}}
    if any(v < 0 for v in out.values()):
        raise UserError(f"split sizes must be >= 0, got {out}")
    return out


def generate(
    task: str, sizes: dict | None = None, seed: int = 0, generation: str = "train_first"
) -> dict[str, list[str]]:
    """Generate every split's lines (no cache); `generation` applies to QF/TI (Dyck has one)."""
    sizes = resolve_sizes(task, sizes)
    if task == "dyck":
        from sgjax.data import dyck

        out = dyck.generate_splits(sizes, seed)
        # lines without END (the Split convention); tolerate a generator that appends it
        return {s: [l[:-4] if l.endswith(" END") else l for l in out[s]] for s in SPLITS[task]}
    from sgjax.data import qf_ti

    return qf_ti.generate_splits(task, sizes, seed, generation=generation)


def default_cache_dir() -> Path:
    """$SGJAX_CACHE, else ~/.cache/sgjax."""
    return Path(os.environ.get("SGJAX_CACHE") or Path.home() / ".cache" / "sgjax")


def cache_path(task: str, sizes: dict[str, int], seed: int, cache_dir=None, generation: str = "train_first") -> Path:
    """One file per (task, generation, seed, all sizes, generator version)."""
    key = "_".join(f"{s}{sizes[s]}" for s in SPLITS[task])
    name = task if task == "dyck" else f"{task}_{generation}"
    return Path(cache_dir or default_cache_dir()) / f"{name}_seed{seed}_{key}_v{CACHE_VERSION}.npz"


def _to_arrays(split: Split) -> dict[str, np.ndarray]:
    """Ragged storage: flat uint8 ids (every vocab is < 256 words) + lengths + the lines' bytes."""
    return {
        f"{split.name}.ids": split.flat_M.astype(np.uint8),
        f"{split.name}.lengths": split.lengths_N,
        f"{split.name}.lines": np.frombuffer("\n".join(split.lines).encode("utf-8"), dtype=np.uint8),
    }


def _from_arrays(task: str, name: str, z) -> Split:
    """Inverse of _to_arrays; raises ValueError on any inconsistency."""
    lengths_N = np.asarray(z[f"{name}.lengths"], dtype=np.int32)
    flat = np.asarray(z[f"{name}.ids"], dtype=np.int32)
    text = bytes(np.asarray(z[f"{name}.lines"], dtype=np.uint8)).decode("utf-8")
    lines = tuple(text.split("\n")) if len(lengths_N) else ()
    if len(lines) != len(lengths_N) or flat.size != int(lengths_N.sum()):
        raise ValueError("inconsistent cache arrays")
    return Split(task, name, lines, flat.astype(np.int32), lengths_N)


def _read_cache(task: str, path: Path) -> dict[str, Split] | None:
    """The cached splits, or None if the file is missing or unreadable (then it is regenerated)."""
    if not path.exists():
        return None
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as z:  # our handle: closed even when np.load fails
            return {s: _from_arrays(task, s, z) for s in SPLITS[task]}
    except (
        OSError,
        ValueError,
        KeyError,
        EOFError,
        UnicodeDecodeError,
        zipfile.BadZipFile,
        TypeError,
    ):  # TypeError: a bare .npy
        return None


def _write_cache(path: Path, splits: dict[str, Split]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v for s in splits.values() for k, v in _to_arrays(s).items()})
    formats.atomic_write_bytes(path, buf.getvalue())


def load_splits(
    task: str,
    *,
    sizes: dict | None = None,
    seed: int = 0,
    generation: str = "train_first",
    cache_dir=None,
    files: dict | None = None,
    use_cache: bool = True,
) -> dict[str, Split]:
    """Every split of a task, tokenized; `files` ({split: path}, original format) replace generated ones."""
    check_task(task)
    files = {k: v for k, v in (files or {}).items() if v}
    bad = set(files) - set(SPLITS[task])
    if bad:
        raise UserError(f"unknown split(s) {sorted(bad)} in files: valid splits are {', '.join(SPLITS[task])}")
    vocab = vocab_for(task)
    out: dict[str, Split] = {}
    if set(files) != set(SPLITS[task]):
        sizes = resolve_sizes(task, sizes)
        path = cache_path(task, sizes, seed, cache_dir, generation)
        cached = _read_cache(task, path) if use_cache else None
        if cached is None:
            lines = generate(task, sizes, seed, generation)
            cached = {s: encode_lines(task, s, lines[s], vocab) for s in SPLITS[task]}
            if use_cache:
                _write_cache(path, cached)
        out.update(cached)
    for s, p in files.items():
        out[s] = encode_lines(task, s, formats.read_lines(p, task), vocab, where=str(p))
    return {s: out[s] for s in SPLITS[task]}


def load_split(task: str, split: str, **kwargs) -> Split:
    """One split of `load_splits(task, **kwargs)`."""
    check_task(task)
    if split not in SPLITS[task]:
        raise UserError(f"unknown split {split!r} for {task}: valid splits are {', '.join(SPLITS[task])}")
    return load_splits(task, **kwargs)[split]
