"""experiments/colab.ipynb runs end to end (tiny sweep, report, one tree projection), so it cannot rot."""

import re
from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "experiments" / "colab.ipynb"
TINY = [
    "train.steps=20",
    "train.chunk_steps=10",
    "train.log_every=10",
    "train.eval_every=10",
    "train.ckpt_every=10",
    "train.warmup_steps=5",
    "data.train_size=200",
    "data.val_size=40",
    "data.gen_size=40",
    "model.d_model=32",
    "model.n_heads=4",
    "model.d_ff=64",
]


def set_parameters(source: str, values: dict) -> str:
    """Replace `NAME = ...` lines of the parameters cell (every name must be there)."""
    for name, value in values.items():
        source, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", source, flags=re.M)
        assert n == 1, f"the parameters cell has no line `{name} = ...`"
    return source


def test_parameters_cell_is_first_and_complete():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    for name in (
        "SOURCE",
        "INSTALL",
        "DRIVE",
        "TASK",
        "PRESET",
        "DEPTHS",
        "SEEDS",
        "OVERRIDES",
        "PROBE_SAMPLE",
        "OUT",
        "SENTENCE",
    ):
        assert re.search(rf"^{name} = ", first.source, re.M), name
    assert re.search(r"^SOURCE = None", first.source, re.M) and re.search(r"^DRIVE = False", first.source, re.M)
    assert any("install" in c.metadata.get("tags", []) for c in nb.cells)


def test_the_saved_notebook_shows_its_outputs():
    """The committed notebook was run: its preview shows the report's figures and a tree."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    assert any("projected: (" in o.get("text", "") for o in outputs)


def test_notebook_runs_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("SGJAX_CACHE", str(tmp_path / "cache"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.source = set_parameters(
        first.source,
        {
            "INSTALL": False,
            "TASK": "question",
            "PRESET": "smoke",
            "DEPTHS": [1],
            "SEEDS": [42, 52],
            "OVERRIDES": TINY,
            "PROBE_SAMPLE": 8,
            "OUT": str(tmp_path / "sweep"),
            "SENTENCE": None,
        },
    )
    # run where the notebook lives, as from a clone: it installs from the checkout it sits in
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    report_dir = tmp_path / "sweep" / "report"
    assert (report_dir / "report.md").exists()
    assert (report_dir / "fig2_grokking.png").stat().st_size > 1000
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "projected: (" in outputs and "gold:" in outputs and "└── " in outputs
    assert "would install: pip install -q -e .." in outputs  # the checkout above experiments/
    assert (
        sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        >= 3
    )
