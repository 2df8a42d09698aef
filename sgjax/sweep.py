"""`sgjax sweep`: every depth (one vmapped program each) x every task, then probe, summarize and report.

Rerunning the same command resumes whatever is unfinished and skips what is done:
training resumes from each run's latest state, the probe skips probed steps, summaries and the
report are rebuilt (they are cheap).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
from pathlib import Path

import jax

from sgjax import config as C
from sgjax.errors import UserError
from sgjax.run import jsonl
from sgjax.train_cli import add_config_arguments, comma_list, config_from_args

PAPER_DEPTHS = (2, 4, 6, 8, 10)
DEFAULT_DEPTHS = {"paper": PAPER_DEPTHS, "quick": PAPER_DEPTHS, "smoke": (1, 2)}


def run_dir_for(sweep_dir: Path, task: str, depth: int) -> Path:
    """Where one (task, depth) run of a sweep lives."""
    return Path(sweep_dir) / f"{task}_L{depth}"


def is_trained(run_dir: Path, cfg: C.Config) -> bool:
    """True when the run's probe checkpoint at the final step exists (training finished)."""
    return (run_dir / "checkpoints" / str(cfg.train.steps) / "params").is_dir()


def write_manifest(sweep_dir: Path, manifest: dict, override: bool) -> None:
    """sweep.json records what the sweep is; a rerun with different tasks/depths/seeds is refused."""
    path = sweep_dir / "sweep.json"
    if path.exists() and not override:
        try:
            old = jsonl.read_json(path, "the sweep's manifest")
        except UserError as e:
            raise UserError(f"{e}; move it away, or rerun with --override to rewrite it") from None
        if {k: old.get(k) for k in manifest} != manifest:
            raise UserError(f"{sweep_dir} holds a different sweep ({old}); use another --out, or --override")
    if jax.process_index() == 0:  # several hosts: one writes, whole (the others may be reading it)
        from sgjax.data.formats import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(manifest, indent=2).encode())


def device_groups(n_groups: int, devices=None) -> list[list]:
    """Split the local devices into n_groups equal groups (the remainder is left idle)."""
    if jax.process_count() > 1:  # a group on one host would train alone while the others wait for it
        raise UserError(
            "--parallel-depths splits one host's devices; on several hosts, leave it out (each depth then "
            "spans every host) or run one sweep per host with its own --depths"
        )
    devices = list(devices if devices is not None else jax.local_devices())
    per = len(devices) // n_groups
    if per == 0:
        raise UserError(f"--parallel-depths needs at least {n_groups} devices, found {len(devices)}")
    return [devices[i * per : (i + 1) * per] for i in range(n_groups)]


def train_one(cfg: C.Config, run_dir: Path, override: bool, progress: bool, devices=None, command=None) -> Path:
    """Train one (task, depth) run unless it already finished."""
    from sgjax.run import loop

    if is_trained(run_dir, cfg) and (run_dir / "config.json").exists():
        # A finished run of another config is refused (as `train` would), not reported as this one; one that
        # differs only in fields its config.json predates is this config's run as it was trained then.
        diff, legacy = loop.saved_config_changes(C.concrete_layout(cfg), run_dir)
        if any(d.split(":")[0] not in legacy for d in diff) and not override:
            raise UserError(loop.changed_config_message(run_dir, diff, legacy))
        return run_dir
    return loop.run(cfg, run_dir, override=override, progress=progress, devices=devices, command=command)


def run_sweep(
    tasks: list[str],
    depths: list[int],
    configs: dict[tuple[str, int], C.Config],
    out,
    *,
    probe: bool = True,
    probe_sample: int | None = None,
    report: bool = True,
    parallel_depths: bool = False,
    override: bool = False,
    progress: bool = True,
    command: list[str] | None = None,
) -> Path:
    """Train every (task, depth), probe its checkpoints, summarize it, and write the report.

    On one host each task is probed and summarized as soon as its depths are trained. On several
    hosts every process trains (the population spans them all), and then process 0 alone probes,
    summarizes and reports, so the other processes never wait on it inside a collective.
    """
    if probe:  # a bad probe option is refused now, not after hours of training
        from sgjax.analysis.probe.run import ProbeOptions, validate_options

        validate_options(ProbeOptions(sample=probe_sample))
    sweep_dir = Path(out)
    first = next(iter(configs.values()))
    manifest = {"tasks": list(tasks), "depths": list(depths), "seeds": list(first.seeds), "preset": first.preset}
    write_manifest(sweep_dir, manifest, override)
    if jax.process_index() == 0:
        from sgjax.run import provenance

        provenance.append(sweep_dir, command)
    one_host = jax.process_count() == 1
    for task in tasks:
        runs = [(configs[(task, d)], run_dir_for(sweep_dir, task, d)) for d in depths]
        if parallel_depths and len(runs) > 1:
            groups = device_groups(len(runs))
            with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
                futures = [
                    pool.submit(train_one, cfg, rd, override, False, g, command) for (cfg, rd), g in zip(runs, groups)
                ]
                for f in futures:
                    f.result()
        else:
            for cfg, rd in runs:
                train_one(cfg, rd, override, progress, command=command)
        if one_host:
            analyse(runs, probe, probe_sample, progress)
    if jax.process_index() > 0:
        return sweep_dir
    if not one_host:
        analyse(
            [(configs[(t, d)], run_dir_for(sweep_dir, t, d)) for t in tasks for d in depths],
            probe,
            probe_sample,
            progress,
        )
    if report:
        from sgjax.analysis import report as report_lib

        report_lib.write_report(sweep_dir)
    return sweep_dir


def analyse(runs: list[tuple[C.Config, Path]], probe: bool, probe_sample: int | None, progress: bool) -> None:
    """Probe every checkpoint of each trained run, then summarize it (when it was evaluated)."""
    from sgjax.analysis import summarize

    for cfg, rd in runs:
        if probe:
            from sgjax.analysis.probe import run as probe_run

            kwargs = {} if probe_sample is None else {"sample": probe_sample}
            probe_run.probe_run(rd, progress=progress, **kwargs)
        if cfg.train.eval_every > 0:
            summarize.summarize_run(rd)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.set_defaults(task="all")
    for a in p._actions:
        if a.dest == "task":
            a.required = False
            a.help = f"a task, a comma-separated list, or 'all' ({', '.join(C.TASKS)}; default: all)"
    p.add_argument(
        "--depths", type=comma_list(int, "depths"), help="comma-separated depths (default: 2,4,6,8,10; smoke: 1,2)"
    )
    p.add_argument("--out", required=True, help="sweep directory (rerunning resumes it)")
    p.add_argument("--no-probe", action="store_true", help="skip the probe (weight norms, sparsity, tree projections)")
    p.add_argument(
        "--probe-sample",
        type=int,
        help="sentences (Dyck: strings) per probed checkpoint (default: the probe's, 10k for QF/TI, 500 for Dyck)",
    )
    p.add_argument("--no-report", action="store_true", help="skip the report")
    p.add_argument("--parallel-depths", action="store_true", help="run depths at once on separate device groups")
    p.add_argument("--override", action="store_true", help="continue runs whose config changed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from sgjax.run import distributed

    distributed.maybe_initialize(args)
    tasks = list(C.TASKS) if args.task == "all" else [t for t in args.task.split(",") if t]
    for t in tasks:
        if t not in C.TASKS:
            raise UserError(f"unknown task {t!r}; choose from {', '.join(C.TASKS)} or all")
    depths = list(DEFAULT_DEPTHS.get(args.preset, PAPER_DEPTHS) if args.depths is None else args.depths)
    for flag, items in (("--task", tasks), ("--depths", depths)):
        if not items:  # "," parses to nothing: refused, not replaced by the default
            raise UserError(f"{flag} is empty")
    configs = {}
    for t in tasks:
        args.task = t
        configs.update({(t, d): config_from_args(args, d) for d in depths})
    out = run_sweep(
        tasks,
        depths,
        configs,
        args.out,
        probe=not args.no_probe,
        probe_sample=args.probe_sample,
        report=not args.no_report,
        parallel_depths=args.parallel_depths,
        override=args.override,
        progress=not args.no_progress,
        command=["sgjax", *getattr(args, "argv", ["sweep"])],
    )
    print(f"sweep directory: {out}" + ("" if args.no_report else f"\nreport: {out / 'report' / 'report.md'}"))
    return 0
