"""The scoring rules (sgjax.evaluation.scoring) on hand-written lines: rule-following predictors score 1, linear
heuristics and chance what they should, and the id-level rules agree with the word-level ones."""

import jax.numpy as jnp
import numpy as np
import pytest

from sgjax.evaluation import scoring
from tests.eval_fixtures import (
    DYCK_LINES,
    LETTERS,
    QF_GEN,
    TI_GEN,
    TI_VAL,
    agree_recent,
    input_output,
    last_opened_rule,
    one_hot_logits,
    reinflect,
    stack_rule,
    ti_input,
    words_vocab,
)

# ---------------------------------------------------------------- QF


def test_qf_rules_and_chance():
    """Move-main scores 1.0 on gen, move-first 0.0, uniform guessing ≈ 0.25 (restricted to the 4 auxiliaries)."""
    vocab = words_vocab(QF_GEN)
    aux_K = [vocab.index[a] for a in scoring.AUXILIARIES]
    gold = np.array([vocab.index[input_output(l)[1][0]] for l in QF_GEN])
    first_aux = np.array([vocab.index[next(w for w in input_output(l)[0] if w in scoring.AUXILIARIES)] for l in QF_GEN])
    rng = np.random.default_rng(0)
    assert scoring.qf_accuracy(one_hot_logits(gold, vocab.size, rng), gold, aux_K) == 1.0
    assert scoring.qf_accuracy(one_hot_logits(first_aux, vocab.size, rng), gold, aux_K) == 0.0
    assert scoring.qf_accuracy(first_aux, gold) == 0.0  # predicted ids work too
    many = np.tile(gold, 1000)
    acc = scoring.qf_accuracy(rng.normal(size=(len(many), vocab.size)), many, aux_K)
    assert abs(acc - 0.25) < 0.03


def test_restricted_argmax_ignores_other_words():
    """A larger logit on a non-auxiliary ('?') counts for the unrestricted argmax only."""
    vocab = words_vocab(QF_GEN)
    aux_K = [vocab.index[a] for a in scoring.AUXILIARIES]
    logits = np.zeros((1, vocab.size))
    logits[0, vocab.index["?"]] = 9.0
    logits[0, vocab.index["don't"]] = 2.0
    assert int(scoring.restricted_argmax(jnp.asarray(logits), aux_K)[0]) == vocab.index["don't"]
    assert scoring.qf_accuracy(logits, [vocab.index["don't"]]) == 0.0


# ---------------------------------------------------------------- TI


def test_tense_rules_and_chance():
    """Agree-with-subject (the target) scores 1.0 on gen, agree-recent 0.0, a coin per verb ≈ 0.5."""
    targets = [input_output(l)[1] for l in TI_GEN]
    assert all(scoring.tense_correct(t, t) for t in targets)
    linear = [reinflect(ti_input(l), agree_recent) + ["."] for l in TI_GEN]
    assert not any(scoring.tense_correct(p, t) for p, t in zip(linear, targets))
    rng = np.random.default_rng(0)
    coin = lambda i, ws: "sg" if rng.random() < 0.5 else "pl"  # noqa: E731
    scores = [scoring.tense_correct(reinflect(ti_input(l), coin) + ["."], input_output(l)[1]) for l in TI_GEN * 400]
    assert abs(np.mean(scores) - 0.5) < 0.04


def test_tense_rule_details():
    """POS sequence + main verb: the RC verb and nouns may differ; length, tags and the main verb may not."""
    t = "my zebras that the raven admires sleep .".split()
    ok = scoring.tense_correct
    assert scoring.main_verb_index([scoring.tense_tags()[w] for w in t[:-1]]) == 6  # tag[2] = R: the second V
    assert ok("my zebras that the raven admire sleep .".split(), t)  # RC verb is not checked
    assert ok("my yaks that the raven admires sleep .".split(), t)  # same POS, another noun
    assert ok("my zebras that the raven admires sleep".split(), t)  # the trailing '.' is dropped
    assert not ok("my zebras that the raven admires sleeps .".split(), t)  # main verb
    assert not ok("my zebras that the raven admires sleep . .".split(), t)  # one '.' only is dropped
    assert not ok("my zebras near the raven admires sleep .".split(), t)  # POS
    assert not ok("my zebras that the raven sleep .".split(), t)  # length
    assert scoring.main_verb_index(["D", "N", "P", "D", "N", "V", "D", "N"]) == 5  # no RC: the first V


def test_tense_edge_cases_are_wrong():
    """EOS first (empty output), SOS or pad generated, unknown words: wrong, never an error."""
    t = "the yaks sleep .".split()
    for pred in (
        [],
        ["<eos>"],
        ["<sos>", "yaks", "sleep", "."],
        ["the", "yaks", "<pad>"],
        ["the", "yaks", "sleep", "<eos>"],
    ):
        assert not scoring.tense_correct(pred, t)


def test_tense_correct_ids_matches_words():
    """The vectorized scorer equals `tense_correct` on targets, linear outputs and random corruptions."""
    vocab = words_vocab(TI_GEN, TI_VAL)
    tags = scoring.tense_tags()
    tag_V = jnp.asarray(scoring.tag_table(vocab, tags))
    rng = np.random.default_rng(1)
    preds, tgts = [], []
    for l in TI_GEN + TI_VAL:
        tgt = input_output(l)[1]
        ids = vocab.encode(tgt)
        cands = [
            ids,
            ids[:-1],
            ids + [vocab.index["."]],
            [],
            [vocab.eos],
            [vocab.sos] + ids[1:],
            ids[:2],
            [0] + ids[1:],
        ]
        for _ in range(12):  # random substitutions, including EOS/SOS/pad ids
            c = list(ids)
            c[rng.integers(len(c))] = int(rng.integers(0, vocab.size))
            cands.append(c)
        for c in cands:
            preds.append(c)
            tgts.append(tgt)
    m = 20
    pred_BxM = np.zeros((len(preds), m), np.int32)
    for i, p in enumerate(preds):
        pred_BxM[i, : len(p)] = p
    pred_len = np.array([len(p) for p in preds], np.int32)
    core = [vocab.encode(scoring.drop_final_dot(t)) for t in tgts]
    core_BxM = np.zeros((len(core), 16), np.int32)
    for i, c in enumerate(core):
        core_BxM[i, : len(c)] = c
    mv = np.array([scoring.main_verb_index([tags[w] for w in scoring.drop_final_dot(t)]) for t in tgts], np.int32)
    got = scoring.tense_correct_ids(
        jnp.asarray(pred_BxM),
        jnp.asarray(pred_len),
        jnp.asarray(core_BxM),
        jnp.asarray([len(c) for c in core]),
        jnp.asarray(mv),
        tag_V,
        vocab.index["."],
    )
    want = [scoring.tense_correct(vocab.decode(p), t) for p, t in zip(preds, tgts)]
    np.testing.assert_array_equal(np.asarray(got), want)
    assert 0 < sum(want) < len(want)


# ---------------------------------------------------------------- Dyck


def test_dyck_distance_filter_positions():
    """Closing positions, openers and the ≥10 filter on hand cases (odd distances: 9 is out, 11 is in)."""
    assert scoring.dyck_closings("(a (b b) a)".split()) == [(2, 1), (3, 0)]
    got = scoring.dyck_closings(DYCK_LINES[1].split())
    assert got == [(3, 2), (5, 4), (7, 6), (9, 8), (10, 1), (11, 0)]
    assert [i for i, o in got if i - o >= scoring.DYCK_MIN_DISTANCE] == [11]
    far = [i for i, o in scoring.dyck_closings(DYCK_LINES[2].split()) if i - o >= scoring.DYCK_MIN_DISTANCE]
    assert far == [13]
    with pytest.raises(Exception):
        scoring.dyck_closings("(a b)".split())


def test_dyck_rules_and_chance():
    """The stack rule scores 1.0 (all and far), the last-opened heuristic less, uniform ≈ 1/20."""
    gold, last, dist = [], [], []
    for l in DYCK_LINES:
        toks = l.split()
        gold += stack_rule(toks)
        last += last_opened_rule(toks)
        dist += [i - o for i, o in scoring.dyck_closings(toks)]
    assert scoring.dyck_accuracy(gold, gold, dist) == 1.0 == scoring.dyck_accuracy(gold, gold, dist, 10)
    assert scoring.dyck_accuracy(last, gold, dist, 10) == 0.0  # every far closing follows another closing
    assert 0 < scoring.dyck_accuracy(last, gold, dist) < 1
    rng = np.random.default_rng(0)
    closers = [f"{c})" for c in LETTERS]
    many = gold * 500
    acc = scoring.dyck_accuracy(rng.choice(closers, len(many)), many, dist * 500)
    assert abs(acc - 1 / 20) < 0.015
    assert np.isnan(scoring.dyck_accuracy(gold, gold, dist, 100))
    # Real distances are odd, so 10 itself never occurs in a string; the rule still counts it (>= 10).
    assert scoring.dyck_accuracy(["a)"], ["a)"], [10], 10) == 1.0


def test_dyck_select_stops_after_reaching_count():
    assert scoring.dyck_select([3, 2, 4], 5) == 2
    assert scoring.dyck_select([3, 2, 4], 6) == 3
    assert scoring.dyck_select([3, 2, 4], None) == 3
    assert scoring.dyck_select([3, 2, 4], 100) == 3


# ---------------------------------------------------------------- TI outputs scored as the original's decoder returns
# them (D29)


def run_greedy_out_len(tokens: list[int], eos: int, max_len: int) -> int:
    """The original's `run_greedy` length bookkeeping, token by token: t0, then max_len more."""
    running, out_len = True, 0
    for i in range(max_len):
        running = running and tokens[i + 1] != eos
        if running:
            out_len = i + 1
    return out_len


def test_original_output_len_follows_run_greedy():
    """Our decode length (tokens before EOS, at most `steps`) maps to the original's out_len wherever EOS is."""
    eos, steps = 9, 12
    for k in range(1, steps):  # EOS at k (not at 0: the original never checks t0, D16 counts that wrong)
        tokens = [1] * k + [eos] + [2] * (steps + 1 - k)
        assert int(scoring.original_output_len(jnp.asarray(k), steps)) == run_greedy_out_len(tokens, eos, steps)
    assert int(scoring.original_output_len(jnp.asarray(steps), steps)) == run_greedy_out_len(
        [1] * (steps + 1), eos, steps
    )
