"""The paper sweep's projection (sgjax.bench.projection) and the analytic FLOPs it rests on (sgjax.bench.flops)."""

import json

import pytest

from sgjax.bench import flops, projection


def test_flops_count_matches_spec_estimate():
    """about 2.7e10 FLOPs per 6-layer QF step (6 N P, ~240 positions); ours pads to 36 per row."""
    f = flops.train_flops_per_step(6, 512, 2048, 71, *flops.computed_shape("rows", 37, 8))
    assert 6 * 18.9e6 * 288 * 0.99 < f < 6 * 18.9e6 * 288 * 1.05
    # Unpadded: the position-wise layers see only the packed tokens, attention the same 8 rows of 36.
    unpadded = flops.train_flops_per_step(6, 512, 2048, 71, *flops.computed_shape("unpadded", (224, 36), 8))
    assert unpadded == pytest.approx(f * 224 / 288, rel=0.02)


def test_projection_fills_depths_linearly():
    text = projection.project(["question:2=100/1", "question:6=50/3"])
    assert "question | 4 |" in text and "linear fit" in text
    assert "tense:L2" in text  # no rate given for tense: named as missing
    assert "compiling is not included" in text


def test_projection_counts_a_compile_per_call_length():
    """A compile time adds (programs a paper QF run compiles) x (its time) per depth; the count is the run's call
    lengths.
    """
    programs = projection.sweep_programs("question")
    assert 1 <= programs <= 8  # a few rungs of unpadded lengths, not one per chunk
    text = projection.project(["question:6=1000//60"])
    row = next(line for line in text.splitlines() if line.startswith("| question | 6 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[9:12] == [str(programs), "60.0", f"{programs * 60 / 3600:.2f}"]
    assert float(cells[12]) == pytest.approx(10 * 300_000 / 1000 / 3600 + programs * 60 / 3600, abs=0.01)
    assert "No evaluation times given" in text and "compiling is not included" not in text


def test_projection_scales_a_measured_rate_to_the_runs_mean_seed_step(tmp_path):
    """A bench file's rate is its achieved FLOP/s over the whole run's mean seed-step (its timed calls' widths are a
    few).
    """
    layout, calls, k = projection.sweep_calls("question")
    assert (layout, k) == ("unpadded", 100) and sum(n for _, n in calls) == 3_000
    assert {row for (_, row), _ in calls} == {
        36
    }  # attention rows: QF's longest line (37 ids) less one, as TrainData.call_width
    per_width = [flops.train_flops_per_step(6, 512, 2048, 71, *flops.computed_shape(layout, w, 8)) for w, _ in calls]
    mean = projection.sweep_flops_per_seed_step("question", 6)
    assert min(per_width) < mean < max(per_width)
    assert projection.sweep_flops_per_seed_step("question", 2) < mean / 2.5  # the layers' share scales with depth
    rec = {
        "kind": "sgjax",
        "task": "question",
        "depth": 6,
        "population": 10,
        "seed_steps_per_s": 100.0,
        "achieved_flops": 2e2 * mean,
    }
    path = tmp_path / "projection.json"
    path.write_text(json.dumps({"results": [rec]}))
    assert projection.parse_rates([str(path)])[0][("question", 6)] == pytest.approx(200.0)
    assert "| question | 6 | 300000 | 200.0 | measured |" in projection.project([str(path)])


def test_dyck_groups_projection_reads_each_program_size(tmp_path):
    """experiments/performance/member_groups/dyck_groups_projection.py: a grouping's hours are its whole-run FLOPs
    over its program size's FLOP/s.
    """
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "performance" / "member_groups"))
    import dyck_groups_projection as dgp

    rows = [
        {"kind": "sgjax", "population": 1, "achieved_flops": 2e13},
        {"kind": "sgjax", "population": 5, "achieved_flops": 4e13},
        {"kind": "vmap", "population": 2, "achieved_flops": 1e13},
    ]
    path = tmp_path / "quick_dyck_groups_l6.json"
    path.write_text(json.dumps({"results": rows}))
    assert dgp.measured_flops(path, 5) == 4e13 and dgp.measured_flops(path, 2) is None  # only sgjax's rows count
    assert dgp.measured_flops(tmp_path / "absent.json", 1) is None
    flops_total = sum(10 * 400_000 * projection.sweep_flops_per_seed_step("dyck", d, 10) for d in (2, 4, 6, 8, 10))
    assert dgp.dyck_hours(10, "seed", 2e13) == pytest.approx(flops_total / 2e13 / 3600)
    assert dgp.dyck_hours(2, "length", 2e13) < dgp.dyck_hours(2, "seed", 2e13)  # by length: fewer FLOPs, same rate
