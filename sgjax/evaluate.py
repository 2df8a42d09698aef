"""The paper's metrics (SPEC §4) for every population member in one compiled program; docs/metrics.md.

    make_evaluator(model_cfg, eval_cfg, task, vocab, splits) -> Evaluator
    Evaluator(params_S, step) -> {key: float array [S]}

* QF (§4.1, D14): after `<declarative> . quest`, argmax restricted to {does, doesn't, do, don't}
  vs the gold first word (`val_acc`, `gen_acc`); unrestricted argmax (`*_acc_unrestricted`);
  full-output exact match (`*_exact_match`, EvalConfig.exact_match): whether greedy decoding would
  give the target, decided by one teacher-forced pass over the line (`teacher_forced_match`).
* TI (§4.2, D15, D16, D29): greedy decoding after the marker; right iff the POS sequences match and
  the main verb matches (`val_acc`, `gen_acc`), on the output cut one token short of its EOS as the
  original's `run_greedy` returns it; plus full-output exact match (`*_exact_match`).
* Dyck (§4.3, D10): at each closing bracket, argmax restricted to the 20 closers, all closings of one
  teacher-forced pass per sentence. `val_acc` = all closings on val (the code's), `gen_acc` = closings
  ≥ 10 tokens from their opener on the OOD test (the paper's); `val_acc_far`, `gen_acc_all` the others.

Host side, once: lines -> padded index arrays in groups of batches [NB, R, ...]. QF/TI lines are
sorted by length and cut into at most `EvalConfig.width_groups` widths (`length_groups`), Dyck
sentences into power-of-two widths, so a batch pads and decodes only as far as its own lines need.
Device side: one program per group, jit(vmap over S of lax.map over its batches), returning
per-member sums; the host adds the groups and divides by counts known in advance. A program's
temporaries grow with S and R (gigabytes per member at R = 512 for a 6-layer QF model), so the first
call compiles each group ahead of time and halves its R until they fit the device's free memory.
The pure scoring functions (`restricted_argmax`, `qf_accuracy`, `tense_correct`, `tense_correct_ids`,
`dyck_closings`, `dyck_select`, `dyck_accuracy`) are what the compiled program uses, so tests can
feed them hand-built predictions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

from sgjax import decode, engine, model
from sgjax.config import EvalConfig, ModelConfig
from sgjax.data.split import Split, line_words
from sgjax.data.vocab import Vocab
from sgjax.errors import DataError, UserError

AUXILIARIES = ("does", "doesn't", "do", "don't")  # QF's restricted candidate set (§4.1)
QF_MARKER = "quest"
TI_MARKERS = ("PAST", "PRESENT")
DYCK_MIN_DISTANCE = 10  # the paper's generalization filter (D10)
LOSS_BATCH = 32  # the original's eval_lm batches: its loss is the mean of their token means (D31)
TOKENS_PER_BATCH = 32  # Dyck batches hold about batch_size × 32 tokens (long OOD strings get fewer rows)
MEMORY_FRACTION = 0.6  # of the device's free memory that the evaluation's temporaries may take
UNKNOWN_TAG = -1  # pad / EOS / SOS / non-TI words: never equal to a real tag, so always wrong (D16)
TAG_NAMES = ("D", "N", "V", "P", "R", ".", "T")  # det, noun, verb, prep, rel, punctuation, tense marker


# ---------------------------------------------------------------- POS tags (TI)


def tense_tags() -> dict[str, str]:
    """Word -> POS tag for the TI lexicon (the original's pos_tense.txt classes), from sgjax.data.grammar."""
    from sgjax.data import grammar as G

    tags = {w: "D" for w in G.DET} | {w: "N" for w in G.N_SG + G.N_PL}
    tags |= {w: "P" for w in G.PREP} | {w: "R" for w in G.REL}
    for pl, (sg, past) in G.V_FORMS.items():
        tags |= {pl: "V", sg: "V", past: "V"}  # `read` is both present plural and past: V either way
    return tags | {".": ".", "PAST": "T", "PRESENT": "T"}


def tag_table(vocab: Vocab, tags: dict[str, str]) -> np.ndarray:
    """int32 [V]: tag code of every class id; UNKNOWN_TAG for pad, EOS, SOS and words without a tag."""
    table_V = np.full(vocab.size, UNKNOWN_TAG, dtype=np.int32)
    for i, w in enumerate(vocab.words):
        if i > 0 and w in tags:
            table_V[i] = TAG_NAMES.index(tags[w])
    return table_V


def main_verb_index(tags: list[str]) -> int:
    """The main verb (§4.2): second V if the subject carries an RC (tag[2] = R), else the first V; -1 if none."""
    verbs = [i for i, t in enumerate(tags) if t == "V"]
    k = 1 if len(tags) > 2 and tags[2] == "R" else 0
    return verbs[k] if len(verbs) > k else -1


def drop_final_dot(words: list) -> list:
    """The original drops one trailing '.' from prediction and target before comparing."""
    return list(words[:-1]) if len(words) and words[-1] == "." else list(words)


def tense_correct(pred_words: list[str], target_words: list[str], tags: dict[str, str] | None = None) -> bool:
    """`main_right_tense`: same POS sequence and same main-verb word; unknown words (EOS, SOS) are wrong."""
    tags = tense_tags() if tags is None else tags
    pred, tgt = drop_final_dot(pred_words), drop_final_dot(target_words)
    if len(pred) != len(tgt) or any(w not in tags for w in pred):
        return False
    tgt_tags = [tags[w] for w in tgt]
    if [tags[w] for w in pred] != tgt_tags:
        return False
    mv = main_verb_index(tgt_tags)
    return mv >= 0 and pred[mv] == tgt[mv]


def tense_correct_ids(pred_BxM, pred_len_B, tgt_BxM, tgt_len_B, mv_B, tag_V, dot_id: int):
    """Vectorized `tense_correct` on ids. Targets come with '.' already dropped and their main-verb index."""
    m = pred_BxM.shape[1]
    j_M = jnp.arange(m)
    last_B = jnp.take_along_axis(pred_BxM, jnp.maximum(pred_len_B - 1, 0)[:, None], axis=1)[:, 0]
    pred_len_B = pred_len_B - ((pred_len_B > 0) & (last_B == dot_id))
    tgt_BxM = _fit(tgt_BxM, m)
    in_pred = j_M[None] < pred_len_B[:, None]
    pred_tag = jnp.where(in_pred, tag_V[pred_BxM], -2)
    tgt_tag = jnp.where(j_M[None] < tgt_len_B[:, None], tag_V[tgt_BxM], -2)
    tags_ok = jnp.all(pred_tag == tgt_tag, axis=1) & jnp.all(~in_pred | (pred_tag != UNKNOWN_TAG), axis=1)
    mv_c = jnp.clip(mv_B, 0, m - 1)
    verb_ok = (mv_B >= 0) & (mv_B < m) & (pred_BxM[jnp.arange(len(mv_B)), mv_c] == tgt_BxM[jnp.arange(len(mv_B)), mv_c])
    return (pred_len_B == tgt_len_B) & tags_ok & verb_ok


def exact_match_ids(pred_BxM, pred_len_B, tgt_BxM, tgt_len_B):
    """Whole output equal (EOS excluded from both)."""
    m = pred_BxM.shape[1]
    tgt_BxM = _fit(tgt_BxM, m)
    same = (pred_BxM == tgt_BxM) | (jnp.arange(m)[None] >= tgt_len_B[:, None])
    return (pred_len_B == tgt_len_B) & jnp.all(same, axis=1)


def _fit(x_BxM, m: int):
    """Pad (with 0) or cut the second axis to m."""
    return jnp.pad(x_BxM, ((0, 0), (0, max(0, m - x_BxM.shape[1]))))[:, :m]


# ---------------------------------------------------------------- QF / Dyck scoring


def restricted_argmax(logits_xV, allowed_K):
    """Class id of the largest logit among `allowed_K` (ties: the first in allowed_K)."""
    allowed_K = jnp.asarray(allowed_K)
    return allowed_K[jnp.argmax(logits_xV[..., allowed_K], axis=-1)]


def qf_accuracy(pred, gold_N, allowed_K=None) -> float:
    """Accuracy of predicted ids [N], or of logits [N, V] (argmax restricted to allowed_K if given)."""
    pred = jnp.asarray(pred)
    if pred.ndim == 2:
        pred = restricted_argmax(pred, allowed_K) if allowed_K is not None else jnp.argmax(pred, axis=-1)
    return float(jnp.mean(pred == jnp.asarray(gold_N)))


def dyck_closings(tokens: list[str]) -> list[tuple[int, int]]:
    """(index, opener index) of every closing bracket; raises DataError on a mismatch."""
    stack, out = [], []
    for i, t in enumerate(tokens):
        if t.startswith("("):
            stack.append(i)
        elif t.endswith(")") and stack and tokens[stack[-1]][1:] == t[:-1]:
            out.append((i, stack.pop()))
        else:
            raise DataError(f"unmatched Dyck token {t!r} at {i} in {' '.join(tokens)!r}")
    return out


def dyck_select(counts_N, max_prefixes: int | None) -> int:
    """Sentences used: in file order, stop after the one that brings the count to >= max_prefixes (None: all)."""
    counts_N = np.asarray(counts_N)
    if max_prefixes is None:
        return len(counts_N)
    reached = np.flatnonzero(np.cumsum(counts_N) >= max_prefixes)
    return int(reached[0]) + 1 if reached.size else len(counts_N)


def dyck_accuracy(pred_ids, gold_ids, distances, min_distance: int = 0) -> float:
    """Accuracy over closing positions whose distance to the opener is >= min_distance (NaN if none)."""
    keep = np.asarray(distances) >= min_distance
    if not keep.any():
        return math.nan
    return float(np.mean(np.asarray(pred_ids)[keep] == np.asarray(gold_ids)[keep]))


# ---------------------------------------------------------------- host-side preparation


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


def _best_cuts(values_K: np.ndarray, counts_K: np.ndarray, max_groups: int) -> list[int]:
    """End indices (into the sorted distinct lengths) of at most max_groups runs with the fewest padded positions."""
    k = len(values_K)
    cum = np.concatenate([[0], np.cumsum(counts_K)])
    cost = lambda a, b: int(values_K[b]) * int(cum[b + 1] - cum[a])  # noqa: E731  run a..b padded to values[b]
    # best[g][b]: (positions, cuts) covering lengths 0..b with g + 1 runs
    best = [[(cost(0, b), [b]) for b in range(k)]]
    for _ in range(1, min(max_groups, k)):
        prev = best[-1]
        best.append([min(((prev[a][0] + cost(a + 1, b), prev[a][1] + [b]) for a in range(b)), default=prev[b])
                     for b in range(k)])
    return min((row[k - 1] for row in best), key=lambda pc: (pc[0], len(pc[1])))[1]


def length_groups(len_N: np.ndarray, tie_N: np.ndarray, max_groups: int) -> list[np.ndarray]:
    """Line indices in at most max_groups runs of `len_N` padded to the fewest positions; each in (len, tie) order."""
    order = np.lexsort((tie_N, len_N))
    values_K, counts_K = np.unique(len_N, return_counts=True)
    ends = np.cumsum(counts_K)
    cuts = _best_cuts(values_K, counts_K, max(1, max_groups))
    starts = [0] + [int(ends[c]) for c in cuts[:-1]]
    return [order[a : int(ends[c])] for a, c in zip(starts, cuts)]


LENGTH_OF = {"prefix": "prefix_len", "target": "target_len", "core": "target_len", "line": "line_len"}  # ragged columns, cut per group


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
        groups[f"p{int(arrays_N['prefix_len'][idx].max())}"] = _batched(_subset(arrays_N, idx), balanced_rows(len(idx), rows))
    return groups


def _host_available() -> int | None:
    """The host's MemAvailable in bytes (Linux), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def free_memory(devices) -> int | None:
    """Bytes each of `devices` can still allocate: the least allocator headroom on GPU/TPU, or the host's
    MemAvailable shared among CPU devices; the least over all processes, so every host compiles alike."""
    stats = [d.memory_stats() for d in devices]
    if all(st and "bytes_limit" in st for st in stats):
        free = min(int(st["bytes_limit"]) - int(st.get("bytes_in_use", 0)) for st in stats)
    else:
        host = _host_available()
        free = None if host is None else host // len(devices)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        free = int(np.min(multihost_utils.process_allgather(np.int64(-1 if free is None else free))))
        free = None if free < 0 else free
    return free


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


def decode_steps(max_decode_steps: int, max_target_len: int) -> int:
    """Steps that decide every metric: an output 3 longer than any target is wrong however it continues.

    3, not 2: the original scores TI outputs one token short of their EOS (`original_output_len`).
    """
    return max(1, min(max_decode_steps, max_target_len + 3))


def original_output_len(gen_len_B, steps: int):
    """The output length the original's TI metric scores: one short of the EOS (D29).

    Its `run_greedy` sets `out_len = i + 1` only while step i's token is not EOS, so the token just
    before EOS (normally the '.') is cut. An output without EOS within `steps` keeps its length.
    """
    return gen_len_B - ((gen_len_B > 0) & (gen_len_B < steps))


def qf_part(name: str, split: Split, vocab: Vocab, ecfg: EvalConfig) -> Part:
    """QF quest lines: prefix `[SOS] … . quest` and gold first word; for exact match the whole line and EOS."""
    prefixes, targets, _ = _prefix_target(split, vocab, (QF_MARKER,), lambda ws: QF_MARKER in ws)
    tgt_NxM, tlen_N = _pad_rows(targets)
    arrays = {"prefix_len": np.array([len(p) for p in prefixes], np.int32), "target_len": tlen_N,
              "gold": tgt_NxM[:, 0].copy(), "valid": np.ones(len(prefixes), bool)}
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
    return {"prefix": prefix_NxW, "prefix_len": plen_N, "target": full_NxM, "target_len": flen_N,
            "core": core_NxM, "core_len": clen_N, "main_verb": np.asarray(mv, np.int32),
            "valid": np.ones(len(prefixes), bool)}


def ti_part(name: str, split: Split, vocab: Vocab, ecfg: EvalConfig, sample: int | None,
            member_seeds: tuple[int, ...] | None = None) -> Part:
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
    """The lines drawn at `step`, batched in length order: [NB, R, ...] shared, or [S, NB, R, ...] one draw per member."""
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
        buckets.setdefault(bucket_width(max(map(len, batch)), None if max_len is None else max_len + 1), []).append(batch)
    groups = {}
    for width, batches in sorted(buckets.items()):
        seq = np.zeros((len(batches), LOSS_BATCH, width), np.int32)
        valid = np.zeros((len(batches), LOSS_BATCH), bool)
        for b, batch in enumerate(batches):
            seq[b, : len(batch)] = _pad_rows(batch, width)[0]
            valid[b, : len(batch)] = True
        groups[f"w{width}"] = {"seq": seq, "valid": valid}
    return Part(name, "loss", groups, {"loss": -(-len(lines) // LOSS_BATCH)})


# ---------------------------------------------------------------- device-side batch functions


def teacher_forced_match(pred_BxT, line_BxT, prefix_len_B, line_len_B):
    """Whether greedy decoding after each prefix would give exactly the rest of the line (target, then EOS).

    Greedy decoding reproduces the target iff the argmax after every gold prefix of it is its next
    token, EOS last: so exact match needs the argmaxes `pred_BxT` of one teacher-forced pass over
    the whole line, not a token-by-token decode (docs/metrics.md).
    """
    t_T = jnp.arange(line_BxT.shape[1] - 1)
    scored_BxT = (t_T[None] >= prefix_len_B[:, None] - 1) & (t_T[None] < line_len_B[:, None] - 1)
    return jnp.all(~scored_BxT | (pred_BxT[:, :-1] == line_BxT[:, 1:]), axis=1)


def qf_batch(cfg, params, b, *, aux_K, exact: bool):
    """Correct counts of one QF batch: restricted, unrestricted, and (optionally) exact match."""
    v = b["valid"]
    out = {}
    if exact:  # one pass over the whole lines: the first word's logits and every later argmax
        logits_BxTxV = model.forward(cfg, params, b["line"])
        last_BxV = decode.at_prefix_end(logits_BxTxV, b["prefix_len"])
        match_B = teacher_forced_match(jnp.argmax(logits_BxTxV, -1), b["line"], b["prefix_len"], b["line_len"])
        out["exact_match"] = jnp.sum(v & match_B)
    else:
        last_BxV = decode.prefix_logits(cfg, params, b["prefix"], b["prefix_len"])
    out["acc"] = jnp.sum(v & (restricted_argmax(last_BxV, aux_K) == b["gold"]))
    out["acc_unrestricted"] = jnp.sum(v & (jnp.argmax(last_BxV, -1) == b["gold"]))
    return out


def ti_batch(cfg, params, b, *, tag_V, dot: int, max_steps: int, eos: int, decode_fn, drop_last: bool = True):
    """Correct counts of one TI batch: the paper's main-verb rule and full exact match."""
    steps = decode_steps(max_steps, b["target"].shape[-1])
    gen_BxM, glen_B = decode_fn(cfg, params, b["prefix"], b["prefix_len"], max_steps=steps, eos_id=eos)
    v = b["valid"]
    scored_B = original_output_len(glen_B, steps) if drop_last else glen_B
    ok_B = tense_correct_ids(gen_BxM, scored_B, b["core"], b["core_len"], b["main_verb"], tag_V, dot)
    return {"acc": jnp.sum(v & ok_B), "exact_match": jnp.sum(v & exact_match_ids(gen_BxM, glen_B, b["target"], b["target_len"]))}


def dyck_batch(cfg, params, b, *, close_K):
    """Correct counts of one Dyck batch at every closing position, for the 'all' and 'far' masks."""
    logits_BxTxV = model.forward(cfg, params, b["seq"])
    right_BxT = restricted_argmax(logits_BxTxV, close_K) == b["gold"]
    return {"all": jnp.sum(right_BxT & b["all"]), "far": jnp.sum(right_BxT & b["far"])}


def loss_batch(cfg, params, b):
    """The token-mean LM loss of one batch (0 for a batch of padding rows, which is not counted)."""
    logits_BxTxV = model.forward(cfg, params, b["seq"][:, :-1])
    return {"loss": engine.token_mean_ce(logits_BxTxV, b["seq"][:, 1:])}


# ---------------------------------------------------------------- the evaluator


KEYS = {  # (split, kind, count name) -> metrics.jsonl key
    ("val", "qf", "acc"): "val_acc", ("gen", "qf", "acc"): "gen_acc",
    ("val", "qf", "acc_unrestricted"): "val_acc_unrestricted", ("gen", "qf", "acc_unrestricted"): "gen_acc_unrestricted",
    ("val", "qf", "exact_match"): "val_exact_match", ("gen", "qf", "exact_match"): "gen_exact_match",
    ("val", "ti", "acc"): "val_acc", ("gen", "ti", "acc"): "gen_acc",
    ("val", "ti", "exact_match"): "val_exact_match", ("gen", "ti", "exact_match"): "gen_exact_match",
    ("val", "dyck", "all"): "val_acc", ("val", "dyck", "far"): "val_acc_far",
    ("gen", "dyck", "far"): "gen_acc", ("gen", "dyck", "all"): "gen_acc_all",
    ("val", "loss", "loss"): "val_loss", ("gen", "loss", "loss"): "gen_loss",
}
TASK_KIND = {"question": "qf", "tense": "ti", "dyck": "dyck"}
GEN_NAMES = {"question": ("gen",), "tense": ("gen",), "dyck": ("test", "gen")}


class Evaluator:
    """Callable(params_S, step) -> {key: float64 [S]}; `counts` holds each key's denominator.

    Each (split, group) is its own compiled program, run one after another: the peak memory is the
    largest group's, not the sum, and each group's batches shrink to fit on their own.
    """

    def __init__(self, task: str, parts: list[Part], batch_fns: dict[str, Callable]):
        self.task = task
        self.parts = {p.key: p for p in parts if sum(p.counts.values()) > 0}  # nothing to score: NaN, no compile
        self.empty_keys = [KEYS[(p.split, p.kind, c)] for p in parts if sum(p.counts.values()) == 0 for c in p.counts]
        self.counts = {KEYS[(p.split, p.kind, c)]: n for p in parts for c, n in p.counts.items()}
        self.fit: dict | None = None  # what the first call chose: rows per batch, temporaries, free memory
        self.note: str | None = None  # a line for the user when the first call had to shrink the batches
        self._compiled: dict | None = None  # (part key, group) -> compiled program

        def group_sums(fn, params, batches):
            """One member's correct counts over one group's batches."""
            return {k: jnp.sum(v) for k, v in lax.map(lambda b: fn(params, b), batches).items()}

        self._fns = {kind: jax.jit(jax.vmap(functools.partial(group_sums, fn), in_axes=(0, None)))
                     for kind, fn in batch_fns.items()}
        # a per-member TI sample (D33) has a leading S axis too, mapped with the parameters'
        self._member_fns = {kind: jax.jit(jax.vmap(functools.partial(group_sums, fn))) for kind, fn in batch_fns.items()}
        self._member_sharding = None  # where [S, ...] data goes: the parameters' seed axis, set by the first call
        self._device = {}  # (part key, group) -> device copies of the fixed groups (a TI sample is put at each call)
        for p in self.parts.values():
            if p.sample is None:
                for g in p.groups:
                    self._put(p, g)

    def _put(self, part: Part, group: str):
        """Put one fixed group's batches on the device."""
        self._device[(part.key, group)] = jax.device_put(part.groups[group])

    def _fn(self, part: Part):
        """The compiled-on-demand program of a part: batches shared by every member, or one set per member."""
        return self._member_fns[part.kind] if part.sample and part.sample.seeds is not None else self._fns[part.kind]

    def rows(self) -> int:
        """The most rows per member in one batch."""
        return max((batch_rows(p) for p in self.parts.values()), default=0)

    def _compile(self, params_S, step: int) -> tuple[dict, dict]:
        """Compile every group, halving a group's batches until its temporaries fit the free memory.

        Returns the programs and the data of `step` they were compiled for (so the first call uses it).
        """
        free = free_memory(jax.tree_util.tree_leaves(params_S)[0].sharding.addressable_devices)
        data = self.data_for(step)
        compiled, tried = {}, {}
        for (key, g), batches in list(data.items()):
            part = self.parts[key]
            tried[(key, g)] = []
            while True:
                program = self._fn(part).lower(params_S, batches).compile()
                temp = getattr(program.memory_analysis(), "temp_size_in_bytes", None)
                rows = batches["valid"].shape[-1]  # [NB, R], or [S, NB, R] for per-member draws
                tried[(key, g)].append((rows, temp))
                fits = free is None or temp is None or temp <= MEMORY_FRACTION * free
                if fits or rows == 1 or part.kind == "loss":  # the loss keeps the original's 32-line batches
                    break
                part = self.parts[key] = self._halve(part, g)
                batches = data[(key, g)] = self._sample(part, step) if part.sample else self._device[(key, g)]
            compiled[(key, g)] = program
        peak = max(tried.values(), key=lambda t: t[-1][1] or 0)
        self.fit = {"rows": self.rows(), "temp_bytes": peak[-1][1], "free_bytes": free,
                    "tried": {f"{s}/{g}": t for (s, g), t in tried.items()}}
        shrunk = [t for t in tried.values() if len(t) > 1]
        if shrunk:
            first = max(shrunk, key=lambda t: t[0][1])
            self.note = (f"evaluation: {first[0][0]} rows per batch need {first[0][1] / 1e9:.1f} GB, more than "
                         f"{MEMORY_FRACTION:.0%} of the {free / 1e9:.1f} GB free; using {first[-1][0]} "
                         f"({first[-1][1] / 1e9:.1f} GB)")
        return compiled, data

    def _halve(self, part: Part, group: str) -> Part:
        """`part` with one group's batches (or its TI sample's) in half as many rows, put on the device."""
        if part.sample is not None:
            return halved(part)
        part = dataclasses.replace(part, groups=part.groups | {group: halved_group(part.groups[group])})
        self._put(part, group)
        return part

    def _sample(self, part: Part, step: int) -> dict:
        """A subsampled TI split's lines for `step`, put on the device (one draw per member: along the seed axis)."""
        batches = sample_batches(part.sample, step)
        if part.sample.seeds is None or self._member_sharding is None:
            return jax.device_put(batches)
        return jax.tree_util.tree_map(lambda x: engine.place(x, self._member_sharding), batches)

    def _check_population(self, params_S) -> None:
        """Per-member draws need one seed per member; remember where the members live."""
        leaf = jax.tree_util.tree_leaves(params_S)[0]
        for p in self.parts.values():
            if p.sample and p.sample.seeds is not None and len(p.sample.seeds) != leaf.shape[0]:
                raise UserError(f"the evaluator draws a TI sample for {len(p.sample.seeds)} members "
                                f"(member_seeds), but the population has {leaf.shape[0]}")
        if isinstance(leaf.sharding, NamedSharding) and leaf.sharding.spec:
            self._member_sharding = NamedSharding(leaf.sharding.mesh, PartitionSpec(leaf.sharding.spec[0]))

    def data_for(self, step: int) -> dict:
        """(part key, group) -> device arrays; a subsampled TI split draws its lines for this step."""
        return self._device | {(p.key, "sample"): self._sample(p, step) for p in self.parts.values() if p.sample}

    def __call__(self, params_S, step: int = 0) -> dict[str, np.ndarray]:
        s = jax.tree_util.tree_leaves(params_S)[0].shape[0]
        sums = {}
        if self.parts:
            if self._compiled is None:
                self._check_population(params_S)
                self._compiled, data = self._compile(params_S, step)
            else:
                data = self.data_for(step)
            # dispatched one after another without waiting; fetched together (gathered from every host)
            sums = engine.to_host({key: self._compiled[key](params_S, b) for key, b in data.items()})
        out = {}
        for p in self.parts.values():
            for c, n in p.counts.items():
                total = sum(np.asarray(v[c], np.float64) for (key, _), v in sums.items() if key == p.key)
                out[KEYS[(p.split, p.kind, c)]] = total / n if n else np.full(s, np.nan)
        for key in self.empty_keys:
            out[key] = np.full(s, np.nan)
        return out


def make_evaluator(model_cfg: ModelConfig, eval_cfg: EvalConfig, task: str, vocab: Vocab,
                   splits: dict[str, Split], *, decode_fn: Callable = decode.greedy_decode,
                   member_seeds=None) -> Evaluator:
    """Precompute every index array for `splits` ("val" plus "gen", or "test" for Dyck) and compile lazily.

    `decode_fn` (`decode.greedy_decode`'s contract) decodes TI; QF's exact match needs no decoding.
    `member_seeds`, the population's seeds, seed each member's own TI subsample (D33) when
    `eval.tense_gen_sample` is set; they are needed only then.
    """
    if task not in TASK_KIND:
        raise UserError(f"unknown task {task!r}; choose one of {', '.join(TASK_KIND)}")
    own_draws = task == "tense" and eval_cfg.tense_gen_sample is not None and eval_cfg.tense_sample_per_member
    if own_draws and member_seeds is None:
        raise UserError("eval.tense_gen_sample draws each member's own lines (D33): pass member_seeds, "
                        "the population's seeds, or set eval.tense_sample_per_member=false for one shared draw")
    seeds = tuple(int(s) for s in member_seeds) if own_draws else None
    named = {"val": splits.get("val")}
    gen_name = next((g for g in GEN_NAMES[task] if g in splits), None)
    named["gen"] = splits.get(gen_name) if gen_name else None
    if all(s is None for s in named.values()):
        raise UserError(f"no evaluation split for {task}: expected 'val' and {' or '.join(map(repr, GEN_NAMES[task]))}, got {sorted(splits)}")
    kind = TASK_KIND[task]
    parts = []
    for name, split in named.items():
        if split is None:
            continue
        if kind == "qf":
            parts.append(qf_part(name, split, vocab, eval_cfg))
        elif kind == "ti":
            parts.append(ti_part(name, split, vocab, eval_cfg, eval_cfg.tense_gen_sample if name == "gen" else None, seeds))
        else:
            parts.append(dyck_part(name, split, vocab, eval_cfg, model_cfg.max_len))
        if eval_cfg.lm_loss:
            parts.append(loss_part(name, split, vocab, model_cfg.max_len))
    fns = _batch_fns(model_cfg, eval_cfg, kind, vocab, parts, decode_fn)
    if eval_cfg.lm_loss:
        fns["loss"] = lambda p, b: loss_batch(model_cfg, p, b)
    return Evaluator(task, parts, fns)


def _batch_fns(cfg: ModelConfig, ecfg: EvalConfig, kind: str, vocab: Vocab, parts: list[Part], decode_fn) -> dict:
    """The per-batch function of the task, closed over its static ids and decode length."""
    index = vocab.index
    if kind == "dyck":
        close_K = jnp.asarray([i for i, w in enumerate(vocab.words) if w.endswith(")")], jnp.int32)
        return {"dyck": lambda p, b: dyck_batch(cfg, p, b, close_K=close_K)}
    if kind == "qf":
        if not all(a in index for a in AUXILIARIES):
            if any(p.counts["acc"] for p in parts):
                raise DataError(f"the vocabulary lacks the QF auxiliaries {AUXILIARIES}")
            aux_K = jnp.zeros((1,), jnp.int32)
        else:
            aux_K = jnp.asarray([index[a] for a in AUXILIARIES], jnp.int32)
        return {"qf": lambda p, b: qf_batch(cfg, p, b, aux_K=aux_K, exact=ecfg.exact_match)}
    tag_V = jnp.asarray(tag_table(vocab, tense_tags()))
    dot = index.get(".", -1)
    return {"ti": lambda p, b: ti_batch(cfg, p, b, tag_V=tag_V, dot=dot, max_steps=ecfg.max_decode_steps, eos=vocab.eos,
                                        decode_fn=decode_fn, drop_last=ecfg.tense_drop_last)}
