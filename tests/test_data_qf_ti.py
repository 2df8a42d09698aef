"""QF/TI generation: McCoy's filters, leakage, determinism, marker shares, vocabulary, RB baseline."""

import pytest

from sgjax import data
from sgjax.data import parses, qf_ti
from sgjax.errors import UserError

SIZES = {"train": 3000, "val": 400, "test": 600, "gen": 600}
AUX = {"do", "does", "don't", "doesn't"}
PL_NOUNS = {
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
}
SG_NOUNS = {n[:-2] if n.endswith("uses") else n[:-1] for n in PL_NOUNS}
# past -> (present singular, present plural), written out independently of the package
PAST = {
    "giggled": ("giggles", "giggle"),
    "smiled": ("smiles", "smile"),
    "slept": ("sleeps", "sleep"),
    "swam": ("swims", "swim"),
    "waited": ("waits", "wait"),
    "moved": ("moves", "move"),
    "changed": ("changes", "change"),
    "read": ("reads", "read"),
    "ate": ("eats", "eat"),
    "entertained": ("entertains", "entertain"),
    "amused": ("amuses", "amuse"),
    "high_fived": ("high_fives", "high_five"),
    "applauded": ("applauds", "applaud"),
    "confused": ("confuses", "confuse"),
    "admired": ("admires", "admire"),
    "accepted": ("accepts", "accept"),
    "remembered": ("remembers", "remember"),
    "comforted": ("comforts", "comfort"),
}


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


def input_of(line):
    return line.split("\t")[0]


def sentence_of(line):
    return input_of(line).rsplit(" ", 2)[0]


def assert_unique_and_disjoint(splits, key):
    keys = {}
    for s, lines in splits.items():
        keys[s] = {key(line) for line in lines}
        assert len(keys[s]) == len(lines), s  # unique within a split
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not keys[a] & keys[b], (a, b)


def test_sizes_uniqueness_and_no_leak(qf, ti):
    for splits in (qf, ti):
        assert {s: len(v) for s, v in splits.items()} == SIZES
        assert_unique_and_disjoint(splits, input_of)  # McCoy's files repeat a sentence with the other marker


def test_heldout_first_uses_each_sentence_once():
    for task in ("question", "tense"):
        assert_unique_and_disjoint(qf_ti.generate_splits(task, SIZES, seed=0, generation="heldout_first"), sentence_of)


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


def test_heldout_first_held_out_splits_do_not_depend_on_train_size():
    small = qf_ti.generate_splits(
        "tense", {"train": 10, "val": 50, "test": 50, "gen": 50}, seed=1, generation="heldout_first"
    )
    big = qf_ti.generate_splits(
        "tense", {"train": 2000, "val": 50, "test": 50, "gen": 50}, seed=1, generation="heldout_first"
    )
    assert all(small[s] == big[s] for s in ("val", "test", "gen"))


def test_train_first_draws_train_then_val_then_test_from_one_stream():
    sizes = {"train": 300, "val": 50, "test": 50, "gen": 50}
    one = qf_ti.generate_splits("question", sizes, seed=1)
    longer = qf_ti.generate_splits("question", {**sizes, "train": 350}, seed=1)
    assert longer["train"][:300] == one["train"]
    assert longer["train"][300:] == one["val"]  # val takes up where train stopped
    assert one["test"] != longer["test"]


def test_gen_is_the_same_in_both_generations():
    for task in ("question", "tense"):
        a = qf_ti.generate_splits(task, SIZES, seed=2)
        b = qf_ti.generate_splits(task, SIZES, seed=2, generation="heldout_first")
        assert a["gen"] == b["gen"]


def short_share(lines, n_words):
    return sum(len(input_of(l).split(" ")) - 2 == n_words for l in lines) / len(lines)


def test_train_first_uses_up_the_short_sentences():
    """QF's 4-word sentences (D N AUX V) are 5,616 inputs: train holds most, val/test what is left."""
    # independent of the package: the mix's 4-word share of declaratives is bare subject x intransitive
    # verb (0.5164 x 0.2229); RC-subject declaratives (0.2791) pass the filter half the time
    start = 0.5164 * 0.2229 / (1 - 0.2791 / 2)
    splits = qf_ti.generate_splits("question", seed=0)
    assert abs(short_share(splits["train"][:2000], 4) - start) < 0.025
    # a fresh pool would keep the start's share; 100k lines leave under a tenth of the pool
    assert short_share(splits["train"][-5000:], 4) < 0.03
    assert short_share(splits["val"], 4) < 0.025 and short_share(splits["test"], 4) < 0.02
    old = qf_ti.generate_splits("question", {"train": 2000}, seed=0, generation="heldout_first")
    assert short_share(old["train"], 4) < 0.02  # the data before: fitted to the depleted files


def test_unknown_generation():
    with pytest.raises(UserError, match="train_first or heldout_first"):
        qf_ti.generate_splits("question", SIZES, 0, generation="mccoy")


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
        sents = [
            parses.strip_sentence(task, l.split("\t")[0].split(" "))
            for l in lines
            if only is None or l.split("\t")[0].endswith(only)
        ]
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


def test_runs_saved_before_the_generation_option_keep_their_data():
    from sgjax import config
    from sgjax.run import compat

    for task, want in (("question", "heldout_first"), ("tense", "heldout_first"), ("dyck", "train_first")):
        d = config.preset("smoke", task).to_dict()
        del d["data"]["generation"]
        assert compat.saved_config(d).data.generation == want, task
    assert config.preset("paper", "question").data.generation == "train_first"
    with pytest.raises(config.ConfigError, match="data.generation"):
        config.validate(config.override(config.preset("smoke", "question"), ["data.generation=mccoy"]))


def test_cache_files_are_kept_apart_by_generation(tmp_path):
    sizes = {"train": 50, "val": 20, "test": 20, "gen": 20}
    a = data.load_splits("question", sizes=sizes, cache_dir=tmp_path)
    b = data.load_splits("question", sizes=sizes, cache_dir=tmp_path, generation="heldout_first")
    assert a["train"].lines != b["train"].lines
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert data.load_splits("question", sizes=sizes, cache_dir=tmp_path)["train"].lines == a["train"].lines
