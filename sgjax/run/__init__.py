"""Running a population: the loop, resume, checkpoints, locks, records, and runs saved earlier."""

from sgjax.lazy import lazy_modules

__getattr__, __dir__ = lazy_modules(__name__, __path__)
