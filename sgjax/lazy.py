"""Packages that import their modules on first use, so `import sgjax` stays cheap and
`sgjax.analysis.probe.probe_run` resolves after it."""

import importlib
import pkgutil


def lazy_modules(package: str, path, public=()):
    """A package's `__getattr__` and `__dir__`: its modules imported on first access, listed before."""

    def getattr_(name: str):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{name}":  # a module that exists but fails to import: say why
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    def dir_():
        return sorted(set(public) | {m.name for m in pkgutil.iter_modules(path)})

    return getattr_, dir_
