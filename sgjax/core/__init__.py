"""The paper's model and its training step: parameters, forward, optimizer, batches, population step."""

from sgjax.lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
