"""Speed: the training step against the PyTorch peer, FLOPs, and sweep-time projections."""

from sgjax.lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
