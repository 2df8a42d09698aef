"""compare: paired per-seed differences of two runs, the sign-flip p-value, the CLI's files and errors."""

import json

import numpy as np
import pytest

from sgjax import cli
from sgjax.analysis import compare as C
from sgjax.errors import UserError

SEEDS = [42 + 10 * i for i in range(10)]
STEPS = [1000 * (i + 1) for i in range(6)]


def curves_SxT(rng):
    """Per-seed train_loss, val_acc, gen_acc curves that differ between seeds."""
    loss = 2.0 * np.exp(-np.arange(6) / 2)[None] + rng.uniform(0, 0.2, (10, 1))
    val = np.clip(0.5 + 0.1 * np.arange(6)[None] + rng.uniform(-0.05, 0.05, (10, 6)), 0, 1)
    gen = rng.uniform(0, 0.6, (10, 6))
    return {"train_loss": loss, "val_acc": val, "gen_acc": gen}


def write_run(path, metrics, seeds=SEEDS, steps=STEPS):
    """metrics.jsonl with one record per (step, seed), as sgjax train logs them at evaluation steps."""
    path.mkdir(parents=True, exist_ok=True)
    recs = [
        {"step": t, "seed": s, "member": i, **{k: float(v[i, j]) for k, v in metrics.items()}}
        for j, t in enumerate(STEPS)
        if t in steps
        for i, s in enumerate(SEEDS)
        if s in seeds
    ]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return path


def test_identical_runs_have_no_gap(tmp_path):
    m = curves_SxT(np.random.default_rng(0))
    result = C.compare_runs(write_run(tmp_path / "a", m), write_run(tmp_path / "b", m))
    assert set(result) == set(C.METRICS)
    for r in result.values():
        assert (r["seeds"], r["steps"], r["last_step"]) == (10, 6, 6000)
        assert r["max_mean_gap"] == 0.0 and r["final_gap"] == 0.0 and r["final_p"] == 1.0
        assert r["seed_std"] > 0 and C.within_noise(r)


def test_a_shift_in_every_seed_is_flagged(tmp_path):
    a = curves_SxT(np.random.default_rng(0))
    b = dict(a, gen_acc=a["gen_acc"] + 0.3)
    result = C.compare_runs(write_run(tmp_path / "a", a), write_run(tmp_path / "b", b))
    gen = result["gen_acc"]
    assert gen["max_mean_gap"] == pytest.approx(0.3) and gen["final_gap"] == pytest.approx(0.3)
    assert gen["final_p"] == pytest.approx(2 / 2**10)  # only the all-plus and all-minus sign patterns reach it
    assert not C.within_noise(gen)
    assert C.within_noise(result["train_loss"]) and C.within_noise(result["val_acc"])
    assert "| gen_acc | 10 |" in C.format_table(result) and "| no |" in C.format_table(result)


def noisy_curves_SxT(rng, offsets_S, shift=0.0):
    """100 steps of a rising curve per seed: a seed's own offset plus per-step noise (steps correlate)."""
    return (1 - np.exp(-np.arange(100) / 20))[None] + offsets_S[:, None] + rng.normal(0, 0.03, (10, 100)) + shift


def test_runs_of_one_distribution_are_within_noise_and_a_small_paired_shift_is_not():
    """The verdict's false-alarm rate is about 5% however the steps correlate; pairing finds a shift of 0.4 seed std."""
    same = paired_shift = saturated = 0
    for i in range(40):
        rng = np.random.default_rng(i)
        steps = list(range(1, 101))
        a, b = (noisy_curves_SxT(rng, rng.normal(0, 0.05, 10)) for _ in range(2))  # unpaired: other offsets
        same += C.within_noise(C.compare_metric(a, b, steps))
        off = rng.normal(0, 0.05, 10)  # paired: the same seeds start alike, as the same init and data make them
        paired_shift += C.within_noise(
            C.compare_metric(noisy_curves_SxT(rng, off), noisy_curves_SxT(rng, off, 0.02), steps)
        )
        sat_a, sat_b = (np.minimum(1.0, noisy_curves_SxT(rng, rng.normal(0, 0.05, 10)) + 0.3) for _ in range(2))
        saturated += C.within_noise(C.compare_metric(sat_a, sat_b, steps))  # seed std 0 at most steps
    assert same >= 36 and saturated >= 36 and paired_shift == 0


def test_sign_flip_p():
    assert C.sign_flip_p(np.array([1.0, 1.0, 1.0])) == pytest.approx(2 / 8)
    assert C.sign_flip_p(np.array([1.0, -1.0])) == 1.0
    assert C.sign_flip_p(np.zeros(5)) == 1.0
    many = C.sign_flip_p(np.full(20, 0.1))  # sampled beyond 16 seeds, deterministic
    assert many < 0.001 and many == C.sign_flip_p(np.full(20, 0.1))


def test_compares_only_shared_seeds_and_steps(tmp_path):
    m = curves_SxT(np.random.default_rng(1))
    a = write_run(tmp_path / "a", m, steps=STEPS[:-1])
    b = write_run(tmp_path / "b", m, seeds=SEEDS[:7])
    r = C.compare_runs(a, b)["val_acc"]
    assert (r["seeds"], r["steps"], r["last_step"]) == (7, 5, 5000)


def test_cli_writes_table_and_figure(tmp_path, capsys):
    m = curves_SxT(np.random.default_rng(2))
    a, b = write_run(tmp_path / "fp32", m), write_run(tmp_path / "tf32", m)
    assert cli.main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    assert "| train_loss | 10 |" in capsys.readouterr().out
    assert "| gen_acc |" in (tmp_path / "cmp" / "compare.md").read_text()
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000


def test_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["compare", str(tmp_path / "empty"), str(tmp_path / "empty")]) == 2
    assert "metrics.jsonl does not exist" in capsys.readouterr().err
    a = write_run(tmp_path / "a", curves_SxT(np.random.default_rng(0)), seeds=SEEDS[:3])
    b = write_run(tmp_path / "b", curves_SxT(np.random.default_rng(0)), seeds=SEEDS[5:])
    with pytest.raises(UserError, match="share no seed"):
        C.compare_runs(a, b)


def test_a_large_gap_between_few_seeds_is_a_difference_and_a_small_one_is_undecided(tmp_path):
    """Two seeds: the sign-flip test cannot reject (its smallest p is 0.5), so a val gap of 0.37 is 'no' by the
    seed spread, and a gap inside it is 'too few seeds', never 'yes'."""
    m = curves_SxT(np.random.default_rng(3))
    two = SEEDS[:2]
    a = write_run(tmp_path / "a", m, seeds=two)
    far = write_run(tmp_path / "far", dict(m, val_acc=m["val_acc"] - 0.37), seeds=two)
    near = write_run(tmp_path / "near", dict(m, val_acc=m["val_acc"] + 0.001), seeds=two)
    assert C.verdict(C.compare_runs(a, far)["val_acc"]) == "no"
    assert C.verdict(C.compare_runs(a, near)["val_acc"]) == "too few seeds"
    assert "cannot reach p < 0.025" in C.format_table(C.compare_runs(a, near))


def test_a_seed_that_diverged_in_one_run_only_is_a_difference(tmp_path):
    m = curves_SxT(np.random.default_rng(4))
    a = write_run(tmp_path / "a", m)
    b = write_run(tmp_path / "b", m)
    recs = [json.loads(l) for l in (b / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        r["nonfinite"] = r["seed"] == 52 and r["step"] >= 3000
    (b / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    result = C.compare_runs(a, b)
    assert all(r["seeds"] == 9 and r["diverged_b"] == [52] for r in result.values())
    assert all(C.verdict(r) == "no" for r in result.values())
    assert "Diverged (non-finite) in B: seeds 52" in C.format_table(result)
