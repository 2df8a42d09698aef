"""The bench's PyTorch peer computes what sgjax computes: same weights give the same loss and the same update."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgjax import config as C
from sgjax.bench import flops
from sgjax.bench import speed as bench
from sgjax.core import batching, engine, model, optim
from sgjax.run import loop
from tests.conftest import tiny_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def torch():
    """The peer's one dependency (`pip install 'sgjax[bench]'`): only the peer comparisons skip without it."""
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def peer(torch):
    from sgjax.bench import torch_peer

    return torch_peer


def no_dropout_config():
    """The tiny 2-layer config without dropout (both sides deterministic), warmup 10 so step 5 has lr > 0."""
    cfg = tiny_config(warmup_steps=10, decay_steps=1000, lr=1e-3)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dropout=0.0))


def toy_batch(cfg, rng, b=4, t=12):
    """[SOS] w.. [EOS] rows with some padding at the end of each row: (inputs_BxT, targets_BxT) as numpy."""
    v = cfg.model.vocab_size
    rows = np.zeros((b, t + 1), np.int32)
    for i, n in enumerate(rng.integers(4, t, size=b)):
        rows[i, 0] = v - 1  # SOS
        rows[i, 1 : n + 1] = rng.integers(1, v - 2, size=n)
        rows[i, n + 1] = v - 2  # EOS
    return rows[:, :-1], rows[:, 1:]


def peer_model(peer, cfg, params):
    m = cfg.model
    (pm,) = peer.make_models(
        [0], m.vocab_size, m.n_layers, d_model=m.d_model, n_heads=m.n_heads, d_ff=m.d_ff, dropout=0.0
    )
    peer.load_sgjax_params(pm, params)
    return pm


def jax_loss(cfg, params, inp, tgt):
    return float(engine.loss_fn(params, cfg, jnp.asarray(inp), jnp.asarray(tgt), None, None, None))


def test_same_weights_same_logits_and_loss(peer, torch):
    cfg = no_dropout_config()
    params = model.init_params(cfg.model, jax.random.key(0))
    inp, tgt = toy_batch(cfg, np.random.default_rng(0))
    pm = peer_model(peer, cfg, params).eval()
    with torch.no_grad():
        logits_t = pm(torch.as_tensor(inp, dtype=torch.long)).numpy()
        loss_t = float(peer.lm_loss(torch.as_tensor(logits_t), torch.as_tensor(tgt, dtype=torch.long)))
    logits_j = np.asarray(model.forward(cfg.model, params, jnp.asarray(inp)))
    keep = inp != 0  # logits at padded query positions are never used
    np.testing.assert_allclose(logits_t[keep], logits_j[keep], rtol=1e-4, atol=1e-4)
    assert loss_t == pytest.approx(jax_loss(cfg, params, inp, tgt), rel=1e-5)


def test_peer_per_batch_padding_keeps_the_loss(peer, torch):
    """`--peer-padding batch` cuts the all-pad columns (the original's collate): the loss must not move."""
    cfg = no_dropout_config()
    inp, tgt = toy_batch(cfg, np.random.default_rng(1))
    inp = np.concatenate([inp, np.zeros((inp.shape[0], 5), inp.dtype)], axis=1)  # 5 all-pad columns
    tgt = np.concatenate([tgt, np.zeros((tgt.shape[0], 5), tgt.dtype)], axis=1)
    pm = peer_model(peer, cfg, model.init_params(cfg.model, jax.random.key(0))).eval()
    full = [torch.as_tensor(a, dtype=torch.long) for a in (inp, tgt)]
    cut = peer.trim_padding(*full)
    assert cut[0].shape[-1] == int((inp != 0).sum(-1).max()) <= inp.shape[1] - 5
    with torch.no_grad():
        assert float(peer.lm_loss(pm(cut[0]), cut[1])) == pytest.approx(
            float(peer.lm_loss(pm(full[0]), full[1])), rel=1e-5
        )


@pytest.mark.parametrize("mode", ["sequential", "vmap"])
def test_same_train_step(peer, torch, mode):
    """One AdamW step (clipping, warmup lr at step 5) from the same weights lands on the same weights."""
    cfg = no_dropout_config()
    tc, rng, step = cfg.train, np.random.default_rng(1), 5
    seeds = (42, 52)
    params_S = [model.init_params(cfg.model, jax.random.key(s)) for s in seeds]
    batches = [toy_batch(cfg, rng) for _ in seeds]
    models = [peer_model(peer, cfg, p) for p in params_S]
    kw = dict(lr=tc.lr, eps=tc.adam_eps, clip=tc.clip_norm, warmup=tc.warmup_steps, total=tc.decay_steps)
    t = lambda x: torch.as_tensor(x, dtype=torch.long)
    if mode == "sequential":
        trainer = peer.SequentialTrainer(models, **kw)
        losses_t = trainer.step(step, [(t(i), t(o)) for i, o in batches])
        new_t = [m.state_dict() for m in trainer.models]
    else:
        trainer = peer.VmapTrainer(models, **kw)
        losses_t = trainer.step(step, t(np.stack([i for i, _ in batches])), t(np.stack([o for _, o in batches])))
        new_t = [trainer.member_params(i) for i in range(len(seeds))]
    for params, (inp, tgt), loss_t, sd in zip(params_S, batches, losses_t, new_t):
        state = {"params": params, "opt": optim.optimizer(tc).init(params), "frozen": jnp.zeros((), bool)}
        batch = (jnp.asarray(inp), jnp.asarray(tgt), None, None)
        new, m = engine.member_step(cfg, state, seeds[0], jnp.float32(tc.lr), step, batch)
        assert loss_t == pytest.approx(float(m["loss"]), rel=1e-5)
        after = peer_model(peer, cfg, new["params"]).state_dict()
        lr = tc.lr * peer.lr_mult(step, tc.warmup_steps, tc.decay_steps)
        for k, v in after.items():
            if k in sd:  # the PE buffer is not a parameter
                np.testing.assert_allclose(sd[k].detach().numpy(), v.numpy(), atol=0.05 * lr, rtol=0, err_msg=k)


def test_call_lengths_are_what_width_for_gives_each_call(toy_corpus):
    """batching.call_lengths (all calls at once) against width_for call by call, floor, tail and a short last call
    included.
    """
    vocab, split = toy_corpus
    for layout, k in (("packed", 1), ("unpadded", 3)):
        cfg = C.override(tiny_config(), [f"data.layout={layout}"])
        tdata = loop.make_train_data(cfg, split, vocab)
        steps, n, b = 95, tdata.n, cfg.train.batch_size
        plain = batching.call_lengths(tdata.seq_len_N, cfg.seeds, steps, k, b, layout == "packed", tdata.min_length)
        tdata.tail = (int(np.unique(plain)[0]), int(plain.max()) + 16)  # every call above the shortest moves
        got = batching.call_lengths(
            tdata.seq_len_N, cfg.seeds, steps, k, b, layout == "packed", tdata.min_length, tdata.tail
        )
        assert (got > plain).any()
        want = []
        for s in range(0, steps, k):
            w = tdata.width_for(batching.chunk_indices(cfg.seeds, s, min(k, steps - s), n, b))
            want.append(w if layout == "packed" else w[0])
        np.testing.assert_array_equal(got, want)


def test_length_bounds_count_each_member_groups_calls_as_the_loop_cuts_them(toy_corpus):
    """length_bounds' calls with member groups (by seed, and by length: each call's members sorted by batch) are the
    widths the loop's call_groups give, group after group; grouping by length pads less."""
    vocab, split = toy_corpus
    for layout, k in (("packed", 1), ("unpadded", 3)):
        seeds = (42, 52, 62, 72, 82)
        cfg = dataclasses.replace(C.override(tiny_config(steps=40), [f"data.layout={layout}"]), seeds=seeds)
        tdata = loop.make_train_data(cfg, split, vocab)
        groups = batching.member_groups(len(seeds), 2)
        total = {}
        for by_length in (False, True):
            got = batching.length_bounds(
                tdata.seq_len_N,
                seeds,
                40,
                k,
                8,
                layout == "packed",
                groups=2,
                by_length=by_length,
                floor_quantile=0.0,
                tail_quantile=1.0,
            )[2]
            want = [[], []]
            for s in range(0, 40, k):
                idx = batching.chunk_indices(seeds, s, min(k, 40 - s), tdata.n, 8)
                for g, members in enumerate(batching.call_groups(tdata.seq_len_N, idx, groups, by_length)):
                    w = dataclasses.replace(tdata, min_length=0, tail=None).width_for(idx[members])
                    want[g].append(w if layout == "packed" else w[0])
            np.testing.assert_array_equal(got, np.concatenate(want))
            total[by_length] = int(got.sum())
        assert total[True] < total[False]


def test_gpu_session_script_parses_and_has_every_phase():
    """experiments/performance/gpu_session/gpu_session.sh runs on a lent GPU where a typo costs device time: bash
    must parse it, and every phase its header lists must be a function."""
    import re
    import subprocess

    script = EXPERIMENTS / "performance" / "gpu_session" / "gpu_session.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    listed = re.findall(r"^#   (\w+)  +\S", text, flags=re.M)  # "#   name   description" lines
    assert listed == ["quick", "check", "peer", "scale", "precision", "depths", "run", "ti"]
    assert all(f"phase_{p}() {{" in text for p in listed)


def test_profile_counts_a_gpus_streams_alone(monkeypatch):
    """experiments/performance/train_step/profile_step.py on a GPU trace: kernels on the device's streams, not their
    copies on its "XLA Ops" line or the host threads; on a CPU trace every host thread but the executor's wrappers."""
    monkeypatch.setenv("SGJAX_MALLOC", "default")  # importing the script must not retune this process's malloc
    monkeypatch.syspath_prepend(str(EXPERIMENTS / "performance" / "train_step"))
    spec = importlib.util.spec_from_file_location(
        "profile_step", EXPERIMENTS / "performance" / "train_step" / "profile_step.py"
    )
    profile_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(profile_step)

    meta = lambda kind, pid, name, tid=None: {"ph": "M", "name": kind, "pid": pid, "tid": tid, "args": {"name": name}}
    op = lambda name, pid, tid, us: {"ph": "X", "name": name, "pid": pid, "tid": tid, "dur": us}
    gpu = [
        meta("process_name", 1, "/host:CPU"),
        meta("process_name", 2, "/device:GPU:0"),
        meta("thread_name", 2, "Stream #7(Compute)", 7),
        meta("thread_name", 2, "XLA Ops", 99),
        op("sm90_xmma_gemm_f32f32_tf32f32", 2, 7, 3000),
        op("loop_add_fusion_3", 2, 7, 1000),
        op("loop_add_fusion.4", 2, 7, 1000),
        op("fusion.3", 2, 99, 5000),
        op("ThunkExecutor::Execute", 1, 3, 9000),
    ]
    ms, counted = profile_step.op_times(gpu, steps=2)
    assert ms == {"sm90_xmma_gemm_f32f32_tf32f32": 1.5, "loop_add_fusion": 1.0}
    assert counted == "/device:GPU:0 Stream #7(Compute)"
    assert profile_step.MATMUL.search("sm90_xmma_gemm_f32f32_tf32f32") and not profile_step.MATMUL.search(
        "loop_add_fusion"
    )

    cpu = [
        meta("process_name", 1, "/host:CPU"),
        op("ynn_fusion.12", 1, 3, 2000),
        op("ynn_fusion.7", 1, 4, 2000),
        op("ThunkExecutor::Execute", 1, 3, 9000),
    ]
    ms, counted = profile_step.op_times(cpu, steps=1)
    assert ms == {"ynn_fusion": 4.0} and counted == "host threads, summed"


def test_sgjax_measurement_runs_each_call_at_the_loops_width():
    """bench.measure on a tiny model: every timed call at the width the host loop gives its chunk, each
    compiled once.
    """
    from sgjax.core import batching

    p = {
        "kind": "sgjax",
        "task": "question",
        "depth": 1,
        "population": 2,
        "precision": "highest",
        "seq_len": 37,
        "overrides": ["model.d_model=32", "model.n_heads=2", "model.d_ff=64"],
        "eval": False,
        "warmup": 1,
        "steps_per_call": 1,
        "calls": 4,
    }
    r = bench.measure(p)
    cfg = bench.bench_config("question", 1, 2, 1, "highest", p["overrides"])
    tdata = bench.bench_data(cfg)
    expect = [tdata.width_for(batching.chunk_indices(cfg.seeds, bench.STEP0 + c, 1, tdata.n, 8))[0] for c in range(5)]
    assert [w[0] for w in r["widths"]] == expect[1:]  # the warm-up call is not timed
    assert r["compiles"] == len(set(expect)) and len(r["call_s"]) == 4
    assert r["seed_steps_per_s"] > 0 and r["page_faults_per_call"] >= 0


def test_a_steady_call_is_each_widths_median_weighted_by_its_calls():
    """One stray slow call (a heap grown mid-run) does not count; widths that cost differently all do."""
    assert bench.typical_call_s([8.0, 15.0, 8.2, 7.9], [224] * 4) == pytest.approx(8.1)  # one width: the median
    calls = [8.0, 9.0, 15.0, 8.2, 9.2, 7.8, 9.1]
    widths = [224, 240, 224, 224, 240, 224, 240]  # 4 calls at 224 (median 8.1), 3 at 240 (median 9.1)
    assert bench.typical_call_s(calls, widths) == pytest.approx((4 * 8.1 + 3 * 9.1) / 7)
    assert bench.typical_call_s([1.0, 2.0, 6.0], [[40], [56], [64]]) == pytest.approx(3.0)  # every width once: the mean


def test_packed_measurement_runs_one_step_per_call_as_the_loop():
    """Dyck's packed batches: the loop calls one step at a time, so the bench times the same steps that way."""
    p = {
        "kind": "sgjax",
        "task": "dyck",
        "depth": 1,
        "population": 2,
        "precision": "highest",
        "seq_len": 37,
        "overrides": ["model.d_model=32", "model.n_heads=2", "model.d_ff=64"],
        "eval": False,
        "warmup": 0,
        "steps_per_call": 2,
        "calls": 1,
    }
    r = bench.measure(p)
    assert r["layout"] == "packed" and r["steps_per_call"] == 1 and r["calls"] == 2 and len(r["call_s"]) == 2
    assert r["seed_steps_per_s"] == pytest.approx(2 / r["per_call_s"])


def test_one_width_compiles_one_program_at_the_widest_call():
    """--one-width: every call of a packed (Dyck) measurement runs at the widest planned call's width, compiled once."""
    p = {
        "kind": "sgjax",
        "task": "dyck",
        "depth": 1,
        "population": 2,
        "precision": "highest",
        "seq_len": 37,
        "overrides": ["model.d_model=32", "model.n_heads=2", "model.d_ff=64"],
        "eval": False,
        "warmup": 1,
        "steps_per_call": 6,
        "calls": 1,
    }
    cfg = bench.bench_config("dyck", 1, 2, 1, "highest", p["overrides"])
    _, widths = bench.group_plans(cfg, bench.bench_data(cfg), {**p, "steps_per_call": 1, "calls": 6})[0][1:]
    assert len(set(widths)) > 1  # these steps need several widths
    r = bench.measure({**p, "one_width": True})
    assert r["compiles"] == 1 and r["widths"] == [max(widths)] * 6


def test_member_groups_run_each_group_at_its_own_width():
    """train.member_groups in the bench: each group's calls at its own width, FLOPs averaged over members."""
    tiny = ["model.d_model=32", "model.n_heads=2", "model.d_ff=64"]
    p = {
        "kind": "sgjax",
        "task": "dyck",
        "depth": 1,
        "population": 3,
        "precision": "highest",
        "seq_len": 37,
        "overrides": [*tiny, "train.member_groups=2"],
        "eval": False,
        "warmup": 1,
        "steps_per_call": 2,
        "calls": 1,
    }
    r = bench.measure(p)
    cfg = bench.bench_config("dyck", 1, 3, 1, "highest", tiny)
    whole = bench.group_plans(cfg, bench.bench_data(cfg), {**p, "steps_per_call": 1, "calls": 2})[0][2][1:]
    assert r["group_sizes"] == [2, 1] and len(r["widths"]) == 2
    assert all(max(ws) == w for ws, w in zip(r["widths"], whole))  # the widest group's width is the population's
    assert any(min(ws) < max(ws) for ws in r["widths"])  # and the other group ran shorter
    f = lambda w: flops.train_flops_per_step(1, 32, 64, 43, w, 1, w)  # noqa: E731
    want = np.mean([(2 * f(a) + f(b)) / 3 for a, b in r["widths"]])
    assert r["flops_per_seed_step"] == pytest.approx(want)
    # by length: each call's two members with the shortest batches share a program, the longest runs alone
    by_length = bench.measure({**p, "overrides": [*p["overrides"], "train.group_by=length"]})
    assert by_length["group_by"] == "length" and all(a <= b for a, b in by_length["widths"])
    assert [b for _, b in by_length["widths"]] == whole
    assert by_length["flops_per_seed_step"] <= r["flops_per_seed_step"]


def test_bench_command_measures_in_a_child_and_writes_json_and_markdown(tmp_path, capsys):
    """`sgjax bench ... --out`: each measurement in its own process, the table printed, JSON and markdown written."""
    import json

    from sgjax import cli

    out = tmp_path / "b.json"
    args = [
        "bench",
        "--task",
        "question",
        "--depth",
        "1",
        "--seeds",
        "2",
        "--steps",
        "2",
        "--chunk",
        "1",
        "--peer",
        "none",
        "--set",
        "model.d_model=32",
        "--set",
        "model.n_heads=2",
        "--set",
        "model.d_ff=64",
        "--out",
        str(out),
    ]
    assert cli.main(args) == 0
    doc = json.loads(out.read_text())
    (r,) = doc["results"]
    assert r["kind"] == "sgjax" and r["population"] == 2 and len(r["call_s"]) == 2 and r["seed_steps_per_s"] > 0
    assert doc["command"].startswith("sgjax bench --task question") and doc["machine"]["cores"] >= 1
    assert "| sgjax | 2 |" in capsys.readouterr().out and "| sgjax | 2 |" in out.with_suffix(".md").read_text()


def test_a_bench_cut_short_keeps_what_it_measured(monkeypatch, tmp_path):
    """Each measurement is written as it ends: a bench stopped in its second measurement (a deadline's SIGTERM,
    Ctrl-C) leaves the first in its JSON, marked incomplete; a whole bench is marked complete, with its machine."""
    from sgjax import cli

    calls = []
    result = lambda p: {
        **p,
        "seed_steps_per_s": 3.0,
        "per_call_s": 0.5,
        "achieved_flops": 1e9,
        "device": "cpu:cpu",  # noqa: E731
        "loadavg_1m_before": 1.0,
        "loadavg_1m_after": 1.0,
    }

    def fake_measure(p):
        calls.append(p)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return result(p)

    monkeypatch.setattr(bench, "measure_isolated", fake_measure)
    out = tmp_path / "b.json"
    args = ["bench", "--depth", "1", "--seeds", "1,2", "--peer", "none", "--out", str(out)]
    assert cli.main(args) == 130  # interrupted
    doc = json.loads(out.read_text())
    assert doc["complete"] is False and doc["machine"] is None
    assert [r["population"] for r in doc["results"]] == [1]
    assert "| sgjax | 1 |" in out.with_suffix(".md").read_text()

    monkeypatch.setattr(bench, "measure_isolated", result)
    assert cli.main(args) == 0
    doc = json.loads(out.read_text())
    assert doc["complete"] is True and doc["machine"]["cores"] >= 1
    assert [r["population"] for r in doc["results"]] == [1, 2]


def test_the_peer_runs_in_the_python_given(monkeypatch, tmp_path):
    """--peer-python: the peer's children start with that interpreter, sgjax's with this one."""
    import subprocess
    import sys

    from sgjax import cli
    from sgjax.bench import speed as bench

    started = []

    def fake_run(argv, **kw):
        started.append((argv[0], json.loads(argv[-1])["kind"]))
        return subprocess.CompletedProcess(argv, 1, "", "not measured")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    other = tmp_path / "python"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    assert cli.main(["bench", "--depth", "1", "--seeds", "1", "--peer", "sequential", "--peer-python", str(other)]) == 0
    assert started == [(sys.executable, "sgjax"), (str(other), "sequential")]


def test_machine_names_the_cpu_beyond_its_model_name():
    """A VM's 'AMD EPYC' hides Zen 3 (AVX2) from Zen 4 (AVX-512): family, model and vector ISAs are recorded."""
    from sgjax.bench import speed as bench

    text = (
        "processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu fma avx2 avx512f sse\n"
    )
    assert bench.cpu_info(text) == {
        "cpu": "AMD EPYC",
        "cpu_family": "25",
        "cpu_model": "17",
        "cpu_isa": ["avx512f", "avx2", "fma"],
    }
