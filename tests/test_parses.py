"""Gold parses, spans, branching baselines and parse F1."""

import numpy as np
import pytest

from sgjax.data import grammar as G
from sgjax.data import parses, qf_ti
from sgjax.errors import DataError

HAND = [
    # the QF val example: (((D N) (P (D N))) (A (V ((D N) (R (A V))))))
    (
        "question",
        "the newt near some yak does admire my zebra who doesn't giggle",
        (((0, 1), (2, (3, 4))), (5, (6, ((7, 8), (9, (10, 11)))))),
    ),
    # the TI gen example: (((D N) (R ((D N) V))) (V ((D N) (P (D N)))))
    (
        "tense",
        "the yaks that some unicorn entertained applauded her salamanders below some walrus",
        (((0, 1), (2, ((3, 4), 5))), (6, ((7, 8), (9, (10, 11))))),
    ),
    ("question", "the newt does giggle", ((0, 1), (2, 3))),
    ("question", "my yaks don't admire the newt", ((0, 1), (2, (3, (4, 5))))),
    # RC = (Rel (NP (Aux V))) and (Rel (Aux (V NP)))
    ("question", "her raven that our yaks do confuse doesn't read", (((0, 1), (2, ((3, 4), (5, 6)))), (7, 8))),
    ("question", "her raven who does confuse our yaks doesn't read", (((0, 1), (2, (3, (4, (5, 6))))), (7, 8))),
    ("tense", "the newt giggled", ((0, 1), 2)),
    ("tense", "the newts admired the yak", ((0, 1), (2, (3, 4)))),
    ("tense", "the newts read", ((0, 1), 2)),  # past == present plural
    ("tense", "my yak who read admired her zebras", (((0, 1), (2, 3)), (4, (5, 6)))),
    (
        "tense",
        "my yak admires her zebras that accept the newt",
        ((0, 1), (2, ((3, 4), (5, (6, (7, 8)))))),
    ),  # present tense parses too
]


@pytest.mark.parametrize("task,sentence,tree", HAND)
def test_hand_written_trees(task, sentence, tree):
    assert parses.parse(task, sentence.split()) == tree


def test_parse_accepts_lines_and_final_period():
    line = "my raven that doesn't sleep does change . quest\tdoes my raven that doesn't sleep change ?"
    want = (((0, 1), (2, (3, 4))), (5, 6))
    assert parses.parse("question", line.replace("\t", " ").split(" ")) == want
    assert parses.parse("question", "my raven that doesn't sleep does change .".split()) == want


@pytest.mark.parametrize("task", ["question", "tense"])
def test_parse_equals_grammar_derivation(task):
    rng = np.random.default_rng(0)
    sk = G.skeletons(task)
    ids, sents = G.sample(task, rng, 300, qf_ti.skeleton_weights(task, "train"))
    for k, words in zip(ids.tolist(), sents):
        gold = G.binarize(task, sk.trees[k][2][0])  # the S subtree: the final '.' is not in the tree
        assert parses.parse(task, list(words)) == gold
        if task == "tense":  # the input side is past tense
            assert parses.parse(task, qf_ti.to_past(words)) == gold
        assert parses.tree_spans(gold) >= {(0, len(words) - 2)}
        assert len(parses.tree_spans(gold)) == len(words) - 2  # binary: n-1 internal nodes


def test_ungrammatical_raises():
    with pytest.raises(DataError, match="not a sentence"):
        parses.parse("question", "the newt does move my zebra".split())


def test_spans_and_branching():
    assert parses.tree_spans(((0, 1), (2, 3))) == {(0, 1), (2, 3), (0, 3)}
    assert parses.tree_spans(0) == set()
    assert parses.right_branching(4) == (0, (1, (2, 3)))
    assert parses.left_branching(4) == (((0, 1), 2), 3)
    assert parses.tree_spans(parses.right_branching(5)) == {(i, 4) for i in range(4)}


def test_parse_f1():
    rb, lb = parses.right_branching(3), parses.left_branching(3)
    assert parses.parse_f1([rb], [rb]) == pytest.approx(1.0)
    assert parses.parse_f1([rb], [lb]) == pytest.approx(0.5)  # only the root matches
    assert parses.parse_f1([rb], [lb], include_root=False) == pytest.approx(0.0)
    # micro-average: 2 sentences, 2 + 3 spans, 1 + 3 hits
    got = parses.parse_f1([rb, parses.right_branching(4)], [lb, parses.right_branching(4)])
    assert got == pytest.approx(4 / 5)
