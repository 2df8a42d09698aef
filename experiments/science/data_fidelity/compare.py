"""Generated QF/TI splits against McCoy's files: lengths, structure cells, PP/RC counts, short sentences.

For each generation (train_first, heldout_first) and data seed: the first 10,000 training lines
against the first 10,000 lines of McCoy's real question.train, as total-variation distances (TV),
beside the TV between the real file's two halves and between two data seeds (the noise); the share
of the shortest sentence type along the file; the held-out splits' short share against McCoy's
dev/test; and gen against McCoy's gen.

    python experiments/science/data_fidelity/compare.py REF --seeds 0,1,2 \
        --out experiments/science/data_fidelity/results/compare.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from sgjax.data import formats, qf_ti, stats
from sgjax.data import grammar as G

SHORT = {"question": 4, "tense": 3}  # words in the shortest sentence type: D N (AUX) V
PREPS, RELS = set(G.PREP), set(G.REL)
WINDOW = 1000


def sentence(line: str) -> list[str]:
    """The input sentence's words, without `. MARKER`."""
    return line.split("\t")[0].split(" ")[:-2]


def features(task: str, lines) -> dict[str, Counter]:
    """Distributions to compare: length, (subject, object) cell, PP count, RC count."""
    words = [sentence(l) for l in lines]
    cells = Counter()
    for l in lines:
        d = stats.describe(task, l)
        cells[f"{d['subj']}/{d['obj']}"] += 1
    return {
        "length": Counter(len(w) for w in words),
        "cell": cells,
        "pp": Counter(sum(x in PREPS for x in w) for w in words),
        "rc": Counter(sum(x in RELS for x in w) for w in words),
    }


def tv(a: Counter, b: Counter) -> float:
    """Total-variation distance between two count tables."""
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


def tvs(fa: dict, fb: dict) -> dict[str, float]:
    return {k: round(tv(fa[k], fb[k]), 4) for k in fa}


def short_share(task: str, lines) -> float:
    return round(float(np.mean([len(sentence(l)) == SHORT[task] for l in lines])), 4) if lines else 0.0


def along(task: str, lines, n: int = 10_000) -> list[float]:
    """The short share in each window of WINDOW lines of the first n."""
    return [short_share(task, lines[i : i + WINDOW]) for i in range(0, min(n, len(lines)), WINDOW)]


def real_files(ref: Path, task: str) -> dict[str, list[str]]:
    names = {"val": "dev", "test": "test", "gen": "gen"}
    out = {s: formats.read_lines(ref / task / f"{task}.{f}", task) for s, f in names.items()}
    if task == "question":
        out["train"] = formats.read_lines(ref / task / "question.train.first10k", task)
    return out


def held_out(task: str, split: dict, real: dict) -> dict:
    """Short shares of val/test beside McCoy's, and gen's TV to McCoy's gen."""
    out = {
        s: {"short": short_share(task, split[s]), "mccoy_short": short_share(task, real[s])} for s in ("val", "test")
    }
    out["test"]["along"], out["test"]["mccoy_along"] = along(task, split["test"]), along(task, real["test"])
    out["gen_tv_to_mccoy"] = tvs(features(task, split["gen"]), features(task, real["gen"]))
    return out


def compare_question(ref: Path, seeds) -> dict:
    real = real_files(ref, "question")
    r = real["train"]
    fr = features("question", r)
    half = len(r) // 2
    out = {
        "real": {
            "short_along": along("question", r),
            "halves_tv": tvs(features("question", r[:half]), features("question", r[half:])),
        }
    }
    for gen in qf_ti.GENERATIONS:
        per_seed, first = {}, {}
        for seed in seeds:
            split = qf_ti.generate_splits("question", seed=seed, generation=gen)
            first[seed] = features("question", split["train"][:10_000])
            per_seed[seed] = {
                "train_tv_to_real": tvs(first[seed], fr),
                "train_short_along": along("question", split["train"]),
                "train_short": short_share("question", split["train"]),
                **held_out("question", split, real),
            }
        a, b = seeds[:2]
        out[gen] = {"seeds": per_seed, "seed_pair_tv": tvs(first[a], first[b]) if len(seeds) > 1 else None}
    return out


def compare_tense(ref: Path, seeds) -> dict:
    """TI: no real train file; the held-out splits and the cells of their PAST lines."""
    real = real_files(ref, "tense")
    past = lambda lines: [l for l in lines if l.split("\t")[0].endswith(" PAST")]  # noqa: E731
    real_past = features("tense", past(real["val"] + real["test"]))
    out = {"real": {"val_short": short_share("tense", real["val"]), "test_short": short_share("tense", real["test"])}}
    for gen in qf_ti.GENERATIONS:
        per_seed = {}
        for seed in seeds:
            split = qf_ti.generate_splits("tense", seed=seed, generation=gen)
            per_seed[seed] = {
                "train_short": short_share("tense", split["train"]),
                "train_short_along": along("tense", split["train"]),
                "heldout_past_tv_to_mccoy": tvs(features("tense", past(split["val"] + split["test"])), real_past),
                **held_out("tense", split, real),
            }
        out[gen] = {"seeds": per_seed}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ref", type=Path, help="folder holding question/ and tense/ reference files")
    p.add_argument("--seeds", default="0,1,2", help="data seeds, comma-separated")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    result = {"question": compare_question(args.ref, seeds), "tense": compare_tense(args.ref, seeds)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1)[:3000])


if __name__ == "__main__":
    main()
