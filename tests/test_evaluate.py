"""The paper's metrics on hand-written lines: rule-following predictors, edge cases, the vmapped evaluator."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax import evaluate as E
from sgjax import decode, engine, model
from sgjax.decode import jit_forward as forward  # cached jitted model.forward
from sgjax.config import EvalConfig, ModelConfig
from sgjax.data import grammar as G
from sgjax.data.split import encode_lines, line_words
from sgjax.data.vocab import Vocab

# ---------------------------------------------------------------- hand-written fixtures

QF_GEN = [  # subject RC: the first auxiliary is never the main one (SPEC §1.3)
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
    "some peacocks who the quail entertained accepted our newts . PRESENT\tsome peacocks who the quail entertains accept our newts .",
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


def words_vocab(*line_sets) -> Vocab:
    """The fixture lines' words plus the auxiliaries and every TI verb form (the linear rule's outputs)."""
    verbs = {f for pl, forms in G.V_FORMS.items() for f in (pl, *forms)}
    return Vocab.from_words({w for lines in line_sets for l in lines for w in line_words(l)} | set(E.AUXILIARIES) | verbs)


def input_output(line: str) -> tuple[list[str], list[str]]:
    inp, out = line.split("\t")
    return inp.split(" "), out.split(" ")


def one_hot_logits(pred_ids, v: int, rng, scale: float = 50.0) -> np.ndarray:
    """Noise plus a large margin on each predicted id."""
    logits = rng.normal(size=(len(pred_ids), v))
    logits[np.arange(len(pred_ids)), pred_ids] += scale
    return logits


# ---------------------------------------------------------------- QF scoring


def test_qf_rules_and_chance():
    """Move-main scores 1.0 on gen, move-first 0.0, uniform guessing ≈ 0.25 (restricted to the 4 auxiliaries)."""
    vocab = words_vocab(QF_GEN)
    aux_K = [vocab.index[a] for a in E.AUXILIARIES]
    gold = np.array([vocab.index[input_output(l)[1][0]] for l in QF_GEN])
    first_aux = np.array([vocab.index[next(w for w in input_output(l)[0] if w in E.AUXILIARIES)] for l in QF_GEN])
    rng = np.random.default_rng(0)
    assert E.qf_accuracy(one_hot_logits(gold, vocab.size, rng), gold, aux_K) == 1.0
    assert E.qf_accuracy(one_hot_logits(first_aux, vocab.size, rng), gold, aux_K) == 0.0
    assert E.qf_accuracy(first_aux, gold) == 0.0  # predicted ids work too
    many = np.tile(gold, 1000)
    acc = E.qf_accuracy(rng.normal(size=(len(many), vocab.size)), many, aux_K)
    assert abs(acc - 0.25) < 0.03


def test_restricted_argmax_ignores_other_words():
    """A larger logit on a non-auxiliary ('?') counts for the unrestricted argmax only."""
    vocab = words_vocab(QF_GEN)
    aux_K = [vocab.index[a] for a in E.AUXILIARIES]
    logits = np.zeros((1, vocab.size))
    logits[0, vocab.index["?"]] = 9.0
    logits[0, vocab.index["don't"]] = 2.0
    assert int(E.restricted_argmax(jnp.asarray(logits), aux_K)[0]) == vocab.index["don't"]
    assert E.qf_accuracy(logits, [vocab.index["don't"]]) == 0.0


# ---------------------------------------------------------------- TI scoring

NUMBER = {**{w: "sg" for w in G.N_SG}, **{w: "pl" for w in G.N_PL}}


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


def test_tense_rules_and_chance():
    """Agree-with-subject (the target) scores 1.0 on gen, agree-recent 0.0, a coin per verb ≈ 0.5."""
    targets = [input_output(l)[1] for l in TI_GEN]
    assert all(E.tense_correct(t, t) for t in targets)
    linear = [reinflect(ti_input(l), agree_recent) + ["."] for l in TI_GEN]
    assert not any(E.tense_correct(p, t) for p, t in zip(linear, targets))
    rng = np.random.default_rng(0)
    coin = lambda i, ws: "sg" if rng.random() < 0.5 else "pl"  # noqa: E731
    scores = [E.tense_correct(reinflect(ti_input(l), coin) + ["."], input_output(l)[1]) for l in TI_GEN * 400]
    assert abs(np.mean(scores) - 0.5) < 0.04


def test_tense_rule_details():
    """POS sequence + main verb: the RC verb and nouns may differ; length, tags and the main verb may not."""
    t = "my zebras that the raven admires sleep .".split()
    ok = E.tense_correct
    assert E.main_verb_index([E.tense_tags()[w] for w in t[:-1]]) == 6  # tag[2] = R: the second V
    assert ok("my zebras that the raven admire sleep .".split(), t)  # RC verb is not checked
    assert ok("my yaks that the raven admires sleep .".split(), t)  # same POS, another noun
    assert ok("my zebras that the raven admires sleep".split(), t)  # the trailing '.' is dropped
    assert not ok("my zebras that the raven admires sleeps .".split(), t)  # main verb
    assert not ok("my zebras that the raven admires sleep . .".split(), t)  # one '.' only is dropped
    assert not ok("my zebras near the raven admires sleep .".split(), t)  # POS
    assert not ok("my zebras that the raven sleep .".split(), t)  # length
    assert E.main_verb_index(["D", "N", "P", "D", "N", "V", "D", "N"]) == 5  # no RC: the first V


def test_tense_edge_cases_are_wrong():
    """EOS first (empty output), SOS or pad generated, unknown words: wrong, never an error."""
    t = "the yaks sleep .".split()
    for pred in ([], ["<eos>"], ["<sos>", "yaks", "sleep", "."], ["the", "yaks", "<pad>"], ["the", "yaks", "sleep", "<eos>"]):
        assert not E.tense_correct(pred, t)


def test_tense_correct_ids_matches_words():
    """The vectorized scorer equals `tense_correct` on targets, linear outputs and random corruptions."""
    vocab = words_vocab(TI_GEN, TI_VAL)
    tags = E.tense_tags()
    tag_V = jnp.asarray(E.tag_table(vocab, tags))
    rng = np.random.default_rng(1)
    preds, tgts = [], []
    for l in TI_GEN + TI_VAL:
        tgt = input_output(l)[1]
        ids = vocab.encode(tgt)
        cands = [ids, ids[:-1], ids + [vocab.index["."]], [], [vocab.eos], [vocab.sos] + ids[1:], ids[:2], [0] + ids[1:]]
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
    core = [vocab.encode(E.drop_final_dot(t)) for t in tgts]
    core_BxM = np.zeros((len(core), 16), np.int32)
    for i, c in enumerate(core):
        core_BxM[i, : len(c)] = c
    mv = np.array([E.main_verb_index([tags[w] for w in E.drop_final_dot(t)]) for t in tgts], np.int32)
    got = E.tense_correct_ids(jnp.asarray(pred_BxM), jnp.asarray(pred_len), jnp.asarray(core_BxM),
                              jnp.asarray([len(c) for c in core]), jnp.asarray(mv), tag_V, vocab.index["."])
    want = [E.tense_correct(vocab.decode(p), t) for p, t in zip(preds, tgts)]
    np.testing.assert_array_equal(np.asarray(got), want)
    assert 0 < sum(want) < len(want)


# ---------------------------------------------------------------- Dyck scoring


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


def test_dyck_distance_filter_positions():
    """Closing positions, openers and the ≥10 filter on hand cases (odd distances: 9 is out, 11 is in)."""
    assert E.dyck_closings("(a (b b) a)".split()) == [(2, 1), (3, 0)]
    got = E.dyck_closings(DYCK_LINES[1].split())
    assert got == [(3, 2), (5, 4), (7, 6), (9, 8), (10, 1), (11, 0)]
    assert [i for i, o in got if i - o >= E.DYCK_MIN_DISTANCE] == [11]
    far = [i for i, o in E.dyck_closings(DYCK_LINES[2].split()) if i - o >= E.DYCK_MIN_DISTANCE]
    assert far == [13]
    with pytest.raises(Exception):
        E.dyck_closings("(a b)".split())


def test_dyck_rules_and_chance():
    """The stack rule scores 1.0 (all and far), the last-opened heuristic less, uniform ≈ 1/20."""
    gold, last, dist = [], [], []
    for l in DYCK_LINES:
        toks = l.split()
        gold += stack_rule(toks)
        last += last_opened_rule(toks)
        dist += [i - o for i, o in E.dyck_closings(toks)]
    assert E.dyck_accuracy(gold, gold, dist) == 1.0 == E.dyck_accuracy(gold, gold, dist, 10)
    assert E.dyck_accuracy(last, gold, dist, 10) == 0.0  # every far closing follows another closing
    assert 0 < E.dyck_accuracy(last, gold, dist) < 1
    rng = np.random.default_rng(0)
    closers = [f"{c})" for c in LETTERS]
    many = gold * 500
    acc = E.dyck_accuracy(rng.choice(closers, len(many)), many, dist * 500)
    assert abs(acc - 1 / 20) < 0.015
    assert np.isnan(E.dyck_accuracy(gold, gold, dist, 100))


def test_dyck_select_stops_after_reaching_count():
    assert E.dyck_select([3, 2, 4], 5) == 2
    assert E.dyck_select([3, 2, 4], 6) == 3
    assert E.dyck_select([3, 2, 4], None) == 3
    assert E.dyck_select([3, 2, 4], 100) == 3


# ---------------------------------------------------------------- the evaluator


def tiny_members(vocab_size: int, s: int = 2):
    cfg = ModelConfig(**{**TINY.__dict__, "vocab_size": vocab_size})
    params = jax.jit(jax.vmap(lambda k: model.init_params(cfg, k)))(jax.random.split(jax.random.PRNGKey(7), s))
    return cfg, params


def padded(seq: list[int], width: int):
    """[1, width] with zeros after seq: one compiled shape for every reference forward."""
    return jnp.asarray([seq + [0] * (width - len(seq))], jnp.int32)


def twice(params_S, i):
    """Member i in both slots: the same compiled S=2 program evaluates it alone, with no other member."""
    return jax.tree_util.tree_map(lambda a: jnp.stack([a[i], a[i]]), params_S)


def test_qf_evaluator_vmapped_equals_alone():
    """S=2 in one program equals each member alone (twice(…): no cross-member leakage), and a host reference."""
    vocab = words_vocab(QF_GEN, QF_VAL)
    splits = {"val": encode_lines("question", "val", QF_VAL, vocab), "gen": encode_lines("question", "gen", QF_GEN, vocab)}
    cfg, params = tiny_members(vocab.size)
    ev = E.make_evaluator(cfg, EvalConfig(batch_size=3), "question", vocab, splits)
    assert ev.counts["val_acc"] == 2 and ev.counts["gen_acc"] == 4  # quest lines only
    both = ev(params, 0)
    assert set(both) == {"val_acc", "gen_acc", "val_acc_unrestricted", "gen_acc_unrestricted", "val_exact_match", "gen_exact_match"}
    # Without exact match the first-word logits come from a pass over the prefixes, not over the whole lines.
    no_decode = E.make_evaluator(cfg, EvalConfig(batch_size=3, exact_match=False), "question", vocab, splits)(params, 0)
    assert set(no_decode) == set(both) - {"val_exact_match", "gen_exact_match"}
    for k in no_decode:
        np.testing.assert_array_equal(no_decode[k], both[k])
    aux_K = [vocab.index[a] for a in E.AUXILIARIES]
    for i in range(2):
        alone = ev(twice(params, i), 0)
        for k in both:
            assert both[k].shape == (2,) and alone[k][0] == pytest.approx(both[k][i]) == alone[k][1]
        p = jax.tree_util.tree_map(lambda a: a[i], params)
        preds, gold = [], []
        for l in QF_GEN:
            words = line_words(l)
            q = words.index("quest")
            seq = [vocab.sos] + vocab.encode(words[: q + 1])
            logits = forward(cfg)(p, padded(seq, 16))[0, len(seq) - 1]  # padding is never attended to
            preds.append(int(E.restricted_argmax(logits, aux_K)))
            gold.append(vocab.index[words[q + 1]])
        assert both["gen_acc"][i] == pytest.approx(np.mean(np.array(preds) == gold))


def test_lm_loss_is_the_mean_of_32_line_batch_means_as_the_original():
    """D31: val_loss / gen_loss over every line, per member, equal a per-batch host reference; off by default."""
    from sgjax import data

    vocab = data.vocab_for("question")
    text = data.generate("question", {"train": 0, "val": 70, "test": 0, "gen": 40}, seed=3)
    splits = {n: encode_lines("question", n, text[n], vocab) for n in ("val", "gen")}
    cfg, params = tiny_members(vocab.size)
    ev = E.make_evaluator(cfg, EvalConfig(batch_size=8, lm_loss=True), "question", vocab, splits)
    assert ev.counts["val_loss"] == 3 and ev.counts["gen_loss"] == 2  # 32 + 32 + 6 and 32 + 8 lines
    got = ev(params, 0)
    for i in range(2):
        p = jax.tree_util.tree_map(lambda a: a[i], params)
        for name in ("val", "gen"):
            seqs = [[vocab.sos] + vocab.encode(line_words(l)) + [vocab.eos] for l in text[name]]
            means = []
            for b in range(0, len(seqs), 32):  # padded per batch, as the original's collate
                batch = E._pad_rows(seqs[b : b + 32])[0]
                logits = forward(cfg)(p, jnp.asarray(batch[:, :-1]))
                means.append(float(engine.token_mean_ce(logits, jnp.asarray(batch[:, 1:]))))
            assert got[f"{name}_loss"][i] == pytest.approx(np.mean(means), rel=1e-5)
    assert got["val_loss"][0] != got["val_loss"][1] and got["val_acc"].shape == (2,)
    longest = max(int(splits[n].lengths_N.max()) for n in splits)  # a max_len that just fits: widths are capped by it
    tight = E.make_evaluator(dataclasses.replace(cfg, max_len=longest + 2), EvalConfig(batch_size=8, lm_loss=True),
                             "question", vocab, splits)(params, 0)
    np.testing.assert_allclose(tight["val_loss"], got["val_loss"], rtol=1e-5)
    assert "val_loss" not in E.make_evaluator(cfg, EvalConfig(batch_size=8), "question", vocab, splits)(params, 0)


def test_teacher_forced_match_equals_greedy_decoding():
    """Exact match from one teacher-forced pass equals greedy decoding's, on candidate targets: the model's own
    output (a match) and that output with a token changed, its last token dropped, or a token added."""
    cfg = ModelConfig(vocab_size=12, n_layers=2, d_model=32, n_heads=2, d_ff=64, dropout=0.0)
    eos, sos, steps = 3, 11, 10  # a word id as EOS, so that decodes stop at different steps
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 8, size=24).astype(np.int32)
    pre = np.zeros((24, 7), np.int32)
    for i, n in enumerate(lens):
        pre[i, 0], pre[i, 1:n] = sos, rng.integers(1, 11, n - 1)
    agree = []
    for key in range(4):
        params = model.init_params(cfg, jax.random.PRNGKey(key))
        params = {**params, "out_b": params["out_b"].at[eos].add(0.3 * key)}  # more and earlier stops
        gen, glen = map(np.asarray, jax.jit(lambda p: decode.greedy_decode(cfg, p, pre, lens, max_steps=steps, eos_id=eos))(params))
        other = lambda t: 1 + t % 10 if 1 + t % 10 != eos else 5  # noqa: E731  a word id other than t and EOS
        cands, rows = [], []
        for i in range(len(lens)):
            own = gen[i, : glen[i]].tolist()
            if glen[i] > steps - 2:  # no EOS within the steps: the decoder's cap, which the evaluator never reaches
                continue
            edits = [own, own + [other(own[-1] if own else 1)]]
            edits += [own[:-1], own[:-1] + [other(own[-1])]] if own else []
            cands += edits
            rows += [i] * len(edits)
        line, line_len = E._pad_rows([pre[i, : lens[i]].tolist() + c + [eos] for i, c in zip(rows, cands)])
        pred = jnp.argmax(decode.jit_forward(cfg)(params, jnp.asarray(line)), -1)
        tf = np.asarray(E.teacher_forced_match(pred, jnp.asarray(line), jnp.asarray(lens[rows]), jnp.asarray(line_len)))
        tgt, tlen = E._pad_rows(cands)
        greedy = np.asarray(E.exact_match_ids(jnp.asarray(gen[rows]), jnp.asarray(glen[rows]), jnp.asarray(tgt), jnp.asarray(tlen)))
        np.testing.assert_array_equal(tf, greedy)
        agree += tf.tolist()
    assert 20 <= sum(agree) <= len(agree) - 20  # both verdicts are well represented


def oracle_decoder(prefixes: list[list[int]], outputs: list[list[int]]):
    """A decode_fn that looks each prefix up in a table and returns the given output (no model)."""
    w = max(map(len, prefixes))
    m = max(1, max(map(len, outputs)))
    table = np.zeros((len(prefixes), w), np.int32)
    out = np.zeros((len(prefixes), m), np.int32)
    for i, (p, o) in enumerate(zip(prefixes, outputs)):
        table[i, : len(p)] = p
        out[i, : len(o)] = o
    lens = np.array([len(o) for o in outputs], np.int32)

    def decode_fn(cfg, params, prefix_BxW, prefix_len_B, *, max_steps, eos_id):
        pre = jnp.pad(prefix_BxW, ((0, 0), (0, max(0, w - prefix_BxW.shape[1]))))[:, :w]
        row_B = jnp.argmax(jnp.all(pre[:, None, :] == table[None], axis=-1), axis=1)
        gen = jnp.pad(jnp.asarray(out)[row_B], ((0, 0), (0, max(0, max_steps - m))))[:, :max_steps]
        return gen, jnp.minimum(jnp.asarray(lens)[row_B], max_steps)

    return decode_fn


def test_ti_evaluator_rules_and_edge_cases():
    """Through the evaluator: target outputs 1.0, agree-recent 0.0, EOS-first/SOS outputs 0.0; val keeps PAST lines."""
    vocab = words_vocab(TI_GEN, TI_VAL)
    splits = {"val": encode_lines("tense", "val", TI_VAL, vocab), "gen": encode_lines("tense", "gen", TI_GEN, vocab)}
    prefixes = [[vocab.sos] + vocab.encode(input_output(l)[0]) for l in TI_GEN + TI_VAL]
    targets = [vocab.encode(input_output(l)[1]) for l in TI_GEN + TI_VAL]
    linear = [vocab.encode(reinflect(ti_input(l), agree_recent) + ["."]) for l in TI_GEN] + targets[len(TI_GEN) :]
    broken = [[] for _ in TI_GEN] + [[vocab.sos] * 3 for _ in TI_VAL]  # EOS first / SOS generated
    params = {"w": jnp.zeros((2, 1))}  # the oracle ignores parameters; only the leading S axis matters
    cfg = ModelConfig(vocab_size=vocab.size)
    results = {}
    for name, outs in (("target", targets), ("linear", linear), ("broken", broken)):
        ev = E.make_evaluator(cfg, EvalConfig(batch_size=4), "tense", vocab, splits, decode_fn=oracle_decoder(prefixes, outs))
        results[name] = ev(params, 0)
    assert ev.counts == {"val_acc": 2, "val_exact_match": 2, "gen_acc": 6, "gen_exact_match": 6}
    np.testing.assert_array_equal(results["target"]["gen_acc"], [1.0, 1.0])
    np.testing.assert_array_equal(results["target"]["val_exact_match"], [1.0, 1.0])
    np.testing.assert_array_equal(results["linear"]["gen_acc"], [0.0, 0.0])
    np.testing.assert_array_equal(results["broken"]["gen_acc"], [0.0, 0.0])
    np.testing.assert_array_equal(results["broken"]["val_acc"], [0.0, 0.0])


def test_ti_is_scored_one_short_of_eos_as_the_original():
    """D29: without its '.' the output is wrong and with two it is right, as the original scores them; not so when off."""
    vocab = words_vocab(TI_GEN, TI_VAL)
    splits = {"val": encode_lines("tense", "val", TI_VAL, vocab), "gen": encode_lines("tense", "gen", TI_GEN, vocab)}
    prefixes = [[vocab.sos] + vocab.encode(input_output(l)[0]) for l in TI_GEN + TI_VAL]
    targets = [vocab.encode(input_output(l)[1]) for l in TI_GEN + TI_VAL]
    outputs = {"target": targets, "no_dot": [t[:-1] for t in targets], "two_dots": [t + [vocab.index["."]] for t in targets]}
    params = {"w": jnp.zeros((1, 1))}
    want = {True: {"target": 1.0, "no_dot": 0.0, "two_dots": 1.0}, False: {"target": 1.0, "no_dot": 1.0, "two_dots": 0.0}}
    for drop_last, accs in want.items():
        ecfg = EvalConfig(batch_size=4, tense_drop_last=drop_last)
        for name, acc in accs.items():
            ev = E.make_evaluator(ModelConfig(vocab_size=vocab.size), ecfg, "tense", vocab, splits,
                                  decode_fn=oracle_decoder(prefixes, outputs[name]))
            got = ev(params, 0)
            assert (got["gen_acc"][0], got["val_acc"][0]) == (acc, acc), (drop_last, name)
            assert got["gen_exact_match"][0] == float(name == "target")  # exact match scores the whole output


def run_greedy_out_len(tokens: list[int], eos: int, max_len: int) -> int:
    """The original's `run_greedy` length bookkeeping (SPEC §2.4), token by token: t0, then max_len more."""
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
        assert int(E.original_output_len(jnp.asarray(k), steps)) == run_greedy_out_len(tokens, eos, steps)
    assert int(E.original_output_len(jnp.asarray(steps), steps)) == run_greedy_out_len([1] * (steps + 1), eos, steps)


def test_configs_saved_before_tense_drop_last_keep_whole_outputs():
    from sgjax import config

    d = config.preset("smoke", "tense").to_dict()
    del d["eval"]["tense_drop_last"]
    assert config.from_dict(d).eval.tense_drop_last is False
    assert config.preset("smoke", "tense").eval.tense_drop_last is True
    qf = config.preset("smoke", "question").to_dict()  # QF never reads it: an old QF run resumes unchanged
    del qf["eval"]["tense_drop_last"]
    assert config.from_dict(qf) == config.preset("smoke", "question")


def ti_sample_evaluator(sample: int, **kw):
    """A TI evaluator over the fixture lines, scored by an oracle that gets every odd line right."""
    vocab = words_vocab(TI_GEN, TI_VAL)
    splits = {"val": encode_lines("tense", "val", TI_VAL, vocab), "gen": encode_lines("tense", "gen", TI_GEN, vocab)}
    prefixes = [[vocab.sos] + vocab.encode(input_output(l)[0]) for l in TI_GEN + TI_VAL]
    outs = [vocab.encode(input_output(l)[1]) if i % 2 else [] for i, l in enumerate(TI_GEN + TI_VAL)]
    ecfg = EvalConfig(batch_size=4, tense_gen_sample=sample, **kw.pop("eval", {}))
    return E.make_evaluator(ModelConfig(vocab_size=vocab.size), ecfg, "tense", vocab, splits,
                            decode_fn=oracle_decoder(prefixes, outs), **kw)


def test_ti_gen_subsample_is_fresh_and_seeded():
    """tense_gen_sample draws a new subset each evaluation step, the same one for the same step (D15)."""
    a, b = E.sample_rows(100, 20, 3000), E.sample_rows(100, 20, 6000)
    assert len(set(a)) == 20 and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, E.sample_rows(100, 20, 3000))
    ev = ti_sample_evaluator(3, member_seeds=(0,))
    assert ev.counts["gen_acc"] == 3 and ev.counts["val_acc"] == 2
    seen = {float(ev({"w": jnp.zeros((1, 1))}, step)["gen_acc"][0]) for step in range(0, 30000, 3000)}
    assert len(seen) > 1  # the subset (and so the score) changes between evaluations
    for step in range(0, 30000, 3000):  # the drawn lines come in (prefix, target) length order
        sample = ev.data_for(step)[("gen", "sample")]
        keys = [(int(p), int(t)) for p, t, v in zip(sample["prefix_len"].ravel(), sample["target_len"].ravel(), sample["valid"].ravel()) if v]
        assert len(keys) == 3 and keys == sorted(keys)


def test_ti_subsample_is_each_members_own():
    """Each member draws its own lines, seeded by its seed: as alone, and unlike its neighbour (D33)."""
    steps = range(0, 30000, 3000)
    params = {"w": jnp.zeros((2, 1))}  # the oracle ignores the weights: only the draws tell the members apart
    both = ti_sample_evaluator(3, member_seeds=(42, 52))
    alone = [ti_sample_evaluator(3, member_seeds=(s,)) for s in (42, 52)]
    got = [both(params, step)["gen_acc"] for step in steps]
    for i in range(2):
        assert [float(g[i]) for g in got] == [float(alone[i]({"w": jnp.zeros((1, 1))}, step)["gen_acc"][0]) for step in steps]
    assert any(g[0] != g[1] for g in got)  # the two members' draws differ at some evaluation
    shared = ti_sample_evaluator(3, eval={"tense_sample_per_member": False})
    assert all(g[0] == g[1] for g in (shared(params, step)["gen_acc"] for step in steps))
    assert both.data_for(3000)[("gen", "sample")]["valid"].shape[0] == 2  # [S, NB, R]: a draw per member


def test_ti_subsample_needs_one_seed_per_member():
    """Per-member draws without seeds, or for another population size, are refused in one line."""
    with pytest.raises(E.UserError, match="member_seeds"):
        ti_sample_evaluator(3)
    ev = ti_sample_evaluator(3, member_seeds=(1, 2, 3))
    with pytest.raises(E.UserError, match="3 members"):
        ev({"w": jnp.zeros((2, 1))}, 0)
    assert ti_sample_evaluator(None).counts["gen_acc"] == len(TI_GEN)  # the whole set needs no seeds


def test_configs_saved_before_per_member_samples_keep_one_shared_draw():
    from sgjax import config

    d = config.preset("smoke", "tense").to_dict()
    del d["eval"]["tense_sample_per_member"]
    assert config.from_dict(d).eval.tense_sample_per_member is False
    assert config.preset("smoke", "tense").eval.tense_sample_per_member is True


def test_dyck_evaluator_counts_and_vmap():
    """Sentence selection, 'all' and 'far' denominators, S=2 equals alone, and a host reference."""
    splits = {"val": encode_lines("dyck", "val", DYCK_LINES, DYCK_VOCAB), "test": encode_lines("dyck", "test", DYCK_LINES, DYCK_VOCAB)}
    cfg, params = tiny_members(DYCK_VOCAB.size)
    ev = E.make_evaluator(cfg, EvalConfig(batch_size=2, dyck_max_prefixes=8), "dyck", DYCK_VOCAB, splits)
    # all: 2 + 6 = 8 reaches 8 after line 2; far: 0, 1, 1 reaches... never 8, so every line (2 far closings)
    assert ev.counts == {"val_acc": 8, "val_acc_far": 2, "gen_acc_all": 8, "gen_acc": 2}
    both = ev(params, 0)
    close_K = [i for i, w in enumerate(DYCK_VOCAB.words) if w.endswith(")")]
    for i in range(2):
        alone = ev(twice(params, i), 0)
        for k in both:
            assert alone[k][0] == pytest.approx(both[k][i]) == alone[k][1]
        p = jax.tree_util.tree_map(lambda a: a[i], params)
        right_all, right_far = [], []
        for k, l in enumerate(DYCK_LINES):
            toks = l.split()
            logits = forward(cfg)(p, padded([DYCK_VOCAB.sos] + DYCK_VOCAB.encode(toks), 32))[0]
            for pos, o in E.dyck_closings(toks):
                right = int(E.restricted_argmax(logits[pos], close_K)) == DYCK_VOCAB.index[toks[pos]]
                if k < 2:
                    right_all.append(right)
                if pos - o >= 10:
                    right_far.append(right)
        assert both["val_acc"][i] == pytest.approx(np.mean(right_all))
        assert both["gen_acc"][i] == pytest.approx(np.mean(right_far))


def test_no_scorable_lines_gives_nan():
    """A QF split without `quest` lines yields NaN for its keys, without compiling anything."""
    vocab = words_vocab(QF_VAL)
    decl = [l for l in QF_VAL if "decl" in l]
    ev = E.make_evaluator(TINY, EvalConfig(), "question", vocab, {"val": encode_lines("question", "val", decl, vocab)})
    out = ev({"w": jnp.zeros((3, 1))}, 0)
    assert set(out) >= {"val_acc", "val_exact_match"} and all(np.isnan(v).all() and v.shape == (3,) for v in out.values())


def test_batches_halve_until_the_evaluation_fits_memory(monkeypatch):
    """With little free memory the first call halves every group's batches down to 1 row; the scores do not change."""
    vocab = words_vocab(QF_GEN, QF_VAL)
    splits = {"val": encode_lines("question", "val", QF_VAL, vocab), "gen": encode_lines("question", "gen", QF_GEN, vocab)}
    cfg, params = tiny_members(vocab.size)
    roomy = E.make_evaluator(cfg, EvalConfig(batch_size=4, width_groups=1), "question", vocab, splits)
    expected = roomy(params, 0)
    assert roomy.rows() == 4 and roomy.note is None and all(len(t) == 1 for t in roomy.fit["tried"].values())
    monkeypatch.setattr(E, "free_memory", lambda devices: 1)  # one byte: nothing fits, so down to 1 row
    tight = E.make_evaluator(cfg, EvalConfig(batch_size=4, width_groups=1), "question", vocab, splits)
    got = tight(params, 0)
    assert [[rows for rows, _ in t] for t in tight.fit["tried"].values()] == [[2, 1], [4, 2, 1]]  # val: 2 quest lines
    assert tight.rows() == 1 and "using 1" in tight.note
    assert got.keys() == expected.keys()
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k])


def test_a_sampled_ti_split_halves_and_keeps_its_draws(monkeypatch):
    """Under tight memory a TI sample's batches halve; every call still scores the lines drawn for its step."""
    make = lambda: ti_sample_evaluator(3, member_seeds=(0,))  # noqa: E731
    params = {"w": jnp.zeros((1, 1))}
    roomy = make()
    expected = [roomy(params, step) for step in (0, 3000, 6000)]
    monkeypatch.setattr(E, "free_memory", lambda devices: 1)
    tight = make()
    got = [tight(params, step) for step in (0, 3000, 6000)]
    assert [rows for rows, _ in tight.fit["tried"]["gen/sample"]] == [3, 1] and tight.rows() == 1
    assert tight.data_for(0)[("gen", "sample")]["valid"].shape[-1] == 1  # [S, NB, rows]
    for e, g in zip(expected, got):
        assert e.keys() == g.keys() and all(np.array_equal(e[k], g[k]) for k in e)
    assert len({float(g["gen_acc"][0]) for g in got}) > 1  # the draws differ between steps, and so do the scores


def test_halved_keeps_every_line_once():
    """halved() re-batches the valid rows of each Dyck width group and a sampled TI part, at least 1 row each."""
    splits = {"val": encode_lines("dyck", "val", DYCK_LINES, DYCK_VOCAB)}
    part = E.dyck_part("val", splits["val"], DYCK_VOCAB, EvalConfig(batch_size=2, dyck_max_prefixes=None))
    half = E.halved(part)
    assert E.batch_rows(half) == 1 and half.groups.keys() == part.groups.keys()
    for w, b in part.groups.items():
        v, hv = b["valid"].reshape(-1), half.groups[w]["valid"].reshape(-1)
        np.testing.assert_array_equal(half.groups[w]["seq"].reshape(-1, b["seq"].shape[-1])[hv], b["seq"].reshape(-1, b["seq"].shape[-1])[v])
    vocab = words_vocab(TI_GEN, TI_VAL)
    ti = E.ti_part("gen", encode_lines("tense", "gen", TI_GEN, vocab), vocab, EvalConfig(batch_size=4), sample=3)
    assert ti.sample.rows == 3 and E.halved(ti).sample.rows == 1 and E.batch_rows(E.halved(ti)) == 1


def test_best_cuts_find_the_fewest_padded_positions():
    """The width groups are the optimum found by trying every split of the sorted lengths."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        len_N = rng.integers(3, 20, size=rng.integers(1, 40))
        values, counts = np.unique(len_N, return_counts=True)
        for g in (1, 2, 3):
            cuts = E._best_cuts(values, counts, g)
            padded = lambda cs: sum(int(values[c]) * int(counts[a:c + 1].sum()) for a, c in zip([0] + [x + 1 for x in cs[:-1]], cs))  # noqa: E731
            brute = min(padded(list(c) + [len(values) - 1]) for r in range(min(g, len(values)))
                        for c in itertools.combinations(range(len(values) - 1), r))
            assert len(cuts) <= g and cuts[-1] == len(values) - 1 and padded(cuts) == brute


def test_length_groups_cover_every_line_once_in_length_order():
    """Each line lands in one group; a group is sorted by (length, tie) and no longer than the next group's shortest."""
    rng = np.random.default_rng(1)
    len_N, tie_N = rng.integers(2, 18, size=200), rng.integers(0, 9, size=200)
    groups = E.length_groups(len_N, tie_N, 3)
    assert len(groups) == 3 and sorted(np.concatenate(groups).tolist()) == list(range(200))
    for idx in groups:
        keys = list(zip(len_N[idx], tie_N[idx]))
        assert keys == sorted(keys)
    assert all(len_N[a].max() < len_N[b].min() for a, b in zip(groups, groups[1:]))


def test_width_groups_give_the_same_scores():
    """QF and TI scores do not depend on how the lines are grouped by width or how many rows a batch holds."""
    for task, gen, val in (("question", QF_GEN, QF_VAL), ("tense", TI_GEN, TI_VAL)):
        vocab = words_vocab(gen, val)
        splits = {"val": encode_lines(task, "val", val, vocab), "gen": encode_lines(task, "gen", gen, vocab)}
        cfg, params = tiny_members(vocab.size)
        one = E.make_evaluator(cfg, EvalConfig(batch_size=16, width_groups=1), task, vocab, splits)
        many = E.make_evaluator(cfg, EvalConfig(batch_size=2, width_groups=3), task, vocab, splits)
        assert all(len(p.groups) == 1 for p in one.parts.values()) and any(len(p.groups) > 1 for p in many.parts.values())
        a, b = one(params, 0), many(params, 0)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(b[k], a[k], err_msg=f"{task} {k}")


def test_balanced_rows_keep_the_batch_count_and_fill_the_last_batch():
    """As many batches as `rows` per batch would need, no more rows each, and less than one row of padding per batch."""
    for n in range(1, 600, 7):
        for rows in (1, 2, 3, 64, 256, 512):
            r = E.balanced_rows(n, rows)
            nb = -(-n // r)
            assert r <= rows and nb == -(-n // rows) and nb * r - n < nb


def test_bucket_widths_are_powers_of_two_within_max_len():
    assert [E.bucket_width(n) for n in (1, 16, 17, 33)] == [16, 16, 32, 64]
    assert E.bucket_width(20, 30) == 30 and E.bucket_width(40, 30) == 40  # capped; never below the sequence
