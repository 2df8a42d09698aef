"""Reliability: kill anywhere and lose nothing, disk full, bad input gets one line and exit status 2."""

import errno
import json
import sys
import threading
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgjax import cli
from sgjax.data import formats
from sgjax.errors import CheckpointError, DataError, UserError
from sgjax.run import checkpoint, loop
from tests.conftest import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "checks" / "chaos"))


def test_sigterm_and_sigkill_then_resume_is_bitwise_identical(tmp_path):
    """A SIGTERM (preemption) saves the state at the step reached and exits; a SIGKILL loses only unsaved steps."""
    import chaos

    assert chaos.chaos(tmp_path, kills=2, seed=1, max_wait=6.0, signals=("KILL", "TERM")) == []


def test_disk_full_stops_cleanly_and_keeps_previous_checkpoint(tmp_path, toy_corpus, monkeypatch):
    """Step 20's probe checkpoint fails in the background; the run stops with one error, and a rerun recovers it."""
    cfg = tiny_config(steps=30)
    real_write = checkpoint.write_members

    def full_disk(directory, params_S, seeds):
        # step 20's directory (20/ or Orbax's 20.orbax-checkpoint-tmp/), not a "20" elsewhere in the path (pytest-20/)
        if str(directory).startswith(str(tmp_path / "r" / "checkpoints" / "20")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(directory, params_S, seeds)

    monkeypatch.setattr(checkpoint, "write_members", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device"):
        loop.run(cfg, tmp_path / "r", progress=False, evaluator=None)
    assert checkpoint.list_steps(tmp_path / "r") == [10]
    checkpoint.load_params(tmp_path / "r", 10)
    # Space is back: the same command resumes from the intact state, writes step 20's probe checkpoint again and
    # finishes.
    monkeypatch.setattr(checkpoint, "write_members", real_write)
    loop.run(cfg, tmp_path / "r", progress=False, evaluator=None)
    assert checkpoint.list_steps(tmp_path / "r") == [10, 20, 30]
    loop.run(cfg, tmp_path / "ref", progress=False, evaluator=None)  # the same run, never interrupted
    for step in (20, 30):
        (_, got), (_, want) = (
            checkpoint.load_params(tmp_path / "r", step),
            checkpoint.load_params(tmp_path / "ref", step),
        )
        got, want = checkpoint.flatten(got), checkpoint.flatten(want)
        assert got.keys() == want.keys()
        for k, v in want.items():
            np.testing.assert_array_equal(got[k], v, err_msg=f"step {step} {k}")


@pytest.fixture
def held_writes(tmp_path, monkeypatch):
    """(RunCheckpoints in tmp_path, an Event): probe checkpoint files are written only once the event is set."""
    release = threading.Event()
    real_write = checkpoint.write_members

    def held_write(directory, params_S, seeds):
        release.wait(timeout=30)
        return real_write(directory, params_S, seeds)

    monkeypatch.setattr(checkpoint, "write_members", held_write)
    ckpts = checkpoint.RunCheckpoints(tmp_path)
    yield ckpts, release
    release.set()
    ckpts.close()


def test_probe_checkpoint_is_written_while_training_goes_on(tmp_path, held_writes):
    """save_params returns before its files are written (a paper checkpoint is 0.76 GB); wait() sees them committed."""
    ckpts, release = held_writes
    base = np.arange(18, dtype=np.float32).reshape(3, 3, 2)
    params_S = {"embed": base[:2]}  # a view, as a CPU device buffer's numpy form is
    ckpts.save_params(10, params_S, {"step": 10, "seeds": [42, 52]})
    assert not release.is_set() and checkpoint.saved_probe_steps(tmp_path) == []  # returned with the write pending
    base += 100  # training reuses (donates) the buffer a view shows: the checkpoint keeps what was passed
    release.set()
    ckpts.wait()
    assert checkpoint.saved_probe_steps(tmp_path) == [10]
    np.testing.assert_array_equal(
        checkpoint.read_npz(tmp_path / "checkpoints" / "10" / "params" / "seed_52.npz")["embed"],
        np.arange(6, 12, dtype=np.float32).reshape(3, 2),
    )


def test_a_state_saved_between_probe_checkpoints_waits_for_the_last(tmp_path, held_writes):
    """An interruption's state (step 15) commits only after step 10's probe checkpoint: a resume from it lacks none."""
    ckpts, release = held_writes
    params_S = {"embed": np.ones((2, 3, 2), np.float32)}
    ckpts.save_params(10, params_S, {"step": 10, "seeds": [42, 52]})
    ckpts.save_state(10, {"params": params_S}, {"step": 10, "seeds": [42, 52]})  # the loop's pair: no wait
    assert checkpoint.saved_probe_steps(tmp_path) == []
    threading.Timer(0.5, release.set).start()
    ckpts.save_state(15, {"params": params_S}, {"step": 15, "seeds": [42, 52]})
    assert checkpoint.saved_probe_steps(tmp_path) == [10]


def _cli_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert "unknown task" in _cli_error(capsys, ["train", "--task", "qf", "--out", str(tmp_path / "a")])
    assert "unknown preset" in _cli_error(
        capsys, ["train", "--task", "question", "--preset", "huge", "--out", str(tmp_path / "a")]
    )
    assert "train.steps" in _cli_error(
        capsys, ["train", "--task", "question", "--steps", "-3", "--out", str(tmp_path / "a")]
    )
    assert "model.d_model" in _cli_error(
        capsys, ["train", "--task", "question", "--set", "model.n_heads=5", "--out", str(tmp_path / "a")]
    )
    assert "unknown config field" in _cli_error(
        capsys, ["train", "--task", "question", "--set", "train.speed=9", "--out", str(tmp_path / "a")]
    )
    assert "bad value" in _cli_error(
        capsys, ["train", "--task", "question", "--set", "train.lr=fast", "--out", str(tmp_path / "a")]
    )
    assert "not a sgjax run directory" in _cli_error(capsys, ["probe", str(tmp_path / "nothing")])


def test_run_saved_before_an_option_existed_resumes_unless_its_value_changed(tmp_path, toy_corpus):
    """A field added later takes the value the old run had (run.compat.saved_config): not a config change."""
    from sgjax import config

    run = tmp_path / "r"
    loop.run(tiny_config(steps=10), run, progress=False, evaluator=None)
    saved = json.loads((run / "config.json").read_text())
    del saved["data"]["layout"], saved["model"]["dropout_draw"]  # as written before both options
    (run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="model.dropout_draw: 'per_element' -> 'counter'") as err:
        loop.run(tiny_config(steps=20), run, progress=False, evaluator=None)  # old masks were per_element
    assert "data.layout: 'rows' -> 'unpadded'" in str(err.value)  # "auto" trained QF/TI on rows then
    assert "to continue it as it ran, add --set data.layout=rows --set model.dropout_draw=per_element" in str(err.value)
    old = config.override(tiny_config(steps=20), ["model.dropout_draw=per_element", "data.layout=rows"])
    loop.run(old, run, progress=False, evaluator=None)


def test_a_run_records_the_layout_auto_chose(tmp_path, toy_corpus):
    """A later change of what "auto" means must not switch a resumed run's batches silently."""
    run = tmp_path / "r"
    loop.run(tiny_config(steps=10), run, progress=False, evaluator=None)
    assert json.loads((run / "config.json").read_text())["data"]["layout"] == "unpadded"
    loop.run(tiny_config(steps=20), run, progress=False, evaluator=None)  # "auto" again: the same run


def test_corrupt_or_mismatched_run_dir_is_refused_untouched(tmp_path, toy_corpus):
    run = tmp_path / "r"
    loop.run(tiny_config(steps=10), run, progress=False, evaluator=None)
    before = (run / "config.json").read_text()
    with pytest.raises(Exception, match="different config"):
        loop.run(tiny_config(steps=10, lr=0.5), run, progress=False, evaluator=None)
    assert (run / "config.json").read_text() == before
    npz = run / "checkpoints" / "10" / "params" / "seed_42.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        checkpoint.load_params(run, 10)
    (run / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        checkpoint.load_config(run)


def test_override_the_state_cannot_take_leaves_the_run_as_it_was(tmp_path, toy_corpus):
    """--override to a third seed (another population shape) fails to restore; config.json is not replaced."""
    import dataclasses

    run = tmp_path / "r"
    loop.run(tiny_config(steps=10), run, progress=False, evaluator=None)
    before = (run / "config.json").read_text()
    three = dataclasses.replace(tiny_config(steps=20), seeds=(42, 52, 62))
    with pytest.raises(CheckpointError, match="cannot restore"):
        loop.run(three, run, override=True, progress=False, evaluator=None)
    assert (run / "config.json").read_text() == before
    loop.run(tiny_config(steps=20, lr=5e-4), run, override=True, progress=False, evaluator=None)  # an lr it can take
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 5e-4
    assert checkpoint.list_steps(run)[-1] == 20


@pytest.mark.parametrize("log_every, presses", [(10, 1), (5, 2)])
def test_ctrl_c_keeps_every_record(tmp_path, toy_corpus, monkeypatch, log_every, presses):
    """Ctrl-C while a step's calls run: the run stops at the next logged step with its records written (twice:
    at once, saving nothing), and the rerun's metrics and parameters equal an uninterrupted run's."""
    import os
    import signal

    from sgjax.core import engine

    cfg = tiny_config(steps=20, log_every=log_every)
    loop.run(cfg, tmp_path / "full", progress=False, evaluator=None)
    real_step = engine.Population.step

    def step(self, idx, at):
        out = real_step(self, idx, at)
        if at == 5:  # the call for steps 5-9 is dispatched; its records are not yet written
            for _ in range(presses):
                os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(engine.Population, "step", step)
    with pytest.raises(KeyboardInterrupt):
        loop.run(cfg, tmp_path / "cut", progress=False, evaluator=None)
    monkeypatch.setattr(engine.Population, "step", real_step)
    assert checkpoint.saved_state_step(tmp_path / "cut") == (10 if presses == 1 else None)
    loop.run(cfg, tmp_path / "cut", progress=False, evaluator=None)
    read = lambda run: (run / "metrics.jsonl").read_text()  # noqa: E731
    assert read(tmp_path / "cut") == read(tmp_path / "full")
    for a, b in zip(*(jax.tree_util.tree_leaves(checkpoint.load_params(tmp_path / r, 20)[1]) for r in ("full", "cut"))):
        np.testing.assert_array_equal(a, b)


def test_truncated_metrics_line_is_dropped_on_resume(tmp_path, toy_corpus):
    run = tmp_path / "r"
    cfg = tiny_config(steps=20)
    loop.run(cfg, run, progress=False, evaluator=None, stop_at=10)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 15, "seed": 42, "train_lo')  # a kill mid-write
    loop.run(cfg, run, progress=False, evaluator=None)
    recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [5, 5, 10, 10, 15, 15, 20, 20]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), task=st.sampled_from(["question", "tense"]))
def test_readers_survive_random_bytes(tmp_path, data, task):
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    try:
        lines = formats.read_lines(path, task)
    except DataError as e:
        assert str(path) in str(e)
    else:
        assert all("\t" in l for l in lines)


WORDS = ["the", "newt", "does", "sleep", ".", "quest", "decl", "?", "\t", "zzz", "", " ", "PAST"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join), max_size=5))
def test_readers_survive_random_lines(tmp_path, lines):
    path = tmp_path / "f.txt"
    path.write_text("\n".join(lines) + "\n")
    try:
        out = formats.read_lines(path, "question")
    except DataError as e:
        assert str(path) in str(e) and ":" in str(e)
    else:
        assert len(out) == len(lines)


def test_a_second_writer_is_refused_and_a_dead_holders_lock_is_not(tmp_path, toy_corpus):
    """Two `train` processes on one run directory: the second is refused with one line naming the holder;
    once the holder is gone (killed: its lock file stays behind), the run proceeds."""
    import subprocess
    import textwrap

    run = tmp_path / "r"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sgjax.run import runlock
        with runlock.hold(Path({str(run)!r}), "train"):
            print("held", flush=True)
            time.sleep(600)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"in use by another `sgjax train` \(pid {holder.pid} on "):
            loop.run(tiny_config(steps=10), run, progress=False, evaluator=None)
        assert not (run / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    assert (run / ".train.lock").exists()  # stale: the file outlives its holder, the lock does not
    loop.run(tiny_config(steps=10), run, progress=False, evaluator=None)
    assert checkpoint.list_steps(run) == [10]


def flip_bits(step_dir: Path, bits: int = 2) -> Path:
    """Flip `bits` bits in the middle of the largest data file of a saved state (OCDBT keeps no checksum)."""
    data = max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    for k in range(bits):
        raw[len(raw) // 2 + 7 * k] ^= 1 << (3 + k)
    data.write_bytes(bytes(raw))
    return data


def test_a_corrupt_state_is_refused_naming_the_last_good_one(tmp_path, toy_corpus):
    """Two flipped bits in the latest resume state: refused with one line naming its step and the state before;
    resuming from that one ends bitwise equal to an uninterrupted run."""
    run, full = tmp_path / "r", tmp_path / "full"
    loop.run(tiny_config(steps=30), full, progress=False, evaluator=None)
    loop.run(tiny_config(steps=20), run, progress=False, evaluator=None)
    assert sorted(int(p.name) for p in (run / "state").iterdir() if p.name.isdigit()) == [10, 20]
    flip_bits(run / "state" / "20")
    with pytest.raises(CheckpointError) as e:
        loop.run(tiny_config(steps=30), run, progress=False, evaluator=None)
    message = str(e.value)
    assert "state at step 20 is corrupt" in message and "last good state is at step 10" in message
    assert len(message.splitlines()) == 1
    import shutil

    shutil.rmtree(run / "state" / "20")
    loop.run(tiny_config(steps=30), run, progress=False, evaluator=None)
    for a, b in zip(*(jax.tree_util.tree_leaves(checkpoint.load_params(r, 30)[1]) for r in (full, run))):
        np.testing.assert_array_equal(a, b)


def test_a_failed_background_write_is_one_line_with_the_step_on_disk(tmp_path, monkeypatch):
    """Files capped at 300 kB (as a full disk): Orbax's state write fails in its threads, and the command
    prints one line, naming what is on disk, and nothing else (no thread reports, no asyncio tracebacks)."""
    import os
    import resource
    import signal
    import subprocess

    def capped():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    from sgjax import config as C

    cache = tmp_path / "cache"
    monkeypatch.setenv("SGJAX_CACHE", str(cache))  # the data cache is written before the cap
    loop.load_data(C.preset("smoke", "question"))
    run = tmp_path / "r"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sgjax.cli",
            "train",
            "--task",
            "question",
            "--preset",
            "smoke",
            "--steps",
            "100",
            "--set",
            "train.eval_every=0",
            "--out",
            str(run),
            "--no-progress",
        ],
        preexec_fn=capped,
        capture_output=True,
        text=True,
        env={**os.environ, "SGJAX_NO_COMPILE_CACHE": "1"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert "saving a checkpoint failed by step 100" in lines[0] and "no complete state is saved yet" in lines[0]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def readers(run: Path) -> dict:
    """Every reader of a file sgjax writes, as `name: (file it reads, call)`."""
    from sgjax.analysis import summarize
    from sgjax.analysis.probe import run as probe_run
    from sgjax.analysis.report import runs as report_runs

    return {
        "metrics.jsonl": ("metrics.jsonl", lambda: summarize.summarize_run(run, write=False)),
        "probe.jsonl": ("probe.jsonl", lambda: report_runs.discover_runs(run)),
        "config.json (report)": ("config.json", lambda: report_runs.discover_runs(run)),
        "config.json": ("config.json", lambda: checkpoint.load_config(run)),
        "probe_options.json": ("probe_options.json", lambda: probe_run.check_options(run, {"sample": 3}, True)),
        "sweep.json": (
            "sweep.json",
            lambda: __import__("sgjax.sweep").sweep.write_manifest(run, {"tasks": ["question"]}, False),
        ),
        "meta": ("checkpoints/10/meta/metadata", lambda: checkpoint.load_params(run, 10)),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run: every file sgjax writes for it, to damage one at a time."""
    from tests.conftest import patch_toy_corpus

    mp = pytest.MonkeyPatch()
    patch_toy_corpus(mp)
    run = tmp_path_factory.mktemp("trained") / "question_L2"
    loop.run(tiny_config(steps=10), run, progress=False, evaluator=None)
    (run / "probe.jsonl").write_text(json.dumps({"step": 10, "seed": 42, "tscore": 0.1}) + "\n")
    (run / "probe_options.json").write_text(json.dumps({"sample": 3}))
    (run / "sweep.json").write_text(json.dumps({"tasks": ["question"]}))
    yield run
    mp.undo()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(
        [
            "metrics.jsonl",
            "probe.jsonl",
            "config.json",
            "config.json (report)",
            "probe_options.json",
            "sweep.json",
            "meta",
        ]
    ),
    content=st.one_of(
        st.binary(max_size=80),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        JSON_VALUES.map(lambda v: (json.dumps(v) + "\n").encode() * 2),
    ),
)
def test_every_reader_of_a_damaged_file_fails_in_one_line_or_reads_it(trained, tmp_path, which, content):
    """Any bytes in any file sgjax reads: the reader returns, or raises the one-line UserError, never a traceback."""
    import shutil

    run = tmp_path / "question_L2"
    if run.exists():
        shutil.rmtree(run)
    shutil.copytree(trained, run)
    name, read = readers(run)[which]
    (run / name).write_bytes(content)
    try:
        read()
    except UserError as e:
        assert len(str(e).splitlines()) == 1


@pytest.mark.parametrize(
    "damage, words",
    [
        ("missing", "lacks 'layers/q'"),
        ("shape", "'embed' has shape (3, 3) where the run's model has"),
        ("bytes", "not a complete .npz archive"),
    ],
)
def test_a_damaged_member_file_is_one_line_naming_file_and_array(trained, tmp_path, damage, words):
    import shutil

    run = tmp_path / "question_L2"
    shutil.copytree(trained, run)
    member = run / "checkpoints" / "10" / "params" / "seed_52.npz"
    arrays = dict(np.load(member))
    if damage == "missing":
        del arrays["layers/q"]
    elif damage == "shape":
        arrays["embed"] = np.zeros((3, 3), np.float32)
    with member.open("wb") as f:
        if damage == "bytes":
            f.write(b"PK\x03\x04 not really")
        else:
            np.savez(f, **arrays)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load_params(run, 10)  # what the probe and the one-call API read
    assert len(str(e.value).splitlines()) == 1 and str(member) in str(e.value) and words in str(e.value)


def test_override_changes_are_recorded_by_the_step_they_train_from(tmp_path, toy_corpus):
    """--override on a finished run trains nothing, so config.json keeps the settings its steps trained with;
    extending it records from which step the new settings trained."""
    run = tmp_path / "r"
    loop.run(tiny_config(steps=10), run, progress=False, evaluator=None)
    before = (run / "config.json").read_text()
    loop.run(tiny_config(steps=10, lr=5e-4), run, override=True, progress=False, evaluator=None)
    assert (run / "config.json").read_text() == before and not (run / "config_changes.jsonl").exists()
    loop.run(tiny_config(steps=20, lr=5e-4), run, override=True, progress=False, evaluator=None)
    (change,) = [json.loads(l) for l in (run / "config_changes.jsonl").read_text().splitlines()]
    assert change == {"from_step": 10, "changes": ["train.lr: 0.001 -> 0.0005"]}
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 5e-4
