"""Dyck-(20,10): sampler invariants, iid/OOD splits, structure helpers, statistics vs the released val."""

import numpy as np
import pytest

from sgjax.data import dyck
from sgjax.errors import DataError, UserError

SMALL = {"train": 2000, "val": 200, "test": 200}
# max-depth histogram of the released k-20_d-10_val.txt (the paper's data)
RELEASED_VAL_MAX_DEPTH = {1: 1274, 2: 6255, 3: 6032, 4: 3775, 5: 1805, 6: 659, 7: 162, 8: 29, 9: 6, 10: 3}


@pytest.fixture(scope="module")
def small():
    return dyck.generate_splits(SMALL, seed=0)


def test_words_and_constants():
    assert len(dyck.DYCK_WORDS) == 40 == 2 * dyck.K
    assert dyck.DYCK_WORDS[0] == "(a" and dyck.DYCK_WORDS[19] == "(t" and dyck.DYCK_WORDS[20] == "a)"
    assert (dyck.MAX_DEPTH, dyck.MIN_LEN) == (10, 4)
    assert dyck.DEFAULT_SIZES == {"train": 200_000, "val": 20_000, "test": 20_000}


def test_sampler_deterministic_and_seed_sensitive():
    a = dyck.sample(500, seed=3)
    assert a == dyck.sample(500, seed=3)
    assert a != dyck.sample(500, seed=4)
    assert dyck.sample(100, seed=3) == a[:100]  # a smaller n is a prefix of the same stream
    assert dyck.sample(0) == []


def test_sampled_strings_are_valid():
    lines = dyck.sample(3000, seed=1)
    assert all(not l.endswith("END") and "  " not in l for l in lines)
    for l in lines:
        toks = l.split(" ")
        assert dyck.is_valid(toks), l
        assert len(toks) >= dyck.MIN_LEN  # END is rejected until min_len tokens
        assert max(dyck.depths(toks)) <= dyck.MAX_DEPTH
    used = {t for l in lines for t in l.split()}
    assert used == set(dyck.DYCK_WORDS)
    # the two shortest shapes exist: a length-2 first block forces a second block
    assert any(len(l.split()) == 4 for l in lines)
    assert max(max(dyck.depths(l.split())) for l in lines) == dyck.MAX_DEPTH


def test_min_len_rejection_generalizes():
    lines = dyck.sample(500, seed=0, min_len=8)
    assert min(len(l.split()) for l in lines) >= 8
    lines = dyck.sample(500, seed=0, k=2, max_depth=2)
    assert {t for l in lines for t in l.split()} <= {"(a", "(b", "a)", "b)"}
    assert max(max(dyck.depths(l.split())) for l in lines) == 2
    with pytest.raises(UserError):
        dyck.sample(5, min_len=0)


def test_splits_sizes_and_determinism(small):
    assert {k: len(v) for k, v in small.items()} == SMALL
    assert small == dyck.generate_splits(SMALL, seed=0)
    assert small["train"] != dyck.generate_splits(SMALL, seed=1)["train"]
    assert small["train"] == dyck.sample(SMALL["train"], seed=0)
    for split in small.values():
        assert all(dyck.is_valid(l.split()) for l in split)


def test_val_is_iid_and_test_is_ood(small):
    seen = {p for l in small["train"] for p in dyck.block_profiles(l.split())}
    assert not set(small["val"]) & set(small["train"])
    for l in small["val"]:
        assert set(dyck.block_profiles(l.split())) <= seen
    for l in small["test"]:
        assert not set(dyck.block_profiles(l.split())) <= seen
    # OOD strings are long and deep, val ones short
    mean = lambda ls: np.mean([len(l.split()) for l in ls])
    assert mean(small["test"]) > 3 * mean(small["val"])


def test_split_errors():
    with pytest.raises(UserError):
        dyck.generate_splits({"gen": 5}, seed=0)
    with pytest.raises(UserError):
        dyck.generate_splits({"train": 0, "val": 5, "test": 0}, seed=0)
    out = dyck.generate_splits({"train": 0, "val": 0, "test": 3}, seed=0)
    assert out["train"] == out["val"] == [] and len(out["test"]) == 3


def test_block_profiles_hand_cases():
    assert dyck.block_profiles("(a a)".split()) == [(1,)]
    assert dyck.block_profiles("(a (b b) a)".split()) == [(1, 2, 1)]
    assert dyck.block_profiles("(h h) (j j) (q (n (r r) n) q) (r r)".split()) == [(1,), (1,), (1, 2, 3, 2, 1), (1,)]
    assert dyck.block_profiles("(a (b b) (c c) a)".split()) == [(1, 2, 1, 2, 1)]
    assert dyck.block_profiles([]) == []
    with pytest.raises(DataError):
        dyck.block_profiles("(a (b b)".split())
    with pytest.raises(DataError):
        dyck.block_profiles("a) (a".split())


def test_closing_positions_hand_cases():
    assert dyck.closing_positions("(a (b b) a)".split()) == [(2, 1), (3, 0)]
    assert dyck.closing_positions("(a a) (b b)".split()) == [(1, 0), (3, 2)]
    toks = "(a (b b) (c c) a)".split()
    assert dyck.closing_positions(toks) == [(2, 1), (4, 3), (5, 0)]
    with pytest.raises(DataError):
        dyck.closing_positions("(a b)".split())  # wrong type
    assert not dyck.is_valid("(a b)".split()) and not dyck.is_valid("(a".split())
    assert dyck.is_valid("(a a)".split())
    deep = [f"({c}" for c in "abcdefghijk"] + [f"{c})" for c in reversed("abcdefghijk")]
    assert not dyck.is_valid(deep)  # depth 11 > MAX_DEPTH
    assert max(i - j for i, j in dyck.closing_positions(deep)) == 21


def test_histograms_and_tv():
    lines = ["(a a) (b b)", "(a (b b) a)", "(a a) (b (c c) b) (d d)"]
    assert dyck.length_histogram(lines) == {4: 2, 8: 1}
    assert dyck.max_depth_histogram(lines) == {1: 1, 2: 2}
    assert dyck.tv_distance({1: 5}, {1: 2}) == 0
    assert dyck.tv_distance({1: 1}, {2: 7}) == 1
    assert dyck.tv_distance({1: 1, 2: 1}, {1: 1, 3: 1}) == pytest.approx(0.5)
    assert dyck.tv_distance({1: 3, 2: 1}, {1: 1, 2: 1}) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        dyck.tv_distance({}, {1: 1})


def test_val_matches_released_statistics():
    # val's distribution depends on the train size (it is conditioned on train structures): use the full 200k
    out = dyck.generate_splits({"train": 200_000, "val": 5000, "test": 100}, seed=0)
    val = out["val"]
    assert dyck.tv_distance(RELEASED_VAL_MAX_DEPTH, dyck.max_depth_histogram(val)) < 0.05
    lens = np.array([len(l.split()) for l in val])
    assert 12.5 < lens.mean() < 14.0 and np.median(lens) == 12 and lens.min() >= 6  # released: 13.3, 12, 6
    assert np.mean([len(l.split()) for l in out["test"]]) > 80  # released-sim OOD mean: 116
