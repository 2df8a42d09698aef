"""Evaluation lines as padded index arrays, on the host, once: each split's lines for one kind of
computation (`Part`), in groups of batches [NB, R, ...] that one compiled program each scores.

QF/TI lines are sorted by prefix length and cut into at most `EvalConfig.width_groups` widths
(`length_groups`), Dyck sentences and LM-loss batches into power-of-two widths (`bucket_width`), so
a batch pads and decodes only as far as its own lines need. A subsampled TI split (D15, D33) keeps
its full arrays and draws each evaluation's lines (`sample_batches`). docs/metrics.md.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from sgjax.config import EvalConfig
from sgjax.data.split import Split, line_words
from sgjax.data.vocab import Vocab
from sgjax.errors import DataError
from sgjax.evaluation.scoring import (
    DYCK_MIN_DISTANCE,
    drop_final_dot,
    dyck_closings,
    dyck_select,
    main_verb_index,
    tense_tags,
)

QF_MARKER = "quest"
TI_MARKERS = ("PAST", "PRESENT")
LOSS_BATCH = 32  # the original's eval_lm batches: its loss is the mean of their token means (D31)
TOKENS_PER_BATCH = 32  # Dyck batches hold about batch_size × 32 tokens (long OOD strings get fewer rows)


@dataclasses.dataclass
class Part:
    """One split's lines for one kind of computation: batched groups, and each metric's denominator."""

    split: str  # "val" | "gen"
    kind: str  # "qf" | "ti" | "dyck" | "loss"
    groups: dict[str, dict[str, np.ndarray]]  # group name -> arrays [NB, R, ...]: one compiled program each
    counts: dict[str, int]  # metric name -> denominator
    sample: "TenseSample | None" = None  # TI gen subsampling (D15), rebuilt per evaluation

    @property
    def key(self) -> str:
        """The part's name in the evaluator: its split, or `split-loss` for the LM-loss lines."""
        return f"{self.split}-loss" if self.kind == "loss" else self.split


@dataclasses.dataclass
class TenseSample:
    """Per-evaluation subset of a TI split: the full host arrays, the sample size, whose draws."""

    full: dict[str, np.ndarray]  # [N, ...]
    size: int
    rows: int
    seeds: tuple[int, ...] | None = None  # one draw per member seeded by its seed (D33); None: one shared draw


# ---------------------------------------------------------------- batches and their sizes


def _batched(arrays_N: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """[N, ...] -> [NB, rows, ...], padding rows copy row 0's shape with zeros and `valid` False."""
    n = len(arrays_N["valid"])
    nb = max(1, -(-n // rows))
    out = {}
    for k, a in arrays_N.items():
        pad = np.zeros((nb * rows - n,) + a.shape[1:], a.dtype)
        if k == "prefix_len":  # a padding row is a lone SOS (length 1), never an empty prefix
            pad[:] = 1
        out[k] = np.concatenate([a, pad]).reshape((nb, rows) + a.shape[1:])
    return out


def balanced_rows(n: int, rows: int) -> int:
    """Rows per batch for n lines: as few batches as `rows` allows, evenly filled, so the last is not mostly padding."""
    return max(1, -(-n // max(1, -(-n // rows))))


def _rebatched(b_NBxR: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """[NB, R, ...] -> [NB', rows, ...]: the same valid rows, in batches of `rows`."""
    keep = b_NBxR["valid"].reshape(-1)
    return _batched({k: a.reshape((-1,) + a.shape[2:])[keep] for k, a in b_NBxR.items()}, rows)


def halved_group(b_NBxR: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same lines in batches of (about) half as many rows, at least 1."""
    return _rebatched(b_NBxR, balanced_rows(int(b_NBxR["valid"].sum()), max(1, b_NBxR["valid"].shape[1] // 2)))


def halved(part: Part) -> Part:
    """Every group of the part (and a TI sample's batches) in half as many rows."""
    sample = dataclasses.replace(part.sample, rows=max(1, part.sample.rows // 2)) if part.sample else None
    return dataclasses.replace(part, groups={g: halved_group(b) for g, b in part.groups.items()}, sample=sample)


def batch_rows(part: Part) -> int:
    """The most rows in one of the part's batches."""
    return max(b["valid"].shape[1] for b in part.groups.values())


# ---------------------------------------------------------------- QF/TI lines in few widths


def _best_cuts(values_K: np.ndarray, counts_K: np.ndarray, max_groups: int) -> list[int]:
    """End indices (into the sorted distinct lengths) of at most max_groups runs with the fewest padded positions."""
    k = len(values_K)
    cum = np.concatenate([[0], np.cumsum(counts_K)])
    cost = lambda a, b: int(values_K[b]) * int(cum[b + 1] - cum[a])  # noqa: E731  run a..b padded to values[b]
    # best[g][b]: (positions, cuts) covering lengths 0..b with g + 1 runs
    best = [[(cost(0, b), [b]) for b in range(k)]]
    for _ in range(1, min(max_groups, k)):
        prev = best[-1]
        best.append(
            [
                min(((prev[a][0] + cost(a + 1, b), prev[a][1] + [b]) for a in range(b)), default=prev[b])
                for b in range(k)
            ]
        )
    return min((row[k - 1] for row in best), key=lambda pc: (pc[0], len(pc[1])))[1]


def length_groups(len_N: np.ndarray, tie_N: np.ndarray, max_groups: int) -> list[np.ndarray]:
    """Line indices in at most max_groups runs of `len_N` padded to the fewest positions; each in (len, tie) order."""
    order = np.lexsort((tie_N, len_N))
    values_K, counts_K = np.unique(len_N, return_counts=True)
    ends = np.cumsum(counts_K)
    cuts = _best_cuts(values_K, counts_K, max(1, max_groups))
    starts = [0] + [int(ends[c]) for c in cuts[:-1]]
    return [order[a : int(ends[c])] for a, c in zip(starts, cuts)]


LENGTH_OF = {
    "prefix": "prefix_len",
    "target": "target_len",
    "core": "target_len",
    "line": "line_len",
}  # ragged columns, cut per group


def _subset(arrays_N: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Rows `idx` of every array, ragged ones cut to the longest of those rows (zero padding only)."""
    out = {k: a[idx] for k, a in arrays_N.items()}
    for k, n in LENGTH_OF.items():
        if k in out:
            out[k] = out[k][:, : max(1, int(out[n].max(initial=1)))]
    return out


def grouped(arrays_N: dict[str, np.ndarray], rows: int, max_groups: int) -> dict[str, dict[str, np.ndarray]]:
    """QF/TI lines sorted by prefix length into groups named by their longest prefix, batched, ragged arrays cut."""
    if len(arrays_N["valid"]) == 0:
        return {"p1": _batched(arrays_N, rows)}
    groups = {}
    for idx in length_groups(arrays_N["prefix_len"], arrays_N["target_len"], max_groups):
        groups[f"p{int(arrays_N['prefix_len'][idx].max())}"] = _batched(
            _subset(arrays_N, idx), balanced_rows(len(idx), rows)
        )
    return groups


# ---------------------------------------------------------------- lines -> ids


def _pad_rows(rows: list[list[int]], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ragged int lists -> (int32 [N, width] zero-padded, lengths [N])."""
    lens = np.array([len(r) for r in rows], dtype=np.int32)
    width = max(1, int(lens.max(initial=1))) if width is None else width
    out = np.zeros((len(rows), width), dtype=np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out, lens


def _ids(vocab: Vocab, words: list[str], where: str) -> list[int]:
    return vocab.encode(words, where=where)


def _prefix_target(split: Split, vocab: Vocab, markers: tuple[str, ...], keep: Callable[[list[str]], bool]):
    """(prefix ids with SOS, target ids, target words) of the lines that `keep`, split at the first marker."""
    prefixes, targets, words_out = [], [], []
    for i, line in enumerate(split.lines):
        words = line_words(line)
        if not keep(words):
            continue
        m = next((j for j, w in enumerate(words) if w in markers), None)
        if m is None:
            raise DataError(f"{split.name} line {i + 1}: no marker ({'/'.join(markers)}) in {line!r}")
        ids = _ids(vocab, words, f"{split.name} line {i + 1}")
        prefixes.append([vocab.sos] + ids[: m + 1])
        targets.append(ids[m + 1 :])
        words_out.append(words[m + 1 :])
    return prefixes, targets, words_out


# ---------------------------------------------------------------- one part per task


def qf_part(name: str, split: Split, vocab: Vocab, ecfg: EvalConfig) -> Part:
    """QF quest lines: prefix `[SOS] … . quest` and gold first word; for exact match the whole line and EOS."""
    prefixes, targets, _ = _prefix_target(split, vocab, (QF_MARKER,), lambda ws: QF_MARKER in ws)
    tgt_NxM, tlen_N = _pad_rows(targets)
    arrays = {
        "prefix_len": np.array([len(p) for p in prefixes], np.int32),
        "target_len": tlen_N,
        "gold": tgt_NxM[:, 0].copy(),
        "valid": np.ones(len(prefixes), bool),
    }
    if ecfg.exact_match:  # one teacher-forced pass over the line scores everything (teacher_forced_match)
        arrays["line"], arrays["line_len"] = _pad_rows([p + t + [vocab.eos] for p, t in zip(prefixes, targets)])
    else:
        arrays["prefix"] = _pad_rows(prefixes)[0]
    n = len(prefixes)
    counts = {"acc": n, "acc_unrestricted": n} | ({"exact_match": n} if ecfg.exact_match else {})
    return Part(name, "qf", grouped(arrays, ecfg.batch_size, ecfg.width_groups), counts)


def ti_arrays(split: Split, vocab: Vocab, tags: dict[str, str]) -> dict[str, np.ndarray]:
    """TI lines: prefix up to the marker; target with '.' dropped, its main-verb index; full target."""
    prefixes, targets, words = _prefix_target(split, vocab, TI_MARKERS, lambda ws: True)
    core = [t[: len(drop_final_dot(ws))] for t, ws in zip(targets, words)]  # ids: drop by the words
    mv = [main_verb_index([tags.get(w, "?") for w in drop_final_dot(ws)]) for ws in words]
    prefix_NxW, plen_N = _pad_rows(prefixes)
    full_NxM, flen_N = _pad_rows(targets)
    core_NxM, clen_N = _pad_rows(core, full_NxM.shape[1])
    return {
        "prefix": prefix_NxW,
        "prefix_len": plen_N,
        "target": full_NxM,
        "target_len": flen_N,
        "core": core_NxM,
        "core_len": clen_N,
        "main_verb": np.asarray(mv, np.int32),
        "valid": np.ones(len(prefixes), bool),
    }


def ti_part(
    name: str,
    split: Split,
    vocab: Vocab,
    ecfg: EvalConfig,
    sample: int | None,
    member_seeds: tuple[int, ...] | None = None,
) -> Part:
    """TI lines, all of them, or a fresh seeded subset of `sample` lines per evaluation (D15): one per
    member of `member_seeds` (D33), or one for all members when that is None."""
    full = ti_arrays(split, vocab, tense_tags())
    n = len(full["valid"])
    size = n if sample is None or sample >= n else sample
    counts = {"acc": size, "exact_match": size}
    rows = min(ecfg.batch_size, max(1, size))
    if size == n:
        return Part(name, "ti", grouped(full, rows, ecfg.width_groups), counts)
    ts = TenseSample(full, size, rows, member_seeds)  # a fresh sample each evaluation: one group of fixed shape
    return Part(name, "ti", {"sample": _batched({k: v[:size] for k, v in full.items()}, rows)}, counts, ts)


def sample_rows(n: int, size: int, step: int, seed: int = 0) -> np.ndarray:
    """Sorted line indices of the TI subsample at `step`: seeded by (seed, step), so reruns repeat it."""
    return np.sort(np.random.default_rng([seed, step]).choice(n, size=size, replace=False))


def sample_batches(sample: TenseSample, step: int) -> dict[str, np.ndarray]:
    """The lines drawn at `step`, batched in length order: [NB, R, ...] shared, or [S, NB, R, ...] one
    draw per member.
    """
    full = sample.full

    def draw(seed: int) -> dict[str, np.ndarray]:
        idx = by_length(full, sample_rows(len(full["valid"]), sample.size, step, seed))
        return _batched({k: v[idx] for k, v in full.items()}, sample.rows)

    if sample.seeds is None:
        return draw(0)
    draws = [draw(s) for s in sample.seeds]
    return {k: np.stack([d[k] for d in draws]) for k in draws[0]}


def by_length(arrays_N: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """`idx` in (prefix length, target length) order: a batch's decodes then end together."""
    return idx[np.lexsort((arrays_N["target_len"][idx], arrays_N["prefix_len"][idx]))]


def bucket_width(n: int, cap: int | None = None) -> int:
    """A padded width for a sequence of n: a power of two (few compiled shapes), at most `cap` (model.max_len), ≥ n."""
    width = max(16, 1 << (n - 1).bit_length())
    return max(n, min(width, cap)) if cap is not None else width


def dyck_part(name: str, split: Split, vocab: Vocab, ecfg: EvalConfig, max_len: int | None = None) -> Part:
    """Dyck closings of the selected sentences, bucketed by padded length; masks for 'all' and 'far'."""
    sents = [line_words(l) for l in split.lines]
    closings = [dyck_closings(s) for s in sents]
    n_all = dyck_select([len(c) for c in closings], ecfg.dyck_max_prefixes)
    n_far = dyck_select([sum(i - o >= DYCK_MIN_DISTANCE for i, o in c) for c in closings], ecfg.dyck_max_prefixes)
    use = max(n_all, n_far)
    counts = {"all": 0, "far": 0}
    per_sent = []
    for k in range(use):
        ids = _ids(vocab, sents[k], f"{split.name} line {k + 1}")
        all_T = np.zeros(len(ids), bool)
        far_T = np.zeros(len(ids), bool)
        for i, o in closings[k]:
            # logits at sequence position i (after [SOS] t0..t_{i-1}) predict token i
            all_T[i] = k < n_all
            far_T[i] = k < n_far and i - o >= DYCK_MIN_DISTANCE
        counts["all"] += int(all_T.sum())
        counts["far"] += int(far_T.sum())
        per_sent.append(([vocab.sos] + ids, ids, all_T, far_T))
    buckets: dict[int, list] = {}
    for s in per_sent:
        buckets.setdefault(bucket_width(len(s[0]), max_len), []).append(s)
    groups = {}
    for width, items in sorted(buckets.items()):
        rows = balanced_rows(len(items), max(1, min(ecfg.batch_size, ecfg.batch_size * TOKENS_PER_BATCH // width)))
        seq, _ = _pad_rows([s[0] for s in items], width)
        gold, _ = _pad_rows([s[1] for s in items], width)
        m_all = np.zeros((len(items), width), bool)
        m_far = np.zeros((len(items), width), bool)
        for r, s in enumerate(items):
            m_all[r, : len(s[2])] = s[2]
            m_far[r, : len(s[3])] = s[3]
        b = _batched({"seq": seq, "gold": gold, "all": m_all, "far": m_far, "valid": np.ones(len(items), bool)}, rows)
        groups[f"w{width}"] = b
    return Part(name, "dyck", groups, counts)


def loss_part(name: str, split: Split, vocab: Vocab, max_len: int | None = None) -> Part:
    """Every line of the split as `[SOS] line EOS`, in file order in the original's 32-line batches.

    Batches are kept whole (the loss averages their token means) and grouped by their own padded
    width, a power of two, so a batch of short lines is not padded to the split's longest. The model
    reads all but the last position, so the width is at most max_len + 1.
    """
    ids = [split.flat_M[o : o + n].tolist() for o, n in zip(split.offsets_N, split.lengths_N)]  # as training reads them
    lines = [[vocab.sos] + line + [vocab.eos] for line in ids]
    buckets: dict[int, list] = {}
    for i in range(0, len(lines), LOSS_BATCH):
        batch = lines[i : i + LOSS_BATCH]
        buckets.setdefault(bucket_width(max(map(len, batch)), None if max_len is None else max_len + 1), []).append(
            batch
        )
    groups = {}
    for width, batches in sorted(buckets.items()):
        seq = np.zeros((len(batches), LOSS_BATCH, width), np.int32)
        valid = np.zeros((len(batches), LOSS_BATCH), bool)
        for b, batch in enumerate(batches):
            seq[b, : len(batch)] = _pad_rows(batch, width)[0]
            valid[b, : len(batch)] = True
        groups[f"w{width}"] = {"seq": seq, "valid": valid}
    return Part(name, "loss", groups, {"loss": -(-len(lines) // LOSS_BATCH)})
