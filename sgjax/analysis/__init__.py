"""After training: probe (norms, sparsity, tree projections), summaries, reports, the paper's numbers."""

from sgjax.lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
