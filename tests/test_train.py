"""The engine: schedule, batches, vmap ≡ alone, chunk ≡ steps, resume ≡ uninterrupted, NaN isolation."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax import config as C
from sgjax.core import batching
from sgjax.core import engine as train
from sgjax.data.split import lm_flat
from sgjax.errors import UserError
from sgjax.run import checkpoint, jsonl, loop
from tests.conftest import tiny_config


def test_lr_schedule_matches_original():
    tc = C.TrainConfig()
    lr = lambda s: float(train.lr_at(s, tc)) * tc.lr
    assert lr(0) == 0.0  # HF LambdaLR: the first update uses lr 0
    assert lr(5_000) == pytest.approx(0.5e-4)
    assert lr(10_000) == pytest.approx(1e-4)
    assert lr(300_000) == pytest.approx(1e-4 * (2e6 - 3e5) / (2e6 - 1e4))  # 0.854e-4
    assert lr(300_000) == pytest.approx(0.854e-4, abs=1e-7)
    assert lr(2_000_000) == 0.0


def test_batches_reproducible_and_differ_across_seeds():
    a = batching.batch_indices(42, 17, 1000, 8)
    np.testing.assert_array_equal(a, batching.batch_indices(42, 17, 1000, 8))
    assert not np.array_equal(a, batching.batch_indices(52, 17, 1000, 8))
    # One epoch visits every line once (the incomplete last batch is dropped).
    epoch = np.concatenate([batching.batch_indices(42, s, 1000, 8) for s in range(125)])
    assert sorted(epoch.tolist()) == list(range(1000))
    assert not np.array_equal(batching.batch_indices(42, 0, 1000, 8), batching.batch_indices(42, 125, 1000, 8))


def test_packed_batch_equals_rows(toy_corpus):
    data = _data(toy_corpus)
    arrays = data.device_arrays()
    idx = np.array([3, 7, 11, 50], np.int32)
    p = batching.packed_length(data.seq_len_N, idx[None, None])
    inputs, targets, positions, allowed = batching.packed_batch(*arrays, jnp.asarray(idx), p)
    assert int((targets != 0).sum()) == int((data.seq_len_N[idx] - 1).sum())
    cfg = tiny_config()
    params = train.init_member(cfg, 0)["params"]
    rows = batching.rows_batch(*arrays, jnp.asarray(idx), data.row_width)
    vocab, split = toy_corpus
    np.testing.assert_array_equal(
        rows[0][0, : split.lengths_N[3] + 1], [vocab.sos] + split.ids_NxT[3, : split.lengths_N[3]].tolist()
    )
    l_rows = train.loss_fn(params, cfg, *rows, None)
    l_packed = train.loss_fn(params, cfg, inputs, targets, positions, allowed, None)
    np.testing.assert_allclose(l_rows, l_packed, rtol=1e-5)


def test_unpadded_batch_has_the_rows_loss_and_gradient(toy_corpus):
    """Unpadded: packed tokens, attention on the sequences as rows; the gradient flows back through both gathers."""
    data = _data(toy_corpus, "unpadded")
    arrays = data.device_arrays()
    idx = np.array([3, 7, 11, 50, 2, 9, 4, 1], np.int32)
    shape = data.width_for(idx[None, None])
    assert shape[1] == data.row_width - 1 and shape[0] >= int((data.seq_len_N[idx] - 1).sum())
    batch = batching.unpadded_batch(*arrays, jnp.asarray(idx), shape)
    assert int((batch[1] != 0).sum()) == int((data.seq_len_N[idx] - 1).sum())
    rows = batching.rows_batch(*arrays, jnp.asarray(idx), data.row_width)
    cfg = C.override(tiny_config(), ["model.dropout=0.0"])
    params = train.init_member(cfg, 0)["params"]
    grad = lambda b: jax.jit(jax.value_and_grad(train.loss_fn), static_argnums=1)(params, cfg, *b, None)
    (l_rows, g_rows), (l_unpadded, g_unpadded) = grad(rows), grad(batch)
    np.testing.assert_allclose(l_unpadded, l_rows, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g_rows), jax.tree_util.tree_leaves(g_unpadded)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_unpadded_loss_does_not_depend_on_the_packed_length(toy_corpus):
    """With dropout on, a longer packed row draws the same masks for every real token (batching.unpadded_length)."""
    data = _data(toy_corpus, "unpadded")
    arrays = data.device_arrays()
    idx = jnp.asarray([3, 7, 11, 50, 2, 9, 4, 1], jnp.int32)
    p, t = data.width_for(np.asarray(idx)[None, None])
    cfg = tiny_config()
    params = train.init_member(cfg, 0)["params"]
    key = jax.random.key(3)
    loss_fn = jax.jit(train.loss_fn, static_argnums=1)
    loss = lambda width, k: loss_fn(params, cfg, *batching.unpadded_batch(*arrays, idx, (width, t)), k)
    np.testing.assert_allclose(loss(p + 48, key), loss(p, key), rtol=1e-6)
    assert abs(float(loss(p, key)) - float(loss(p, None))) > 1e-4  # dropout is on


def test_rare_short_calls_run_at_the_length_floor(toy_corpus):
    """batching.length_bounds' floor: at most 1% of a first epoch's calls are shorter; width_for pads those up
    to it (packed and unpadded); make_train_data sets it for both layouts; a longer run keeps it."""
    seq_len_N = np.random.default_rng(0).integers(4, 40, 8000).astype(np.int32)
    seeds = (42,)  # one member: its batches' lengths spread wider than a population's longest
    for packed, k in ((True, 1), (False, 1)):
        floor = batching.length_bounds(seq_len_N, seeds, 1000, k, 8, packed)[0]
        assert (
            batching.length_bounds(seq_len_N, seeds, 5000, k, 8, packed)[0] == floor
        )  # an extended run keeps its floor
        length = batching.packed_length if packed else batching.unpadded_length
        epoch = [length(seq_len_N, batching.chunk_indices(seeds, s, k, 8000, 8)) for s in range(0, 1000, k)]
        assert min(epoch) < floor <= np.median(epoch) and floor in epoch  # a rung the run compiles anyway
        assert np.mean(np.asarray(epoch) < floor) <= 0.012
    seeds3 = (42, 52, 62)  # member groups: the floor of one member's calls, below the population's
    floor3, _, length_C = batching.length_bounds(seq_len_N, seeds3, 1000, 1, 8, True, groups=3)
    assert floor3 < batching.length_bounds(seq_len_N, seeds3, 1000, 1, 8, True)[0] and len(length_C) == 3 * 1000
    short_B = np.argsort(seq_len_N)[:8].astype(np.int32)[None, None]  # the 8 shortest lines: far under the floor
    for layout in ("packed", "unpadded"):
        data = train.TrainData(np.zeros(1, np.int32), np.zeros(8000, np.int32), seq_len_N, layout, min_length=160)
        width = data.width_for(short_B)
        assert (width if layout == "packed" else width[0]) == 160
    vocab, split = toy_corpus
    for layout in ("packed", "unpadded"):
        c = C.override(tiny_config(), [f"data.layout={layout}"])
        data = loop.make_train_data(c, split, vocab)
        k = 1 if layout == "packed" else c.train.chunk_steps
        floor = batching.length_bounds(
            data.seq_len_N, c.seeds, c.train.steps, k, c.train.batch_size, layout == "packed"
        )[0]
        assert data.min_length == floor > 0


def test_rare_long_calls_run_at_the_runs_longest(toy_corpus):
    """batching.length_bounds' tail: calls above the 99.5% quantile of a whole run's lengths run at its longest,
    so its rarest long rungs compile one program; width_for applies it; None when nothing would merge."""
    seq_len_N = (np.random.default_rng(0).pareto(2.0, 8000) * 12 + 4).clip(max=300).astype(np.int32)  # Dyck-like tail
    seeds, steps = (42,), 3000
    floor, (above, longest), merged_C = batching.length_bounds(seq_len_N, seeds, steps, 1, 8, True)
    lengths_C = batching.call_lengths(seq_len_N, seeds, steps, 1, 8, True, floor)
    assert longest == lengths_C.max() and np.mean(lengths_C > above) <= 0.005
    np.testing.assert_array_equal(
        merged_C, batching.call_lengths(seq_len_N, seeds, steps, 1, 8, True, floor, (above, longest))
    )
    assert set(merged_C[lengths_C > above]) == {longest} and np.array_equal(
        merged_C[lengths_C <= above], lengths_C[lengths_C <= above]
    )
    assert len(np.unique(merged_C)) < len(np.unique(lengths_C)) - 1  # at least two programs fewer
    long_B = np.argsort(seq_len_N)[-8:].astype(np.int32)[None, None]  # the 8 longest lines: beyond any tail
    data = train.TrainData(np.zeros(1, np.int32), np.zeros(8000, np.int32), seq_len_N, "packed", tail=(above, 10_000))
    assert data.width_for(long_B) == 10_000
    assert (
        batching.length_bounds(np.full(800, 9, np.int32), seeds, 500, 1, 8, True)[1] is None
    )  # one length: nothing to merge


def test_regather_gradient_is_the_gather_transpose():
    """ops.regather's gradient (a gather by the inverse map) equals autodiff's scatter-add of the plain gather."""
    from sgjax.core.ops import regather

    x_NxD = jax.random.normal(jax.random.key(0), (6, 3))
    src_M = jnp.array([4, 0, 6, 2, 6])  # 6 is out of range: a zero row
    inv_N = jnp.array([1, 5, 3, 5, 0, 5])  # where each x row went; 5 (out of range): nowhere
    g_MxD = jax.random.normal(jax.random.key(1), (5, 3))
    plain = lambda x: jnp.take(x, src_M, axis=0, mode="fill", fill_value=0)
    np.testing.assert_array_equal(regather(x_NxD, src_M, inv_N), plain(x_NxD))
    want = jax.vjp(plain, x_NxD)[1](g_MxD)[0]
    got = jax.vjp(lambda x: regather(x, src_M, inv_N), x_NxD)[1](g_MxD)[0]
    np.testing.assert_allclose(got, want)


def test_data_layouts_train_alike(toy_corpus):
    """data.layout=auto trains QF/TI unpadded; rows, packed and unpadded take the same steps (dropout off)."""
    vocab, split = toy_corpus
    cfg = C.override(
        tiny_config(lr=1e-3), ["model.dropout=0.0"]
    )  # at lr 1 the runs diverged and parted by chaos, not layout
    loss = {}
    for layout in ("auto", "rows", "packed"):
        c = C.override(cfg, [f"data.layout={layout}"])
        data = loop.make_train_data(c, split, vocab)
        assert data.layout == ("unpadded" if layout == "auto" else layout)
        _, m = _run_steps(c, data, c.seeds, c.member_lrs, 10, 6, train.init_population(c))
        loss[layout] = np.asarray(m["loss"])
    for layout in ("auto", "packed"):  # step k's loss sees updates 1..k-1
        np.testing.assert_allclose(loss[layout], loss["rows"], rtol=1e-5, err_msg=layout)
    with pytest.raises(C.ConfigError, match="data.layout"):
        C.validate(C.override(cfg, ["data.layout=sorted"]))


def _run_steps(cfg, data, seeds, lrs, step0, k, state):
    idx = batching.chunk_indices(seeds, step0, k, data.n, cfg.train.batch_size)
    fn = train.make_chunk(cfg, data.layout, data.width_for(idx))
    return fn(
        state,
        jnp.asarray(seeds, jnp.int32),
        jnp.asarray(lrs, jnp.float32),
        jnp.asarray(idx),
        step0,
        *data.device_arrays(),
    )


def _data(toy_corpus, layout="rows"):
    vocab, split = toy_corpus
    flat, starts, seq_len = lm_flat(split, vocab)
    return train.TrainData(flat, starts.astype(np.int32), seq_len.astype(np.int32), layout)


@pytest.mark.parametrize("layout", ["rows", "packed", "unpadded"])
def test_vmapped_member_equals_member_alone(toy_corpus, layout):
    """Dropout on: packed and unpadded rows are as long as the population's longest batch, and the
    masks must not care.
    """
    cfg = dataclasses.replace(tiny_config(), seeds=(42, 52, 62))
    data = _data(toy_corpus, layout)
    lrs = [1e-3] * 3
    state3, _ = _run_steps(cfg, data, cfg.seeds, lrs, 0, 6, train.init_population(cfg))
    alone_cfg = dataclasses.replace(cfg, seeds=(52,))
    state1, _ = _run_steps(alone_cfg, data, (52,), lrs[:1], 0, 6, train.init_population(alone_cfg))
    for a, b in zip(jax.tree_util.tree_leaves(state3["params"]), jax.tree_util.tree_leaves(state1["params"])):
        np.testing.assert_allclose(a[1], b[0], atol=1e-5)


def test_chunk_of_k_equals_k_single_steps(toy_corpus):
    cfg = tiny_config()
    data = _data(toy_corpus)
    lrs = [1e-3, 1e-3]
    big, m = _run_steps(cfg, data, cfg.seeds, lrs, 0, 6, train.init_population(cfg))
    small = train.init_population(cfg)
    losses = []
    for s in range(6):
        small, ms = _run_steps(cfg, data, cfg.seeds, lrs, s, 1, small)
        losses.append(np.asarray(ms["loss"])[:, 0])
    np.testing.assert_allclose(np.asarray(m["loss"]), np.stack(losses, 1), rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(big), jax.tree_util.tree_leaves(small)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_per_member_learning_rates(toy_corpus):
    cfg = dataclasses.replace(tiny_config(), seeds=(42, 43), lrs=(1e-3, 1e-2))
    data = _data(toy_corpus)
    _, m = _run_steps(cfg, data, cfg.seeds, cfg.member_lrs, 3, 1, train.init_population(cfg))
    lr = np.asarray(m["lr"])[:, 0]
    np.testing.assert_allclose(lr, np.array([1e-3, 1e-2]) * 3 / 5, rtol=1e-5)


def test_nonfinite_member_frozen_others_untouched(toy_corpus):
    cfg = dataclasses.replace(tiny_config(), seeds=(42, 52, 62))
    data = _data(toy_corpus)
    state = train.init_population(cfg)
    clean, _ = _run_steps(cfg, data, cfg.seeds, [1e-3] * 3, 0, 4, jax.tree_util.tree_map(jnp.array, state))
    poisoned = jax.tree_util.tree_map(jnp.array, state)
    poisoned["params"]["out_b"] = poisoned["params"]["out_b"].at[1, 0].set(jnp.nan)
    before = np.asarray(poisoned["params"]["embed"][1])
    out, m = _run_steps(cfg, data, cfg.seeds, [1e-3] * 3, 0, 4, poisoned)
    assert np.asarray(out["frozen"]).tolist() == [False, True, False]
    np.testing.assert_array_equal(np.asarray(out["params"]["embed"][1]), before)
    for a, b in zip(jax.tree_util.tree_leaves(clean["params"]), jax.tree_util.tree_leaves(out["params"])):
        np.testing.assert_array_equal(np.asarray(a)[[0, 2]], np.asarray(b)[[0, 2]])


def _final_params(run_dir, step):
    seeds, params = checkpoint.load_params(run_dir, step)
    return params


@pytest.mark.parametrize("overrides", [[], ["data.layout=packed", "train.member_groups=2", "train.group_by=length"]])
def test_resume_is_bitwise_identical(tmp_path, toy_corpus, overrides):
    """An interrupted run resumes to the same bits; also with each call's members gathered from one state
    (group_by=length).
    """
    cfg = C.override(tiny_config(steps=20), overrides)
    loop.run(cfg, tmp_path / "full", progress=False, evaluator=None)
    loop.run(cfg, tmp_path / "cut", progress=False, evaluator=None, stop_at=10)
    assert checkpoint.list_steps(tmp_path / "cut") == [10]
    loop.run(cfg, tmp_path / "cut", progress=False, evaluator=None)
    full, cut = _final_params(tmp_path / "full", 20), _final_params(tmp_path / "cut", 20)
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(cut)):
        np.testing.assert_array_equal(a, b)
    recs = [json.loads(l) for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["seed"]) for r in recs] == [(s, seed) for s in (5, 10, 15, 20) for seed in (42, 52)]
    full_recs = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert recs == full_recs


def test_changed_config_refused_on_resume(tmp_path, toy_corpus):
    cfg = tiny_config(steps=10)
    loop.run(cfg, tmp_path / "r", progress=False, evaluator=None)
    with pytest.raises(UserError, match="train.lr"):
        loop.run(
            dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=5e-4)),
            tmp_path / "r",
            progress=False,
            evaluator=None,
        )
    # More steps is a continuation, not a change.
    loop.run(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=20)),
        tmp_path / "r",
        progress=False,
        evaluator=None,
    )
    assert checkpoint.list_steps(tmp_path / "r") == [10, 20]


def test_one_member_loads_with_numpy_alone(tmp_path, toy_corpus):
    """seed_52.npz opens with numpy alone and holds seed 52: the weights of seed 52 trained by itself."""
    cfg = tiny_config(steps=10)
    loop.run(cfg, tmp_path / "r", progress=False, evaluator=None)
    loop.run(dataclasses.replace(cfg, seeds=(52,)), tmp_path / "alone", progress=False, evaluator=None)
    path = tmp_path / "r" / "checkpoints" / "10" / "params" / "seed_52.npz"
    with np.load(path) as z:
        q = z["layers/q"]
    seeds, params = checkpoint.load_params(tmp_path / "r", 10)
    assert seeds == [42, 52]
    np.testing.assert_array_equal(q, params["layers"]["q"][1])
    with np.load(tmp_path / "alone" / "checkpoints" / "10" / "params" / "seed_52.npz") as z:
        np.testing.assert_allclose(q, z["layers/q"], atol=1e-5)


def test_lrs_pair_with_seeds_or_cross_them():
    """--lrs pairs one lr with each seed; --cross trains every seed at every lr, the j-th lr as seed s + 1000 j."""
    import argparse

    from sgjax import train_cli

    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    parse = lambda *a: train_cli.config_from_args(p.parse_args(["--task", "question", "--out", "x", *a]), 2)  # noqa: E731
    crossed = parse("--seeds", "42,52", "--lrs", "1e-4,5e-5", "--cross")
    assert crossed.seeds == (42, 1042, 52, 1052) and crossed.member_lrs == (1e-4, 5e-5, 1e-4, 5e-5)
    paired = parse("--seeds", "42,52", "--lrs", "1e-4,5e-5")
    assert paired.seeds == (42, 52) and paired.member_lrs == (1e-4, 5e-5)
    plain = parse("--num-seeds", "3")
    assert plain.seeds == (42, 52, 62) and plain.member_lrs == (plain.train.lr,) * 3
    with pytest.raises(C.ConfigError, match="one learning rate per seed"):
        parse("--seeds", "42,52", "--lrs", "1e-4")


def test_tensorboard_scalars_and_only_the_last_checkpoint(tmp_path, toy_corpus, monkeypatch):
    """train.tensorboard writes each seed's scalars to its own directory under one tag per metric, so the seeds
    overlay (or is a clear error without tensorboardX); a logging hook gets the same records; W&B logs one run
    per seed, offline by default; train.keep_checkpoints=false keeps only the latest probe checkpoint."""
    import sys
    import types

    calls = []

    class Writer:  # tensorboardX's SummaryWriter, as far as sgjax uses it
        def __init__(self, logdir):
            calls.append(("logdir", logdir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def flush(self):
            pass

        def close(self):
            calls.append("closed")

    class Run:  # a wandb run, as far as sgjax uses it
        def __init__(self, **kw):
            calls.append(("wandb", kw["name"], kw["mode"]))

        def log(self, scalars, step):
            calls.extend((f"wandb {k}", step) for k in scalars)

        def finish(self):
            calls.append("finished")

    monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=Writer))
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kw: Run(**kw)))
    cfg = C.override(
        tiny_config(steps=30), ["train.tensorboard=true", "train.keep_checkpoints=false", "train.wandb=offline"]
    )
    hooked = []
    run = loop.run(cfg, tmp_path / "r", progress=False, evaluator=None, loggers=[hooked.extend])
    assert {("logdir", str(run / "tb" / "seed_42")), ("logdir", str(run / "tb" / "seed_52"))} <= set(calls)
    assert {("train_loss", 5), ("grad_norm", 30)} <= set(calls)  # one tag for all seeds: TensorBoard overlays them
    assert ("wandb", "r-seed42", "offline") in calls and ("wandb train_loss", 30) in calls
    assert calls.count("closed") == 2 and calls.count("finished") == 2
    assert [(r["step"], r["seed"]) for r in hooked][:2] == [(5, 42), (5, 52)] and len(hooked) == 12
    assert checkpoint.list_steps(run) == [30]
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # not installed
    with pytest.raises(UserError, match="pip install 'sgjax\\[tensorboard\\]'"):
        loop.run(cfg, tmp_path / "r2", progress=False, evaluator=None)


def test_a_max_len_shorter_than_the_data_is_refused(tmp_path, toy_corpus):
    """Positions past model.max_len would be clamped silently; the toy corpus's longest line has 15 words."""
    with pytest.raises(C.ConfigError, match="model.max_len 16 is shorter than the 17 positions"):  # SOS, 15, EOS
        loop.run(
            C.override(tiny_config(steps=10), ["model.max_len=16"]), tmp_path / "r", progress=False, evaluator=None
        )
    loop.run(C.override(tiny_config(steps=2), ["model.max_len=17"]), tmp_path / "ok", progress=False, evaluator=None)


def test_member_groups_train_as_one_population_with_less_padding(tmp_path, toy_corpus):
    """train.member_groups: each group's calls run at its own width (fewer padded positions), and every
    member trains as in one population: the same losses, checkpoints and frozen flags (dropout on)."""
    cfg = C.override(
        dataclasses.replace(tiny_config(steps=10, eval_every=5), seeds=(42, 52, 62)), ["data.layout=packed"]
    )
    # the evaluator sees the whole population: one value per member, from its own parameters
    evaluator = lambda params, step: {"val_acc": np.asarray(params["out_b"]).sum(axis=1), "gen_acc": np.zeros(3)}  # noqa: E731
    runs = {}
    for groups, by in ((1, "seed"), (2, "seed"), (3, "seed"), (2, "length")):
        c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, member_groups=groups, group_by=by))
        runs[groups if by == "seed" else f"{groups}{by}"] = loop.run(
            c, tmp_path / f"g{groups}{by}", progress=False, evaluator=evaluator
        )
    read = lambda d: [
        (r["step"], r["seed"], r["train_loss"], r["val_acc"]) for r in jsonl.read_records(d / "metrics.jsonl")
    ]  # noqa: E731
    padding = {g: json.loads((d / "padding.json").read_text())["positions_per_real_token"] for g, d in runs.items()}
    assert padding[3] < padding[2] <= padding[1]
    assert padding["2length"] < padding[2]  # members with long batches pad one another
    for g in (2, 3, "2length"):
        for (s1, seed1, l1, v1), (s2, seed2, l2, v2) in zip(read(runs[1]), read(runs[g]), strict=True):
            assert (
                (s1, seed1) == (s2, seed2) and l1 == pytest.approx(l2, rel=1e-5) and v1 == pytest.approx(v2, abs=1e-5)
            )
        for a, b in zip(
            jax.tree_util.tree_leaves(_final_params(runs[1], 10)), jax.tree_util.tree_leaves(_final_params(runs[g], 10))
        ):
            np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(C.ConfigError, match="member_groups"):
        C.validate(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, member_groups=4)))
    with pytest.raises(C.ConfigError, match="rows are all one width"):  # rows gain nothing from groups
        C.validate(C.override(cfg, ["data.layout=rows", "train.member_groups=2"]))
    with pytest.raises(C.ConfigError, match="group_by must be seed|length"):
        C.validate(C.override(cfg, ["train.group_by=size"]))
