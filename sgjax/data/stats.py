"""`sgjax data-stats`: statistics of a generated QF/TI split side by side with an original file."""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from sgjax.data import formats, parses, qf_ti
from sgjax.data import grammar as G
from sgjax.data.cli import add_generation_argument


def describe(task: str, line: str) -> dict:
    """Per-line facts: marker, token count, subject/object kinds, auxiliaries (QF), agreement (TI)."""
    inp, out = line.split("\t")
    toks = inp.split(" ")
    words, marker = toks[:-2], toks[-1]
    tree = parses.derivations(task, tuple(words + ["."]), "ROOT")[0]
    d = {
        "marker": marker,
        "n_tokens": len(toks) + len(out.split(" ")),
        "n_words": len(words),
        "subj": qf_ti.subject_kind(task, tree),
        "obj": qf_ti.object_kind(task, tree),
        "tree": G.binarize(task, tree[2][0]),
    }
    if task == "question":
        main = qf_ti.main_verb_index(tree)
        d.update(
            main_aux=words[main],
            first_aux=qf_ti.first_aux(words),
            answer=out.split(" ")[0],
            n_aux=sum(w in qf_ti.AUX for w in words),
        )
    else:
        present = out.split(" ")
        d.update(recent_differs=qf_ti.agree_recent(toks[:-1]) != present if marker == "PRESENT" else None)
    return d


def _share(rows, key, value) -> float:
    return sum(r[key] == value for r in rows) / max(len(rows), 1)


def _mix(rows, key) -> str:
    c = Counter(r[key] for r in rows)
    return " ".join(f"{k}:{v / len(rows):.3f}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0])))


def summarize(task: str, lines: list[str]) -> dict[str, str]:
    """Ordered statistics of a split, as display strings."""
    rows = [describe(task, l) for l in lines]
    n_tok = np.array([r["n_tokens"] for r in rows])
    out = {"lines": str(len(rows)), "unique inputs": str(len({l.split(chr(9))[0].rsplit(" ", 1)[0] for l in lines}))}
    for m in sorted(formats.MARKERS[task]):
        out[f"share {m}"] = f"{_share(rows, 'marker', m):.4f}"
    out["tokens/line min mean max"] = f"{n_tok.min()} {n_tok.mean():.2f} {n_tok.max()}"
    q = np.percentile(n_tok, [10, 25, 50, 75, 90])
    out["tokens/line p10 p25 p50 p75 p90"] = " ".join(f"{x:g}" for x in q)
    hist = Counter(int(r["n_words"]) for r in rows)
    out["input words histogram"] = " ".join(f"{k}:{v / len(rows):.3f}" for k, v in sorted(hist.items()))
    out["subject kind mix"] = _mix(rows, "subj")
    out["object kind mix"] = _mix(rows, "obj")
    if task == "question":
        quest = [r for r in rows if r["marker"] == "quest"]
        rc_q = [r for r in quest if r["subj"].startswith("rc")]
        out["quest lines with RC subject"] = f"{len(rc_q)}"
        if quest:
            out["quest: first aux != main aux (share)"] = (
                f"{np.mean([r['first_aux'] != r['main_aux'] for r in quest]):.4f}"
            )
            out["quest: answer aux mix"] = _mix(quest, "answer")
            out["quest: n auxiliaries mix"] = _mix(quest, "n_aux")
        if rc_q:
            out["quest RC-subject: RC type mix"] = _mix(rc_q, "subj")
        sents = [r for r in rows if r["marker"] == "quest"]
        which = "quest lines"
    else:
        pres = [r for r in rows if r["marker"] == "PRESENT"]
        if pres:
            out["PRESENT: agree-recent differs (share)"] = f"{np.mean([r['recent_differs'] for r in pres]):.4f}"
            differs = [r for r in pres if r["recent_differs"]]
            if differs:
                out["PRESENT & differs: subject PP/RC mix"] = _mix(differs, "subj")
        sents = rows
        which = "all lines"
    if sents:
        gold = [r["tree"] for r in sents]
        rb = parses.parse_f1([parses.right_branching(r["n_words"]) for r in sents], gold)
        lb = parses.parse_f1([parses.left_branching(r["n_words"]) for r in sents], gold)
        out[f"right-branching F1 ({which})"] = f"{rb:.4f}"
        out[f"left-branching F1 ({which})"] = f"{lb:.4f}"
        out["distinct gold tree shapes"] = str(len(set(gold)))
    return out


def table(gen: dict[str, str], orig: dict[str, str]) -> str:
    """Two-column text table over the union of keys."""
    keys = list(dict.fromkeys(list(gen) + list(orig)))
    w = max(len(k) for k in keys)
    lines = [f"{'statistic':<{w}}  generated | original"]
    for k in keys:
        lines.append(f"{k:<{w}}  {gen.get(k, '-')} | {orig.get(k, '-')}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=["question", "tense"], help="QF or TI")
    p.add_argument("--split", required=True, choices=list(qf_ti.SPLITS), help="the generated split to compare")
    p.add_argument("--original", required=True, help="a file in the original format to compare with")
    p.add_argument("--seed", type=int, default=0, help="data seed of the generated split")
    p.add_argument("--size", type=int, default=None, help="generated lines (default: the paper's size)")
    add_generation_argument(p)


def run(args) -> int:
    """Generate the split (heldout_first skips train: its held-out splits do not depend on it)."""
    sizes = dict(qf_ti.DEFAULT_SIZES)
    if args.split != "train" and args.generation == "heldout_first":
        sizes["train"] = 0
    if args.size is not None:
        sizes[args.split] = args.size
    generated = qf_ti.generate_splits(args.task, sizes, args.seed, generation=args.generation)[args.split]
    original = formats.read_lines(args.original, args.task)
    print(f"# {args.task} {args.split}: generated ({args.generation}, seed {args.seed}) vs {args.original}")
    print(table(summarize(args.task, generated), summarize(args.task, original)))
    return 0
