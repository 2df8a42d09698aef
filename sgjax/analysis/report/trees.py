"""Binary trees over a sentence's words as text: bracketed, or drawn top-down."""

from __future__ import annotations

import numpy as np


def bracketed(tree, words) -> str:
    """A binary tree over word indices as '((the dog) barked)'."""
    if isinstance(tree, (int, np.integer)):
        return str(words[int(tree)])
    return "(" + " ".join(bracketed(t, words) for t in tree) + ")"


def tree_text(tree, words) -> str:
    """A binary tree over word indices drawn top-down with box-drawing characters, one node per line."""
    lines: list[str] = []

    def walk(t, prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└── " if last else "├── ")
        leaf = isinstance(t, (int, np.integer))
        lines.append(prefix + branch + (str(words[int(t)]) if leaf else "┐"))
        if not leaf:
            child_prefix = prefix + ("" if root else ("    " if last else "│   "))
            for i, c in enumerate(t):
                walk(c, child_prefix, i == len(t) - 1, False)

    walk(tree, "", True, True)
    return "\n".join(lines)
