"""summarize: early-stopping rules on a synthetic metrics.jsonl with known answers, files, CLI."""

import csv
import json

import pytest

from sgjax import cli
from sgjax.analysis import summarize as S
from sgjax.errors import UserError

STEPS = [3000 * (i + 1) for i in range(12)]
# seed 1: val saturates at 6k, dips, returns; gen groks late, dips once, then stays high.
VAL_1 = [0.90, 1.00, 0.99, 1.00, 0.98, 1.00, 1.00, 1.00, 1.00, 1.00, 1.00, 1.00]
GEN_1 = [0.10, 0.20, 0.30, 0.85, 0.50, 0.81, 0.90, 0.95, 0.70, 0.90, 0.92, 0.88]
# seed 2: val keeps creeping up, so patience-3 stops late; gen never reaches 0.8; one NaN step.
VAL_2 = [0.50, 0.60, 0.60, 0.60, 0.70, 0.70, 0.70, 0.70, 0.99, 0.995, None, 0.98]
GEN_2 = [0.05, 0.10, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.60]


def write_run(tmp_path, nonfinite_at=None):
    """A run dir with train-only and eval records for seeds 1 and 2 (eval every 3000, log every 1500)."""
    recs = []
    for i, step in enumerate(STEPS):
        for seed, val, gen in ((1, VAL_1, GEN_1), (2, VAL_2, GEN_2)):
            recs.append({"step": step - 1500, "seed": seed, "member": seed - 1, "train_loss": 1.0, "nonfinite": False})
            recs.append(
                {
                    "step": step,
                    "seed": seed,
                    "member": seed - 1,
                    "train_loss": 0.5,
                    "val_acc": val[i],
                    "gen_acc": gen[i],
                    "nonfinite": seed == 2 and nonfinite_at is not None and step >= nonfinite_at,
                }
            )
    text = "\n".join(json.dumps(r) for r in recs) + '\n{"step": 999'  # a torn last line is skipped
    (tmp_path / "metrics.jsonl").write_text(text)
    (tmp_path / "config.json").write_text(json.dumps({"task": "question", "model": {"n_layers": 6}}))
    return tmp_path


def test_rules_on_known_series(tmp_path):
    rows = {r["seed"]: r for r in S.summarize_run(write_run(tmp_path, nonfinite_at=30000))}
    a, b = rows[1], rows[2]
    assert a["task"] == "question" and a["depth"] == 6 and a["n_evals"] == 12
    assert (a["final_gen"], a["final_val"], a["last_step"]) == (0.88, 1.0, 36000)
    assert (a["max_gen"], a["step_of_max_gen"]) == (0.95, 24000)
    assert a["crossed_80"] and a["final_ge_80"]
    assert a["first_step_gen_ge_80"] == 12000
    assert a["step_gen_stays_ge_80"] == 30000  # 0.70 at 27k breaks the run of >= 0.8 that began at 18k
    assert (a["es_step_first_max_val"], a["es_gen_at_first_max_val"]) == (6000, 0.20)
    # patience 3: best 1.00 at 6k; 9k, 12k (1.00 is not > 1.00), 15k do not improve: stop, keep 6k
    assert (a["es_step_patience3"], a["es_gen_patience3"]) == (6000, 0.20)
    assert (a["first_step_val_ge_99"], a["gen_at_first_val_ge_99"]) == (6000, 0.20)
    assert a["mean_gen_last10_evals"] == pytest.approx(sum(GEN_1[2:]) / 10)
    assert a["nonfinite"] is False and a["nonfinite_step"] is None

    assert b["final_gen"] == 0.60 and b["final_val"] == 0.98
    assert not b["crossed_80"] and not b["final_ge_80"]
    assert b["first_step_gen_ge_80"] is None and b["step_gen_stays_ge_80"] is None
    assert (b["max_val"], b["es_step_first_max_val"], b["es_gen_at_first_max_val"]) == (0.995, 30000, 0.45)
    # patience 3: 0.6 at 6k, no gain at 9k/12k, 0.7 at 15k resets, 18k/21k/24k no gain: stop, keep 15k
    assert (b["es_step_patience3"], b["es_gen_patience3"]) == (15000, 0.20)
    assert (b["first_step_val_ge_99"], b["gen_at_first_val_ge_99"]) == (27000, 0.40)  # 0.99 counts
    assert b["nonfinite"] is True and b["nonfinite_step"] == 30000


def test_patience_runs_to_the_end_equals_first_max():
    """Without 3 non-improving evals in a row, patience-3 keeps the first maximum of the run."""
    import numpy as np

    val = np.array([0.1, 0.2, 0.2, 0.3, 0.3, 0.3, 0.4, np.nan, 0.4, 0.5])
    assert S.patience_index(val) == S.first_max_index(val) == 9
    assert S.patience_index(np.array([0.5, 0.4, np.nan, 0.4, 0.6])) == 4  # NaN is skipped, not counted
    assert S.stays_index(np.array([0.9, 0.7, 0.9, np.nan, 0.85])) == 2
    assert S.stays_index(np.array([0.9, 0.9, 0.7])) is None


def test_files_and_aggregates(tmp_path):
    S.summarize_run(write_run(tmp_path))
    with open(tmp_path / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["seed"] for r in table] == ["1", "2"] and list(table[0]) == S.COLUMNS
    assert table[0]["step_gen_stays_ge_80"] == "30000" and table[1]["step_gen_stays_ge_80"] == ""
    agg = json.loads((tmp_path / "summary.json").read_text())["aggregate"]
    assert agg["n_seeds"] == 2 and agg["n_final_gen_ge_0p8"] == 1 and agg["n_max_gen_gt_0p8"] == 1
    assert agg["mean_final_gen"] == pytest.approx(0.74) and agg["median_final_gen"] == pytest.approx(0.74)
    assert agg["std_final_gen"] == pytest.approx(0.14)  # population std (ddof 0), as aggregate_summary.csv
    assert agg["mean_gen_at_es_first_max_val"] == pytest.approx((0.20 + 0.45) / 2)
    assert agg["n_nonfinite"] == 0


def test_members_with_their_own_learning_rates_get_their_own_aggregates(tmp_path):
    """A --lrs run: each row names its lr, and summary.json aggregates each lr apart (the overall mean mixes them)."""
    write_run(tmp_path)
    (tmp_path / "config.json").write_text(
        json.dumps(
            {"task": "question", "model": {"n_layers": 6}, "seeds": [1, 2], "lrs": [1e-4, 5e-5], "train": {"lr": 1e-4}}
        )
    )
    rows = S.summarize_run(tmp_path)
    assert [(r["seed"], r["lr"]) for r in rows] == [(1, 1e-4), (2, 5e-5)]
    doc = json.loads((tmp_path / "summary.json").read_text())
    by_lr = doc["aggregate_by_lr"]
    assert set(by_lr) == {"0.0001", "5e-05"} and by_lr["0.0001"]["mean_final_gen"] == pytest.approx(0.88)
    assert by_lr["5e-05"]["n_seeds"] == 1 and doc["aggregate"]["n_seeds"] == 2
    (tmp_path / "config.json").write_text(
        json.dumps({"task": "question", "model": {"n_layers": 6}, "seeds": [1, 2], "lrs": None, "train": {"lr": 1e-4}})
    )
    rows = S.summarize_run(tmp_path)  # one lr for all: no split
    assert [r["lr"] for r in rows] == [1e-4, 1e-4] and "aggregate_by_lr" not in json.loads(
        (tmp_path / "summary.json").read_text()
    )


def test_missing_or_empty_metrics_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        S.summarize_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(UserError, match="no metric records"):
        S.summarize_run(tmp_path)


def test_run_without_evals_gives_empty_rows(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 100, "seed": 42, "train_loss": 2.0}) + "\n")
    (row,) = S.summarize_run(tmp_path)
    assert row["seed"] == 42 and row["n_evals"] == 0 and row["final_gen"] is None and row["es_gen_patience3"] is None


def test_cli_on_a_run_of_two_lrs_before_its_first_evaluation(tmp_path, capsys):
    recs = [{"step": 100, "seed": s, "member": i, "train_loss": 2.0} for i, s in enumerate((42, 52))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "task": "question",
                "model": {"n_layers": 1},
                "seeds": [42, 52],
                "lrs": [1e-3, 1e-4],
                "train": {"lr": 1e-3},
            }
        )
    )
    assert cli.main(["summarize", str(tmp_path)]) == 0
    assert "lr 0.001: 1 members, final gen mean -," in capsys.readouterr().out


def test_cli(tmp_path, capsys):
    assert cli.main(["summarize", str(write_run(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "question L6" in out and "final gen" in out and "0.880" in out
    assert cli.main(["summarize", str(tmp_path / "nope")]) == 2
    assert "error" in capsys.readouterr().err


def test_dyck_records_logged_before_the_d10_rename_read_in_todays_keys(tmp_path):
    """An older Dyck run logged distance-≥10 as gen_acc and all closings as gen_acc_all: read as
    gen_acc_far / gen_acc.
    """
    old = {
        "step": 10000,
        "seed": 42,
        "member": 0,
        "val_acc": 0.98,
        "val_acc_far": 0.89,
        "gen_acc_all": 0.84,
        "gen_acc": 0.43,
    }
    new = {
        "step": 20000,
        "seed": 42,
        "member": 0,
        "val_acc": 0.99,
        "val_acc_far": 0.95,
        "gen_acc": 0.93,
        "gen_acc_far": 0.61,
    }
    (tmp_path / "metrics.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    (tmp_path / "config.json").write_text(json.dumps({"task": "dyck", "model": {"n_layers": 6}}))
    a, b = S.read_metrics(tmp_path / "metrics.jsonl")
    assert (a["gen_acc"], a["gen_acc_far"], "gen_acc_all" in a) == (0.84, 0.43, False)
    assert b == new  # a resumed run's newer records are left as they are
    (row,) = S.summarize_run(tmp_path)
    assert (row["final_gen"], row["max_gen"]) == (0.93, 0.93)


def test_inspection_writes_nothing_unless_asked_and_flags_skipped_lines(tmp_path, capsys):
    run = write_run(tmp_path)
    with (run / "metrics.jsonl").open("ab") as f:  # damaged lines: a wrong type, bytes that are not UTF-8, a torn tail
        f.write(b'{"step": "x", "seed": 42}\n{"step": 9, "seed": null}\n\xff\xfe\n{"step": 30000, "seed": 42, "val_ac')
    assert cli.main(["summarize", str(run)]) == 0
    out = capsys.readouterr().out
    assert "note: skipped 4 unreadable lines of metrics.jsonl" in out
    assert not (run / "summary.json").exists() and not (run / "summary.csv").exists()
    assert cli.main(["summarize", str(run), "--write"]) == 0
    assert json.loads((run / "summary.json").read_text())["skipped"].startswith("skipped 4 unreadable lines")
