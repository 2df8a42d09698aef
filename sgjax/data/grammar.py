"""The QF and TI PCFGs (McCoy et al. 2020, `cfgs/*.gr`) as Python data, and a seeded sampler of derivations.

A grammar is rules (LHS -> weighted RHS, each with a binarization `shape`) plus a lexicon
(preterminal -> equiprobable words). Because every lexicon is uniform, a derivation factors into a
*skeleton* (the rule choices down to preterminals) and a word per preterminal slot; all sentences of a
skeleton have the same probability. Sampling draws a skeleton id, then one word per slot, vectorized
over a batch with a numpy Generator, so 100k sentences take well under a second.

`shape` is a nested tuple of RHS positions giving the rule's binary bracketing: the gold
parse of a derivation is its skeleton's shapes composed, so gold trees come from the grammar itself.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Rule:
    """LHS -> RHS with a relative weight and the binary bracketing of the RHS positions."""

    weight: float
    rhs: tuple[str, ...]
    shape: object  # nested tuple of RHS indices; an int for a unary rule


@dataclasses.dataclass(frozen=True)
class Grammar:
    """A PCFG with a uniform lexicon; `start` derives `S .`."""

    name: str
    start: str
    rules: dict  # lhs -> tuple[Rule, ...]
    lexicon: dict  # preterminal -> tuple[str, ...] (equiprobable)


def _r(weight, rhs, shape):
    """Rule from a .gr-style RHS string."""
    return Rule(float(weight), tuple(rhs.split()), shape)


# --- shared lexicon (both .gr files) -------------------------------------------------------------
DET = ("the", "some", "my", "your", "our", "her")
N_SG = (
    "newt",
    "orangutan",
    "peacock",
    "quail",
    "raven",
    "salamander",
    "tyrannosaurus",
    "unicorn",
    "vulture",
    "walrus",
    "xylophone",
    "yak",
    "zebra",
)
N_PL = (
    "newts",
    "orangutans",
    "peacocks",
    "quails",
    "ravens",
    "salamanders",
    "tyrannosauruses",
    "unicorns",
    "vultures",
    "walruses",
    "xylophones",
    "yaks",
    "zebras",
)
PREP = ("around", "near", "with", "upon", "by", "behind", "above", "below")
REL = ("who", "that")
V_INTRANS = ("giggle", "smile", "sleep", "swim", "wait", "move", "change", "read", "eat")
V_TRANS = ("entertain", "amuse", "high_five", "applaud", "confuse", "admire", "accept", "remember", "comfort")
AUX_SG = ("does", "doesn't")
AUX_PL = ("do", "don't")

# TI verb forms (tense.gr; the past forms as in pos_tense.txt): present plural -> (present singular, past).
V_FORMS = {
    "giggle": ("giggles", "giggled"),
    "smile": ("smiles", "smiled"),
    "sleep": ("sleeps", "slept"),
    "swim": ("swims", "swam"),
    "wait": ("waits", "waited"),
    "move": ("moves", "moved"),
    "change": ("changes", "changed"),
    "read": ("reads", "read"),
    "eat": ("eats", "ate"),
    "entertain": ("entertains", "entertained"),
    "amuse": ("amuses", "amused"),
    "high_five": ("high_fives", "high_fived"),
    "applaud": ("applauds", "applauded"),
    "confuse": ("confuses", "confused"),
    "admire": ("admires", "admired"),
    "accept": ("accepts", "accepted"),
    "remember": ("remembers", "remembered"),
    "comfort": ("comforts", "comforted"),
}
PAST = {pl: past for pl, (_, past) in V_FORMS.items()} | {sg: past for _, (sg, past) in V_FORMS.items()}
PRESENT_SG = {past: sg for _, (sg, past) in V_FORMS.items()}
PRESENT_PL = {past: pl for pl, (_, past) in V_FORMS.items()}


def _np_rules(n, rc, n_inner):
    """Det N [Prep Det N'] [RC]: NP = (Det N); NP+PP = (NP (P NP)); NP+RC = (NP RC)."""
    rules = [_r(1, f"Det {n}", (0, 1))]
    for w, inner in n_inner:
        rules.append(_r(w, f"Det {n} Prep Det {inner}", ((0, 1), (2, (3, 4)))))
    rules.append(_r(1, f"Det {n} {rc}", ((0, 1), 2)))
    return tuple(rules)


def _question() -> Grammar:
    """question.gr: agreement through auxiliaries; RC weights 2:1:1:2."""
    rules = {
        "ROOT": (_r(1, "S .", (0, 1)),),
        "S": (_r(1, "NP_M_S VP_M_S", (0, 1)), _r(1, "NP_M_P VP_M_P", (0, 1))),
        "N": (_r(1, "N_S", 0), _r(1, "N_P", 0)),
    }
    for x in ("S", "P"):
        rules[f"NP_M_{x}"] = _np_rules(f"N_{x}", f"RC_{x}", [(1, "N")])
        # QF: VP = (Aux V) or (Aux (V NP))
        rules[f"VP_M_{x}"] = (_r(1, f"Aux_{x} V_intrans", (0, 1)), _r(1, f"Aux_{x} V_trans NP_O", (0, (1, 2))))
        # RC = (Rel X), X in {(Aux V), (Aux (V NP)), (NP (Aux V))}
        rules[f"RC_{x}"] = (
            _r(2, f"Rel Aux_{x} V_intrans", (0, (1, 2))),
            _r(1, "Rel Det N_S Aux_S V_trans", (0, ((1, 2), (3, 4)))),
            _r(1, "Rel Det N_P Aux_P V_trans", (0, ((1, 2), (3, 4)))),
            _r(2, f"Rel Aux_{x} V_trans Det N", (0, (1, (2, (3, 4))))),
        )
    sg, pl = _np_rules("N_S", "RC_S", [(1, "N")]), _np_rules("N_P", "RC_P", [(1, "N")])
    rules["NP_O"] = (sg[0], pl[0], sg[1], pl[1], sg[2], pl[2])  # the .gr file's order
    lexicon = {
        "Det": DET,
        "N_S": N_SG,
        "N_P": N_PL,
        "V_intrans": V_INTRANS,
        "V_trans": V_TRANS,
        "Aux_S": AUX_SG,
        "Aux_P": AUX_PL,
        "Prep": PREP,
        "Rel": REL,
        ".": (".",),
    }
    return Grammar("question", "ROOT", rules, lexicon)


def _tense() -> Grammar:
    """tense.gr (present tense): agreement on the verbs; inner nouns 0.5/0.5 sg/pl; RC weights 1:.5:.5:.5:.5."""
    rules = {"ROOT": (_r(1, "S .", (0, 1)),), "S": (_r(1, "NP_M_sg VP_M_sg", (0, 1)), _r(1, "NP_M_pl VP_M_pl", (0, 1)))}
    inner = [(0.5, "N_sg"), (0.5, "N_pl")]
    for x in ("sg", "pl"):
        rules[f"NP_M_{x}"] = _np_rules(f"N_{x}", f"RC_{x}", inner)
        rules[f"NP_O_{x}"] = _np_rules(f"N_{x}", f"RC_{x}", inner)
        # TI: VP = V or (V NP)
        rules[f"VP_M_{x}"] = (
            _r(1, f"V_intrans_{x}", 0),
            _r(0.5, f"V_trans_{x} NP_O_sg", (0, 1)),
            _r(0.5, f"V_trans_{x} NP_O_pl", (0, 1)),
        )
        # RC = (Rel X), X in {V, (V NP), (NP V)}
        rules[f"RC_{x}"] = (
            _r(1, f"Rel V_intrans_{x}", (0, 1)),
            _r(0.5, "Rel Det N_sg V_trans_sg", (0, ((1, 2), 3))),
            _r(0.5, "Rel Det N_pl V_trans_pl", (0, ((1, 2), 3))),
            _r(0.5, f"Rel V_trans_{x} Det N_sg", (0, (1, (2, 3)))),
            _r(0.5, f"Rel V_trans_{x} Det N_pl", (0, (1, (2, 3)))),
        )
    lexicon = {
        "Det": DET,
        "N_sg": N_SG,
        "N_pl": N_PL,
        "Prep": PREP,
        "Rel": REL,
        ".": (".",),
        "V_intrans_sg": tuple(V_FORMS[v][0] for v in V_INTRANS),
        "V_intrans_pl": V_INTRANS,
        "V_trans_sg": tuple(V_FORMS[v][0] for v in V_TRANS),
        "V_trans_pl": V_TRANS,
    }
    return Grammar("tense", "ROOT", rules, lexicon)


GRAMMARS = {"question": _question(), "tense": _tense()}


# --- skeletons -----------------------------------------------------------------------------------
# A skeleton node is (label, rule_index, children); a preterminal slot is (label, -1, ()).


@dataclasses.dataclass(frozen=True)
class Skeletons:
    """All skeletons of a grammar with their probability, slot labels and sentence count."""

    trees: tuple  # skeleton trees
    prob_K: np.ndarray  # float64 PCFG probability of each skeleton (sums to 1)
    slots: tuple  # per skeleton: tuple of preterminal labels, in word order
    count_K: np.ndarray  # float64 number of distinct sentences of each skeleton


def _expand(g: Grammar, symbol: str) -> list:
    """All (prob, skeleton) derivable from `symbol`."""
    if symbol in g.lexicon:
        return [(1.0, (symbol, -1, ()))]
    rules = g.rules[symbol]
    total = sum(r.weight for r in rules)
    out = []
    for k, rule in enumerate(rules):
        for combo in itertools.product(*(_expand(g, s) for s in rule.rhs)):
            p = rule.weight / total * math.prod(c[0] for c in combo)
            out.append((p, (symbol, k, tuple(c[1] for c in combo))))
    return out


def slot_labels(tree) -> tuple[str, ...]:
    """Preterminal labels of a skeleton (or filled tree), left to right."""
    label, k, children = tree
    if k == -1:
        return (label,)
    return tuple(s for c in children for s in slot_labels(c))


@functools.cache
def skeletons(task: str) -> Skeletons:
    """Enumerate the task grammar's skeletons (a few hundred; the grammar has recursion depth 1)."""
    g = GRAMMARS[task]
    pairs = _expand(g, g.start)
    trees = tuple(t for _, t in pairs)
    slots = tuple(slot_labels(t) for t in trees)
    count = np.array([math.prod(len(g.lexicon[s]) for s in sl) for sl in slots], dtype=np.float64)
    return Skeletons(trees, np.array([p for p, _ in pairs]), slots, count)


def binarize(task: str, tree, offset: int = 0):
    """Gold binary tree (nested tuples of word indices) of a skeleton subtree starting at word `offset`."""
    return _binarize(GRAMMARS[task], tree, offset)[0]


def _binarize(g: Grammar, tree, offset: int):
    label, k, children = tree
    if k == -1:  # a preterminal slot (skeleton) or (label, -1, (word,)) (filled tree)
        return offset, offset + 1
    subs = []
    for c in children:
        sub, offset = _binarize(g, c, offset)
        subs.append(sub)
    return _compose(g.rules[label][k].shape, subs), offset


def _compose(shape, subs):
    """Replace RHS positions in `shape` by the children's trees."""
    if isinstance(shape, int):
        return subs[shape]
    return tuple(_compose(s, subs) for s in shape)


def fill(tree, words, offset: int = 0):
    """A skeleton with words at its slots: preterminal nodes become (label, -1, (word,))."""
    return _fill(tree, list(words), [offset])


def _fill(tree, words, pos):
    label, k, children = tree
    if k == -1:
        w = words[pos[0]]
        pos[0] += 1
        return (label, -1, (w,))
    return (label, k, tuple(_fill(c, words, pos) for c in children))


# --- sampling ------------------------------------------------------------------------------------


def sample(task: str, rng: np.random.Generator, n: int, weights_K: np.ndarray):
    """Draw n derivations: (skeleton ids int64[n], words: list of word tuples incl. the final '.')."""
    sk = skeletons(task)
    g = GRAMMARS[task]
    cdf_K = np.cumsum(weights_K)
    cdf_K /= cdf_K[-1]
    ids_n = np.minimum(np.searchsorted(cdf_K, rng.random(n), side="right"), len(cdf_K) - 1)
    width = max(len(s) for s in sk.slots)
    u_nxW = rng.random((n, width))
    out = []
    for i, k in enumerate(ids_n.tolist()):
        u = u_nxW[i]
        out.append(tuple(g.lexicon[s][int(u[j] * len(g.lexicon[s]))] for j, s in enumerate(sk.slots[k])))
    return ids_n, out
