"""What a run will do and need, from its config alone: steps, evaluations, checkpoints, disk and memory."""

from __future__ import annotations

import os

from sgjax.config import Config, ModelConfig
from sgjax.errors import UserError

BYTES_PER_LINE = 1024  # generating and tokenizing a split: about 700 bytes a line at its peak (QF and Dyck, measured)
STATE_COPIES = 4  # parameters, gradients and Adam's two moments, float32


def param_count(m: ModelConfig) -> int:
    """Scalars of one member: embedding, L layers (Q, K, V, O; the FFN; two LayerNorms), output layer."""
    d, f, v = m.d_model, m.d_ff, m.vocab_size
    layer = 4 * d * d + (d * f + f) + (f * d + d) + 2 * (2 * d)
    return v * d + m.n_layers * layer + (d * v + v)


def count_at(steps: int, every: int) -> int:
    """Steps in 1..steps that are multiples of `every`, plus the last step if it is not one."""
    if every <= 0:
        return 0
    return steps // every + (steps % every != 0)


def plan(cfg: Config) -> dict:
    """The run's work and footprint: evaluations, probe checkpoints, bytes of data, state and checkpoints."""
    from sgjax import data

    gen = "test" if cfg.task == "dyck" else "gen"
    sizes = data.resolve_sizes(
        cfg.task,
        {
            k: v
            for k, v in {"train": cfg.data.train_size, "val": cfg.data.val_size, gen: cfg.data.gen_size}.items()
            if v is not None
        },
    )
    tc, params = cfg.train, param_count(cfg.model)
    member_bytes = 4 * params
    checkpoints = count_at(tc.steps, tc.ckpt_every)
    kept = checkpoints if tc.keep_checkpoints else 1
    return {
        "steps": tc.steps,
        "members": cfg.population,
        "params_per_member": params,
        "evaluations": count_at(tc.steps, tc.eval_every),
        "probe_checkpoints": checkpoints,
        "data_lines": sum(sizes.values()),
        "data_bytes": sum(sizes.values()) * BYTES_PER_LINE,
        "state_bytes": cfg.population * member_bytes * STATE_COPIES,
        # probe checkpoints (parameters) plus the latest resume state (parameters and moments)
        "disk_bytes": cfg.population * member_bytes * (kept + 3),
    }


def host_memory() -> int | None:
    """Physical memory of this machine in bytes, where the OS says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_fits(cfg: Config, on_cpu: bool) -> None:
    """Refuse a run whose data (and, on a CPU, whose training state) cannot fit in this machine's memory."""
    p, total = plan(cfg), host_memory()
    if total is None:
        return
    need = p["data_bytes"] + (p["state_bytes"] if on_cpu else 0)
    if need > total:
        raise UserError(
            f"this run needs about {gib(need)} of memory ({p['data_lines']:,} lines of data: {gib(p['data_bytes'])}"
            + (f"; {p['members']} members' training state: {gib(p['state_bytes'])}" if on_cpu else "")
            + f"), more than this machine's {gib(total)}: lower the data sizes (data.*_size), the model or the seeds"
        )


def describe(cfg: Config) -> str:
    """The plan as lines for `sgjax train --dry-run`."""
    p = plan(cfg)
    return "\n".join(
        [
            f"{cfg.task}, {cfg.model.n_layers} layers, d {cfg.model.d_model}: {p['members']} members "
            f"({', '.join(map(str, cfg.seeds))}), {p['params_per_member']:,} parameters each",
            f"{p['steps']:,} steps of batch {cfg.train.batch_size}; {p['evaluations']} evaluations, "
            f"{p['probe_checkpoints']} probe checkpoints",
            f"data: {p['data_lines']:,} lines (generation {cfg.data.generation}, seed {cfg.data.seed}), "
            f"about {gib(p['data_bytes'])} of memory to build",
            f"training state: {gib(p['state_bytes'])}; checkpoints on disk: about {gib(p['disk_bytes'])}",
        ]
    )
