"""Bad command-line input: a one-line error and exit status 2, before any training; no setting silently replaced."""

import dataclasses
import json

import jax
import pytest

from sgjax import cli
from sgjax import config as C
from sgjax.bench import speed as bench

TRAIN = [
    "train",
    "--task",
    "question",
    "--preset",
    "smoke",
    "--steps",
    "4",
    "--set",
    "train.eval_every=0",
    "--no-progress",
]


def one_line_error(capsys, argv) -> str:
    """Run the CLI in-process; it must exit 2 with exactly one line on stderr."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def usage_error(capsys, argv) -> str:
    """An argparse error: exit 2, the last line names the argument."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_zero_is_refused_not_replaced_by_the_preset(tmp_path, capsys):
    """--steps 0, --depth 0, --num-seeds 0 used to train the preset's steps, depth 2, the default seeds."""
    out = str(tmp_path / "r")
    assert "train.steps must be > 0" in one_line_error(capsys, [*TRAIN, "--steps", "0", "--out", out])
    assert "model.n_layers must be >= 1" in one_line_error(capsys, [*TRAIN, "--depth", "0", "--out", out])
    assert "--num-seeds must be >= 1" in one_line_error(capsys, [*TRAIN, "--num-seeds", "0", "--out", out])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv, name",
    [
        (["train", "--task", "question", "--seeds", "a,b"], "--seeds"),
        (["train", "--task", "question", "--lrs", "x"], "--lrs"),
        (["sweep", "--task", "question", "--seeds", "a"], "--seeds"),
        (["sweep", "--task", "question", "--lrs", "1e-3,x"], "--lrs"),
        (["bench", "--seeds", "a"], "--seeds"),
    ],
)
def test_a_list_that_does_not_parse_is_a_usage_error(tmp_path, capsys, argv, name):
    line = usage_error(capsys, [*argv, "--out", str(tmp_path / "o")])
    assert f"argument {name}:" in line and "comma-separated list" in line


def test_a_failed_file_operation_is_one_line_naming_the_file(tmp_path, capsys):
    """--out naming a regular file, a data file that is a directory: the OSError's file, not a traceback."""
    file = tmp_path / "file"
    file.write_text("")
    assert f"{file}: File exists" in one_line_error(capsys, [*TRAIN, "--out", str(file)])
    err = one_line_error(capsys, [*TRAIN, "--set", f"data.train_file={tmp_path}", "--out", str(tmp_path / "r")])
    assert f"{tmp_path}: Is a directory" in err
    run = tmp_path / "question_L2"  # the least a report or a comparison reads
    run.mkdir()
    rec = {"step": 100, "seed": 42, "member": 0, "train_loss": 1.0, "val_acc": 0.5, "gen_acc": 0.1}
    (run / "metrics.jsonl").write_text(json.dumps(rec) + "\n")
    assert "File exists" in one_line_error(capsys, ["report", str(run), "--out", str(file)])
    assert "File exists" in one_line_error(capsys, ["compare", str(run), str(run), "--out", str(file)])


def test_bench_refuses_what_it_cannot_measure_before_measuring(monkeypatch, capsys):
    """An unknown task used to exit 0 with a traceback inside the results table."""
    monkeypatch.setattr(bench, "measure_isolated", lambda p: pytest.fail("measured despite bad arguments"))
    assert "unknown task 'foo'" in one_line_error(capsys, ["bench", "--task", "foo", "--peer", "none"])
    assert "model.n_layers" in one_line_error(capsys, ["bench", "--depth", "0", "--peer", "none"])
    assert "population sizes must be >= 1" in one_line_error(capsys, ["bench", "--seeds", "0", "--peer", "none"])
    assert "--peer gpu" in one_line_error(capsys, ["bench", "--peer", "gpu"])
    assert "unknown config field" in one_line_error(capsys, ["bench", "--set", "model.nope=1", "--peer", "none"])
    assert "task:depth=rate" in one_line_error(capsys, ["bench", "--project", "question=12"])
    assert "not an executable" in one_line_error(capsys, ["bench", "--peer-python", "/no/such/python"])


def test_distributed_start_up_says_what_is_missing(monkeypatch, tmp_path, capsys):
    """Off a cluster JAX raises a ValueError (for --coordinator alone too): one line each, naming the flags."""
    for var in ("SGJAX_COORDINATOR", "SGJAX_NUM_PROCESSES", "SGJAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    calls = []

    def off_cluster(*args):  # what jax.distributed.initialize() says with nothing to detect
        calls.append(args)
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "initialize", off_cluster)
    out = ["--out", str(tmp_path / "r")]
    err = one_line_error(capsys, [*TRAIN, "--distributed", *out])
    assert "coordinator_address should be defined" in err and "--coordinator, --num-processes" in err
    err = one_line_error(capsys, [*TRAIN, "--coordinator", "node0:1234", *out])  # on SLURM/TPU JAX fills the rest in
    assert "--num-processes and --process-id" in err and calls[-1] == ("node0:1234", None, None)
    monkeypatch.setenv("SGJAX_NUM_PROCESSES", "two")
    assert "SGJAX_NUM_PROCESSES='two' is not an integer" in one_line_error(capsys, [*TRAIN, *out])


def test_a_saved_config_that_is_not_an_object_is_a_config_error(tmp_path, capsys):
    for bad in ([], 3, {"task": "question", "model": []}):
        with pytest.raises(C.ConfigError, match="is not a config object"):
            C.from_dict(bad)
    (tmp_path / "config.json").write_text("[]")
    assert "config.json is corrupt: a JSON list where an object belongs" in one_line_error(
        capsys, ["probe", str(tmp_path), "--quiet"]
    )


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), -1e-3, 0.0])
def test_a_learning_rate_that_cannot_train_is_refused(lr):
    """train.lr=inf used to train to exit 0 with every member non-finite."""
    cfg = C.preset("smoke", "question", 2)
    with pytest.raises(C.ConfigError, match="train.lr must be finite and > 0"):
        C.validate(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=lr)))
    with pytest.raises(C.ConfigError, match="learning rates must be finite and > 0"):
        C.validate(dataclasses.replace(cfg, lrs=(1e-3, lr)))


def test_lr_and_max_len_on_the_command_line(tmp_path, capsys):
    out = ["--out", str(tmp_path / "r")]
    assert "train.lr must be finite" in one_line_error(capsys, [*TRAIN, "--set", "train.lr=inf", *out])
    assert "learning rates must be finite" in one_line_error(capsys, [*TRAIN, "--seeds", "42", "--lrs", "nan", *out])
    assert "model.max_len must be >= 1" in one_line_error(capsys, [*TRAIN, "--set", "model.max_len=0", *out])


def test_os_error_line_keeps_the_file_and_a_plain_message():
    assert cli.error_line(FileExistsError(17, "File exists", "/x/out")) == "/x/out: File exists"
    assert (
        cli.error_line(OSError(18, "Invalid cross-device link", "/a", None, "/b"))
        == "/a -> /b: Invalid cross-device link"
    )
    assert cli.error_line(FileNotFoundError("run.json does not exist")) == "run.json does not exist"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--set", "train.steps=1e400"], "bad value '1e400' for train.steps"),
        (["--set", "train.steps=2.5"], "bad value '2.5' for train.steps"),
        (["--seeds=-1,52"], "seeds must be integers in [0, 2^31)"),
        (["--seeds", str(2**31)], "seeds must be integers in [0, 2^31)"),
        (["--set", "data.seed=-1"], "data.seed must be in [0, 2^32)"),
        (["--set", "data.val_size=1e12"], "more than this machine's"),
    ],
)
def test_numbers_out_of_range_are_refused_before_any_work(tmp_path, capsys, extra, words):
    out = tmp_path / "r"
    assert words in one_line_error(capsys, [*TRAIN, *extra, "--out", str(out)])
    assert not (out / "metrics.jsonl").exists()


def test_probe_options_out_of_range_are_refused(tmp_path, capsys):
    run = tmp_path / "r"
    assert cli.main([*TRAIN, "--steps", "2", "--set", "train.ckpt_every=2", "--out", str(run)]) == 0
    assert "--sample-seed must be in [0, 2^32)" in one_line_error(capsys, ["probe", str(run), "--sample-seed", "-1"])
    assert "--sample must be > 0" in one_line_error(capsys, ["probe", str(run), "--sample", "0"])
    # a sweep checks its probe options before it trains
    err = one_line_error(
        capsys,
        [
            "sweep",
            "--task",
            "question",
            "--preset",
            "smoke",
            "--depths",
            "1",
            "--steps",
            "2",
            "--probe-sample",
            "0",
            "--out",
            str(tmp_path / "s"),
            "--no-progress",
        ],
    )
    assert "--sample must be > 0" in err and not (tmp_path / "s").exists()


def test_dry_run_prints_the_config_and_plan_and_trains_nothing(tmp_path, capsys):
    assert cli.main([*TRAIN, "--dry-run", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert json.JSONDecoder().raw_decode(out)[0]["train"]["steps"] == 4
    assert "4 steps of batch 8; 0 evaluations, 1 probe checkpoints" in out
    assert not (tmp_path / "r").exists()


def test_cross_seed_renaming_that_collides_says_why(tmp_path, capsys):
    err = one_line_error(
        capsys, [*TRAIN, "--seeds", "42,1042", "--lrs", "1e-3,1e-4", "--cross", "--out", str(tmp_path / "r")]
    )
    assert "--cross gives the j-th learning rate the seeds + 1000*j, and 1042 is then two members'" in err


def test_report_names_a_corrupt_config(tmp_path, capsys):
    run = tmp_path / "question_L2"
    run.mkdir()
    (run / "config.json").write_text("{broken")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "seed": 42, "val_acc": 0.5, "gen_acc": 0.1}) + "\n")
    err = one_line_error(capsys, ["report", str(tmp_path)])
    assert f"{run / 'config.json'} is corrupt: not JSON" in err


def test_every_argument_has_help():
    import argparse

    missing = []
    for name in cli.COMMANDS:
        parser = cli.build_parser([name])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        missing += [f"{name} {a.dest}" for a in sub._actions if not a.help and not isinstance(a, argparse._HelpAction)]
    assert not missing
