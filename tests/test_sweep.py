"""`sgjax sweep`: trains, probes, summarizes and reports; a rerun skips what is done."""

import json

import pytest

from sgjax import cli, sweep
from sgjax import config as C
from sgjax.errors import UserError

TINY = [
    "train.steps=20",
    "train.eval_every=10",
    "train.ckpt_every=10",
    "train.log_every=10",
    "train.chunk_steps=10",
    "model.d_model=32",
    "model.d_ff=64",
    "data.train_size=300",
    "data.val_size=40",
    "data.gen_size=40",
]


def _configs(depths, tasks=("question",)):
    return {(t, d): C.override(C.preset("smoke", t, d), TINY) for t in tasks for d in depths}


def test_sweep_end_to_end_and_resume(tmp_path):
    """QF (unpadded rows) and Dyck (packed rows, its own probe sample): trained, evaluated, probed, reported."""
    out, tasks = tmp_path / "sw", ["question", "dyck"]
    sweep.run_sweep(tasks, [1], _configs([1], tasks), out, probe_sample=8, progress=False)
    probes = {}
    for task, layout in (("question", "unpadded"), ("dyck", "packed")):
        run = sweep.run_dir_for(out, task, 1)
        for name in ("metrics.jsonl", "probe.jsonl", "summary.json", "summary.csv"):
            assert (run / name).stat().st_size > 0, name
        assert json.loads((run / "config.json").read_text())["data"]["layout"] == layout
        evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "gen_acc" in r]
        assert sorted((r["step"], r["seed"]) for r in evals) == [(10, 42), (10, 52), (20, 42), (20, 52)]
        probes[task] = (run / "probe.jsonl").read_text().splitlines()
        assert sorted({json.loads(l)["step"] for l in probes[task]}) == [10, 20]
        assert all(json.loads(l)["tscore"] is not None for l in probes[task])
    assert (out / "report" / "report.md").exists() and (out / "report" / "fig3a_share_by_depth.png").exists()
    ckpt = sweep.run_dir_for(out, "question", 1) / "checkpoints" / "20" / "params" / "seed_42.npz"
    stamp = ckpt.stat().st_mtime_ns
    sweep.run_sweep(tasks, [1], _configs([1], tasks), out, probe_sample=8, progress=False)  # a rerun: nothing to redo
    assert ckpt.stat().st_mtime_ns == stamp
    for task in tasks:
        assert (sweep.run_dir_for(out, task, 1) / "probe.jsonl").read_text().splitlines() == probes[task]
    legacy = sweep.run_dir_for(out, "question", 1) / "config.json"  # as saved before layout and tense_drop_last
    saved = json.loads(legacy.read_text())
    saved["data"]["layout"] = "auto"
    del saved["eval"]["tense_drop_last"]
    legacy.write_text(json.dumps(saved))
    sweep.run_sweep(tasks, [1], _configs([1], tasks), out, probe_sample=8, progress=False)  # still this config's run
    changed = {k: C.override(c, ["train.lr=5e-2"]) for k, c in _configs([1], tasks).items()}
    with pytest.raises(UserError, match="different config"):  # finished runs of another config are not reused
        sweep.run_sweep(tasks, [1], changed, out, probe_sample=8, progress=False)


def test_sweep_refuses_a_different_sweep_in_the_same_dir(tmp_path, capsys):
    out = tmp_path / "sw"
    sweep.write_manifest(out, {"tasks": ["question"], "depths": [1], "seeds": [42, 52], "preset": "smoke"}, False)
    code = cli.main(["sweep", "--task", "question", "--depths", "2", "--out", str(out), "--no-progress"])
    assert code == 2 and "different sweep" in capsys.readouterr().err


def test_sweep_arguments_and_a_corrupt_manifest_are_one_line_errors(tmp_path, capsys):
    base = ["sweep", "--task", "question", "--preset", "smoke", "--out", str(tmp_path / "sw"), "--no-progress"]
    with pytest.raises(SystemExit) as exit_:  # argparse, as for --seeds: usage, then the error line
        cli.main(base + ["--depths", "a"])
    assert (
        exit_.value.code == 2
        and "argument --depths: 'a' is not a comma-separated list of depths" in capsys.readouterr().err
    )
    assert cli.main(base + ["--depths", ","]) == 2
    assert "--depths is empty" in capsys.readouterr().err  # not replaced by the preset's depths
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "sweep.json").write_text("{")
    assert cli.main(base + ["--depths", "1"]) == 2
    assert "sweep.json is corrupt" in capsys.readouterr().err
