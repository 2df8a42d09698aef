"""Question formation (QF) and tense inflection (TI) datasets, generated from the grammars.

Pipeline: sample declaratives from the grammar (skeleton weights below), pick a marker with
probability 1/2, apply McCoy's withholding filter, and drop repeats across all splits:
* QF: `quest` examples whose subject carries an RC are withheld from train/val/test; gen holds only
  such questions, with exactly two auxiliaries, the RC's auxiliary of the main clause's number and the
  other polarity (so move-first scores 0%; this is what every line of the original gen file shows).
* TI: `PRESENT` examples where agree-with-the-most-recent-noun differs from agree-with-the-subject are
  withheld from train/val/test; gen holds only those.

Two generations (`GENERATIONS`, the config's `data.generation`):
* "train_first" (the default), McCoy's process: one stream fills train first, then val, then test, each
  rejecting inputs (sentence and marker) already used, so the held-out splits come from what train
  left (its few short sentence types are used up). The structure mix is `TRAIN_FIRST_MIX`, independent choices of the
  subject's kind and of the main verb's object, fitted to McCoy's real QF train file.
* "heldout_first", the data sgjax generated before: held-out splits first (gen, test, val), each from
  its own stream, so they never depend on the train size; train last; each sentence used once; the
  mix of `ORIGINAL_CELL_SHARES`, fitted to McCoy's held-out files.
gen is the same in both: its own stream and weights, and no input it can hold is ever in the others.
"""

from __future__ import annotations

import functools

import numpy as np

from sgjax.data import grammar as G
from sgjax.errors import UserError

SPLITS = ("train", "val", "test", "gen")
DEFAULT_SIZES = {"train": 100_000, "val": 1_000, "test": 10_000, "gen": 10_000}
MARKERS = {"question": ("decl", "quest"), "tense": ("PAST", "PRESENT")}
GENERATIONS = ("train_first", "heldout_first")
_TASK_ID = {"question": 1, "tense": 2}
_SPLIT_ID = {"train": 0, "val": 1, "test": 2, "gen": 3}
_CHUNK = 4096  # fixed draw size: a split's lines are a prefix-stable function of its stream

AUX = frozenset(G.AUX_SG + G.AUX_PL)
NOUNS_PL = frozenset(G.N_PL)
NOUNS = frozenset(G.N_SG + G.N_PL)

# NP kinds: bare, pp, rc_intr (Rel Aux? V_intrans), rc_obj (Rel Det N Aux? V_trans),
# rc_trans (Rel Aux? V_trans Det N); object kind "none" = intransitive main verb.
KINDS = ("bare", "pp", "rc_intr", "rc_obj", "rc_trans")
OBJ_KINDS = ("none",) + KINDS

# Share of declaratives per (subject kind, object kind) in the original in-distribution files
# (McCoy's .dev + .test; QF: the 6,560 `decl` lines, TI: the 6,384 `PAST` lines, both unfiltered).
# The originals' structure mix is not the .gr file's PCFG (e.g. intransitive main verbs are ~13% of
# QF sentences, not 50%), and the generation code is not public, so the mix over these cells is taken
# from the files; within a cell, choices (numbers, words) follow the PCFG. `mix="pcfg"` ignores it.
# The "heldout_first" generation's mix: those files were drawn after train had used up the short
# sentences, so this table under-weights them (QF's 4-word cell: 0.5% here, about 14% in train).
ORIGINAL_CELL_SHARES = {
    "question": {
        ("bare", "none"): 0.0053,
        ("bare", "bare"): 0.1296,
        ("bare", "pp"): 0.1367,
        ("bare", "rc_intr"): 0.0886,
        ("bare", "rc_obj"): 0.0462,
        ("bare", "rc_trans"): 0.0471,
        ("pp", "none"): 0.0569,
        ("pp", "bare"): 0.0520,
        ("pp", "pp"): 0.0567,
        ("pp", "rc_intr"): 0.0348,
        ("pp", "rc_obj"): 0.0180,
        ("pp", "rc_trans"): 0.0194,
        ("rc_intr", "none"): 0.0159,
        ("rc_intr", "bare"): 0.0183,
        ("rc_intr", "pp"): 0.0195,
        ("rc_intr", "rc_intr"): 0.0123,
        ("rc_intr", "rc_obj"): 0.0064,
        ("rc_intr", "rc_trans"): 0.0063,
        ("rc_obj", "none"): 0.0329,
        ("rc_obj", "bare"): 0.0331,
        ("rc_obj", "pp"): 0.0378,
        ("rc_obj", "rc_intr"): 0.0232,
        ("rc_obj", "rc_obj"): 0.0120,
        ("rc_obj", "rc_trans"): 0.0131,
        ("rc_trans", "none"): 0.0175,
        ("rc_trans", "bare"): 0.0177,
        ("rc_trans", "pp"): 0.0169,
        ("rc_trans", "rc_intr"): 0.0127,
        ("rc_trans", "rc_obj"): 0.0075,
        ("rc_trans", "rc_trans"): 0.0058,
    },
    "tense": {
        ("bare", "none"): 0.0407,
        ("bare", "bare"): 0.0901,
        ("bare", "pp"): 0.0824,
        ("bare", "rc_intr"): 0.0310,
        ("bare", "rc_obj"): 0.0301,
        ("bare", "rc_trans"): 0.0280,
        ("pp", "none"): 0.0945,
        ("pp", "bare"): 0.0826,
        ("pp", "pp"): 0.0890,
        ("pp", "rc_intr"): 0.0287,
        ("pp", "rc_obj"): 0.0288,
        ("pp", "rc_trans"): 0.0291,
        ("rc_intr", "none"): 0.0258,
        ("rc_intr", "bare"): 0.0268,
        ("rc_intr", "pp"): 0.0290,
        ("rc_intr", "rc_intr"): 0.0102,
        ("rc_intr", "rc_obj"): 0.0103,
        ("rc_intr", "rc_trans"): 0.0102,
        ("rc_obj", "none"): 0.0277,
        ("rc_obj", "bare"): 0.0327,
        ("rc_obj", "pp"): 0.0257,
        ("rc_obj", "rc_intr"): 0.0102,
        ("rc_obj", "rc_obj"): 0.0096,
        ("rc_obj", "rc_trans"): 0.0117,
        ("rc_trans", "none"): 0.0301,
        ("rc_trans", "bare"): 0.0280,
        ("rc_trans", "pp"): 0.0265,
        ("rc_trans", "rc_intr"): 0.0108,
        ("rc_trans", "rc_obj"): 0.0092,
        ("rc_trans", "rc_trans"): 0.0105,
    },
}

# The "train_first" generation's mix: the subject's kind, then the main verb's object ("none": an
# intransitive main verb), chosen independently; within a cell the PCFG decides as above.
# QF: fitted to the first 10,000 lines of McCoy's real question.train, its 4-word cell corrected for
# the repeats train had already rejected there; the two choices are independent in that file (the
# intransitive share is 0.20-0.23 under every subject kind). TI: McCoy's tense.train is not public, so
# the same structure is fitted to the tense .dev+.test PAST lines, with the 3-word cell (depleted
# there) set by that independence. experiments/science/data_fidelity/fit_mix.py computes both.
TRAIN_FIRST_MIX = {
    "question": {
        "subject": {"bare": 0.5164, "pp": 0.2045, "rc_intr": 0.0672, "rc_obj": 0.1428, "rc_trans": 0.0691},
        "object": {
            "none": 0.2229,
            "bare": 0.2349,
            "pp": 0.2312,
            "rc_intr": 0.1582,
            "rc_obj": 0.0713,
            "rc_trans": 0.0815,
        },
    },
    "tense": {
        "subject": {"bare": 0.3349, "pp": 0.3361, "rc_intr": 0.1071, "rc_obj": 0.1121, "rc_trans": 0.1098},
        "object": {
            "none": 0.2553,
            "bare": 0.2480,
            "pp": 0.2407,
            "rc_intr": 0.0866,
            "rc_obj": 0.0839,
            "rc_trans": 0.0854,
        },
    },
}


def train_first_cells(task: str) -> dict[tuple[str, str], float]:
    """TRAIN_FIRST_MIX as (subject kind, object kind) cell shares."""
    mix = TRAIN_FIRST_MIX[task]
    return {(s, o): ps * po for s, ps in mix["subject"].items() for o, po in mix["object"].items()}


# --- skeleton features ---------------------------------------------------------------------------


def _rule(task, node) -> G.Rule:
    return G.GRAMMARS[task].rules[node[0]][node[1]]


def np_kind(task: str, np_node) -> str:
    """bare / pp / rc_intr / rc_obj / rc_trans for an NP skeleton node."""
    kids = np_node[2]
    if len(kids) == 2:
        return "bare"
    if len(kids) == 5:
        return "pp"
    rc_rhs = _rule(task, kids[2]).rhs
    if "intrans" in rc_rhs[-1]:
        return "rc_intr"
    return "rc_obj" if rc_rhs[1] == "Det" else "rc_trans"


def _parts(tree):
    """(subject NP node, VP node) of a ROOT skeleton."""
    s = tree[2][0]
    return s[2][0], s[2][1]


def subject_kind(task: str, tree) -> str:
    return np_kind(task, _parts(tree)[0])


def object_kind(task: str, tree) -> str:
    """The main verb's object NP kind, or 'none' for an intransitive main verb."""
    vp = _parts(tree)[1]
    obj = [c for c in vp[2] if c[0].startswith("NP_O")]
    return np_kind(task, obj[0]) if obj else "none"


def main_verb_index(tree) -> int:
    """Word index of the main clause's auxiliary (QF) or verb (TI): the subject's length."""
    return len(G.slot_labels(_parts(tree)[0]))


def _number(label: str) -> str:
    return "pl" if label.endswith(("_P", "_pl")) else "sg"


def ti_mismatch(tree) -> bool:
    """TI: the noun right before the main verb has the other number than the subject's head noun."""
    subj = _parts(tree)[0]
    slots = G.slot_labels(subj)
    nouns = [s for s in slots if s.startswith("N_")]
    return _number(nouns[0]) != _number(nouns[-1])


@functools.cache
def features(task: str) -> dict[str, np.ndarray]:
    """Per-skeleton arrays: subject/object kind ids, main index, subject RC, TI mismatch, QF gen eligibility."""
    sk = G.skeletons(task)
    subj = [subject_kind(task, t) for t in sk.trees]
    obj = [object_kind(task, t) for t in sk.trees]
    out = {
        "subj_K": np.array([KINDS.index(s) for s in subj]),
        "obj_K": np.array([OBJ_KINDS.index(o) for o in obj]),
        "main_K": np.array([main_verb_index(t) for t in sk.trees]),
        "subj_rc_K": np.array([s.startswith("rc") for s in subj]),
    }
    if task == "tense":
        out["mismatch_K"] = np.array([ti_mismatch(t) for t in sk.trees])
    else:
        # gen: RC subject, no object RC (exactly two auxiliaries), an object-relative RC's inner
        # subject of the main number (the original gen file has no other kind)
        labels = [G.slot_labels(_parts(t)[0]) for t in sk.trees]
        same = [all(_number(s) == _number(ls[1]) for s in ls if s.startswith("Aux")) for ls in labels]
        out["gen_ok_K"] = np.array(
            [s.startswith("rc") and not o.startswith("rc") and m for s, o, m in zip(subj, obj, same)]
        )
    return out


MIXES = {"train_first": train_first_cells, "original": ORIGINAL_CELL_SHARES.__getitem__}


@functools.cache
def skeleton_weights(task: str, split: str, mix: str = "original") -> np.ndarray:
    """Sampling weights over the task's skeletons for a split (before the per-example filter)."""
    sk, f = G.skeletons(task), features(task)
    p_K = sk.prob_K.copy()
    if task == "question" and split == "gen":
        # the original gen's RC mix is 1/3 each: object-relative RCs keep the full RC weight
        # with the inner subject's number fixed to the main one
        p_K = p_K * f["gen_ok_K"] * np.where(f["subj_K"] == KINDS.index("rc_obj"), 2.0, 1.0)
        return p_K / p_K.sum()
    if mix in MIXES:
        cell_K = f["subj_K"] * len(OBJ_KINDS) + f["obj_K"]
        pcfg_cell = np.bincount(cell_K, weights=p_K, minlength=len(KINDS) * len(OBJ_KINDS))
        share = np.zeros_like(pcfg_cell)
        for (s, o), v in MIXES[mix](task).items():
            share[KINDS.index(s) * len(OBJ_KINDS) + OBJ_KINDS.index(o)] = v
        p_K = p_K / pcfg_cell[cell_K] * share[cell_K]
    elif mix != "pcfg":
        raise UserError(f"unknown mix {mix!r}: use {', '.join(MIXES)} or 'pcfg'")
    if task == "tense" and split == "gen":
        p_K = p_K * f["mismatch_K"]
    return p_K / p_K.sum()


# --- transformations -----------------------------------------------------------------------------


def to_question(words: list[str], main: int) -> list[str]:
    """Move the main auxiliary (at `main`) to the front; '?' replaces the final '.'."""
    return [words[main]] + words[:main] + words[main + 1 : -1] + ["?"]


def to_past(words) -> list[str]:
    """Present-tense sentence -> past tense (verbs only)."""
    return [G.PAST.get(w, w) for w in words]


def agree_recent(past_words) -> list[str]:
    """Reinflect each past verb to agree with the most recent preceding noun (the linear rule)."""
    out, plural = [], False
    for w in past_words:
        if w in NOUNS:
            plural = w in NOUNS_PL
        if w in G.PRESENT_SG:
            w = G.PRESENT_PL[w] if plural else G.PRESENT_SG[w]
        out.append(w)
    return out


def first_aux(words) -> str | None:
    """The first auxiliary of a QF sentence (the move-first rule's answer)."""
    return next((w for w in words if w in AUX), None)


# --- splits --------------------------------------------------------------------------------------


def _stream(task: str, split: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _TASK_ID[task], _SPLIT_ID[split]])


def _examples(task: str, split: str, rng: np.random.Generator, mix: str):
    """Endless (input sentence, line) pairs for a split, after the marker choice and the filter."""
    w_K = skeleton_weights(task, split, mix)
    f = features(task)
    while True:
        ids_n, words_n = G.sample(task, rng, _CHUNK, w_K)
        second_n = rng.random(_CHUNK) < 0.5  # marker: quest / PRESENT
        for k, words, second in zip(ids_n.tolist(), words_n, second_n.tolist()):
            words = list(words)
            if task == "question":
                main = int(f["main_K"][k])
                if split == "gen":
                    # RC auxiliary = the main auxiliary with the other polarity
                    if first_aux(words) == words[main]:
                        continue
                    second = True
                elif second and f["subj_rc_K"][k]:
                    continue  # withheld: move-first and move-main would differ
                inp = " ".join(words)
                out = " ".join(to_question(words, main)) if second else inp
                yield inp, f"{inp} {'quest' if second else 'decl'}\t{out}"
            else:
                past = to_past(words)
                inp = " ".join(past)
                if split == "gen":
                    second = True
                elif second and agree_recent(past) != words:
                    continue  # withheld: agree-recent and agree-subject would differ
                out = " ".join(words) if second else inp
                yield inp, f"{inp} {'PRESENT' if second else 'PAST'}\t{out}"


def check_task(task: str) -> None:
    if task not in MARKERS:
        raise UserError(f"unknown task {task!r}: valid tasks are {', '.join(MARKERS)}")


def generate_splits(
    task: str,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    *,
    generation: str = "train_first",
    mix: str | None = None,
) -> dict[str, list[str]]:
    """Lines `input . MARKER<TAB>output` per split; inputs unique within and disjoint across splits.

    `mix` replaces the generation's structure mix for train/val/test ("pcfg": the raw grammar).
    """
    check_task(task)
    if generation not in GENERATIONS:
        raise UserError(f"unknown generation {generation!r}: use {' or '.join(GENERATIONS)}")
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    bad = set(sizes) - set(SPLITS)
    if bad:
        raise UserError(f"unknown split(s) {sorted(bad)}: valid splits are {', '.join(SPLITS)}")
    seen: set[str] = set()
    # gen draws from its own stream with the same weights in both generations; no other split can
    # hold its inputs (they are withheld there), so its lines are the same in both.
    gen = _examples(task, "gen", _stream(task, "gen", seed), "original")
    if generation == "train_first":
        # McCoy's process: one stream, train first, then val and test from what it left. A line is
        # a repeat when its whole input (sentence and marker) is: McCoy's files hold a sentence
        # with both markers, within and across splits.
        shared = _examples(task, "train", _stream(task, "train", seed), mix or "train_first")
        order = [("train", shared), ("val", shared), ("test", shared), ("gen", gen)]
        key = _whole_input
    else:
        # held-out splits first, each from its own stream; a repeat is a repeated sentence
        order = [("gen", gen)] + [
            (s, _examples(task, s, _stream(task, s, seed), mix or "original")) for s in ("test", "val", "train")
        ]
        key = _sentence
    out = {split: _take(examples, sizes[split], seen, key) for split, examples in order}
    return {s: out[s] for s in SPLITS}


def _sentence(sentence: str, line: str) -> str:
    return sentence


def _whole_input(sentence: str, line: str) -> str:
    return line.split("\t", 1)[0]


def _take(examples, n: int, seen: set[str], key) -> list[str]:
    """The next n lines of `examples` whose key(sentence, line) is not in `seen` (which gains it)."""
    lines: list[str] = []
    if n <= 0:
        return lines
    for sentence, line in examples:
        k = key(sentence, line)
        if k in seen:
            continue
        seen.add(k)
        lines.append(line)
        if len(lines) == n:
            break
    return lines
