"""The vmapped evaluator (sgjax.evaluation.evaluate) on hand-written lines: each member scored as alone, the
original's rules, memory fit.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax.config import EvalConfig, ModelConfig
from sgjax.core import engine, model
from sgjax.data.split import encode_lines, line_words
from sgjax.evaluation import batches as eval_batches
from sgjax.evaluation import decode, scoring
from sgjax.evaluation import evaluate as E
from sgjax.evaluation.decode import jit_forward as forward  # cached jitted model.forward
from tests.eval_fixtures import (
    DYCK_LINES,
    DYCK_VOCAB,
    QF_GEN,
    QF_VAL,
    TI_GEN,
    TI_VAL,
    TINY,
    agree_recent,
    input_output,
    reinflect,
    ti_input,
    words_vocab,
)

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
    splits = {
        "val": encode_lines("question", "val", QF_VAL, vocab),
        "gen": encode_lines("question", "gen", QF_GEN, vocab),
    }
    cfg, params = tiny_members(vocab.size)
    ev = E.make_evaluator(cfg, EvalConfig(batch_size=3), "question", vocab, splits)
    assert ev.counts["val_acc"] == 2 and ev.counts["gen_acc"] == 4  # quest lines only
    both = ev(params, 0)
    assert set(both) == {
        "val_acc",
        "gen_acc",
        "val_acc_unrestricted",
        "gen_acc_unrestricted",
        "val_exact_match",
        "gen_exact_match",
    }
    # Without exact match the first-word logits come from a pass over the prefixes, not over the whole lines.
    no_decode = E.make_evaluator(cfg, EvalConfig(batch_size=3, exact_match=False), "question", vocab, splits)(params, 0)
    assert set(no_decode) == set(both) - {"val_exact_match", "gen_exact_match"}
    for k in no_decode:
        np.testing.assert_array_equal(no_decode[k], both[k])
    # host arrays, as checkpoint.load_params gives them, score the same on a fresh evaluator
    host = E.make_evaluator(cfg, EvalConfig(batch_size=3), "question", vocab, splits)(jax.device_get(params), 0)
    for k in both:
        np.testing.assert_array_equal(host[k], both[k])
    aux_K = [vocab.index[a] for a in scoring.AUXILIARIES]
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
            preds.append(int(scoring.restricted_argmax(logits, aux_K)))
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
                batch = eval_batches._pad_rows(seqs[b : b + 32])[0]
                logits = forward(cfg)(p, jnp.asarray(batch[:, :-1]))
                means.append(float(engine.token_mean_ce(logits, jnp.asarray(batch[:, 1:]))))
            assert got[f"{name}_loss"][i] == pytest.approx(np.mean(means), rel=1e-5)
    assert got["val_loss"][0] != got["val_loss"][1] and got["val_acc"].shape == (2,)
    longest = max(int(splits[n].lengths_N.max()) for n in splits)  # a max_len that just fits: widths are capped by it
    tight = E.make_evaluator(
        dataclasses.replace(cfg, max_len=longest + 2), EvalConfig(batch_size=8, lm_loss=True), "question", vocab, splits
    )(params, 0)
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
        gen, glen = map(
            np.asarray, jax.jit(lambda p: decode.greedy_decode(cfg, p, pre, lens, max_steps=steps, eos_id=eos))(params)
        )
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
        line, line_len = eval_batches._pad_rows([pre[i, : lens[i]].tolist() + c + [eos] for i, c in zip(rows, cands)])
        pred = jnp.argmax(decode.jit_forward(cfg)(params, jnp.asarray(line)), -1)
        tf = np.asarray(
            scoring.teacher_forced_match(pred, jnp.asarray(line), jnp.asarray(lens[rows]), jnp.asarray(line_len))
        )
        tgt, tlen = eval_batches._pad_rows(cands)
        greedy = np.asarray(
            scoring.exact_match_ids(
                jnp.asarray(gen[rows]), jnp.asarray(glen[rows]), jnp.asarray(tgt), jnp.asarray(tlen)
            )
        )
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
        ev = E.make_evaluator(
            cfg, EvalConfig(batch_size=4), "tense", vocab, splits, decode_fn=oracle_decoder(prefixes, outs)
        )
        results[name] = ev(params, 0)
    assert ev.counts == {"val_acc": 2, "val_exact_match": 2, "gen_acc": 6, "gen_exact_match": 6}
    np.testing.assert_array_equal(results["target"]["gen_acc"], [1.0, 1.0])
    np.testing.assert_array_equal(results["target"]["val_exact_match"], [1.0, 1.0])
    np.testing.assert_array_equal(results["linear"]["gen_acc"], [0.0, 0.0])
    np.testing.assert_array_equal(results["broken"]["gen_acc"], [0.0, 0.0])
    np.testing.assert_array_equal(results["broken"]["val_acc"], [0.0, 0.0])


def test_ti_is_scored_one_short_of_eos_as_the_original():
    """D29: without its '.' the output is wrong and with two it is right, as the original scores them;
    not so when off.
    """
    vocab = words_vocab(TI_GEN, TI_VAL)
    splits = {"val": encode_lines("tense", "val", TI_VAL, vocab), "gen": encode_lines("tense", "gen", TI_GEN, vocab)}
    prefixes = [[vocab.sos] + vocab.encode(input_output(l)[0]) for l in TI_GEN + TI_VAL]
    targets = [vocab.encode(input_output(l)[1]) for l in TI_GEN + TI_VAL]
    outputs = {
        "target": targets,
        "no_dot": [t[:-1] for t in targets],
        "two_dots": [t + [vocab.index["."]] for t in targets],
    }
    params = {"w": jnp.zeros((1, 1))}
    want = {
        True: {"target": 1.0, "no_dot": 0.0, "two_dots": 1.0},
        False: {"target": 1.0, "no_dot": 1.0, "two_dots": 0.0},
    }
    for drop_last, accs in want.items():
        ecfg = EvalConfig(batch_size=4, tense_drop_last=drop_last)
        for name, acc in accs.items():
            ev = E.make_evaluator(
                ModelConfig(vocab_size=vocab.size),
                ecfg,
                "tense",
                vocab,
                splits,
                decode_fn=oracle_decoder(prefixes, outputs[name]),
            )
            got = ev(params, 0)
            assert (got["gen_acc"][0], got["val_acc"][0]) == (acc, acc), (drop_last, name)
            assert got["gen_exact_match"][0] == float(name == "target")  # exact match scores the whole output


def test_configs_saved_before_tense_drop_last_keep_whole_outputs():
    from sgjax import config
    from sgjax.run import compat

    d = config.preset("smoke", "tense").to_dict()
    del d["eval"]["tense_drop_last"]
    assert compat.saved_config(d).eval.tense_drop_last is False
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
    return E.make_evaluator(
        ModelConfig(vocab_size=vocab.size), ecfg, "tense", vocab, splits, decode_fn=oracle_decoder(prefixes, outs), **kw
    )


def test_ti_gen_subsample_is_fresh_and_seeded():
    """tense_gen_sample draws a new subset each evaluation step, the same one for the same step (D15)."""
    a, b = eval_batches.sample_rows(100, 20, 3000), eval_batches.sample_rows(100, 20, 6000)
    assert len(set(a)) == 20 and not np.array_equal(a, b)
    np.testing.assert_array_equal(a, eval_batches.sample_rows(100, 20, 3000))
    ev = ti_sample_evaluator(3, member_seeds=(0,))
    assert ev.counts["gen_acc"] == 3 and ev.counts["val_acc"] == 2
    seen = {float(ev({"w": jnp.zeros((1, 1))}, step)["gen_acc"][0]) for step in range(0, 30000, 3000)}
    assert len(seen) > 1  # the subset (and so the score) changes between evaluations
    for step in range(0, 30000, 3000):  # the drawn lines come in (prefix, target) length order
        sample = ev.data_for(step)[("gen", "sample")]
        keys = [
            (int(p), int(t))
            for p, t, v in zip(sample["prefix_len"].ravel(), sample["target_len"].ravel(), sample["valid"].ravel())
            if v
        ]
        assert len(keys) == 3 and keys == sorted(keys)


def test_ti_subsample_is_each_members_own():
    """Each member draws its own lines, seeded by its seed: as alone, and unlike its neighbour (D33)."""
    steps = range(0, 30000, 3000)
    params = {"w": jnp.zeros((2, 1))}  # the oracle ignores the weights: only the draws tell the members apart
    both = ti_sample_evaluator(3, member_seeds=(42, 52))
    alone = [ti_sample_evaluator(3, member_seeds=(s,)) for s in (42, 52)]
    got = [both(params, step)["gen_acc"] for step in steps]
    for i in range(2):
        assert [float(g[i]) for g in got] == [
            float(alone[i]({"w": jnp.zeros((1, 1))}, step)["gen_acc"][0]) for step in steps
        ]
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
    from sgjax.run import compat

    d = config.preset("smoke", "tense").to_dict()
    del d["eval"]["tense_sample_per_member"]
    assert compat.saved_config(d).eval.tense_sample_per_member is False
    assert config.preset("smoke", "tense").eval.tense_sample_per_member is True


def test_dyck_evaluator_counts_and_vmap():
    """Sentence selection, 'all' and 'far' denominators, S=2 equals alone, and a host reference."""
    splits = {
        "val": encode_lines("dyck", "val", DYCK_LINES, DYCK_VOCAB),
        "test": encode_lines("dyck", "test", DYCK_LINES, DYCK_VOCAB),
    }
    cfg, params = tiny_members(DYCK_VOCAB.size)
    ev = E.make_evaluator(cfg, EvalConfig(batch_size=2, dyck_max_prefixes=8), "dyck", DYCK_VOCAB, splits)
    # all: 2 + 6 = 8 reaches 8 after line 2; far: 0, 1, 1 reaches... never 8, so every line (2 far closings)
    assert ev.counts == {"val_acc": 8, "val_acc_far": 2, "gen_acc": 8, "gen_acc_far": 2}
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
            for pos, o in scoring.dyck_closings(toks):
                right = int(scoring.restricted_argmax(logits[pos], close_K)) == DYCK_VOCAB.index[toks[pos]]
                if k < 2:
                    right_all.append(right)
                if pos - o >= 10:
                    right_far.append(right)
        assert both["val_acc"][i] == pytest.approx(np.mean(right_all))
        assert both["gen_acc"][i] == pytest.approx(np.mean(right_all))  # the test split is the same lines
        assert both["gen_acc_far"][i] == pytest.approx(np.mean(right_far))


def test_no_scorable_lines_gives_nan():
    """A QF split without `quest` lines yields NaN for its keys, without compiling anything."""
    vocab = words_vocab(QF_VAL)
    decl = [l for l in QF_VAL if "decl" in l]
    ev = E.make_evaluator(TINY, EvalConfig(), "question", vocab, {"val": encode_lines("question", "val", decl, vocab)})
    out = ev({"w": jnp.zeros((3, 1))}, 0)
    assert set(out) >= {"val_acc", "val_exact_match"} and all(
        np.isnan(v).all() and v.shape == (3,) for v in out.values()
    )


def test_batches_halve_until_the_evaluation_fits_memory(monkeypatch):
    """With little free memory the first call halves every group's batches down to 1 row; the scores do not change."""
    vocab = words_vocab(QF_GEN, QF_VAL)
    splits = {
        "val": encode_lines("question", "val", QF_VAL, vocab),
        "gen": encode_lines("question", "gen", QF_GEN, vocab),
    }
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


def test_width_groups_give_the_same_scores():
    """QF and TI scores do not depend on how the lines are grouped by width or how many rows a batch holds."""
    for task, gen, val in (("question", QF_GEN, QF_VAL), ("tense", TI_GEN, TI_VAL)):
        vocab = words_vocab(gen, val)
        splits = {"val": encode_lines(task, "val", val, vocab), "gen": encode_lines(task, "gen", gen, vocab)}
        cfg, params = tiny_members(vocab.size)
        one = E.make_evaluator(cfg, EvalConfig(batch_size=16, width_groups=1), task, vocab, splits)
        many = E.make_evaluator(cfg, EvalConfig(batch_size=2, width_groups=3), task, vocab, splits)
        assert all(len(p.groups) == 1 for p in one.parts.values()) and any(
            len(p.groups) > 1 for p in many.parts.values()
        )
        a, b = one(params, 0), many(params, 0)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(b[k], a[k], err_msg=f"{task} {k}")


def biased(params_S, bias: dict[int, float]):
    """The members with `bias` added to the output bias of those class ids: their argmaxes are known."""
    out_b = params_S["out_b"]
    for i, v in bias.items():
        out_b = out_b.at[:, i].add(v)
    return {**params_S, "out_b": out_b}


def test_qf_restricted_and_unrestricted_argmax_differ_where_they_should():
    """A model that always says 'the', and among the auxiliaries always 'does': the unrestricted argmax is
    never an auxiliary (accuracy 0), the restricted one is right exactly on the lines whose answer is 'does'."""
    vocab = words_vocab(QF_GEN, QF_VAL)
    splits = {
        "val": encode_lines("question", "val", QF_VAL, vocab),
        "gen": encode_lines("question", "gen", QF_GEN, vocab),
    }
    cfg, params = tiny_members(vocab.size)
    params = biased(params, {vocab.index["the"]: 100.0, vocab.index["does"]: 50.0})
    got = E.make_evaluator(cfg, EvalConfig(batch_size=3, exact_match=False), "question", vocab, splits)(params, 0)
    answers = {
        "val": [input_output(l)[1][0] for l in QF_VAL if "quest" in l],
        "gen": [input_output(l)[1][0] for l in QF_GEN],
    }
    for name, first_words in answers.items():
        np.testing.assert_array_equal(got[f"{name}_acc_unrestricted"], [0.0, 0.0])
        np.testing.assert_allclose(got[f"{name}_acc"], [np.mean([w == "does" for w in first_words])] * 2)
    assert 0 < got["gen_acc"][0] < 1


def test_dyck_all_and_far_closings_differ_where_they_should():
    """A model that always closes with 'a)': right on every 'a)' closing, so the all-closings and
    far-closings (>= 10 tokens from the opener) accuracies follow from the strings alone."""
    splits = {
        "val": encode_lines("dyck", "val", DYCK_LINES, DYCK_VOCAB),
        "test": encode_lines("dyck", "test", DYCK_LINES, DYCK_VOCAB),
    }
    cfg, params = tiny_members(DYCK_VOCAB.size)
    params = biased(params, {DYCK_VOCAB.index["a)"]: 100.0})
    got = E.make_evaluator(cfg, EvalConfig(batch_size=2, dyck_max_prefixes=None), "dyck", DYCK_VOCAB, splits)(params, 0)
    closings = []  # (token, distance) of every closing bracket, counted here by hand
    for line in DYCK_LINES:
        stack = []
        for i, tok in enumerate(line.split()):
            if tok.startswith("("):
                stack.append(i)
            else:
                closings.append((tok, i - stack.pop()))
    all_acc = np.mean([t == "a)" for t, _ in closings])
    far_acc = np.mean([t == "a)" for t, d in closings if d >= 10])
    assert all_acc != far_acc
    for key, want in (("val_acc", all_acc), ("gen_acc", all_acc), ("val_acc_far", far_acc), ("gen_acc_far", far_acc)):
        np.testing.assert_allclose(got[key], [want, want], err_msg=key)
