"""Scoring a population: evaluation batches, KV-cached decoding, the paper's accuracies."""

from sgjax.lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
