"""`sgjax sweep`: trains, probes, summarizes and reports; a rerun skips what is done."""

import json

from sgjax import cli, config as C, sweep

TINY = ["train.steps=20", "train.eval_every=10", "train.ckpt_every=10", "train.log_every=10", "train.chunk_steps=10",
        "model.d_model=32", "model.d_ff=64", "data.train_size=300", "data.val_size=40", "data.gen_size=40"]


def _configs(depths):
    return {("question", d): C.override(C.preset("smoke", "question", d), TINY) for d in depths}


def test_sweep_end_to_end_and_resume(tmp_path):
    out = tmp_path / "sw"
    sweep.run_sweep(["question"], [1], _configs([1]), out, probe_sample=8, progress=False)
    run = sweep.run_dir_for(out, "question", 1)
    for name in ("metrics.jsonl", "probe.jsonl", "summary.json", "summary.csv"):
        assert (run / name).stat().st_size > 0, name
    assert (out / "report" / "report.md").exists() and (out / "report" / "fig3a_inverted_u.png").exists()
    probe_lines = (run / "probe.jsonl").read_text().splitlines()
    assert sorted({json.loads(l)["step"] for l in probe_lines}) == [10, 20]
    ckpt = run / "checkpoints" / "20" / "params" / "seed_42.npz"
    stamp = ckpt.stat().st_mtime_ns
    sweep.run_sweep(["question"], [1], _configs([1]), out, probe_sample=8, progress=False)  # a rerun: nothing to redo
    assert ckpt.stat().st_mtime_ns == stamp
    assert (run / "probe.jsonl").read_text().splitlines() == probe_lines


def test_sweep_refuses_a_different_sweep_in_the_same_dir(tmp_path, capsys):
    out = tmp_path / "sw"
    sweep.write_manifest(out, {"tasks": ["question"], "depths": [1], "seeds": [42, 52], "preset": "smoke"}, False)
    code = cli.main(["sweep", "--task", "question", "--depths", "2", "--out", str(out), "--no-progress"])
    assert code == 2 and "different sweep" in capsys.readouterr().err
