"""Probe: weight norms, attention sparsity, and probe_run end to end on a tiny fake run directory."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax import cli, config as C, model as M
from sgjax.errors import UserError
from sgjax.probe import norms, sparsity as SP
from sgjax.probe import run as R

CFG = C.ModelConfig(vocab_size=71, n_layers=2, d_model=32, n_heads=4, d_ff=64, dropout=0.0)
SOS = 70


@pytest.fixture(scope="module")
def params():
    return M.init_params(CFG, jax.random.PRNGKey(0))


def test_decoder_constant_matches_spec():
    assert norms.decoder_sq_norm(512, 2048) == pytest.approx(48_546, abs=1)
    # SPEC §5.1 initial values: 6 layers × 5531 + decoder + embeddings (≈250) -> 286.3 total
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
    np.testing.assert_allclose(out["weight_norm_noemb_dec_perL"], np.sqrt(np.array([32, 128]) + norms.decoder_sq_norm()) / 2, rtol=1e-6)
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
    p = dict(params, layers=dict(params["layers"], q=jnp.zeros_like(params["layers"]["q"]), k=jnp.zeros_like(params["layers"]["k"])))
    lengths = [3, 7, 11]
    ent = {k: np.asarray(v) for k, v in SP.attention_entropies(CFG, p, tokens(lengths), bug=bug).items()}
    # uniform causal attention: query t (0..n) has entropy log(t+1)
    want = [sum(math.log(t + 1) for t in range(n + 1)) for n in lengths]
    np.testing.assert_allclose(ent["orig_B"], want, rtol=1e-5)
    np.testing.assert_allclose(ent["dist_count_B"], [n * 2 * 4 for n in lengths])
    np.testing.assert_allclose(ent["dist_sum_B"], [8 * w for w in want], rtol=1e-5)  # log(1) = 0 at SOS
    agg = SP.sparsity_from_sums(float(ent["orig_B"].sum()), 3, float(ent["dist_sum_B"].sum()), float(ent["dist_count_B"].sum()))
    assert agg["sparsity"] == pytest.approx(-np.mean(want), rel=1e-5)


def test_bug_attention_is_real_in_layer_one_only(params):
    tok = tokens([5, 9])
    real = np.asarray(M.forward(CFG, params, tok, return_internals=True)[1]["attn_LxBxHxTxT"])
    bug = np.asarray(SP.embedding_attention(CFG, params, tok))
    np.testing.assert_allclose(bug[0], real[0], atol=1e-5)
    assert not np.allclose(bug[1], real[1], atol=1e-3)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A fake run: config.json + two probe checkpoints of two tiny members (no training)."""
    from sgjax import checkpoint

    root = tmp_path_factory.mktemp("probe")
    mp = pytest.MonkeyPatch()
    mp.setenv("SGJAX_CACHE", str(root / "cache"))  # generated data stays in the test's tmp dir
    cfg = C.Config(task="question", preset="smoke", seeds=(42, 52), model=CFG,
                   data=C.DataConfig(train_size=300, val_size=10, gen_size=10, seed=0))
    d = root / "run"
    d.mkdir()
    (d / "config.json").write_text(cfg.to_json())
    ck = checkpoint.RunCheckpoints(d)
    init = jax.jit(jax.vmap(lambda k: M.init_params(CFG, k)))
    for step in (10, 20):
        params_S = init(jax.random.split(jax.random.PRNGKey(step), 2))
        ck.save_params(step, params_S, {"step": step, "seeds": [42, 52]})
    ck.wait()
    ck.close()
    yield d
    mp.undo()


def test_probe_run_end_to_end_and_resume(run_dir):
    path = R.probe_run(run_dir, sample=12, batch_size=8, progress=False, sparsity_bug=True)
    recs = [json.loads(l) for l in path.read_text().splitlines()]
    assert [(r["step"], r["seed"]) for r in recs] == [(10, 42), (10, 52), (20, 42), (20, 52)]
    r = recs[0]
    for k in ("tscore", "tscore_expected", "tscore_sampled", "tparseval", "tparseval_noroot", "tparseval_rb",
              "sparsity", "sparsity_mean", "sparsity_bug", "weight_norm", "weight_norm_noemb_dec_persqrtL"):
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
    assert R.probe_run(run_dir, sample=12, batch_size=4, progress=False, sparsity_bug=True).read_text() == path.read_text()


def test_probe_cli_and_errors(run_dir, tmp_path, capsys):
    assert cli.main(["probe", str(run_dir), "--steps", "20", "--sample", "12", "--sparsity-bug", "--quiet"]) == 0
    assert cli.main(["probe", str(run_dir), "--steps", "20", "--exact-tree", "--sample", "12", "--sparsity-bug", "--quiet"]) == 2
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
    from sgjax import checkpoint

    cfg = checkpoint.load_config(run_dir)
    member = checkpoint.load_member(run_dir, 10, 42)
    words = "our walruses do accept the xylophones".split()
    out = R.probe_checkpoint(cfg, member, words)
    assert out["chart"].shape == (6, 6) and out["gold_tree"] == ((0, 1), (2, (3, (4, 5))))
    np.testing.assert_allclose(out["chart"][0], 1.0, atol=1e-6)  # spans from the first word: c = 1 (D22)
    assert sorted(_leaves(out["tree"])) == list(range(6)) and 0 <= out["tparseval"] <= 1


def _leaves(t):
    return [t] if isinstance(t, int) else [x for c in t for x in _leaves(c)]
