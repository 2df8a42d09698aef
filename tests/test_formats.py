"""Original text formats, the split cache and the `sgjax data` / `data-stats` commands."""

import numpy as np
import pytest

import sgjax.data as data
from sgjax import cli
from sgjax.data import formats, qf_ti
from sgjax.errors import DataError

SMALL = {"train": 60, "val": 20, "test": 20, "gen": 20}
QF_LINE = "the newt does giggle . quest\tdoes the newt giggle ?"
DYCK_LINES = ["(a a) (b (c c) b)", "(t (s s) t)"]


def test_round_trip_qf_ti(tmp_path):
    for task in ("question", "tense"):
        lines = qf_ti.generate_splits(task, SMALL, seed=0)["val"]
        path = tmp_path / f"{task}.txt"
        formats.write_lines(path, task, lines)
        assert formats.read_lines(path, task) == lines


def test_round_trip_dyck(tmp_path):
    path = tmp_path / "d.txt"
    formats.write_lines(path, "dyck", DYCK_LINES)
    assert path.read_text().splitlines() == [l + " END" for l in DYCK_LINES]
    assert formats.read_lines(path, "dyck") == DYCK_LINES


@pytest.mark.parametrize(
    "bad,match",
    [
        (b"the newt does giggle . quest does the newt giggle ?", "one TAB"),
        (b"the newt does giggle .\tthe newt does giggle .", "must end with"),
        (b"the newt does giggle . PAST\tthe newt does giggle .", "must end with"),
        (b"", "empty line"),
        (b"the newt does giggle . quest\tdoes the \xff newt giggle ?", "not UTF-8"),
        (b"the newt does wiggle . decl\tthe newt does wiggle .", "unknown word 'wiggle'"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, bad, match):
    path = tmp_path / "bad.txt"
    path.write_bytes(QF_LINE.encode() + b"\n" + QF_LINE.encode() + b"\n" + bad + b"\n")
    with pytest.raises(DataError, match=match) as e:
        formats.read_lines(path, "question")
    assert f"{path}:3" in str(e.value)


def test_dyck_reader_requires_end(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("(a a) END\n(a a)\n")
    with pytest.raises(DataError, match=f"{path}:2"):
        formats.read_lines(path, "dyck")


def test_cache_round_trip_and_corrupt_regeneration(tmp_path, monkeypatch):
    first = data.load_splits("question", sizes=SMALL, seed=0, cache_dir=tmp_path)
    path = data.cache_path("question", data.resolve_sizes("question", SMALL), 0, tmp_path)
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    calls = []
    real = data.generate
    monkeypatch.setattr(data, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = data.load_splits("question", sizes=SMALL, seed=0, cache_dir=tmp_path)
    assert calls == []  # read from the cache
    for s in first:
        assert again[s].lines == first[s].lines
        np.testing.assert_array_equal(again[s].ids_NxT, first[s].ids_NxT)
        np.testing.assert_array_equal(again[s].lengths_N, first[s].lengths_N)
        assert again[s].ids_NxT.dtype == np.int32
    for garbage in (b"not a zip", path.read_bytes()[:100]):
        path.write_bytes(garbage)
        regen = data.load_splits("question", sizes=SMALL, seed=0, cache_dir=tmp_path)
        assert regen["gen"].lines == first["gen"].lines
        assert data._read_cache("question", path) is not None  # rewritten, valid
    assert len(calls) == 2


def test_split_tokens_match_vocab(tmp_path):
    splits = data.load_splits("tense", sizes=SMALL, seed=0, cache_dir=tmp_path)
    v = data.vocab_for("tense")
    s = splits["val"]
    assert v.decode(s.ids_NxT[0, : s.lengths_N[0]]) == s.words(0)


def test_files_replace_generated(tmp_path):
    path = tmp_path / "val.txt"
    path.write_text(QF_LINE + "\n")
    splits = data.load_splits("question", sizes=SMALL, seed=0, cache_dir=tmp_path, files={"val": path})
    assert splits["val"].lines == (QF_LINE,)
    assert len(splits["train"]) == SMALL["train"]
    assert data.load_split("question", "val", sizes=SMALL, cache_dir=tmp_path, files={"val": path}).lines == (QF_LINE,)


def test_cli_data_writes_file(tmp_path, capsys):
    out = tmp_path / "gen.txt"
    assert cli.main(["data", "question", "--split", "gen", "--size", "25", "--seed", "2", "--out", str(out)]) == 0
    lines = formats.read_lines(out, "question")
    assert len(lines) == 25 and all(l.split("\t")[0].endswith(" quest") for l in lines)
    assert lines == qf_ti.generate_splits("question", {"train": 0, "gen": 25}, seed=2)["gen"]
    assert cli.main(["data", "dyck", "--split", "gen", "--out", str(out)]) == 2  # dyck has no gen split


def test_cli_data_stats(tmp_path, capsys):
    out = tmp_path / "val.txt"
    assert cli.main(["data", "tense", "--split", "val", "--size", "60", "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["data-stats", "tense", "--split", "val", "--size", "60", "--original", str(out)]) == 0
    text = capsys.readouterr().out
    assert "right-branching F1" in text and "share PRESENT" in text


def test_dyck_through_the_shared_api(tmp_path, monkeypatch):
    """Dyck goes through load_splits via dyck.generate_splits (a stand-in here, so this runs without it)."""
    import sys
    import types

    words = [f"({c}" for c in "abcdefghijklmnopqrst"] + [f"{c})" for c in "abcdefghijklmnopqrst"]
    fake = types.ModuleType("sgjax.data.dyck")
    fake.DYCK_WORDS = words
    fake.generate_splits = lambda sizes, seed: {s: DYCK_LINES[: sizes[s]] for s in ("train", "val", "test")}
    monkeypatch.setitem(sys.modules, "sgjax.data.dyck", fake)
    monkeypatch.setattr(data, "dyck", fake, raising=False)
    data.vocab_for.cache_clear()
    try:
        v = data.vocab_for("dyck")
        assert (len(v.words), v.size) == (41, 43)
        assert (v.index["(a"], v.index["(t"], v.index["a)"], v.index["t)"]) == (1, 20, 21, 40)
        splits = data.load_splits("dyck", sizes={"train": 2, "val": 1, "test": 1}, cache_dir=tmp_path)
        assert set(splits) == {"train", "val", "test"}
        assert splits["train"].lines == tuple(DYCK_LINES)
        assert splits["train"].lengths_N.tolist() == [6, 4]
    finally:
        data.vocab_for.cache_clear()
