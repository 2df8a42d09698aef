"""sgjax.analysis.report on synthetic sweeps: the table's numbers, the figures, the best-depth rule, edge cases."""

import json
import math

import numpy as np
import pytest

from sgjax import cli
from sgjax.analysis import paper, report, summarize
from sgjax.errors import UserError

SEEDS = (42, 52, 62)
FINALS = {2: (0.95, 0.30, 0.20), 4: (0.90, 0.85, 0.50)}  # final gen per seed: 1/3 and 2/3 grok
STEPS = 600
EVAL_EVERY = 100
ES_STEP = 200  # val reaches 1.0 here and stays


def gen_curve(step: int, final: float, horizon: int = STEPS) -> float:
    """A synthetic generalization curve: low, then a climb to `final` at the last eval (the horizon)."""
    return round(0.05 + (final - 0.05) * (step / horizon) ** 2, 6)


def val_curve(step: int) -> float:
    return 1.0 if step >= ES_STEP else round(0.5 + step / 400, 6)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def make_run(run_dir, task, depth, finals, *, seeds=SEEDS, steps=STEPS, evals=True, probe=True, nonfinite=None):
    """One synthetic run dir: config.json, metrics.jsonl (train every 50, eval every 100), probe.jsonl."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"task": task, "model": {"n_layers": depth}, "seeds": list(seeds)}))
    recs = []
    for step in range(50, steps + 1, 50):
        for m, (seed, final) in enumerate(zip(seeds, finals)):
            bad = nonfinite is not None and seed == nonfinite[0] and step >= nonfinite[1]
            r = {
                "step": step,
                "seed": seed,
                "member": m,
                "lr": 1e-4,
                "train_loss": 2.0 / (1 + step / 100) + 0.01 * depth,
                "grad_norm": 1.0,
                "nonfinite": bad,
            }
            if evals and step % EVAL_EVERY == 0:
                r.update(val_acc=val_curve(step), gen_acc=gen_curve(step, final, steps))
            recs.append(r)
    write_jsonl(run_dir / "metrics.jsonl", recs)
    if probe:
        prs = []
        for step in range(200, steps + 1, 200):
            for seed in seeds:
                t = step / steps
                prs.append(
                    {
                        "step": step,
                        "seed": seed,
                        "weight_norm_perL": 60 / depth + 5 * t,
                        "sparsity": -40 + 10 * t,
                        "tscore": 0.3 + 0.1 * depth * t + 0.01 * (seed % 3),
                        "tparseval": 0.4 + 0.3 * t,
                        "tparseval_rb": 0.66,
                    }
                )
        write_jsonl(run_dir / "probe.jsonl", prs)


def make_sweep(root, finals=FINALS, task="question", **kw):
    """A sweep dir with sweep.json and one run per depth."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.json").write_text(
        json.dumps({"tasks": [task], "depths": sorted(finals), "seeds": list(SEEDS), "preset": "smoke"})
    )
    for depth, f in finals.items():
        make_run(root / f"{task}_L{depth}", task, depth, f, **kw)
    return root


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory):
    root = make_sweep(tmp_path_factory.mktemp("sweep") / "sw", nonfinite=(62, 400))
    return root, report.write_report(root)


def table_row(md: str, task: str, depth_cell: str) -> list[str]:
    """The accuracy-table row of a task/depth, as cells."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 10 and cells[0] == task and cells[1] == depth_cell:
            return cells
    raise AssertionError(f"no row for {task} {depth_cell} in\n{md}")


def test_table_numbers(sweep_report):
    _, path = sweep_report
    md = path.read_text()
    row4 = table_row(md, "question", "4 **(best)**")
    assert row4[2] == "600"  # last eval step
    assert row4[3] == "2/3"  # seeds with final gen >= 0.8
    assert row4[4] == "2/10"  # paper Fig 3a at 4 layers
    assert row4[6] == "1.000"  # final val
    assert row4[7] == f"{np.mean(FINALS[4]):.3f}"
    assert row4[9] == f"{np.mean(FINALS[4]):.3f}"  # max gen is the final one on these monotone curves
    assert row4[11] == f"{np.mean([gen_curve(ES_STEP, f) for f in FINALS[4]]):.3f}"  # ES at the first max val
    row2 = table_row(md, "question", "2")
    assert row2[3] == "1/3" and row2[4] == "0/10"
    assert "seed 62 non-finite from step 400" in md
    assert "- question: 4 layers" in md
    assert report.stats.layers(1) == "1 layer"  # the best-depth list and non-finite lines use it


def test_tree_table_and_gaps(sweep_report):
    _, path = sweep_report
    md = path.read_text()
    tscore4 = np.mean([0.3 + 0.4 + 0.01 * (s % 3) for s in SEEDS])
    assert (
        f"| question | 4 | 600 | {tscore4:.3f} | – | – | 0.700 | – |" in md
    )  # paper has no 4-layer QF tree projection
    g = report.stats.mean_curve_gaps(report.runs.load_run(sweep_report[0] / "question_L4", "question", 4).evals)
    assert g["es_step"] == ES_STEP
    assert math.isclose(g["gap_end"], 1.0 - np.mean(FINALS[4]), abs_tol=1e-9)
    # ours, the same rule on the paper's own mean curve (QF 6 layers: ES at 9k, Δ 50.8), and the paper's label
    assert f"| {100 * g['gap_es']:.1f} | 50.8 (9000) | 65 |" in md


def test_figures_exist(sweep_report):
    root, path = sweep_report
    for name in (
        "fig2_grokking",
        "fig3a_share_by_depth",
        "fig3b_probe",
        "fig4_tparseval",
        "per_seed_question",
        "train_loss",
    ):
        for ext in ("png", "pdf"):
            f = path.parent / f"{name}.{ext}"
            assert f.exists() and f.stat().st_size > 1000, f
        assert f"({name}.png)" in path.read_text()
    assert json.loads((path.parent / "report.json").read_text())["best_depth"] == {"question": 4}


def stats(depth, n_grok, mean_final, n=3):
    return {"depth": depth, "n_grok": n_grok, "mean_final_gen": mean_final, "n_eval_seeds": n}


def test_no_best_depth_where_no_seed_groks(tmp_path):
    """Every final gen below 0.8: no best depth is declared; Fig 2 shows the highest mean final gen and says so."""
    root = make_sweep(tmp_path / "sw", finals={2: (0.30, 0.20, 0.10), 4: (0.60, 0.50, 0.40)})
    md = report.write_report(root).read_text()
    assert "**no depth groks**" in md and "Fig 2 shows 4 layers, the highest mean final gen (0.500)" in md
    assert "(best)" not in md
    assert json.loads((root / "report" / "report.json").read_text())["best_depth"] == {"question": None}
    assert (root / "report" / "fig2_grokking.png").stat().st_size > 1000


def test_tasks_in_the_papers_order_and_provenance(tmp_path):
    root = tmp_path / "sw"
    for task in ("dyck", "tense", "question"):
        make_run(root / f"{task}_L2", task, 2, (0.9, 0.9, 0.9), probe=False)
    (root / "question_L2" / "provenance.jsonl").write_text(
        json.dumps(
            {
                "date": "2026-12-07T10:00:00",
                "command": ["sgjax", "train"],
                "versions": {"sgjax": "0.1.0", "jax": "0.10.2"},
                "python": "3.11.7",
                "commit": "abc",
                "device": "1x cpu",
            }
        )
        + "\n"
    )
    md = report.write_report(root).read_text()
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ") and "**(best)**" in line]
    assert rows == ["question", "tense", "dyck"]
    assert "- `question_L2`: 1 invocation, 2026-12-07T10:00:00" in md and "`sgjax train` on 1x cpu" in md
    assert "- `dyck_L2`: no provenance.jsonl" in md


def test_intervals_against_their_formulas():
    lo, hi = report.stats.share_interval(0, 4)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 4))  # Clopper-Pearson upper bound for 0 of n
    lo, hi = report.stats.mean_interval(np.array([[0.0], [1.0]]))
    assert (lo[0] + hi[0]) / 2 == pytest.approx(0.5) and hi[0] - 0.5 == pytest.approx(12.7062 * 0.5, rel=1e-4)


def test_best_depth_rule():
    assert report.stats.best_depth([stats(2, 1, 0.9), stats(4, 2, 0.5)]) == 4  # most grokking seeds wins
    assert (
        report.stats.best_depth([stats(2, 2, 0.7), stats(4, 2, 0.8), stats(6, 1, 0.99)]) == 4
    )  # tie -> higher mean final
    assert report.stats.best_depth([stats(6, 2, 0.8), stats(2, 2, 0.8)]) == 2  # full tie -> fewer layers
    assert report.stats.best_depth([stats(2, 0, None, n=0)]) is None
    assert report.stats.best_depth([stats(2, 0, 0.3), stats(4, 0, 0.6)]) is None  # no tie-break among zeros
    assert report.stats.shown_depth([stats(2, 0, 0.3), stats(4, 0, 0.6)]) == 4
    assert report.stats.best_depth([stats(2, 3, 0.8, n=10), stats(4, 2, 0.7, n=3)]) == 4  # a share: 2/3 beats 3/10


def test_fig3b_takes_the_deepest_grokking_depth_and_mixed_horizons_are_flagged(tmp_path):
    """As the paper picks (TI 2/4/6): the deepest depth plotted is the largest with a grokking seed, not the largest."""
    root = make_sweep(
        tmp_path / "sw", finals={2: (0.1, 0.1, 0.1), 4: (0.9, 0.9, 0.2), 6: (0.85, 0.1, 0.1), 8: (0.1, 0.1, 0.1)}
    )
    runs = report.runs.discover_runs(root)
    assert [r.depth for r in report.stats.pick_depths(runs, 4)] == [2, 4, 6]
    assert "last evaluated at different steps" not in report.write_report(root).read_text()
    make_run(root / "question_L10", "question", 10, (0.1, 0.1, 0.1), steps=300)  # stopped early
    md = report.write_report(root).read_text()
    assert "question's depths were last evaluated at different steps" in md and "10 layers: 300" in md


def test_seed_summary_rules():
    e = report.runs.Series(
        np.array([1, 2, 3, 4, 5, 6]),
        np.array([0.5, 0.9, 0.9, 0.9, 0.9, 1.0]),
        np.array([0.1, 0.85, 0.7, 0.9, 0.95, 0.82]),
    )
    s = report.runs.seed_summary(e)
    assert s["final_gen"] == 0.82 and s["max_gen"] == 0.95 and s["step_of_max_gen"] == 5
    assert s["first_step_gen_ge_80"] == 2 and s["step_gen_stays_ge_80"] == 4
    assert s["es_step_first_max_val"] == 6 and s["es_step_patience3"] == 2  # patience stops after 3 flat evals
    assert s["gen_at_first_val_ge_99"] == 0.82
    assert summarize.stays_index(np.array([0.9, 0.5])) is None


def test_single_depth_one_seed_no_probe(tmp_path):
    root = tmp_path / "one"
    root.mkdir()
    make_run(root / "tense_L3", "tense", 3, (0.9,), seeds=(7,), steps=100, probe=False)
    md = report.write_report(root).read_text()
    assert "| tense | 3 **(best)** | 100 | 1/1 |" in md
    assert not (root / "report" / "fig3b_probe.png").exists() and "Not drawn" in md
    assert (root / "report" / "fig2_grokking.png").stat().st_size > 1000


def test_single_run_dir_and_no_evals(tmp_path):
    make_run(tmp_path / "dyck_L2", "dyck", 2, (0.5, 0.6), seeds=(1, 2), evals=False, probe=False)
    md = report.write_report(tmp_path / "dyck_L2").read_text()  # a run dir is a one-run sweep
    assert "dyck: no evaluations" in md
    assert (tmp_path / "dyck_L2" / "report" / "train_loss.png").exists()


def test_no_runs_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserError, match="no run directories"):
        report.write_report(tmp_path)
    with pytest.raises(UserError):
        report.write_report(tmp_path / "missing")
    (tmp_path / "question_L2").mkdir()
    (tmp_path / "question_L2" / "config.json").write_text(json.dumps({"task": "question", "model": {"n_layers": 2}}))
    with pytest.raises(UserError, match="nothing to plot"):
        report.write_report(tmp_path)
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "nothing to plot" in capsys.readouterr().err


def test_two_runs_of_one_depth_are_refused(tmp_path):
    """A copy of a run beside it (same task and depth in config.json) is named, not mixed in or crashed on."""
    make_run(tmp_path / "dyck_L2", "dyck", 2, (0.5, 0.6), seeds=(1, 2), probe=False)
    make_run(tmp_path / "dyck_L2_copy", "dyck", 2, (0.5, 0.6), seeds=(1, 2), evals=False, probe=False)
    for p in (tmp_path / "dyck_L2", tmp_path / "dyck_L2_copy"):
        (p / "config.json").write_text(json.dumps({"task": "dyck", "model": {"n_layers": 2}}))
    with pytest.raises(UserError, match="both dyck at depth 2"):
        report.write_report(tmp_path)


def smoke_config(seeds, **train) -> str:
    """config.json of a QF 2-layer smoke run with these seeds and train fields."""
    import dataclasses

    from sgjax import config

    cfg = config.preset("smoke", "question", 2)
    return dataclasses.replace(cfg, seeds=tuple(seeds), train=dataclasses.replace(cfg.train, **train)).to_json()


def test_runs_of_one_experiment_with_other_seeds_are_pooled(tmp_path, capsys):
    """Seeds trained in two runs (the first two, then two more) report as one run of four; the note says which from
    which.
    """
    a, b = tmp_path / "a" / "question_L2", tmp_path / "b" / "question_L2"
    make_run(a, "question", 2, (0.9, 0.2), seeds=(42, 52))
    make_run(b, "question", 2, (0.85, 0.1), seeds=(62, 72))
    a.joinpath("config.json").write_text(smoke_config((42, 52)))
    b.joinpath("config.json").write_text(smoke_config((62, 72), chunk_steps=7, member_groups=2))  # speed only: poolable
    (run,) = report.discover_runs(tmp_path / "a", tmp_path / "b")
    assert run.seeds == [42, 52, 62, 72] and run.paths == (a, b) and sorted(run.evals) == [42, 52, 62, 72]
    assert len(run.probe) == 2 * len(report.load_run(a, "question", 2).probe)
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "both")]) == 0
    md = (tmp_path / "both" / "report.md").read_text()
    assert (
        f"**Pooled:** question 2 layers pools 4 seeds from 2 runs of one experiment: `{a}` (42, 52); `{b}` (62, 72)."
        in md
    )
    assert table_row(md, "question", "2 **(best)**")[3] == "2/4"  # 0.9 and 0.85 grok, 0.2 and 0.1 do not
    with pytest.raises(UserError, match="needs --out"):
        report.write_report([tmp_path / "a", tmp_path / "b"])
    c = tmp_path / "c" / "question_L2"  # a third run that repeats a seed of the second
    make_run(c, "question", 2, (0.5, 0.5), seeds=(72, 82), probe=False)
    c.joinpath("config.json").write_text(smoke_config((72, 82)))
    with pytest.raises(
        UserError,
        match=f"{b} and {c} are both question at depth 2, but not one experiment with other seeds "
        r"\(seed 72 in both\)",
    ):
        report.discover_runs(tmp_path / "a", tmp_path / "b", tmp_path / "c")


def test_runs_of_one_depth_but_another_experiment_are_refused(tmp_path):
    """Two runs that differ in what a seed computes (here the learning rate) are named with the
    difference, not pooled.
    """
    make_run(tmp_path / "question_L2", "question", 2, (0.9, 0.2), seeds=(42, 52), probe=False)
    make_run(tmp_path / "more", "question", 2, (0.9, 0.2), seeds=(62, 72), probe=False)
    (tmp_path / "question_L2" / "config.json").write_text(smoke_config((42, 52)))
    (tmp_path / "more" / "config.json").write_text(smoke_config((62, 72), lr=3e-4))
    with pytest.raises(
        UserError, match=r"both question at depth 2, but not one experiment .*train.lr 0.0003 vs 0.001\)"
    ):
        report.write_report(tmp_path)
    (tmp_path / "more" / "config.json").write_text(smoke_config((62, 72)))
    assert report.discover_runs(tmp_path)[0].seeds == [42, 52, 62, 72]
    from sgjax.analysis.probe.run import OPTIONS_FILE

    assert report.runs.PROBE_OPTIONS == OPTIONS_FILE
    (tmp_path / "more" / "probe_options.json").write_text(json.dumps({"sample": 1000}))
    assert report.discover_runs(tmp_path)[0].seeds == [42, 52, 62, 72]  # one probed, one not: nothing to compare
    (tmp_path / "question_L2" / "probe_options.json").write_text(json.dumps({"sample": 10000}))
    with pytest.raises(UserError, match=r"probe.sample 1000 vs 10000"):
        report.write_report(tmp_path)


def test_a_run_of_several_learning_rates_is_flagged(tmp_path):
    """Members at several lrs are averaged like seeds in the figures: report.md says so and where each
    lr's numbers are.
    """
    make_run(tmp_path / "question_L2", "question", 2, (0.9, 0.2), seeds=(42, 1042), probe=False)
    (tmp_path / "question_L2" / "config.json").write_text(
        json.dumps(
            {
                "task": "question",
                "model": {"n_layers": 2},
                "seeds": [42, 1042],
                "lrs": [1e-4, 5e-5],
                "train": {"lr": 1e-4},
            }
        )
    )
    md = report.write_report(tmp_path).read_text()
    assert "at 2 learning rates (5e-05, 0.0001)" in md and "aggregate_by_lr" in md


def test_cli(tmp_path, capsys):
    root = make_sweep(tmp_path / "sw", finals={6: (0.9, 0.9, 0.1)}, probe=False)
    assert cli.main(["report", str(root), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").exists() and "report:" in capsys.readouterr().out


def test_paper_numbers():
    assert paper.fig3a_counts("question") == {2: 0, 4: 2, 6: 8, 8: 4, 10: 1}
    assert paper.fig3a_counts("tense")[4] == 7 and paper.fig3a_counts("dyck") == {}
    assert paper.aggregate("question", 6)["n_final_gen_ge_0p8"] == 9
    assert paper.aggregate("dyck", 6)["horizon_steps"] == 400_000
    assert paper.tree_projection("tense", 4)["tscore_mean"] == pytest.approx(0.8686)
    assert paper.right_branching("question") == pytest.approx(0.6628, abs=1e-4)
    curve = paper.fig2_curve("question")
    assert curve["depth"] == 6 and curve["gen"][-1] == pytest.approx(0.929, abs=1e-3)
    assert paper.fig2_gaps("tense")["gap_es_pct"] == 50


def test_paper_seed_spread():
    spread = paper.seed_spread("question", 6)
    assert spread["step"][:3] == [3000, 6000, 9000] and spread["n_seeds"][0] == 20
    for key in ("val", "gen"):
        for q in spread[key]:
            assert 0 <= q["min"] <= q["q25"] <= q["median"] <= q["q75"] <= q["max"] <= 1
    assert spread["gen"][1]["median"] < spread["gen"][0]["median"] < spread["gen"][2]["median"]  # QF's dip at 6k
    assert paper.seed_spread("tense", 4)["n_seeds"][0] == 20 and paper.seed_spread("dyck", 6) is not None
    assert paper.seed_spread("question", 2) is None
    probe = paper.probe_seed_spread("question", 6)
    assert probe["step"][0] == 3000 and probe["n_seeds"][0] == 10
    assert all(0 <= q["min"] <= q["median"] <= q["max"] <= 1 for q in probe["tparseval"])
    assert paper.probe_seed_spread("tense", 4) is not None
    dyck = paper.probe_seed_spread("dyck", 6)  # tscore only: Dyck has no parses
    assert set(dyck) == {"step", "n_seeds", "tscore"} and dyck["step"][0] == 10_000 and dyck["n_seeds"][0] == 10
    assert 1.7 < dyck["tscore"][0]["min"] < dyck["tscore"][0]["max"] < 2.4  # Dyck's tscores are 1-4


def test_paper_seed_curves_hold_every_logged_seed():
    curves = paper.seed_curves("tense", 4)
    assert curves["seed"][:2] == [42, 52] and len(curves["seed"]) == 20 and len(curves["gen"]) == len(curves["step"])
    assert all(len(row) == 20 for row in curves["gen"])
    # the packaged quantiles are these seeds' own
    assert paper.seed_spread("tense", 4)["gen"][3] == paper.quantiles(curves["gen"][3])
    dyck = paper.seed_curves("dyck", 6)
    assert any(v is None for row in dyck["gen"] for v in row)  # Dyck's seeds were not all logged at every checkpoint
    assert paper.seed_spread("dyck", 6)["n_seeds"] == [sum(v is not None for v in row) for row in dyck["gen"]]
    assert len(paper.probe_seed_curves("question", 6)["seed"]) == 10 and "tparseval" not in paper.probe_seed_curves(
        "dyck", 6
    )


def test_percentile_among_counts_ties_half():
    others = np.array([0.1, 0.5, 0.9])
    assert report.stats.percentile_among(0.5, others) == pytest.approx(0.5)
    assert report.stats.percentile_among(0.0, others) == 0.0 and report.stats.percentile_among(1.0, others) == 1.0
    assert report.stats.percentile_among(0.7, others) == pytest.approx(2 / 3)


def test_subset_p_enumerates_small_pools_and_samples_large_ones():
    # the run's 0.0 among the splits of {0, 0.5, 1} into 1 and 2: means 0, 0.5, 1 -> as low 1/3, as high 1
    assert report.stats.subset_p(np.array([0.0]), np.array([0.5, 1.0]), "less") == pytest.approx(1 / 3)
    assert report.stats.subset_p(np.array([0.0]), np.array([0.5, 1.0]), "greater") == pytest.approx(1.0)
    # C(30, 10) splits: sampled; the middle ten of a line are neither low nor high
    mid = report.stats.subset_p(
        np.linspace(0.35, 0.65, 10), np.r_[np.linspace(0, 0.3, 10), np.linspace(0.7, 1, 10)], "less"
    )
    assert 0.3 < mid < 0.7


def test_seed_ranks_by_hand():
    curves = {
        "step": [3000, 6000, 9000],
        "seed": [1, 2, 3],
        "gen": [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.1, None, None]],
    }
    ours = {3000: {42: 0.0}, 6000: {42: 0.0}, 9000: {42: 0.5}, 12000: {42: 0.5}}
    r = report.stats.seed_ranks(curves, "gen", ours)
    assert r["steps"] == [3000, 6000]  # 9000 has one paper seed, 12000 none
    assert r["run"] == {42: 0.0} and r["paper"] == pytest.approx([0.0, 0.5, 1.0])
    # the pool's mean percentiles, each seed among the three others: 1/3, 2/3, 1 and this run's 0
    assert r["p_low"] == pytest.approx(0.25) and r["p_high"] == 1.0
    assert report.stats.seed_ranks(curves, "gen", {}) is None


def test_seeds_below_every_paper_seed_rank_lowest_of_the_pool():
    curves = paper.seed_curves("question", 6)
    ours = {step: {42: -1.0, 52: -1.0} for step in curves["step"][:5]}
    r = report.stats.seed_ranks(curves, "gen", ours)
    assert r["run"] == {42: 0.0, 52: 0.0} and len(r["steps"]) == 5 and len(r["paper"]) == 20
    assert r["p_low"] == pytest.approx(1 / math.comb(22, 2)) and r["p_high"] == 1.0  # the lowest pair of 22 seeds
    middle = {step: {42: float(np.median(curves["gen"][i]))} for i, step in enumerate(curves["step"][:5])}
    assert report.stats.seed_ranks(curves, "gen", middle)["run"][42] == pytest.approx(0.5, abs=0.06)


def test_a_run_at_the_papers_depth_is_placed_among_its_seeds(tmp_path):
    run_dir = tmp_path / "question_L6"
    make_run(run_dir, "question", 6, (0.9, 0.1), seeds=(42, 52), steps=6000, probe=False)
    rows = report.stats.against_paper_seeds(report.load_run(run_dir, "question", 6))
    assert [r["step"] for r in rows] == [3000, 6000]  # the paper's checkpoints this run also evaluated
    spread = paper.seed_spread("question", 6)
    for r, i in zip(rows, (0, 1)):
        p = spread["gen"][i]
        ours = {s: gen_curve(r["step"], f, 6000) for s, f in ((42, 0.9), (52, 0.1))}
        assert r["gen"]["seeds"] == pytest.approx(ours) and r["gen"]["paper"] == p
        assert r["gen"]["inside"] == sum(p["min"] <= a <= p["max"] for a in ours.values())
        assert r["val"]["inside"] == (2 if spread["val"][i]["max"] >= 1.0 else 0)  # val is 1.0 from step 200
    assert rows[0]["gen"]["inside"] == 1  # 0.26 is among the paper's seeds at 3k, 0.06 below them all
    md = report.write_report(run_dir).read_text()
    assert (
        "- question 6 layers: at 2 shared checkpoints (3000–6000)" in md
        and "(seeds like the paper's: about 3.6 and 3.6)" in md
    )
    assert "- question 6 layers, seed by seed:" in md and "| gen | 2 (3000–6000) | 42: " in md
    assert (run_dir / "report" / "per_seed_question.png").stat().st_size > 1000
    other = tmp_path / "question_L2"
    make_run(other, "question", 2, (0.9,), seeds=(42,), steps=600, probe=False)
    assert report.stats.against_paper_seeds(report.load_run(other, "question", 2)) == []
    assert "No run is at a depth the paper logged" in report.write_report(other).read_text()


def test_a_runs_tree_projections_are_placed_among_the_papers_seeds(tmp_path):
    run_dir = tmp_path / "question_L6"
    make_run(run_dir, "question", 6, (0.9, 0.1), seeds=(42, 52), steps=6000, evals=False)
    rows = report.stats.probe_against_paper_seeds(report.load_run(run_dir, "question", 6))
    assert [r["step"] for r in rows] == [3000, 6000]  # probed every 200 steps: the paper's checkpoints among them
    spread = paper.probe_seed_spread("question", 6)
    for r, i in zip(rows, (0, 1)):
        t = r["step"] / 6000  # make_run's synthetic probe values
        ours = {
            "tscore": {s: 0.3 + 0.6 * t + 0.01 * (s % 3) for s in (42, 52)},
            "tparseval": {s: 0.4 + 0.3 * t for s in (42, 52)},
        }
        for key, vals in ours.items():
            p = spread[key][i]
            assert r[key]["seeds"] == pytest.approx(vals) and r[key]["paper"] == p
            assert r[key]["inside"] == sum(p["min"] <= v <= p["max"] for v in vals.values())
    md = report.write_report(run_dir).read_text()
    assert "- question 6 layers: at 2 shared checkpoints (3000–6000), " in md and " tscore and " in md
    assert report.tables.DYCK_DRAW_NOTE[0] not in md  # QF/TI: 10,000 short sentences a sample, no draw note


def test_a_dyck_runs_tscore_is_placed_among_the_papers_seeds(tmp_path):
    run_dir = tmp_path / "dyck_L6"
    make_run(run_dir, "dyck", 6, (0.9,), seeds=(42,), steps=10_000, evals=False, probe=False)
    # probed at 10k with a tscore like the paper's seeds' there (1.77-2.31); Dyck has no parses
    write_jsonl(
        run_dir / "probe.jsonl", [{"step": 10_000, "seed": 42, "tscore": 2.1, "tparseval": None, "sparsity": -30.0}]
    )
    rows = report.stats.probe_against_paper_seeds(report.load_run(run_dir, "dyck", 6))
    assert [r["step"] for r in rows] == [10_000] and set(rows[0]) == {"step", "n_paper", "tscore"}
    assert rows[0]["tscore"]["inside"] == 1 and rows[0]["n_paper"] == 10
    md = report.write_report(run_dir).read_text()
    assert "- dyck 6 layers: at 1 shared checkpoint (10000–10000), 1/1 tscore value lies within the range" in md
    assert "| step | paper seeds | paper tscore median [min–max] | tscore, this run's seeds |" in md
    assert report.tables.DYCK_DRAW_NOTE[0] in md  # the sample's lengths move Dyck's tscore: said beside it


def test_tree_text():
    words = "the dog near the cat barked".split()
    tree = (((0, 1), (2, (3, 4))), 5)
    assert report.trees.bracketed(tree, words) == "(((the dog) (near (the cat))) barked)"
    lines = report.trees.tree_text(tree, words).splitlines()
    assert lines[0] == "┐" and lines[-1] == "└── barked" and len(lines) == 2 * len(words) - 1
    assert report.trees.tree_text(0, ["word"]) == "word"


def test_curve_lines_start_drops_early_steps(tmp_path):
    """Fig 3b draws tscore from 50k on when the runs reach it: `start` cuts the earlier points."""
    from matplotlib.figure import Figure

    make_run(tmp_path / "question_L2", "question", 2, FINALS[2])
    run = report.runs.load_run(tmp_path / "question_L2", "question", 2)
    ax = Figure().subplots()
    assert report.figures.curve_lines(ax, [run], report.stats.TSCORE_KEYS, {2: "k"}, start=400) == "tscore"
    assert list(ax.lines[0].get_xdata()) == [400, 600]  # probed at 200, 400, 600


def test_fig3b_as_the_original_prefers_the_decoder_constant_and_the_sparsity_bug(tmp_path):
    """D6/D8: `report --as-original` plots weight_norm_dec_perL and sparsity_bug where the probe wrote them."""
    from matplotlib.figure import Figure

    make_run(tmp_path / "question_L2", "question", 2, FINALS[2])
    probe = tmp_path / "question_L2" / "probe.jsonl"
    recs = [dict(json.loads(l), weight_norm_dec_perL=90.0, sparsity_bug=-60.0) for l in probe.read_text().splitlines()]
    write_jsonl(probe, recs)
    run = report.runs.load_run(tmp_path / "question_L2", "question", 2)
    used = {}
    for as_original in (False, True):
        for keys, title, _ in report.figures.fig3b_panels(as_original):
            used[(as_original, title)] = report.figures.curve_lines(Figure().subplots(), [run], keys, {2: "k"})
    assert used[(False, "weight norm")] == "weight_norm_perL" and used[(False, "attention sparsity")] == "sparsity"
    assert (
        used[(True, "weight norm")] == "weight_norm_dec_perL" and used[(True, "attention sparsity")] == "sparsity_bug"
    )
    assert cli.main(["report", str(tmp_path), "--as-original"]) == 0


def test_a_run_without_task_and_depth_is_left_out_with_a_warning(tmp_path):
    make_sweep(tmp_path / "sw")
    odd = tmp_path / "sw" / "copy_of_a_run"
    odd.mkdir()
    (odd / "metrics.jsonl").write_text(json.dumps({"step": 100, "seed": 42, "train_loss": 1.0}) + "\n")
    with pytest.warns(UserWarning, match="copy_of_a_run left out of the report"):
        runs = report.runs.discover_runs(tmp_path / "sw")
    assert [(r.task, r.depth) for r in runs] == [("question", 2), ("question", 4)]
