"""The `sgjax` command: each subcommand lives in its own module with `add_arguments` and `run`."""

from __future__ import annotations

import argparse
import importlib
import sys

from sgjax.errors import UserError
from sgjax.run import hostmem

# name -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "data": ("sgjax.data.cli", "generate a split and write it in the original text format"),
    "data-stats": ("sgjax.data.stats", "compare a generated split with an original file"),
    "train": ("sgjax.train_cli", "train a population of seeds at one depth"),
    "summarize": ("sgjax.analysis.summarize", "per-seed early-stopping summary of a run"),
    "probe": ("sgjax.analysis.probe.cli", "weight norms, attention sparsity, tree projections of checkpoints"),
    "sweep": ("sgjax.sweep", "train, probe, summarize and report every depth"),
    "report": ("sgjax.analysis.report", "the paper's figures and tables from a sweep"),
    "compare": ("sgjax.analysis.compare", "do two runs of the same seeds train alike (e.g. TF32 against fp32)?"),
    "bench": ("sgjax.bench.speed", "training/evaluation speed against the PyTorch peer"),
}


def enable_compilation_cache() -> None:
    """Persist compiled programs across processes, so a resumed run or a rerun starts without recompiling."""
    import os

    if os.environ.get("SGJAX_NO_COMPILE_CACHE"):
        return
    import jax

    cache = os.environ.get("SGJAX_COMPILE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "sgjax", "jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def quiet_background_writers() -> None:
    """Keep Orbax's background failures off the terminal: the run reports them once, as one line.

    A failed background write (disk full) makes Orbax log each failing thread, and TensorStore's
    callbacks, finding their event loop closed, report it as an unraisable exception each: hundreds
    of lines around the one that says what happened.
    """
    import logging

    for name in ("absl", "asyncio"):  # Orbax's thread reports; futures whose failure was reported already
        logging.getLogger(name).setLevel(logging.CRITICAL)
    previous = sys.unraisablehook

    def hook(unraisable):
        value = unraisable.exc_value
        if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
            previous(unraisable)

    sys.unraisablehook = hook


def error_line(e: BaseException) -> str:
    """One line for a user error or a failed file operation; an OSError keeps the file it names."""
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        other = f" -> {e.filename2}" if e.filename2 is not None else ""
        return f"{e.filename}{other}: {e.strerror}"
    return str(e)


def provenance_version() -> str:
    """This installation's version ('unknown' from a bare checkout on PYTHONPATH)."""
    from sgjax.run import provenance

    return provenance.version("sgjax") or "unknown"


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The `sgjax` parser, with the arguments of the subcommand that argv names."""
    parser = argparse.ArgumentParser(prog="sgjax", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sgjax {provenance_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    name = next((a for a in argv if not a.startswith("-")), None)
    for cmd, (module, help_) in COMMANDS.items():
        p = sub.add_parser(cmd, help=help_)
        if cmd == name:  # import only the module that runs: start-up stays fast
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse argv, dispatch to the subcommand, map user errors and failed file operations to exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser(argv)  # defaults may read the environment (SGJAX_NUM_PROCESSES): a UserError
    except UserError as e:
        print(f"sgjax: error: {e}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    args.argv = list(argv)  # the command as given (not sys.argv: main may be called from Python), for records
    if args.command in ("train", "sweep", "probe", "bench"):
        hostmem.keep_freed_memory()  # before JAX starts its CPU threads
        enable_compilation_cache()
        quiet_background_writers()
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except (UserError, OSError) as e:  # OSError: an --out that is a file, a data file that is a directory, ...
        print(f"sgjax {args.command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sgjax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
