"""QF/TI generation: McCoy's filters, leakage, determinism, marker shares, vocabulary, RB baseline."""

import pytest

from sgjax import data
from sgjax.data import parses, qf_ti
from sgjax.errors import UserError

SIZES = {"train": 3000, "val": 400, "test": 600, "gen": 600}
AUX = {"do", "does", "don't", "doesn't"}
PL_NOUNS = {"newts", "orangutans", "peacocks", "quails", "ravens", "salamanders", "tyrannosauruses",
            "unicorns", "vultures", "walruses", "xylophones", "yaks", "zebras"}
SG_NOUNS = {n[:-2] if n.endswith("uses") else n[:-1] for n in PL_NOUNS}
# past -> (present singular, present plural), written out independently of the package
PAST = {"giggled": ("giggles", "giggle"), "smiled": ("smiles", "smile"), "slept": ("sleeps", "sleep"),
        "swam": ("swims", "swim"), "waited": ("waits", "wait"), "moved": ("moves", "move"),
        "changed": ("changes", "change"), "read": ("reads", "read"), "ate": ("eats", "eat"),
        "entertained": ("entertains", "entertain"), "amused": ("amuses", "amuse"),
        "high_fived": ("high_fives", "high_five"), "applauded": ("applauds", "applaud"),
        "confused": ("confuses", "confuse"), "admired": ("admires", "admire"),
        "accepted": ("accepts", "accept"), "remembered": ("remembers", "remember"),
        "comforted": ("comforts", "comfort")}


@pytest.fixture(scope="module")
def qf():
    return qf_ti.generate_splits("question", SIZES, seed=0)


@pytest.fixture(scope="module")
def ti():
    return qf_ti.generate_splits("tense", SIZES, seed=0)


def split_line(line):
    inp, out = line.split("\t")
    toks = inp.split(" ")
    assert toks[-2] == "."
    return toks[:-2], toks[-1], out.split(" ")


def move(words, i):
    return [words[i]] + words[:i] + words[i + 1 :] + ["?"]


def agree_recent(past):
    out, plural = [], None
    for w in past:
        if w in PL_NOUNS or w in SG_NOUNS:
            plural = w in PL_NOUNS
        out.append(PAST[w][plural] if w in PAST else w)
    return out


def test_sizes_uniqueness_and_no_leak(qf, ti):
    for splits in (qf, ti):
        assert {s: len(v) for s, v in splits.items()} == SIZES
        inputs = {}
        for s, lines in splits.items():
            assert len(set(lines)) == len(lines)
            inputs[s] = {line.split("\t")[0].rsplit(" ", 1)[0] for line in lines}
            assert len(inputs[s]) == len(lines)  # inputs unique within a split
        names = list(inputs)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                assert not inputs[a] & inputs[b], (a, b)


def test_qf_filter_train_val_test(qf):
    n_quest = 0
    for s in ("train", "val", "test"):
        for line in qf[s]:
            words, marker, out = split_line(line)
            if marker == "decl":
                assert out == words + ["."]
                continue
            n_quest += 1
            first = next(i for i, w in enumerate(words) if w in AUX)
            # no RC on the subject: nothing relative before the first auxiliary, which is the main one
            assert not {"who", "that"} & set(words[:first])
            assert out == move(words, first)
    assert n_quest > 0


def test_qf_gen_is_rc_subject_questions_with_other_first_aux(qf):
    for line in qf["gen"]:
        words, marker, out = split_line(line)
        assert marker == "quest"
        aux = [i for i, w in enumerate(words) if w in AUX]
        assert len(aux) == 2
        assert {"who", "that"} & set(words[: aux[0]])  # the subject carries the RC
        assert words[aux[0]] != words[aux[1]]  # move-first gives the wrong answer
        assert out == move(words, aux[1])


def test_ti_filter_and_gen(ti):
    n_present = 0
    for s in ("train", "val", "test"):
        for line in ti[s]:
            words, marker, out = split_line(line)
            if marker == "PAST":
                assert out == words + ["."]
            else:
                n_present += 1
                assert agree_recent(words) + ["."] == out
    assert n_present > 0
    for line in ti["gen"]:
        words, marker, out = split_line(line)
        assert marker == "PRESENT"
        assert agree_recent(words) + ["."] != out


def test_marker_shares(qf, ti):
    share = lambda lines, m: sum(l.split("\t")[0].endswith(" " + m) for l in lines) / len(lines)  # noqa: E731
    assert abs(share(qf["train"], "quest") - 0.40) < 0.03
    assert 0.39 < share(ti["train"], "PRESENT") < 0.46


def test_deterministic_and_seeded():
    a = qf_ti.generate_splits("question", {"train": 200, "val": 50, "test": 50, "gen": 50}, seed=3)
    b = qf_ti.generate_splits("question", {"train": 200, "val": 50, "test": 50, "gen": 50}, seed=3)
    c = qf_ti.generate_splits("question", {"train": 200, "val": 50, "test": 50, "gen": 50}, seed=4)
    assert a == b
    assert all(a[s] != c[s] for s in a)


def test_held_out_splits_do_not_depend_on_train_size():
    small = qf_ti.generate_splits("tense", {"train": 10, "val": 50, "test": 50, "gen": 50}, seed=1)
    big = qf_ti.generate_splits("tense", {"train": 2000, "val": 50, "test": 50, "gen": 50}, seed=1)
    assert all(small[s] == big[s] for s in ("val", "test", "gen"))


def test_vocab_order_and_ids():
    v = data.vocab_for("question")
    assert (len(v.words), v.size, v.eos, v.sos) == (69, 71, 69, 70)
    assert v.words[:4] == ("<pad>", ".", "?", "above")
    # ids of the original (vocabulary built from McCoy's files, checked in docs/data.md)
    assert (v.index["quest"], v.index["decl"], v.index["doesn't"], v.index["zebras"]) == (37, 15, 18, 68)
    t = data.vocab_for("tense")
    assert (len(t.words), t.size, t.eos, t.sos) == (99, 101, 99, 100)
    assert t.words[:4] == ("<pad>", ".", "PAST", "PRESENT")
    assert (t.index["read"], t.index["slept"], t.index["high_fived"], t.index["zebras"]) == (59, 68, 41, 98)
    assert t.words.count("read") == 1  # present plural and past share one id
    for vv in (v, t):
        assert list(vv.words[1:]) == sorted(vv.words[1:])


def test_generated_words_are_in_vocab(qf, ti):
    for task, splits in (("question", qf), ("tense", ti)):
        vocab = set(data.vocab_for(task).words)
        for lines in splits.values():
            for line in lines:
                assert set(line.replace("\t", " ").split(" ")) <= vocab


def test_right_branching_baseline_near_original():
    sizes = {"train": 0, "val": 1000, "test": 0, "gen": 0}
    for task, want, only in (("question", 0.66, "quest"), ("tense", 0.50, None)):
        lines = qf_ti.generate_splits(task, sizes, seed=0)["val"]
        sents = [parses.strip_sentence(task, l.split("\t")[0].split(" ")) for l in lines
                 if only is None or l.split("\t")[0].endswith(only)]
        gold = [parses.parse(task, s) for s in sents]
        f1 = parses.parse_f1([parses.right_branching(len(s)) for s in sents], gold)
        assert abs(f1 - want) < 0.03, (task, f1)


def test_unknown_task_and_split():
    with pytest.raises(UserError, match="question, tense, dyck"):
        data.load_splits("questions")
    with pytest.raises(UserError, match="valid tasks"):
        qf_ti.generate_splits("dyck", {}, 0)
    with pytest.raises(UserError, match="valid splits"):
        qf_ti.generate_splits("question", {"dev": 3}, 0)
