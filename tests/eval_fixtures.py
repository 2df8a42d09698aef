"""Hand-written evaluation lines and rule-following predictors, shared by the scoring, batching and evaluator tests."""

import numpy as np

from sgjax.config import ModelConfig
from sgjax.data import grammar as G
from sgjax.data.split import line_words
from sgjax.data.vocab import Vocab
from sgjax.evaluation import scoring

QF_GEN = [  # subject RC: the first auxiliary is never the main one
    "my raven that doesn't sleep does change . quest\tdoes my raven that doesn't sleep change ?",
    "the newts who do swim don't wait . quest\tdon't the newts who do swim wait ?",
    "her yak that the zebras do admire doesn't giggle . quest\tdoesn't her yak that the zebras do admire giggle ?",
    "our quails who don't amuse the newt do read . quest\tdo our quails who don't amuse the newt read ?",
]
QF_VAL = [
    "the newt does swim . quest\tdoes the newt swim ?",
    "my walrus that doesn't wait does giggle . decl\tmy walrus that doesn't wait does giggle .",
    "some ravens near the yak don't smile . quest\tdon't some ravens near the yak smile ?",
    "the yaks do read . decl\tthe yaks do read .",
]
TI_GEN = [  # an intervening noun of the other number: agree-recent gets the main verb wrong
    "the newt near the yaks giggled . PRESENT\tthe newt near the yaks giggles .",
    "my zebras that the raven admired slept . PRESENT\tmy zebras that the raven admires sleep .",
    "her yaks who the orangutan confused read . PRESENT\ther yaks who the orangutan confuses read .",
    "the walrus with the newts swam . PRESENT\tthe walrus with the newts swims .",
    "the unicorn near the ravens amused the yak . PRESENT\tthe unicorn near the ravens amuses the yak .",
    "some peacocks who the quail entertained accepted our newts . PRESENT\tsome peacocks who the quail entertains "
    "accept our newts .",
]
TI_VAL = [
    "the newt near the yak giggled . PAST\tthe newt near the yak giggled .",
    "the yaks slept . PRESENT\tthe yaks sleep .",
]
LETTERS = "abcdefghijklmnopqrst"
DYCK_VOCAB = Vocab.from_words([f"({c}" for c in LETTERS] + [f"{c})" for c in LETTERS])
DYCK_LINES = [
    "(a (b b) a)",  # closings at 2 (distance 1), 3 (3)
    "(a (b (c c) (d d) (e e) (f f) b) a)",  # distances 1,1,1,1,9,11
    "(g g) (h (i (j (k (l (m m) l) k) j) i) h)",  # distances 1 then 1,3,5,7,9,11
    "(q (r r) q) (s s)",
]

TINY = ModelConfig(vocab_size=0, n_layers=1, d_model=32, n_heads=2, d_ff=64, dropout=0.0)

NUMBER = {**{w: "sg" for w in G.N_SG}, **{w: "pl" for w in G.N_PL}}


def words_vocab(*line_sets) -> Vocab:
    """The fixture lines' words plus the auxiliaries and every TI verb form (the linear rule's outputs)."""
    verbs = {f for pl, forms in G.V_FORMS.items() for f in (pl, *forms)}
    return Vocab.from_words(
        {w for lines in line_sets for l in lines for w in line_words(l)} | set(scoring.AUXILIARIES) | verbs
    )


def input_output(line: str) -> tuple[list[str], list[str]]:
    inp, out = line.split("\t")
    return inp.split(" "), out.split(" ")


def one_hot_logits(pred_ids, v: int, rng, scale: float = 50.0) -> np.ndarray:
    """Noise plus a large margin on each predicted id."""
    logits = rng.normal(size=(len(pred_ids), v))
    logits[np.arange(len(pred_ids)), pred_ids] += scale
    return logits


def reinflect(past_words: list[str], number_of) -> list[str]:
    """Present tense with each verb's number chosen by number_of(index, words)."""
    out = []
    for i, w in enumerate(past_words):
        if w in G.PRESENT_SG:
            out.append(G.PRESENT_SG[w] if number_of(i, past_words) == "sg" else G.PRESENT_PL[w])
        else:
            out.append(w)
    return out


def agree_recent(i: int, words: list[str]) -> str:
    """The linear rule: the number of the most recent noun before the verb."""
    return next(NUMBER[w] for w in reversed(words[:i]) if w in NUMBER)


def ti_input(line: str) -> list[str]:
    return input_output(line)[0][:-2]  # drop ". PRESENT"


def stack_rule(tokens):
    """The correct predictor: close the innermost open bracket."""
    stack, out = [], []
    for t in tokens:
        if t.startswith("("):
            stack.append(t)
        else:
            out.append(stack.pop()[1:] + ")")
    return out


def last_opened_rule(tokens):
    """A linear heuristic: close the most recently *opened* bracket, ignoring closings."""
    last, out = None, []
    for t in tokens:
        if t.startswith("("):
            last = t
        else:
            out.append(last[1:] + ")")
    return out
