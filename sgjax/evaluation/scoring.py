"""The paper's scoring rules as pure functions: POS tags and the TI main-verb rule, QF's
restricted argmax, Dyck's closing brackets, exact match; docs/metrics.md.

The compiled evaluation (sgjax.evaluation.evaluate) uses the id-level ones (`tense_correct_ids`,
`exact_match_ids`, `restricted_argmax`, `teacher_forced_match`); the word-level ones
(`tense_correct`, `dyck_closings`, `dyck_accuracy`) state the same rules on text, so tests can feed
both hand-built predictions.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from sgjax.data.vocab import Vocab
from sgjax.errors import DataError

AUXILIARIES = ("does", "doesn't", "do", "don't")  # QF's restricted candidate set (§4.1)
DYCK_MIN_DISTANCE = 10  # the paper's generalization filter (D10)
UNKNOWN_TAG = -1  # pad / EOS / SOS / non-TI words: never equal to a real tag, so always wrong (D16)
TAG_NAMES = ("D", "N", "V", "P", "R", ".", "T")  # det, noun, verb, prep, rel, punctuation, tense marker


# ---------------------------------------------------------------- TI: POS tags and the main verb (§4.2)


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


# ---------------------------------------------------------------- TI: what the original's decoder scores (D29)


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


# ---------------------------------------------------------------- QF (§4.1, D14)


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


def teacher_forced_match(pred_BxT, line_BxT, prefix_len_B, line_len_B):
    """Whether greedy decoding after each prefix would give exactly the rest of the line (target, then EOS).

    Greedy decoding reproduces the target iff the argmax after every gold prefix of it is its next
    token, EOS last: so exact match needs the argmaxes `pred_BxT` of one teacher-forced pass over
    the whole line, not a token-by-token decode (docs/metrics.md).
    """
    t_T = jnp.arange(line_BxT.shape[1] - 1)
    scored_BxT = (t_T[None] >= prefix_len_B[:, None] - 1) & (t_T[None] < line_len_B[:, None] - 1)
    return jnp.all(~scored_BxT | (pred_BxT[:, :-1] == line_BxT[:, 1:]), axis=1)


# ---------------------------------------------------------------- Dyck (§4.3, D10)


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
