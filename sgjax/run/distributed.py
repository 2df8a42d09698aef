"""Multi-host start-up on JAX's own runtime: `jax.distributed.initialize` from flags or the environment."""

from __future__ import annotations

import argparse
import os

import jax

from sgjax.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("multi-host (see docs/scaling.md)")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() (auto-detects TPU pods and SLURM; or give the flags below)",
    )
    g.add_argument(
        "--coordinator", default=os.environ.get("SGJAX_COORDINATOR"), help="host:port of process 0 (GPU clusters)"
    )
    g.add_argument("--num-processes", type=int, default=_env_int("SGJAX_NUM_PROCESSES"), help="number of processes")
    g.add_argument("--process-id", type=int, default=_env_int("SGJAX_PROCESS_ID"), help="this process's index")


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    try:
        return int(v) if v else None
    except ValueError:
        raise UserError(f"{name}={v!r} is not an integer") from None


def maybe_initialize(args) -> None:
    """Join the multi-process runtime if asked; afterwards jax.devices() spans every host."""
    explicit = args.coordinator is not None
    if not (args.distributed or explicit):
        return
    try:
        if explicit:
            jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        else:
            jax.distributed.initialize()
    except ValueError as e:  # JAX says which setting it could neither read nor detect (off a SLURM/TPU cluster)
        raise UserError(
            f"cannot join the multi-process runtime ({str(e).rstrip('.')}): give --coordinator, "
            "--num-processes and --process-id (or SGJAX_COORDINATOR, SGJAX_NUM_PROCESSES, "
            "SGJAX_PROCESS_ID)"
        ) from e
