"""Resume guards: a rerun never deletes work it cannot redo from a saved state, and says why in one line."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from sgjax import config
from sgjax.errors import CheckpointError, UserError
from sgjax.run import checkpoint, loop
from tests.conftest import patch_toy_corpus, tiny_config


def _run(cfg, run, **kw):
    return loop.run(cfg, run, progress=False, evaluator=None, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 20-step toy run (probe checkpoints at 10 and 20), trained once for the module."""
    run = tmp_path_factory.mktemp("guards") / "trained"
    with pytest.MonkeyPatch.context() as mp:
        patch_toy_corpus(mp)
        _run(tiny_config(steps=20), run)
    return run


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the finished run for one test to break."""
    return Path(shutil.copytree(trained, tmp_path / "r"))


def _snapshot(run) -> tuple:
    """What a refused rerun must leave as it was."""
    return (run / "config.json").read_text(), (run / "metrics.jsonl").read_text(), checkpoint.list_steps(run)


def test_deleted_state_is_refused_and_progress_kept(run, toy_corpus):
    """`rm -rf RUN/state` (to save disk), then the same command: refused, metrics and probe checkpoints kept."""
    shutil.rmtree(run / "state")
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match="no training state to resume from") as err:
        _run(tiny_config(steps=20), run)
    msg = str(err.value)
    assert "\n" not in msg and "state is missing" in msg and "metrics to step 20" in msg
    assert "probe checkpoints at steps 10, 20" in msg and "another --out" in msg
    assert _snapshot(run) == before
    assert not (run / "state").exists()  # not created either: the rerun is refused the same way


def test_kill_before_the_first_state_commit_restarts_from_zero(tmp_path, toy_corpus):
    """No state yet, progress up to the second checkpoint step: what a kill can leave; the rerun redoes it."""
    run, cfg = tmp_path / "r", tiny_config(steps=40)
    _run(cfg, run, stop_at=15)
    for d in (run / "state").iterdir():  # as if the kill came before the state at 10 committed
        shutil.rmtree(d)
    _run(cfg, run)
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert steps == [s for s in range(5, 45, 5) for _ in range(2)]
    assert checkpoint.list_steps(run) == [10, 20, 30, 40]


def test_progress_past_what_a_kill_leaves_is_refused_with_an_empty_state_dir(tmp_path, toy_corpus):
    run, cfg = tmp_path / "r", tiny_config(steps=40)
    _run(cfg, run, stop_at=25)
    for d in (run / "state").iterdir():
        shutil.rmtree(d)
    before = _snapshot(run)
    with pytest.raises(CheckpointError, match="holds no complete state"):
        _run(cfg, run)
    assert _snapshot(run) == before


def test_steps_below_the_saved_state_are_refused(run, toy_corpus):
    """train.steps may grow (docs/training.md), not shrink below the saved state, with or without --override."""
    before = _snapshot(run)
    for override in (False, True):
        with pytest.raises(UserError, match="trained to step 20, past train.steps 10.*--steps 20 or more"):
            _run(tiny_config(steps=10), run, override=override)
    assert _snapshot(run) == before


def test_another_population_or_model_shape_is_refused_before_orbax_restores(run, toy_corpus, monkeypatch):
    """Orbax's own error advises strict=False and leaves asyncio tracebacks at exit: it must not be reached."""
    before = _snapshot(run)
    calls = []
    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "restore", lambda *a, **k: calls.append(1))
    cases = {
        "the saved state has 2 members \\(seeds 42,52\\), this config 1 \\(seeds 42\\)": dict(seeds=(42,)),
        "this config 2 \\(seeds 42,62\\)": dict(seeds=(42, 62)),  # same count: seed 52 would continue as 62
    }
    for msg, change in cases.items():
        with pytest.raises(CheckpointError, match=msg):
            _run(dataclasses.replace(tiny_config(steps=20), **change), run, override=True)
    wide = config.override(tiny_config(steps=20), ["model.d_model=64"])
    with pytest.raises(
        CheckpointError,
        match="cannot restore .*embed saved 71x32, now 71x64.*cannot change the population or the model shape",
    ):
        _run(wide, run, override=True)
    assert calls == [] and _snapshot(run) == before


def test_missing_or_unreadable_parameter_files_are_named(run):
    for f in (run / "checkpoints" / "10" / "params").iterdir():
        f.unlink()
    with pytest.raises(CheckpointError, match="seed_<seed>.npz\\) are missing"):
        checkpoint.load_params(run, 10)
    junk = run / "checkpoints" / "20" / "params" / "seed_42.npz"
    junk.write_text("junk\n")
    for load in (lambda: checkpoint.load_params(run, 20), lambda: checkpoint.load_member(run, 20, 42)):
        with pytest.raises(CheckpointError, match="seed_42.npz: the file is unreadable") as err:
            load()
        assert "allow_pickle" not in str(err.value)


def test_a_saved_config_that_is_not_an_object_is_refused(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("[]")
    with pytest.raises(UserError, match="config.json is corrupt: a JSON list where an object belongs"):
        _run(tiny_config(steps=20), run)
    assert (run / "config.json").read_text() == "[]"
