"""Probe: weight norms, attention sparsity, and probe_run end to end on a tiny fake run directory."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax import cli
from sgjax import config as C
from sgjax.analysis.probe import norms
from sgjax.analysis.probe import run as R
from sgjax.analysis.probe import sparsity as SP
from sgjax.core import model as M
from sgjax.errors import UserError
from sgjax.run import loop

CFG = C.ModelConfig(vocab_size=71, n_layers=2, d_model=32, n_heads=4, d_ff=64, dropout=0.0)
SOS = 70


@pytest.fixture(scope="module")
def params():
    return M.init_params(CFG, jax.random.PRNGKey(0))


def test_decoder_constant_matches_spec():
    assert norms.decoder_sq_norm(512, 2048) == pytest.approx(48_546, abs=1)
    # initial values: 6 layers × 5531 + decoder + embeddings (≈250) -> 286.3 total
    assert math.sqrt(6 * 5531 + norms.decoder_sq_norm() + 250) == pytest.approx(286.3, abs=0.1)


def test_weight_norms_of_a_known_tree():
    ones = lambda *s: jnp.ones((2,) + s)  # S = 2 members
    params_S = {"embed": ones(3, 4), "out_w": ones(4, 3), "out_b": ones(3), "layers": {"q": ones(2, 4, 4)}}
    params_S = jax.tree_util.tree_map(lambda x: x * jnp.array([1.0, 2.0]).reshape(2, *([1] * (x.ndim - 1))), params_S)
    mcfg = C.ModelConfig(n_layers=2, d_model=512, d_ff=2048)
    out = {k: np.asarray(v) for k, v in norms.weight_norms(params_S, mcfg).items()}
    sq = np.array([12 + 12 + 3 + 32, 4 * (12 + 12 + 3 + 32)], float)
    np.testing.assert_allclose(out["weight_norm"], np.sqrt(sq), rtol=1e-6)
    np.testing.assert_allclose(out["weight_norm_perL"], np.sqrt(sq) / 2, rtol=1e-6)
    np.testing.assert_allclose(out["weight_norm_persqrtL"], np.sqrt(sq) / math.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(out["weight_norm_noemb"], np.sqrt([32, 128]), rtol=1e-6)
    np.testing.assert_allclose(out["weight_norm_dec"], np.sqrt(sq + norms.decoder_sq_norm()), rtol=1e-6)
    np.testing.assert_allclose(
        out["weight_norm_noemb_dec_perL"], np.sqrt(np.array([32, 128]) + norms.decoder_sq_norm()) / 2, rtol=1e-6
    )
    assert len(out) == 12


def tokens(lengths, t=12):
    rng = np.random.default_rng(0)
    tok = np.zeros((len(lengths), t), np.int32)
    tok[:, 0] = SOS
    for r, n in enumerate(lengths):
        tok[r, 1 : n + 1] = rng.integers(1, 68, n)
    return jnp.asarray(tok)


@pytest.mark.parametrize("bug", [False, True])
def test_uniform_attention_sparsity(params, bug):
    p = dict(
        params,
        layers=dict(params["layers"], q=jnp.zeros_like(params["layers"]["q"]), k=jnp.zeros_like(params["layers"]["k"])),
    )
    lengths = [3, 7, 11]
    ent = {k: np.asarray(v) for k, v in SP.attention_entropies(CFG, p, tokens(lengths), bug=bug).items()}
    # uniform causal attention: query t (0..n) has entropy log(t+1)
    want = [sum(math.log(t + 1) for t in range(n + 1)) for n in lengths]
    np.testing.assert_allclose(ent["orig_B"], want, rtol=1e-5)
    np.testing.assert_allclose(ent["dist_count_B"], [n * 2 * 4 for n in lengths])
    np.testing.assert_allclose(ent["dist_sum_B"], [8 * w for w in want], rtol=1e-5)  # log(1) = 0 at SOS
    agg = SP.sparsity_from_sums(
        float(ent["orig_B"].sum()), 3, float(ent["dist_sum_B"].sum()), float(ent["dist_count_B"].sum())
    )
    assert agg["sparsity"] == pytest.approx(-np.mean(want), rel=1e-5)


def test_bug_attention_is_real_in_layer_one_only(params):
    tok = tokens([5, 9])
    real = np.asarray(M.forward(CFG, params, tok, return_internals=True)[1]["attn_LxBxHxTxT"])
    bug = np.asarray(SP.embedding_attention(CFG, params, tok))
    np.testing.assert_allclose(bug[0], real[0], atol=1e-5)
    assert not np.allclose(bug[1], real[1], atol=1e-3)


# ---------------------------------------------------------------- end to end


def fake_run(root, cfg: C.Config, steps):
    """A run dir under root: config.json + a checkpoint of freshly initialized members at each step (no training)."""
    from sgjax.run import checkpoint

    d = root / "run"
    d.mkdir()
    (d / "config.json").write_text(cfg.to_json())
    ck = checkpoint.RunCheckpoints(d)
    init = jax.jit(jax.vmap(lambda k: M.init_params(cfg.model, k)))
    for step in steps:
        params_S = init(jax.random.split(jax.random.PRNGKey(step), len(cfg.seeds)))
        ck.save_params(step, params_S, {"step": step, "seeds": list(cfg.seeds)})
    ck.wait()
    ck.close()
    return d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A fake QF run: two probe checkpoints of two tiny members."""
    root = tmp_path_factory.mktemp("probe")
    mp = pytest.MonkeyPatch()
    mp.setenv("SGJAX_CACHE", str(root / "cache"))  # generated data stays in the test's tmp dir
    cfg = C.Config(
        task="question",
        preset="smoke",
        seeds=(42, 52),
        model=CFG,
        data=C.DataConfig(train_size=300, val_size=10, gen_size=10, seed=0),
    )
    yield fake_run(root, cfg, (10, 20))
    mp.undo()


def test_probe_run_end_to_end_and_resume(run_dir):
    path = R.probe_run(run_dir, sample=12, batch_size=8, progress=False, sparsity_bug=True)
    recs = [json.loads(l) for l in path.read_text().splitlines()]
    assert [(r["step"], r["seed"]) for r in recs] == [(10, 42), (10, 52), (20, 42), (20, 52)]
    r = recs[0]
    for k in (
        "tscore",
        "tscore_expected",
        "tscore_sampled",
        "tparseval",
        "tparseval_noroot",
        "tparseval_rb",
        "sparsity",
        "sparsity_mean",
        "sparsity_bug",
        "weight_norm",
        "weight_norm_noemb_dec_persqrtL",
    ):
        assert np.isfinite(r[k]), k
    assert r["n_sentences"] == 12 and r["decoder"] == "greedy" and r["tscore"] == r["tscore_expected"]
    assert 0 < r["tparseval"] <= 1 and r["sparsity"] < 0 and 0.5 < r["tparseval_rb"] < 1
    assert recs[0]["weight_norm"] != recs[1]["weight_norm"]
    # resume: nothing to do; a torn last step is redone
    before = path.read_text()
    assert R.probe_run(run_dir, sample=12, batch_size=8, progress=False, sparsity_bug=True).read_text() == before
    lines = before.splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:20])
    R.probe_run(run_dir, sample=12, batch_size=8, progress=False, sparsity_bug=True)
    again = [json.loads(l) for l in path.read_text().splitlines()]
    assert [(x["step"], x["seed"]) for x in again] == [(10, 42), (10, 52), (20, 42), (20, 52)]
    assert again[3]["tscore"] == pytest.approx(recs[3]["tscore"], rel=1e-6)
    with pytest.raises(UserError, match="sample: 12 -> 20"):  # records of other options are not mixed in
        R.probe_run(run_dir, sample=20, batch_size=8, progress=False, sparsity_bug=True)
    assert (
        R.probe_run(run_dir, sample=12, batch_size=4, progress=False, sparsity_bug=True).read_text() == path.read_text()
    )


def test_probe_cli_and_errors(run_dir, tmp_path, capsys):
    assert cli.main(["probe", str(run_dir), "--steps", "20", "--sample", "12", "--sparsity-bug", "--quiet"]) == 0
    assert (
        cli.main(
            ["probe", str(run_dir), "--steps", "20", "--exact-tree", "--sample", "12", "--sparsity-bug", "--quiet"]
        )
        == 2
    )
    assert "other probe options (exact_tree: False -> True)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse: a usage line and one error line, no jax traceback
        cli.main(["probe", str(run_dir), "--matmul-precision", "foo"])
    assert exit_.value.code == 2 and "invalid choice: 'foo'" in capsys.readouterr().err
    with pytest.raises(UserError):
        R.parse_steps("30", [10, 20])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((run_dir / "config.json").read_text())
    with pytest.raises(UserError):
        R.probe_run(empty, progress=False)
    assert cli.main(["probe", str(empty), "--quiet"]) == 2


def test_probe_checkpoint_for_notebooks(run_dir):
    from sgjax.run import checkpoint

    cfg = checkpoint.load_config(run_dir)
    member = checkpoint.load_member(run_dir, 10, 42)
    words = "our walruses do accept the xylophones".split()
    out = R.probe_checkpoint(cfg, member, words)
    assert out["chart"].shape == (6, 6) and out["gold_tree"] == ((0, 1), (2, (3, (4, 5))))
    np.testing.assert_allclose(out["chart"][0], 1.0, atol=1e-6)  # spans from the first word: c = 1 (D22)
    assert sorted(_leaves(out["tree"])) == list(range(6)) and 0 <= out["tparseval"] <= 1


def _leaves(t):
    return [t] if isinstance(t, int) else [x for c in t for x in _leaves(c)]


def test_batches_shrink_and_widen_for_long_strings():
    from sgjax.data import vocab_for

    vocab = vocab_for("dyck")
    rng = np.random.default_rng(0)
    lengths = [6, 10, 40, 55, 90, 130, 260, 400, 700] + list(rng.integers(4, 60, size=60))
    sents = [["(a", "a)"] * (n // 2) for n in lengths]
    batches = R.make_batches(sents, vocab, batch_size=32)
    seen = sorted(int(i) for b in batches for i in b.index if i >= 0)
    assert seen == list(range(len(sents)))  # every string once
    for b in batches:
        rows, t = b.tokens_BxT.shape
        assert t % 8 == 0 and t >= b.lengths_B.max() + 1 and t <= 1.125 * (b.lengths_B.max() + 1) + 8
        assert rows == R.batch_rows(t, 32) and (rows == 1 or rows * t * t <= R.BATCH_POSITIONS)
    short = [b for b in batches if b.tokens_BxT.shape[1] <= 64]
    assert all(b.tokens_BxT.shape[0] == 32 for b in short)  # short strings batch as before
    assert [b.tokens_BxT.shape for b in batches if b.lengths_B.max() >= 400] == [(1, 416), (1, 704)]


def test_batch_plan_bounds_memory_and_keeps_short_batches_whole():
    cfg = C.ModelConfig(vocab_size=43, n_layers=6, d_model=512, n_heads=8, d_ff=2048)
    assert R.batch_plan(cfg, 10, 32, 56) == (None, False)  # the default Dyck probe: one vmapped program
    chunk, one_by_one = R.batch_plan(cfg, 10, 1, 704)
    assert one_by_one and 1 <= chunk < 352
    assert chunk * cfg.n_heads * 706**2 <= R.ATTENTION_SCORES


def test_members_one_by_one_equal_vmapped(params):
    params_S = jax.tree_util.tree_map(lambda *x: jnp.stack(x), params, M.init_params(CFG, jax.random.PRNGKey(1)))
    tokens = jnp.asarray([[SOS, 3, 4, 5, 6, 0, 0, 0], [SOS, 7, 8, 9, 10, 11, 12, 13]], jnp.int32)
    together = R.population_batch(CFG, False, params_S, tokens)
    in_turn = R.population_batch(CFG, False, params_S, tokens, 2, True)
    for k in together:
        np.testing.assert_allclose(np.asarray(in_turn[k]), np.asarray(together[k]), atol=2e-5, equal_nan=True)


@pytest.fixture(scope="module")
def dyck_run(tmp_path_factory):
    """A fake Dyck run: one checkpoint of one tiny member."""
    root = tmp_path_factory.mktemp("probe_dyck")
    mp = pytest.MonkeyPatch()
    mp.setenv("SGJAX_CACHE", str(root / "cache"))
    model = C.ModelConfig(vocab_size=43, n_layers=1, d_model=16, n_heads=2, d_ff=32, dropout=0.0)
    cfg = C.Config(
        task="dyck",
        preset="smoke",
        seeds=(42,),
        model=model,
        data=C.DataConfig(train_size=2000, val_size=50, gen_size=50, seed=0),
    )
    yield fake_run(root, cfg, (10,))
    mp.undo()


def test_dyck_probe_samples_the_chosen_split(dyck_run, capsys, monkeypatch):
    from sgjax.data import vocab_for
    from sgjax.run import checkpoint

    released = []
    monkeypatch.setattr(R.hostmem, "release_freed_memory", lambda: released.append(1) or True)

    cfg = checkpoint.load_config(dyck_run)
    splits = loop.load_data(cfg)
    val = R.sample_sentences(cfg, 500, splits=splits, dyck_split="val", dyck_max_tokens=50)
    assert val and all(len(w) < 50 for w in val) and {" ".join(w) for w in val} <= set(splits["val"].lines)
    train = R.sample_sentences(cfg, 40, splits=splits)  # the default: the original's, training strings
    assert len(train) == 40 and {" ".join(w) for w in train} <= set(splits["train"].lines)
    longest = max(len(l.split()) for l in splits["train"].lines)
    assert longest >= R.SPARSITY_MAX_TOKENS  # the split has strings the sparsity leaves out
    assert max(len(w) for w in R.sample_sentences(cfg, 2000, splits=splits)) == longest  # no cap by default
    short = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_train_len=30))
    assert max(len(w) for w in R.sample_sentences(short, 2000, splits=splits)) <= 30  # what the run trained on
    with pytest.raises(UserError, match="unknown Dyck split 'gen'"):
        R.sample_sentences(cfg, 10, splits=splits, dyck_split="gen")
    # the original's sample: train strings of every length; sparsity reads those under 200 tokens
    cap = 260
    path = R.probe_run(dyck_run, sample=6, sample_seed=5, dyck_split="train", dyck_max_tokens=cap, progress=False)
    (rec,) = [json.loads(l) for l in path.read_text().splitlines()]
    sample = R.sample_sentences(cfg, 6, 5, splits=splits, dyck_split="train", dyck_max_tokens=cap)
    n_short = sum(len(w) < R.SPARSITY_MAX_TOKENS for w in sample)
    assert 0 < n_short < 6 and max(len(w) for w in sample) < cap  # this seed's sample has one long string
    wide = sum(b.tokens_BxT.shape[1] >= R.RELEASE_WIDTH for b in R.make_batches(sample, vocab_for("dyck"), 32))
    assert len(released) == wide >= 1  # each long batch hands its freed host memory back
    assert rec["n_sentences"] == 6 and rec["n_sentences_sparsity"] == n_short and rec["tparseval"] is None
    assert np.isfinite(rec["tscore"]) and rec["sparsity"] < 0
    assert json.loads((dyck_run / R.OPTIONS_FILE).read_text())["dyck_split"] == "train"
    assert cli.main(["probe", str(dyck_run), "--quiet"]) == 2  # other options than the file's records
    assert "dyck_max_tokens: 260 -> None" in capsys.readouterr().err


def test_probe_cli_defaults_are_the_options_defaults():
    import argparse

    from sgjax.analysis.probe import cli as probe_cli

    p = argparse.ArgumentParser()
    probe_cli.add_arguments(p)
    args = p.parse_args(["run"])
    opts = R.ProbeOptions()
    assert (args.dyck_split, args.dyck_max_tokens, args.batch_size) == (
        opts.dyck_split,
        opts.dyck_max_tokens,
        opts.batch_size,
    )
    assert p.parse_args(["run", "--dyck-max-tokens", "none"]).dyck_max_tokens is None
    with pytest.raises(SystemExit):
        p.parse_args(["run", "--dyck-max-tokens", "0"])


def test_options_files_from_before_a_new_option_still_match(tmp_path):
    before = R.ProbeOptions(dyck_split="val", dyck_max_tokens=50)  # the defaults until dyck_split existed
    old = R.result_options(before, "dyck")
    del old["dyck_split"]
    (tmp_path / R.OPTIONS_FILE).write_text(json.dumps(old))
    R.check_options(tmp_path, R.result_options(before, "dyck"), has_records=True)  # read as val: it matches
    with pytest.raises(UserError, match="dyck_split: 'val' -> 'train'"):
        R.check_options(tmp_path, R.result_options(R.ProbeOptions(), "dyck"), has_records=True)
    # QF/TI: the Dyck options change nothing, so a file made with other ones still matches today's defaults
    (tmp_path / R.OPTIONS_FILE).write_text(json.dumps(R.result_options(before, "dyck") | {"sample": 10_000}))
    R.check_options(tmp_path, R.result_options(R.ProbeOptions(), "question"), has_records=True)
    assert "dyck_split" not in R.result_options(R.ProbeOptions(), "tense")


def spans(tree) -> set:
    """(first, last) word of every constituent of two or more words, the root included."""
    out = set()

    def walk(t):
        if isinstance(t, int):
            return t, t
        (a, _), (_, b) = walk(t[0]), walk(t[1])
        out.add((a, b))
        return a, b

    walk(tree)
    return out


def span_f1(pred, gold, root: bool) -> float:
    """Micro-averaged span F1, written here from its definition."""
    hit = n_pred = n_gold = 0
    for p, g in zip(pred, gold):
        ps, gs = spans(p), spans(g)
        if not root:
            whole = max(gs, key=lambda s: s[1] - s[0])
            ps, gs = ps - {whole}, gs - {whole}
        hit, n_pred, n_gold = hit + len(ps & gs), n_pred + len(ps), n_gold + len(gs)
    prec, rec = hit / n_pred, hit / n_gold
    return 2 * prec * rec / (prec + rec)


def _rb(a: int, n: int):
    """The right-branching tree over words a..n-1."""
    return a if a == n - 1 else (a, _rb(a + 1, n))


def test_probe_scores_each_tree_against_its_own_gold_parse(params, monkeypatch):
    """Trees decoded right-branching (whatever the chart) must meet their own sentences' parses, root included."""
    sentences = [
        s.split()
        for s in (
            "my raven that doesn't sleep does change",
            "the newt does swim",
            "some ravens near the yak don't admire my zebra",
            "the yaks do admire her newt",
            "our quails who don't amuse the newt do read",
        )
    ]
    gold = R.gold_trees("question", sentences)
    assert len({str(g) for g in gold}) == len(gold)  # every parse differs: a pairing slip shows

    def rb_decode(chart, lengths, exact=False, rng=None):
        n = len(lengths)
        return [_rb(0, int(k)) for k in lengths], np.zeros(n), np.zeros(n)

    monkeypatch.setattr(R.TP, "decode", rb_decode)
    from sgjax.data import vocab_for

    batches = R.make_batches(sentences, vocab_for("question"), batch_size=2)  # length-sorted: indices map back
    cfg = C.Config(task="question", seeds=(42,), model=CFG)
    params_S = jax.tree_util.tree_map(lambda x: x[None], params)
    (rec,) = R.probe_population(cfg, params_S, (42,), batches, gold, R.ProbeOptions())
    rb = [_rb(0, len(s)) for s in sentences]
    assert rec["tparseval"] == pytest.approx(span_f1(rb, gold, root=True))
    assert rec["tparseval_noroot"] == pytest.approx(span_f1(rb, gold, root=False))
    assert rec["tparseval"] > rec["tparseval_noroot"] + 0.05


def test_one_call_api_on_a_run(run_dir):
    """sgjax.metrics / evaluate_checkpoint / generate / tree on a run's numpy checkpoints (decoding crashed on them)."""
    import sgjax
    from sgjax.data import vocab_for
    from sgjax.evaluation import decode, evaluate
    from sgjax.run import checkpoint

    scores = sgjax.evaluate_checkpoint(run_dir, 10)
    assert set(scores) == {42, 52} and {"val_acc", "gen_acc"} <= set(scores[42])
    cfg = checkpoint.load_config(run_dir)
    splits = loop.load_data(cfg)
    seeds, params_S = checkpoint.load_params(run_dir, 10)
    direct = evaluate.make_evaluator(
        cfg.model,
        cfg.eval,
        "question",
        vocab_for("question"),
        {"val": splits["val"], "gen": splits["gen"]},
        member_seeds=seeds,
    )(params_S, 10)
    assert scores[52]["gen_acc"] == pytest.approx(float(direct["gen_acc"][1]))
    out = sgjax.generate(run_dir, 10, 42, "my newt does swim")
    vocab = vocab_for("question")
    prefix = [vocab.sos] + vocab.encode("my newt does swim . quest".split())
    gen, n = decode.greedy_decode(
        cfg.model,
        jax.tree_util.tree_map(jnp.asarray, checkpoint.load_member(run_dir, 10, 42)),
        np.asarray([prefix]),
        np.asarray([len(prefix)]),
        max_steps=50,
        eos_id=vocab.eos,
    )
    assert out == " ".join(vocab.words[int(t)] for t in np.asarray(gen)[0, : int(n[0])])
    t = sgjax.tree(run_dir, 10, 42, "my newt does swim")
    assert t["words"] == ["my", "newt", "does", "swim"] and sorted(_leaves(t["tree"])) == [0, 1, 2, 3]
    assert R.probe_checkpoint(cfg, checkpoint.load_member(run_dir, 10, 42), "my newt does swim")["words"] == t["words"]
    with pytest.raises(UserError):
        sgjax.metrics(run_dir)  # a fake run without training has no metrics.jsonl: one line, not a traceback


def test_probe_records_reach_the_runs_tensorboard(tmp_path, monkeypatch):
    """A run trained with train.tensorboard gets its probe values too, under probe/ tags, one directory per seed."""
    import sys
    import types

    calls = []

    class Writer:
        def __init__(self, logdir):
            calls.append(logdir)

        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=Writer))
    monkeypatch.setenv("SGJAX_CACHE", str(tmp_path / "cache"))
    cfg = C.Config(
        task="question",
        preset="smoke",
        seeds=(42, 52),
        model=CFG,
        data=C.DataConfig(train_size=300, val_size=10, gen_size=10, seed=0),
        train=C.TrainConfig(tensorboard=True),
    )
    run = fake_run(tmp_path, cfg, (10,))
    R.probe_run(run, sample=4, progress=False)
    assert str(run / "tb" / "seed_52") in calls and {("probe/tscore", 10), ("probe/weight_norm", 10)} <= set(calls)
