"""Evaluation batches (sgjax.evaluation.batches): every line once, in few padded widths, halved without loss."""

import itertools

import numpy as np

from sgjax.config import EvalConfig
from sgjax.data.split import encode_lines
from sgjax.evaluation import batches as eval_batches
from tests.eval_fixtures import DYCK_LINES, DYCK_VOCAB, TI_GEN, TI_VAL, words_vocab


def test_halved_keeps_every_line_once():
    """halved() re-batches the valid rows of each Dyck width group and a sampled TI part, at least 1 row each."""
    splits = {"val": encode_lines("dyck", "val", DYCK_LINES, DYCK_VOCAB)}
    part = eval_batches.dyck_part("val", splits["val"], DYCK_VOCAB, EvalConfig(batch_size=2, dyck_max_prefixes=None))
    half = eval_batches.halved(part)
    assert eval_batches.batch_rows(half) == 1 and half.groups.keys() == part.groups.keys()
    for w, b in part.groups.items():
        v, hv = b["valid"].reshape(-1), half.groups[w]["valid"].reshape(-1)
        np.testing.assert_array_equal(
            half.groups[w]["seq"].reshape(-1, b["seq"].shape[-1])[hv], b["seq"].reshape(-1, b["seq"].shape[-1])[v]
        )
    vocab = words_vocab(TI_GEN, TI_VAL)
    ti = eval_batches.ti_part(
        "gen", encode_lines("tense", "gen", TI_GEN, vocab), vocab, EvalConfig(batch_size=4), sample=3
    )
    assert (
        ti.sample.rows == 3
        and eval_batches.halved(ti).sample.rows == 1
        and eval_batches.batch_rows(eval_batches.halved(ti)) == 1
    )


def test_best_cuts_find_the_fewest_padded_positions():
    """The width groups are the optimum found by trying every split of the sorted lengths."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        len_N = rng.integers(3, 20, size=rng.integers(1, 40))
        values, counts = np.unique(len_N, return_counts=True)
        for g in (1, 2, 3):
            cuts = eval_batches._best_cuts(values, counts, g)
            padded = lambda cs: sum(
                int(values[c]) * int(counts[a : c + 1].sum()) for a, c in zip([0] + [x + 1 for x in cs[:-1]], cs)
            )  # noqa: E731
            brute = min(
                padded(list(c) + [len(values) - 1])
                for r in range(min(g, len(values)))
                for c in itertools.combinations(range(len(values) - 1), r)
            )
            assert len(cuts) <= g and cuts[-1] == len(values) - 1 and padded(cuts) == brute


def test_length_groups_cover_every_line_once_in_length_order():
    """Each line lands in one group; a group is sorted by (length, tie) and no longer than the next group's shortest."""
    rng = np.random.default_rng(1)
    len_N, tie_N = rng.integers(2, 18, size=200), rng.integers(0, 9, size=200)
    groups = eval_batches.length_groups(len_N, tie_N, 3)
    assert len(groups) == 3 and sorted(np.concatenate(groups).tolist()) == list(range(200))
    for idx in groups:
        keys = list(zip(len_N[idx], tie_N[idx]))
        assert keys == sorted(keys)
    assert all(len_N[a].max() < len_N[b].min() for a, b in zip(groups, groups[1:]))


def test_balanced_rows_keep_the_batch_count_and_fill_the_last_batch():
    """As many batches as `rows` per batch would need, no more rows each, and less than one row of padding per batch."""
    for n in range(1, 600, 7):
        for rows in (1, 2, 3, 64, 256, 512):
            r = eval_batches.balanced_rows(n, rows)
            nb = -(-n // r)
            assert r <= rows and nb == -(-n // rows) and nb * r - n < nb


def test_bucket_widths_are_powers_of_two_within_max_len():
    assert [eval_batches.bucket_width(n) for n in (1, 16, 17, 33)] == [16, 16, 32, 64]
    assert (
        eval_batches.bucket_width(20, 30) == 30 and eval_batches.bucket_width(40, 30) == 40
    )  # capped; never below the sequence
