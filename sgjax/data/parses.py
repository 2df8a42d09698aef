"""Gold binary parses, tree spans, branching baselines and parse F1.

A tree is nested tuples of word indices: a leaf is an int 0..n-1, e.g. ((0, 1), (2, 3)).
Gold trees come from the grammar: each rule carries its binary bracketing (`grammar.Rule.shape`), so
the gold tree of a generated sentence is its derivation's shapes composed, and `parse(task, words)`
recovers the derivation of any grammatical sentence (a small exhaustive parser over the grammar,
with TI past-tense forms allowed for either number) and composes the same shapes.
"""

from __future__ import annotations

import functools

from sgjax.data import grammar as G
from sgjax.errors import DataError


def _parse_lexicon(task: str) -> dict[str, frozenset[str]]:
    """Preterminal -> words it may cover when parsing (TI: past forms are number-neutral)."""
    g = G.GRAMMARS[task]
    lex = {p: set(ws) for p, ws in g.lexicon.items()}
    if task == "tense":
        for p in list(lex):
            if p.startswith("V_"):
                lex[p] |= {G.PAST[w] for w in g.lexicon[p]}
    return {p: frozenset(ws) for p, ws in lex.items()}


_LEXICONS = {t: _parse_lexicon(t) for t in G.GRAMMARS}


def derivations(task: str, words: tuple[str, ...], symbol: str | None = None) -> list:
    """All derivations (filled skeletons) of `symbol` (default: the sentence `S`) spanning exactly `words`."""
    g, lex = G.GRAMMARS[task], _LEXICONS[task]
    words = tuple(words)

    @functools.cache
    def at(sym: str, i: int) -> tuple:
        """((end, tree), ...) for every way `sym` derives words[i:end]."""
        if sym in lex:
            return ((i + 1, (sym, -1, (words[i],))),) if i < len(words) and words[i] in lex[sym] else ()
        out = []
        for k, rule in enumerate(g.rules[sym]):
            partial = [(i, ())]
            for s in rule.rhs:
                partial = [(j2, kids + (t,)) for j, kids in partial for j2, t in at(s, j)]
            out.extend((j, (sym, k, kids)) for j, kids in partial)
        return tuple(out)

    return [t for j, t in at(symbol or "S", 0) if j == len(words)]


def strip_sentence(task: str, words) -> list[str]:
    """The declarative sentence of a line or sentence: drop `. MARKER<TAB>output` and the final '.'."""
    words = list(words)
    for marker in ("quest", "decl", "PAST", "PRESENT"):
        if marker in words:
            words = words[: words.index(marker)]
            break
    while words and words[-1] in (".", "?"):
        words = words[:-1]
    return words


def parse(task: str, words) -> tuple:
    """Gold binary tree of a sentence (with or without the final '.', marker and output)."""
    words = strip_sentence(task, words)
    if len(words) == 1:
        return 0
    found = derivations(task, tuple(words))
    if not found:
        raise DataError(f"{task}: not a sentence of the grammar: {' '.join(words)!r}")
    return G.binarize(task, found[0])


def tree_spans(tree) -> set[tuple[int, int]]:
    """Inclusive (start, end) spans of the internal nodes, root included, single words excluded."""
    spans: set[tuple[int, int]] = set()

    def walk(t) -> tuple[int, int]:
        if isinstance(t, int):
            return t, t
        lo, hi = walk(t[0])[0], walk(t[-1])[1]
        for c in t[1:-1]:
            walk(c)
        spans.add((lo, hi))
        return lo, hi

    walk(tree)
    return spans


def right_branching(n: int):
    """(0, (1, (2, ... (n-2, n-1))))."""
    tree = n - 1
    for i in range(n - 2, -1, -1):
        tree = (i, tree)
    return tree


def left_branching(n: int):
    """((((0, 1), 2), ...), n-1)."""
    tree = 0
    for i in range(1, n):
        tree = (tree, i)
    return tree


def parse_f1(pred_trees, gold_trees, include_root: bool = True) -> float:
    """Corpus micro-averaged span F1 (the original's get_parsing_accuracy, 1e-10 in the denominator)."""
    hit = n_pred = n_gold = 0
    for p, g in zip(pred_trees, gold_trees, strict=True):
        ps, gs = tree_spans(p), tree_spans(g)
        if not include_root:
            root = (0, max(e for _, e in gs | {(0, 0)}))
            ps, gs = ps - {root}, gs - {root}
        hit += len(ps & gs)
        n_pred += len(ps)
        n_gold += len(gs)
    prec = hit / n_pred if n_pred else 0.0
    rec = hit / n_gold if n_gold else 0.0
    return 2 * prec * rec / (prec + rec + 1e-10)
