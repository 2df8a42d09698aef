"""Dyck-(20,10): the released sampler (`DyckPDFA`), block depth profiles, iid/OOD splits.

A string is a sequence of top-level blocks. Each block is an excursion of the stack depth from 0
(up first; at depth 1..d-1 up or down w.p. 1/2; at depth d down) and the blocks are iid; the string
ends at an empty stack w.p. 1/2 once it has `min_len` tokens (END drawn earlier is rejected and
redrawn, so the stack always opens then). Bracket types are uniform per opening bracket. We therefore
sample many excursions in parallel with numpy, cut them into strings, and draw the types afterwards:
the same distribution as the token-by-token original, ~10M tokens in a few seconds.

Structure (D11, following the code): a block's *depth profile* is the stack depth after each of
its tokens, without the final return to 0. Val strings use only block profiles seen in train and are
not training strings; test ("structurally unobserved") strings have at least one unseen profile.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from sgjax.errors import DataError, UserError

K = 20
MAX_DEPTH = 10
MIN_LEN = 4
LETTERS = "abcdefghijklmnopqrst"
DYCK_WORDS = tuple(f"({c}" for c in LETTERS) + tuple(f"{c})" for c in LETTERS)
END = "END"
SPLITS = ("train", "val", "test")
DEFAULT_SIZES = {"train": 200_000, "val": 20_000, "test": 20_000}

_BATCH = 1 << 14  # strings per sampled batch: the string stream is the same whatever n is
_MAX_HELDOUT_BATCHES = 200  # ~3.3M draws: a val/test that cannot fill raises instead of looping
_TRAIN_STREAM, _HELDOUT_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class _Batch:
    """Sampled strings: their lines and, per string, the byte keys of its block profiles."""

    lines: list[str]
    keys: list[tuple[bytes, ...]]


# ---------------------------------------------------------------- sampling


def _excursions(rng, n: int, max_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """n iid depth excursions from 0 back to 0: (flat uint8 depths after each token, lengths)."""
    cur = np.ones(n, np.int8)  # every block opens first
    act = np.arange(n)
    steps_act, steps_depth = [act], [cur]
    while act.size:
        up = rng.random(act.size) < 0.5
        cur = cur + np.where(up & (cur < max_depth), 1, -1).astype(np.int8)
        steps_act.append(act)
        steps_depth.append(cur)
        alive = cur > 0
        act, cur = act[alive], cur[alive]
    lengths = np.zeros(n, np.int64)
    for a in steps_act[1:]:
        lengths[a] += 1
    lengths += 1
    offsets = np.cumsum(lengths) - lengths
    flat = np.empty(int(lengths.sum()), np.uint8)
    # walks stay active on a prefix of steps, so step t of walk i lands at offsets[i] + t
    for t, (a, d) in enumerate(zip(steps_act, steps_depth)):
        flat[offsets[a] + t] = d
    return flat, lengths


def _cut_strings(lengths: np.ndarray, stop_coin: np.ndarray, min_len: int, want: int) -> list[int]:
    """Block counts of the first `want` complete strings (fewer if the blocks run out)."""
    counts, n_blocks, total = [], 0, 0
    for length, stop in zip(lengths.tolist(), stop_coin.tolist()):
        n_blocks += 1
        total += length
        if total >= min_len and stop:  # END is only possible once the string is long enough
            counts.append(n_blocks)
            n_blocks = total = 0
            if len(counts) == want:
                break
    return counts


def _types(rng, flat: np.ndarray, k: int, max_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform types for opening brackets, matched ones for closings: (is_open, type) per token."""
    prev = np.empty_like(flat)
    prev[0] = 0
    prev[1:] = flat[:-1]  # a block starts after the previous block's final 0
    is_open = flat > prev
    typ = np.zeros(flat.size, np.int8)
    typ[is_open] = rng.integers(0, k, int(is_open.sum()))
    # at one level, openings and closings of balanced blocks alternate, so the i-th opening
    # to depth L pairs with the i-th closing from depth L
    for level in range(1, max_depth + 1):
        opens = np.flatnonzero(is_open & (flat == level))
        closes = np.flatnonzero(~is_open & (prev == level))
        typ[closes] = typ[opens]
    return is_open, typ


def _lines(is_open: np.ndarray, typ: np.ndarray, line_ends: np.ndarray) -> list[str]:
    """Render tokens as `(x` / `x)` separated by spaces, one line per string (no END)."""
    letter = np.frombuffer(LETTERS.encode(), np.uint8)[typ]
    buf = np.empty((typ.size, 3), np.uint8)
    buf[:, 0] = np.where(is_open, ord("("), letter)
    buf[:, 1] = np.where(is_open, letter, ord(")"))
    buf[:, 2] = ord(" ")
    buf[line_ends, 2] = ord("\n")
    return buf.tobytes().decode("ascii").split("\n")[:-1]


def _sample_batch(rng, n: int, k: int, max_depth: int, min_len: int) -> _Batch:
    """n strings with their block-profile keys."""
    flat = np.empty(0, np.uint8)
    lengths = stop = np.empty(0, np.int64)
    while True:  # ~2.5 blocks per string; draw 3n and top up in the rare case that is short
        more_flat, more_len = _excursions(rng, 3 * n + 64, max_depth)
        flat, lengths = np.concatenate([flat, more_flat]), np.concatenate([lengths, more_len])
        stop = np.concatenate([stop, rng.random(more_len.size) < 0.5])
        counts = _cut_strings(lengths, stop, min_len, n)
        if len(counts) == n:
            break
    n_blocks = int(sum(counts))
    n_tok = int(lengths[:n_blocks].sum())
    flat, lengths = flat[:n_tok], lengths[:n_blocks]
    is_open, typ = _types(rng, flat, k, max_depth)
    string_len = np.add.reduceat(lengths, np.cumsum([0] + counts[:-1])) if n else lengths[:0]
    lines = _lines(is_open, typ, np.cumsum(string_len) - 1)
    raw = flat.tobytes()
    ends = np.cumsum(lengths).tolist()
    block_keys = [raw[e - l : e - 1] for e, l in zip(ends, lengths.tolist())]  # drop the final 0
    firsts = np.cumsum([0] + counts).tolist()
    keys = [tuple(block_keys[a:b]) for a, b in zip(firsts[:-1], firsts[1:])]
    return _Batch(lines, keys)


def _stream(seed: int, stream: int, k: int, max_depth: int, min_len: int):
    """Endless batches of strings; batch size is fixed so a smaller n gives a prefix of a larger."""
    rng = np.random.default_rng([int(seed), stream])
    while True:
        yield _sample_batch(rng, _BATCH, k, max_depth, min_len)


def sample(n: int, seed: int = 0, *, k: int = K, max_depth: int = MAX_DEPTH, min_len: int = MIN_LEN) -> list[str]:
    """n strings from the released sampler (space-separated tokens, no END); deterministic in seed."""
    # min_len >= 1: the first draw always opens, so a string is a nonempty run of whole blocks
    if not (1 <= k <= len(LETTERS) and max_depth >= 1 and min_len >= 1):
        raise UserError(f"need 1 <= k <= {len(LETTERS)}, max_depth >= 1, min_len >= 1; got {k}, {max_depth}, {min_len}")
    out: list[str] = []
    for batch in _stream(seed, _TRAIN_STREAM, k, max_depth, min_len) if n > 0 else ():
        out.extend(batch.lines[: n - len(out)])
        if len(out) >= n:
            break
    return out


# ---------------------------------------------------------------- splits


def generate_splits(sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, list[str]]:
    """train (the first strings of the stream), iid val and OOD test (fresh draws classified by profile)."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    bad = set(sizes) - set(SPLITS)
    if bad:
        raise UserError(f"unknown split(s) {sorted(bad)}: valid splits are {', '.join(SPLITS)}")
    if sizes["train"] == 0 and sizes["val"] > 0:
        raise UserError("dyck val needs a training set: its strings use only training structures")
    train: list[str] = []
    seen_profiles: set[bytes] = set()
    for batch in _stream(seed, _TRAIN_STREAM, K, MAX_DEPTH, MIN_LEN) if sizes["train"] > 0 else ():
        take = sizes["train"] - len(train)
        train.extend(batch.lines[:take])
        seen_profiles.update(key for keys in batch.keys[:take] for key in keys)
        if len(train) >= sizes["train"]:
            break
    train_set = set(train)
    val: list[str] = []
    test: list[str] = []
    for i, batch in enumerate(_stream(seed, _HELDOUT_STREAM, K, MAX_DEPTH, MIN_LEN)):
        if len(val) >= sizes["val"] and len(test) >= sizes["test"]:
            break
        if i == _MAX_HELDOUT_BATCHES:
            raise DataError(f"dyck: only {len(val)} val / {len(test)} test strings after {i * _BATCH} draws")
        for line, keys in zip(batch.lines, batch.keys):
            if all(key in seen_profiles for key in keys):
                if len(val) < sizes["val"] and line not in train_set:
                    val.append(line)
            elif len(test) < sizes["test"]:
                test.append(line)
    return {"train": train, "val": val, "test": test}


# ---------------------------------------------------------------- structure helpers


def depths(tokens: list[str]) -> list[int]:
    """Stack depth after each token; raises DataError on an unbalanced or unknown token."""
    out, d = [], 0
    for t in tokens:
        if t.startswith("("):
            d += 1
        elif t.endswith(")"):
            d -= 1
        else:
            raise DataError(f"not a bracket token: {t!r}")
        if d < 0:
            raise DataError(f"unbalanced Dyck string: {' '.join(tokens)!r}")
        out.append(d)
    return out


def block_profiles(tokens: list[str]) -> list[tuple[int, ...]]:
    """Depth profile of each top-level block: depths after its tokens, without the final 0."""
    out, cur = [], []
    for d in depths(tokens):
        if d == 0:
            out.append(tuple(cur))
            cur = []
        else:
            cur.append(d)
    if cur:
        raise DataError(f"unbalanced Dyck string: {' '.join(tokens)!r}")
    return out


def closing_positions(tokens: list[str]) -> list[tuple[int, int]]:
    """(i, opener index) for every closing bracket i; i - opener >= 10 is App. A's filter (D10)."""
    stack, out = [], []
    for i, t in enumerate(tokens):
        if t.startswith("("):
            stack.append(i)
        elif not stack or t[:-1] != tokens[stack[-1]][1:]:
            raise DataError(f"unmatched {t!r} at token {i}")
        else:
            out.append((i, stack.pop()))
    return out


def is_valid(tokens: list[str], max_depth: int = MAX_DEPTH) -> bool:
    """Balanced, correctly typed, every token a Dyck word, depth never above max_depth."""
    words = set(DYCK_WORDS)
    try:
        pairs = closing_positions(tokens)
    except DataError:
        return False
    balanced = all(t in words for t in tokens) and 2 * len(pairs) == len(tokens)
    return balanced and max(depths(tokens), default=0) <= max_depth


# ---------------------------------------------------------------- statistics


def length_histogram(lines) -> Counter:
    """Count of lines per token length."""
    return Counter(len(l.split()) for l in lines)


def max_depth_histogram(lines) -> Counter:
    """Count of lines per maximum stack depth."""
    return Counter(max(depths(l.split()), default=0) for l in lines)


def tv_distance(h1: dict, h2: dict) -> float:
    """Total-variation distance between two count histograms (each normalized to 1)."""
    n1, n2 = sum(h1.values()), sum(h2.values())
    if n1 == 0 or n2 == 0:
        raise ValueError("tv_distance of an empty histogram")
    return 0.5 * sum(abs(h1.get(x, 0) / n1 - h2.get(x, 0) / n2) for x in set(h1) | set(h2))


def summary(lines) -> dict:
    """Length quantiles, max-depth histogram, closings per string and the share at distance >= 10."""
    lens = np.array([len(l.split()) for l in lines])
    dist = [i - j for l in lines for i, j in closing_positions(l.split())]
    md = max_depth_histogram(lines)
    return {
        "n": len(lines),
        "unique": len(set(lines)),
        "length": {
            "min": int(lens.min()),
            "mean": float(lens.mean()),
            "median": float(np.median(lens)),
            "p90": float(np.percentile(lens, 90)),
            "p99": float(np.percentile(lens, 99)),
            "max": int(lens.max()),
        },
        "max_depth": dict(sorted(md.items())),
        "mean_max_depth": sum(d * c for d, c in md.items()) / len(lines),
        "closings_per_string": len(dist) / len(lines),
        "far_closing_share": float(np.mean(np.array(dist) >= 10)) if dist else 0.0,
        "blocks_per_string": sum(len(block_profiles(l.split())) for l in lines) / len(lines),
    }
