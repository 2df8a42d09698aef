"""The seed axis sharded over fake CPU devices and over two processes: same weights and scores as one device."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from sgjax.run import checkpoint

ROOT = Path(__file__).resolve().parents[1]
TOY = str(ROOT / "tests" / "toy_run.py")


def _env(devices: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}


def _run(*args, devices=4):
    proc = subprocess.run(
        [sys.executable, TOY, *map(str, args)], env=_env(devices), capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _params(run_dir, step=20):
    return jax.tree_util.tree_leaves(checkpoint.load_params(run_dir, step)[1])


def _scores(run_dir) -> list:
    """Every evaluation record of the run: (step, seed, {metric: value})."""
    records = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [
        (r["step"], r["seed"], {k: v for k, v in r.items() if k.startswith(("val_", "gen_"))})
        for r in records
        if "val_acc" in r
    ]


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """The toy run on 4 devices of one process: what the other layouts must reproduce."""
    run_dir = tmp_path_factory.mktemp("sharding") / "four"
    _run(run_dir, "--devices", 4)
    return run_dir


def test_sharded_equals_unsharded_and_checkpoints_move(tmp_path, four_devices):
    _run(tmp_path / "one", "--devices", 1)
    # Saved on 4 devices, resumed on 2; the probe checkpoints read on the host.
    _run(tmp_path / "moved", "--devices", 4, "--stop-at", 10)
    _run(tmp_path / "moved", "--devices", 2)
    for a, b, c in zip(_params(tmp_path / "one"), _params(four_devices), _params(tmp_path / "moved")):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, c, atol=1e-5)
    scores = _scores(tmp_path / "one")
    assert len(scores) == 2 * 4 and len({json.dumps(s) for _, _, s in scores}) > 1  # members score differently
    assert _scores(four_devices) == scores == _scores(tmp_path / "moved")


PER_MEMBER_SAMPLES = """
import jax, jax.numpy as jnp, numpy as np
from sgjax.core import engine
from tests.test_evaluate import ti_sample_evaluator
seeds = (1, 2, 3, 4)
mesh = engine.seed_mesh(4)
assert mesh.devices.size == 4
plain, sharded = ti_sample_evaluator(3, member_seeds=seeds), ti_sample_evaluator(3, member_seeds=seeds)
params = {"w": jnp.zeros((4, 1))}
got = []
for step in range(0, 30000, 3000):
    a, b = plain(params, step)["gen_acc"], sharded(engine.shard_population(params, mesh), step)["gen_acc"]
    assert np.array_equal(a, b), (step, a, b)
    got.append(tuple(a))
assert sharded._member_sharding.spec == jax.sharding.PartitionSpec("seed") and any(len(set(g)) > 1 for g in got)
"""


def test_per_member_ti_samples_stay_with_their_members_when_sharded():
    """Each member's own TI draws (D33) are laid out along the seed axis: 4 devices score as one."""
    proc = subprocess.run(
        [sys.executable, "-c", PER_MEMBER_SAMPLES], env=_env(4), capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(args: list[str], devices: int) -> None:
    """`python ARGS` as processes 0 and 1 of one jax.distributed run on localhost, `devices` fake CPUs each."""
    join = ["--coordinator", f"localhost:{_free_port()}", "--num-processes", "2"]
    procs = [
        subprocess.Popen(
            [sys.executable, *args, *join, "--process-id", str(i)],
            env=_env(devices),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]


def test_two_processes_equal_one_and_resume(tmp_path, four_devices):
    """Two processes of 2 devices, stopped at step 10 and resumed as two processes: one process's weights and scores."""
    _two_processes([TOY, str(tmp_path / "multi"), "--stop-at", "10"], devices=2)
    assert [d.name for d in (tmp_path / "multi" / "state").iterdir() if d.name.isdigit()] == ["10"]
    _two_processes([TOY, str(tmp_path / "multi")], devices=2)
    for a, b in zip(_params(four_devices), _params(tmp_path / "multi")):
        np.testing.assert_allclose(a, b, atol=1e-5)
    lines = (tmp_path / "multi" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 4  # 4 log steps x 4 seeds, written once (by process 0)
    assert _scores(tmp_path / "multi") == _scores(four_devices)  # each host's members scored and gathered


def test_a_sweep_over_two_processes_probes_and_reports_once(tmp_path):
    """Both processes train; process 0 alone probes, summarizes and reports (no record written twice)."""
    from tests.test_sweep import TINY

    out = tmp_path / "sw"
    _two_processes(
        [
            "-m",
            "sgjax.cli",
            "sweep",
            "--task",
            "question",
            "--preset",
            "smoke",
            "--depths",
            "1",
            "--num-seeds",
            "2",
            *[a for o in TINY for a in ("--set", o)],
            "--probe-sample",
            "8",
            "--out",
            str(out),
            "--no-progress",
        ],
        devices=1,
    )
    run = out / "question_L1"
    probed = [(r["step"], r["seed"]) for r in map(json.loads, (run / "probe.jsonl").read_text().splitlines())]
    assert sorted(probed) == [(10, 42), (10, 52), (20, 42), (20, 52)]
    assert (run / "summary.json").exists() and (out / "report" / "report.md").exists()


def test_parallel_depths_train_as_one_at_a_time(tmp_path):
    """--parallel-depths (two depths on two devices at once) gives each depth the weights of a sequential sweep."""
    from sgjax import config as C
    from sgjax import sweep
    from tests.test_sweep import TINY

    tiny = [*TINY, "train.eval_every=0"]  # training alone: the evaluator's programs would double the time
    parallel = tmp_path / "parallel"
    args = [
        "-m",
        "sgjax.cli",
        "sweep",
        "--task",
        "question",
        "--preset",
        "smoke",
        "--depths",
        "1,2",
        *[a for o in tiny for a in ("--set", o)],
        "--no-probe",
        "--no-report",
        "--no-progress",
        "--parallel-depths",
        "--out",
        str(parallel),
    ]
    proc = subprocess.run([sys.executable, *args], env=_env(2), capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    configs = {("question", d): C.override(C.preset("smoke", "question", d), tiny) for d in (1, 2)}
    one = sweep.run_sweep(["question"], [1, 2], configs, tmp_path / "one", probe=False, report=False, progress=False)
    for d in (1, 2):
        a, b = sweep.run_dir_for(parallel, "question", d), sweep.run_dir_for(one, "question", d)
        assert len(_params(a)) == len(_params(b)) > 0
        for x, y in zip(_params(a), _params(b)):
            np.testing.assert_allclose(x, y, atol=1e-5)


def test_distributed_start_from_flags_the_environment_or_auto_detection(monkeypatch):
    """No flag: one process. --distributed: JAX detects the cluster. SGJAX_* variables fill the flags; a flag wins."""
    import argparse

    from sgjax.run import distributed

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a: calls.append(a))

    def start(*argv):
        p = argparse.ArgumentParser()
        distributed.add_arguments(p)  # the defaults read the environment when the parser is built
        distributed.maybe_initialize(p.parse_args(list(argv)))

    start()
    assert calls == []
    start("--distributed")
    assert calls == [()]
    monkeypatch.setenv("SGJAX_COORDINATOR", "node0:1234")
    monkeypatch.setenv("SGJAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("SGJAX_PROCESS_ID", "1")
    start()
    start("--process-id", "0")
    assert calls[1:] == [("node0:1234", 2, 1), ("node0:1234", 2, 0)]
