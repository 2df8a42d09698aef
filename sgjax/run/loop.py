"""The host loop: chunk -> log -> evaluate -> checkpoint, resumable, with metrics.jsonl and a progress bar."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from sgjax.config import Config, ConfigError, TrainConfig, concrete_layout, flat_items, validate
from sgjax.core import batching, engine
from sgjax.errors import CheckpointError, UserError
from sgjax.run import compat, jsonl, plan, provenance, runlock
from sgjax.run import loggers as loggers_lib
from sgjax.run.checkpoint import RunCheckpoints, saved_probe_steps, saved_state_step, short_reason

# Fields that may change when a run is resumed: extending a run is the point of resuming.
RESUMABLE_CHANGES = {"train.steps", "train.tensorboard", "train.wandb"}


def config_diff(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two config dicts (lists and tuples compare equal)."""
    a, b = flat_items(old), flat_items(new)
    norm = lambda v: list(v) if isinstance(v, tuple) else v
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if norm(a.get(k)) != norm(b.get(k))]


def is_writer() -> bool:
    """Multi-host: process 0 writes the run's files (Orbax coordinates checkpoints itself)."""
    return jax.process_index() == 0


def prepare_run_dir(cfg: Config, run_dir: Path, override: bool) -> list[str]:
    """Create the run directory or check that its saved config matches (refuse a silent change); returns the
    changes --override makes.

    config.json is written later (`write_config`), once the saved state restored: an --override the
    state cannot take (another population or model shape) leaves the run's config as it was.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    diff, legacy = saved_config_changes(cfg, run_dir)
    if diff and not override:
        raise UserError(changed_config_message(run_dir, diff, legacy))
    return diff


def record_config_changes(run_dir: Path, step: int, changes: list[str]) -> None:
    """config_changes.jsonl: from which step an --override's settings trained (config.json holds the latest)."""
    if changes and is_writer():
        with (run_dir / "config_changes.jsonl").open("a") as f:
            f.write(json.dumps({"from_step": step, "changes": changes}) + "\n")


def saved_config_changes(cfg: Config, run_dir: Path) -> tuple[list[str], dict[str, Any]]:
    """Differences from the run's saved config (resumable ones left out), and {field: what the run did} for the
    fields its config.json predates (absent, or "auto" from before runs recorded its choice); ([], {}) if none saved."""
    path = run_dir / "config.json"
    if not path.exists():
        return [], {}
    try:
        saved = jsonl.read_json(path, "the run's config")
    except UserError as e:
        raise UserError(f"{e}; move it away to start a new run") from None
    old = saved_config_dict(saved)
    diff = [d for d in config_diff(old, cfg.to_dict()) if d.split(":")[0] not in RESUMABLE_CHANGES]
    raw, filled = flat_items(saved), flat_items(old)
    changed = [d.split(":")[0] for d in diff]
    return diff, {k: filled.get(k) for k in changed if k not in raw or raw[k] != filled.get(k)}


def changed_config_message(run_dir: Path, diff: list[str], legacy: dict[str, Any]) -> str:
    """The refusal of a changed config; for fields the run predates, the --set that continues it as it ran."""
    as_cli = lambda v: str(v).lower() if isinstance(v, bool) else str(v)  # noqa: E731
    hint = (
        (
            "; it was saved before "
            + ", ".join(legacy)
            + " existed: to continue it as it ran, add "
            + " ".join(f"--set {k}={as_cli(v)}" for k, v in legacy.items())
        )
        if legacy
        else ""
    )
    return (
        f"{run_dir} holds a run with a different config ({'; '.join(diff[:5])}){hint}; "
        "use another --out, or --override to continue it with the new config"
    )


def check_resumable(cfg: Config, run_dir: Path) -> None:
    """Refuse a rerun that would lose work: --steps below the saved state, or progress whose state is gone.

    Runs before the checkpoint managers exist: they create state/, whose absence is evidence here.
    """
    step = saved_state_step(run_dir)
    if step is not None and step > cfg.train.steps:
        raise UserError(
            f"{run_dir} has trained to step {step}, past train.steps {cfg.train.steps}: a run's steps may grow, not "
            f"shrink below its saved state; use --steps {step} or more, or another --out for a new run"
        )
    if step is None:
        refuse_progress_without_state(cfg, run_dir)


def refuse_progress_without_state(cfg: Config, run_dir: Path) -> None:
    """Refuse a restart from step 0 that would delete more than a kill before the first state save leaves.

    A kill before the first state commits leaves state/ (created first) and at most metrics and probe
    checkpoints up to the second checkpoint step: the first state is written in the background while
    training goes on, and the second save waits for it. That restart is the documented behaviour. More
    progress than that, or no state/ at all (deleted to save disk), means the state is gone: refuse.
    """
    logged = [r["step"] for r in jsonl.read_records(run_dir / "metrics.jsonl") if isinstance(r["step"], int)]
    probes = saved_probe_steps(run_dir)
    last = max(logged + probes, default=0)
    state_dir = run_dir / "state"
    if last == 0 or (state_dir.is_dir() and last <= 2 * cfg.train.ckpt_every):
        return
    have = ([f"metrics to step {max(logged)}"] if logged else []) + (
        [f"probe checkpoints at steps {_step_list(probes)}"] if probes else []
    )
    raise CheckpointError(
        f"{run_dir} holds training progress ({', '.join(have)}) but no training state to resume from ({state_dir} "
        f"{'holds no complete state' if state_dir.is_dir() else 'is missing'}): a rerun would restart at step 0 and "
        f"delete them, so nothing was changed; to start over, use another --out or delete {run_dir}"
    )


def _step_list(steps: list[int]) -> str:
    """Steps for a message, a long list shortened: 100, 200, …, 3000 (30)."""
    return ", ".join(map(str, steps)) if len(steps) <= 4 else f"{steps[0]}, {steps[1]}, …, {steps[-1]} ({len(steps)})"


def check_positions(cfg: Config, splits: dict) -> None:
    """Refuse a model.max_len shorter than a sequence the run will see: positions past it would be clamped."""
    lengths = [splits["train"].lengths_N]
    if cfg.data.max_train_len is not None:  # lines the run drops are never seen
        lengths = [lengths[0][lengths[0] <= cfg.data.max_train_len]]
    if cfg.train.eval_every > 0:
        lengths += [s.lengths_N for name, s in splits.items() if name != "train"]
    longest = max((int(n.max(initial=0)) for n in lengths), default=0)
    # SOS, EOS; TI decodes up to 3 tokens past the longest target (scoring.decode_steps), 2 more than its EOS
    need = longest + 2 + (2 if cfg.task == "tense" and cfg.train.eval_every > 0 else 0)
    if need > cfg.model.max_len:
        raise ConfigError(
            f"model.max_len {cfg.model.max_len} is shorter than the {need} positions the data needs "
            f"(its longest line has {longest} words); raise it to at least {need}"
        )


def write_config(cfg: Config, run_dir: Path) -> None:
    """Record the run's config (process 0)."""
    if is_writer():
        write_json(run_dir / "config.json", cfg.to_dict())


def saved_config_dict(d: dict) -> dict:
    """A saved config with the fields added since it was written filled in, as loading it fills them."""
    try:
        out = compat.saved_config(d).to_dict()
    except (TypeError, ValueError):  # not a config this version can read: compare it as it is
        return d
    if out["data"]["layout"] == "auto":  # saved before runs recorded auto's choice
        out["data"]["layout"] = compat.layout_of_auto(out["task"])
    return out


def write_json(path: Path, obj) -> None:
    """Atomic JSON write: a crash never leaves a half-written file."""
    from sgjax.data.formats import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop records after the restored step (they are recomputed) and any torn last line."""
    if not path.exists() or not is_writer():
        return
    keep = []
    for line in path.read_bytes().split(b"\n"):
        rec = jsonl.parse_line(line)  # None: a line torn by a kill mid-write, or damaged
        if rec is not None and rec["step"] <= last_step:
            keep.append(line + b"\n")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(keep))
    tmp.replace(path)


def jsonable(x) -> Any:
    """A float for the JSON log; NaN/Inf become null so the file stays valid JSON."""
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def gen_split_name(task: str) -> str:
    """Dyck's generalization split is its OOD 'test'; QF/TI's is 'gen'."""
    return "test" if task == "dyck" else "gen"


def load_data(cfg: Config) -> dict:
    """The task's splits (generated and cached, or the original files the config names)."""
    from sgjax import data

    gen = gen_split_name(cfg.task)
    sizes = {"train": cfg.data.train_size, "val": cfg.data.val_size, gen: cfg.data.gen_size}
    files = {"train": cfg.data.train_file, "val": cfg.data.val_file, gen: cfg.data.gen_file}
    return data.load_splits(
        cfg.task,
        sizes={k: v for k, v in sizes.items() if v is not None},
        seed=cfg.data.seed,
        generation=cfg.data.generation,
        files={k: v for k, v in files.items() if v is not None},
    )


def train_sequences(cfg: Config, split, vocab) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat_M, starts_N, seq_len_N): the training split's LM sequences, laid end to end, past data.max_train_len's
    filter.
    """
    from sgjax.data.split import Split, lm_flat

    if cfg.data.max_train_len is not None:
        keep_N = split.lengths_N <= cfg.data.max_train_len
        keep_M = np.repeat(keep_N, split.lengths_N)
        split = Split(
            split.task,
            split.name,
            tuple(l for l, k in zip(split.lines, keep_N) if k),
            split.flat_M[keep_M],
            split.lengths_N[keep_N],
        )
    flat_M, starts_N, seq_len_N = lm_flat(split, vocab)
    if len(seq_len_N) < cfg.train.batch_size:
        raise UserError(f"training set has {len(seq_len_N)} lines, fewer than batch_size {cfg.train.batch_size}")
    return flat_M, starts_N.astype(np.int32), seq_len_N.astype(np.int32)


def steps_per_call(cfg: Config, layout: str) -> int:
    """Steps a call takes at most: one for packed batches (batching.PACKED_STEPS_PER_CALL), else train.chunk_steps."""
    return batching.PACKED_STEPS_PER_CALL if layout == "packed" else cfg.train.chunk_steps


def length_bounds(cfg: Config, seq_len_N: np.ndarray, layout: str):
    """(floor, tail, length_C) of a packed or unpadded run (batching.length_bounds), its calls as the host loop cuts
    them.
    """
    return batching.length_bounds(
        seq_len_N,
        cfg.seeds,
        cfg.train.steps,
        steps_per_call(cfg, layout),
        cfg.train.batch_size,
        layout == "packed",
        groups=cfg.train.member_groups,
        by_length=cfg.train.group_by == "length",
    )


def make_train_data(cfg: Config, split, vocab) -> engine.TrainData:
    """LM sequences of the training split, batched as `data.layout` says (config.concrete_layout resolves "auto")."""
    flat_M, starts_N, seq_len_N = train_sequences(cfg, split, vocab)
    layout = concrete_layout(cfg).data.layout
    floor, tail = length_bounds(cfg, seq_len_N, layout)[:2] if layout in ("packed", "unpadded") else (0, None)
    return engine.TrainData(flat_M, starts_N, seq_len_N, layout, floor, tail)


class MetricsLog:
    """metrics.jsonl (one record per step and seed), and the same records to every logger (sgjax.run.loggers)."""

    def __init__(self, run_dir: Path, loggers: list):
        self.path = run_dir / "metrics.jsonl"
        self.loggers = loggers

    def write(self, records: list[dict]) -> None:
        if not is_writer():
            return
        with self.path.open("a") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
            f.flush()
        for logger in self.loggers:
            logger.log(records)

    def close(self) -> None:
        loggers_lib.close(self.loggers)


def member_records(cfg: Config, step: int, train_m: dict | None, eval_m: dict | None, frozen_S) -> list[dict]:
    """One record per member at `step`: training means since the last log, evaluation results."""
    out = []
    for i, seed in enumerate(cfg.seeds):
        rec: dict[str, Any] = {"step": step, "seed": int(seed), "member": i, "nonfinite": bool(frozen_S[i])}
        if train_m is not None:
            rec["lr"] = jsonable(train_m["lr"][i, -1])
            rec["train_loss"] = jsonable(np.mean(train_m["loss"][i]))
            rec["grad_norm"] = jsonable(np.mean(train_m["grad_norm"][i]))
        if eval_m is not None:
            rec.update({k: jsonable(v[i]) for k, v in eval_m.items()})
        out.append(rec)
    return out


def meta(cfg: Config, step: int, frozen_S) -> dict:
    return {
        "step": step,
        "seeds": list(cfg.seeds),
        "lrs": list(cfg.member_lrs),
        "nonfinite": [bool(f) for f in frozen_S],
    }


def default_evaluator(cfg: Config, vocab, splits) -> Callable | None:
    """The paper's metrics for every member (sgjax.evaluation.evaluate), or None if evaluation is off."""
    if cfg.train.eval_every <= 0:
        return None
    from sgjax.evaluation import evaluate

    gen = gen_split_name(cfg.task)
    return evaluate.make_evaluator(
        cfg.model, cfg.eval, cfg.task, vocab, {"val": splits["val"], gen: splits[gen]}, member_seeds=cfg.seeds
    )


def run(
    cfg: Config,
    run_dir,
    *,
    override: bool = False,
    progress: bool = True,
    devices=None,
    evaluator: Callable | None | str = "default",
    stop_at: int | None = None,
    command: list[str] | None = None,
    loggers: list | None = None,
) -> Path:
    """Train (or resume) the population described by `cfg` in `run_dir`; returns run_dir.

    `stop_at` ends the loop early at that step (saving state), as an interruption would: for tests.
    `command`: the command line that started this (recorded in provenance.jsonl; None from Python).
    `loggers`: more places for the records besides metrics.jsonl and the config's TensorBoard / W&B:
    objects with log(records), or plain functions of the records (sgjax.run.loggers).
    """
    validate(cfg)
    cfg = concrete_layout(cfg)  # the run dir records the layout, so a later default cannot change it silently
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # one training process per run directory (process 0 of a multi-host run writes for all)
    with runlock.hold(run_dir, "train") if is_writer() else contextlib.nullcontext():
        return run_locked(
            cfg,
            run_dir,
            override=override,
            progress=progress,
            devices=devices,
            evaluator=evaluator,
            stop_at=stop_at,
            command=command,
            loggers=loggers,
        )


def run_locked(
    cfg: Config,
    run_dir: Path,
    *,
    override: bool,
    progress: bool,
    devices,
    evaluator,
    stop_at,
    command=None,
    loggers=None,
) -> Path:
    """`run` once the run directory is this process's."""
    from sgjax import data

    changes = prepare_run_dir(cfg, run_dir, override)
    check_resumable(cfg, run_dir)
    plan.check_fits(cfg, on_cpu=jax.default_backend() == "cpu")
    tc = cfg.train
    splits = load_data(cfg)
    check_positions(cfg, splits)
    vocab = data.vocab_for(cfg.task)
    tdata = make_train_data(cfg, splits["train"], vocab)
    if evaluator == "default":
        evaluator = default_evaluator(cfg, vocab, splits)

    mesh = engine.seed_mesh(cfg.population, devices)
    if tc.member_groups > 1 and mesh.size > 1:
        raise UserError(
            f"train.member_groups={tc.member_groups} runs on one device; this run's population spans {mesh.size}: "
            "set train.member_groups=1, or pass one device"
        )
    ckpts = RunCheckpoints(run_dir, keep_all=tc.keep_checkpoints)
    extra = [x if hasattr(x, "log") else loggers_lib.Callback(x) for x in loggers or []]
    log = MetricsLog(run_dir, (loggers_lib.for_run(run_dir, cfg) if is_writer() else []) + extra)
    stop = install_stop_handler()
    with jax.default_matmul_precision(tc.matmul_precision):
        end = tc.steps if stop_at is None else min(stop_at, tc.steps)
        step, state = start_or_resume(cfg, run_dir, ckpts, mesh, changes, end, command)
        truncate_metrics(log.path, step)
        population = engine.Population(cfg, tdata, state, mesh)  # member groups, each call at its own width
        del state
        pending: list[dict] = []
        bar = tqdm(
            total=tc.steps,
            initial=step,
            disable=not progress,
            desc=f"{cfg.task} L{cfg.model.n_layers} S{cfg.population}",
            unit="step",
        )
        try:
            while step < end:
                nxt = engine.next_boundary(step, end, tc)
                idx_SxKxB = batching.chunk_indices(cfg.seeds, step, nxt - step, tdata.n, tc.batch_size)
                if tdata.layout == "packed":  # one step per call: see batching.PACKED_STEPS_PER_CALL
                    idx_SxKxB, nxt = (
                        idx_SxKxB[:, : batching.PACKED_STEPS_PER_CALL],
                        step + batching.PACKED_STEPS_PER_CALL,
                    )
                pending.append(population.step(idx_SxKxB, step))
                step = nxt
                bar.update(nxt - bar.n)
                is_log = step % tc.log_every == 0 or step == end
                is_eval = evaluator is not None and (step % tc.eval_every == 0 or step == tc.steps)
                is_ckpt = is_probe_step(step, tc)
                if is_log or is_eval:
                    log_records(cfg, step, pending, population, evaluator if is_eval else None, log, bar)
                    pending = []
                if is_ckpt:
                    save_checkpoint(cfg, ckpts, step, population)
                if stop["stop"] and not pending:  # every step's records are written: a state here loses nothing
                    raise KeyboardInterrupt
            save_state_if_newer(cfg, ckpts, step, population.state())
        except KeyboardInterrupt:
            if stop["stop"] and not stop["abort"]:
                save_state_if_newer(cfg, ckpts, step, population.state())
            ckpts.wait()  # an abort saves nothing new: the run resumes from its last state and redoes the rest
            raise
        finally:
            bar.close()
            with saving_errors(ckpts, step):
                ckpts.wait()
            ckpts.close()
            log.close()
            restore_stop_handler(stop)
    write_padding(run_dir, population.padding)
    return run_dir


def start_or_resume(cfg: Config, run_dir: Path, ckpts: RunCheckpoints, mesh, changes: list[str], end: int, command):
    """(step, population state): the latest saved state, or a fresh init; records what this invocation trains."""
    step = ckpts.latest_state_step() or 0
    if step:  # resume: restore onto this run's mesh; a fresh init would be thrown away
        state, _ = ckpts.restore_state(step, engine.abstract_population(cfg, mesh), cfg.seeds)
    else:
        state = engine.init_population(cfg, mesh)
    if not changes or step < end:  # an override no step would train with leaves the run's record alone
        write_config(cfg, run_dir)
        record_config_changes(run_dir, step, changes)
    if is_writer() and step < end:
        provenance.append(run_dir, command, from_step=step, to_step=end)
    ckpts.drop_params_after(step)
    if step and is_probe_step(step, cfg.train) and not ckpts.has_params(step):
        # The state committed but its probe checkpoint, written in the background beside it, did not: write it again.
        with saving_errors(ckpts, step):
            save_probe_checkpoint(cfg, ckpts, step, state, engine.to_host(state["frozen"]))
    return step, state


def log_records(cfg: Config, step: int, pending: list, population, evaluator, log: MetricsLog, bar) -> None:
    """Write the pending chunks' training metrics (and an evaluation, if given) for `step`; show them on the bar."""
    host = engine.to_host(pending)  # one gather for every chunk's metrics
    train_m = {k: np.concatenate([m[k] for m in host], axis=1) for k in host[0]}
    eval_m = evaluator(population.params(), step) if evaluator is not None else None
    if getattr(evaluator, "note", None):  # said once: the batches shrank to fit memory
        bar.write(evaluator.note)
        evaluator.note = None
    log.write(member_records(cfg, step, train_m, eval_m, population.frozen()))
    shown = {"loss": f"{np.nanmean(train_m['loss'][:, -1]):.3f}"}
    if eval_m:
        shown |= {"val": f"{np.mean(eval_m['val_acc']):.2f}", "gen": f"{np.mean(eval_m['gen_acc']):.2f}"}
    bar.set_postfix(**shown)


def save_checkpoint(cfg: Config, ckpts: RunCheckpoints, step: int, population) -> None:
    """The probe checkpoint and the resume state at `step` (both written in the background)."""
    state = population.state()
    frozen_S = engine.to_host(state["frozen"])
    with saving_errors(ckpts, step):
        save_probe_checkpoint(cfg, ckpts, step, state, frozen_S)
        ckpts.save_state(step, state, meta(cfg, step, frozen_S))
    del state  # the groups' buffers are donated to their next calls


def write_padding(run_dir: Path, pad: dict) -> None:
    """padding.json: the positions this invocation computed per real token."""
    if pad["real"] and is_writer():
        write_json(
            run_dir / "padding.json",
            {
                "positions_per_real_token": pad["positions"] / pad["real"],
                "pad_per_real_token": (pad["positions"] - pad["real"]) / pad["real"],
                "from_step": "this invocation",
            },
        )


def is_probe_step(step: int, tc: TrainConfig) -> bool:
    """Whether the loop saves a probe checkpoint at `step`: every ckpt_every steps and at the end."""
    return step % tc.ckpt_every == 0 or step == tc.steps


def save_probe_checkpoint(cfg: Config, ckpts: RunCheckpoints, step: int, state, frozen_S) -> None:
    """Every member's parameters at `step`, gathered to the host in the checkpoint form (written in the background)."""
    ckpts.save_params(step, engine.host_params(state["params"]), meta(cfg, step, frozen_S))


def save_state_if_newer(cfg: Config, ckpts: RunCheckpoints, step: int, state) -> None:
    """Save the full state at `step` unless it is already the latest saved (end of run, interruption)."""
    if ckpts.latest_state_step() != step:
        with saving_errors(ckpts, step):
            ckpts.save_state(step, state, meta(cfg, step, engine.to_host(state["frozen"])))


@contextlib.contextmanager
def saving_errors(ckpts: RunCheckpoints, step: int):
    """Turn a failed write (disk full, permissions) into one clear error; older checkpoints stay valid."""
    try:
        yield
    except (OSError, ValueError) as e:  # TensorStore's write failures reach Orbax's callers as ValueError
        # A probe checkpoint is written in the background: its failure surfaces at the next save or at the end.
        saved = saved_state_step(ckpts.run_dir)  # what is on disk: the managers' own lists count failed saves
        where = (
            (f"the latest complete state is at step {saved}: free space and rerun the same command to resume from it")
            if saved is not None
            else "no complete state is saved yet: free space and rerun the same command"
        )
        raise CheckpointError(f"saving a checkpoint failed by step {step} ({short_reason(e)}); {where}") from e


def install_stop_handler() -> dict:
    """SIGTERM (preemption) and a first Ctrl-C set a flag the loop acts on at the next logged step, once its records
    and checkpoint are written: save, then stop. A second Ctrl-C aborts at once and saves nothing, so no saved
    state ever outruns the records."""
    flag = {"stop": False, "abort": False, "previous": {}}

    def stop(signum, frame):
        flag["stop"] = True

    def interrupt(signum, frame):
        if flag["stop"]:
            flag["abort"] = True
            raise KeyboardInterrupt
        flag["stop"] = True
        print(
            "\nsgjax: stopping after this step (Ctrl-C again to abort; the run then resumes from its last checkpoint)",
            file=sys.stderr,
            flush=True,
        )

    for sig, handler in ((signal.SIGTERM, stop), (signal.SIGINT, interrupt)):
        try:
            flag["previous"][sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (e.g. a notebook worker): no handler
            pass
    return flag


def restore_stop_handler(flag: dict) -> None:
    for sig, previous in flag["previous"].items():
        signal.signal(sig, previous)
