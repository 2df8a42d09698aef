"""`sgjax bench`: steady-state training speed of a seed population, against a PyTorch peer, and sweep projections.

    sgjax bench --task question --depth 6 --seeds 1,10 [--steps 20] [--chunk 5] [--peer sequential,vmap]
                [--eval] [--precision highest] [--repeat 1] [--out results.json]
    sgjax bench --project results.json [question:2=120/3.5 ...]

Each (implementation, population size S) is measured in its own child process, so the peak RSS,
thread pools and compile caches of one measurement never leak into the next. Implementations:
- `sgjax`: sgjax.core.engine.make_chunk (jit of vmap over S of a scan over K steps), as the host loop runs it;
- `sequential`: sgjax/bench/torch_peer.py, S eager models stepped one after another (the original's style);
- `vmap`: the same peer with torch.func.vmap over stacked parameters.
All use the same per-seed batch indices. sgjax batches them as `data.layout` says (auto: unpadded for
QF/TI, packed for Dyck); the peer pads rows of 8 to each batch's longest (`--peer-padding batch`, the
original's collate) or to `--seq-len` ids (`fixed`).

Throughput is seed-steps per second: S x steps / time, from the median time of the timed chunks (steps
for the peers) after warm-up. FLOPs are counted analytically (flops.py); `--project` runs projection.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sgjax.bench.flops import computed_shape, device_peak, train_flops_per_step
from sgjax.data.formats import atomic_write_bytes

KINDS = ("sgjax", "sequential", "vmap")
BENCH_TRAIN_SIZE = 2000  # lines of training data resident for the bench (step cost does not depend on it)
STEP0 = 10_000  # start past warmup so the learning rate is not 0


# ---------------------------------------------------------------------------------------------- workers


def bench_config(task: str, depth: int, population: int, chunk: int, precision: str, overrides=()):
    """The paper preset at `depth` with the paper's seeds 42, 52, ... (`population` of them), plus `--set` overrides."""
    from sgjax import config as C

    cfg = C.preset("paper", task, depth)
    train = dataclasses.replace(cfg.train, chunk_steps=chunk, matmul_precision=precision)
    cfg = dataclasses.replace(cfg, seeds=tuple(42 + 10 * i for i in range(population)), train=train)
    return C.override(cfg, list(overrides))


def bench_data(cfg):
    """The resident training data as the host loop builds it (sgjax.run.loop.make_train_data), on a small split."""
    from sgjax import data
    from sgjax.run import loop

    sizes = {"train": BENCH_TRAIN_SIZE}
    sizes.update({s: 10 for s in data.SPLITS[cfg.task] if s != "train"})
    split = data.load_splits(cfg.task, sizes=sizes)["train"]
    return loop.make_train_data(cfg, split, data.vocab_for(cfg.task))


def call_indices(cfg, tdata, p: dict) -> list:
    """Per-seed batch indices [S, K, B] of every call (warm-up and timed), for the whole population."""
    from sgjax.core import batching

    k, b = p["steps_per_call"], cfg.train.batch_size
    return [batching.chunk_indices(cfg.seeds, STEP0 + c * k, k, tdata.n, b) for c in range(p["warmup"] + p["calls"])]


def call_widths(tdata, p: dict, idx: list) -> list:
    """The static width of each call, as the host loop picks it for these members' batches."""
    import numpy as np

    row = max(p["seq_len"], tdata.row_width)  # the bench's small split may lack the longest training line
    if tdata.layout == "rows":
        return [row] * len(idx)
    widths = [tdata.width_for(np.asarray(i)) for i in idx]
    return [(w[0], row - 1) for w in widths] if tdata.layout == "unpadded" else widths


def group_plans(cfg, tdata, p: dict) -> list[tuple[list, list, list]]:
    """(members, indices, widths) of every call, for each member group (train.member_groups, group_by); --one-width:
    every call at the widest, one program."""
    from sgjax.core import batching, engine

    idx = call_indices(cfg, tdata, p)
    groups, by_length = engine.member_grouping(cfg)
    calls = [batching.call_groups(tdata.seq_len_N, i, groups, by_length) for i in idx]  # [call][group] members
    plans = []
    for g in range(len(groups)):
        members = [c[g] for c in calls]
        idx_g = [i[m] for i, m in zip(idx, members)]
        plans.append((members, idx_g, call_widths(tdata, p, idx_g)))
    if p.get("one_width"):  # a GPU compiles each width for about a minute; Dyck's vary every step
        widest = max(w for _, _, widths in plans for w in widths)
        plans = [(m, idx, [widest] * len(widths)) for m, idx, widths in plans]
    return plans


def padded_rows(tdata, width: int):
    """Every training sequence in its own 0-padded row of `width` ids (the peer's input layout)."""
    import numpy as np

    rows = np.zeros((tdata.n, width), np.int32)
    for i, (s, n) in enumerate(zip(tdata.starts_N, tdata.seq_len_N)):
        rows[i, : min(n, width)] = tdata.flat_M[s : s + min(n, width)]
    return rows


def minor_faults() -> int:
    """This process's minor page faults so far (fresh pages the kernel had to map: see sgjax.run.hostmem)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def peak_memory(jax_device=None) -> dict:
    """Peak device memory where the backend reports it, and this process's peak RSS."""
    out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    stats = jax_device.memory_stats() if jax_device is not None and jax_device.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        out["peak_device_bytes"] = int(stats["peak_bytes_in_use"])
    return out


def time_eval(cfg, params) -> dict:
    """Wall time of one full evaluation of the population on the task's val and gen splits."""
    import jax

    from sgjax import data
    from sgjax.evaluation import evaluate
    from sgjax.run import loop

    gen = loop.gen_split_name(cfg.task)
    sizes = {"train": BENCH_TRAIN_SIZE}  # val and gen at the paper's sizes; the training split is not needed
    sizes.update({s: 10 for s in data.SPLITS[cfg.task] if s not in ("train", "val", gen)})
    splits = data.load_splits(cfg.task, sizes=sizes)
    evaluator = evaluate.make_evaluator(
        cfg.model,
        cfg.eval,
        cfg.task,
        data.vocab_for(cfg.task),
        {"val": splits["val"], gen: splits[gen]},
        member_seeds=cfg.seeds,
    )
    t0 = time.perf_counter()
    jax.block_until_ready(evaluator(params, STEP0))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(evaluator(params, STEP0))
    return {
        "eval_status": "ok",
        "eval_first_s": first,
        "eval_s": time.perf_counter() - t0,
        "eval_lines": {k: len(splits[k].lines) for k in ("val", gen)},
        "eval_rows": evaluator.rows(),
        "eval_temp_bytes": evaluator.fit["temp_bytes"] if evaluator.fit else None,
    }


def run_sgjax(p: dict) -> dict:
    """Compile, warm up, then time calls of K steps of sgjax's engine for a population of S, as the host loop runs them
    (with train.member_groups, one call per group at its own width; a timed call is all of them)."""
    import jax
    import jax.numpy as jnp

    from sgjax.core import batching, engine

    cfg = bench_config(p["task"], p["depth"], p["population"], p["steps_per_call"], p["precision"], p["overrides"])
    tdata = bench_data(cfg)
    if tdata.layout == "packed":  # as the host loop runs packed batches: one step per call, as many steps in all
        p = {**p, "steps_per_call": batching.PACKED_STEPS_PER_CALL, "calls": p["calls"] * p["steps_per_call"]}
    plans = group_plans(cfg, tdata, p)
    dev = jax.devices()[0]
    with jax.default_matmul_precision(p["precision"]):
        pop = engine.Population(cfg, tdata, engine.init_population(cfg), engine.seed_mesh(cfg.population, [dev]))

        def call(g: int, c: int) -> tuple:
            """(the compiled program's key, members, batch indices) of group g's call c."""
            members, plan, widths = plans[g]
            return (len(members[c]), widths[c]), jnp.asarray(members[c]), jnp.asarray(plan[c])

        compiled, compile_s = {}, []
        for g, (_, plan, _) in enumerate(plans):  # every (group size, width) the calls need, compiled before timing
            for c in range(len(plan)):
                key, members, idx = call(g, c)
                if key not in compiled:
                    t0 = time.perf_counter()
                    fn = engine.make_chunk(cfg, tdata.layout, key[1], pop.gathered)
                    compiled[key] = fn.lower(*pop.call_args(g, members, idx, STEP0)).compile()
                    compile_s.append(time.perf_counter() - t0)
        times, faults, step = [], [], STEP0
        for c in range(len(plans[0][1])):
            f0, t0 = minor_faults(), time.perf_counter()
            ms = []
            for g in range(len(plans)):
                key, members, idx = call(g, c)
                ms.append(pop.run(compiled[key], g, members, idx, step))
            jax.block_until_ready((pop.states, ms))
            if c >= p["warmup"]:
                times.append(time.perf_counter() - t0)
                faults.append(minor_faults() - f0)
            step += p["steps_per_call"]
        state = pop.state()
        out = {
            "compile_s": compile_s[0],
            "compile_total_s": sum(compile_s),
            "compiles": len(compile_s),
            "call_s": times,
            "page_faults_per_call": statistics.median(faults),
            "call_faults": faults,
            "final_loss": float(jnp.mean(engine.join_population(ms)["loss"][:, -1])),
        }
        if p["eval"]:
            out.update(time_eval(cfg, state["params"]))
    out.update(peak_memory(dev))
    out["device"] = f"{dev.platform}:{dev.device_kind}"
    # a group's width per timed call: [w, ...] for one group, [[w_group, ...], ...] for several
    widths = [list(ws) for ws in zip(*(w for _, _, w in plans))] if len(plans) > 1 else plans[0][2]
    out["layout"], out["widths"] = tdata.layout, widths[p["warmup"] :]
    out["group_sizes"], out["group_by"] = [g.stop - g.start for g in pop.groups], cfg.train.group_by
    out["steps_per_call"], out["calls"] = p["steps_per_call"], p["calls"]
    return out


def run_peer(p: dict) -> dict:
    """Warm up, then time single steps of the PyTorch peer (sequential or torch.func.vmap) for S seeds."""
    import numpy as np
    import torch

    from sgjax.bench import torch_peer as peer

    if p.get("torch_threads"):
        torch.set_num_threads(p["torch_threads"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_float32_matmul_precision(
        {"highest": "highest", "tensorfloat32": "high", "bfloat16": "medium"}[p["precision"]]
    )
    cfg = bench_config(p["task"], p["depth"], p["population"], 1, p["precision"], p["overrides"])
    tdata = bench_data(cfg)
    plan = call_indices(cfg, tdata, p)
    width = max(p["seq_len"], int(max(tdata.seq_len_N[i].max() for i in plan)))  # rows, as sgjax's rows layout
    seq_NxT = torch.as_tensor(padded_rows(tdata, width), device=device, dtype=torch.long)
    m, seeds = cfg.model, cfg.seeds
    cls = peer.SequentialTrainer if p["kind"] == "sequential" else peer.VmapTrainer
    models = peer.make_models(
        seeds, m.vocab_size, m.n_layers, device, d_model=m.d_model, n_heads=m.n_heads, d_ff=m.d_ff, dropout=m.dropout
    )
    tc = cfg.train
    trainer = cls(models, lr=tc.lr, eps=tc.adam_eps, clip=tc.clip_norm, warmup=tc.warmup_steps, total=tc.decay_steps)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fit = (
        peer.trim_padding if p.get("peer_padding") == "batch" else (lambda i, t: (i, t))
    )  # the original's padding, or fixed rows
    times, faults, losses = [], [], []
    for c, idx_SxKxB in enumerate(plan):
        step = STEP0 + c
        idx_SxB = torch.as_tensor(np.asarray(idx_SxKxB)[:, 0], device=device, dtype=torch.long)
        f0, t0 = minor_faults(), time.perf_counter()
        inp, tgt = peer.batches_for(seq_NxT, idx_SxB)
        if p["kind"] == "sequential":  # with batch padding, each seed's batch is cut to its own longest row
            losses = trainer.step(step, [fit(i, t) for i, t in zip(inp, tgt)])
        else:  # one width for the stacked seeds
            losses = trainer.step(step, *fit(inp, tgt))
        sync()
        if c >= p["warmup"]:
            times.append(time.perf_counter() - t0)
            faults.append(minor_faults() - f0)
    out = {
        "call_s": times,
        "page_faults_per_call": statistics.median(faults),
        "call_faults": faults,
        "final_loss": float(np.mean(losses)),
        "compile_s": None,
        "torch_threads": torch.get_num_threads(),
        "device": f"{device}:torch {torch.__version__}",
        "layout": "rows",
        "widths": [width] * len(times),
        "peer_padding": p.get("peer_padding", "batch"),
    }
    out.update(peak_memory())
    if device == "cuda":
        out["peak_device_bytes"] = int(torch.cuda.max_memory_allocated())
    return out


def typical_call_s(call_s: list[float], widths: list) -> float:
    """A steady call's seconds: each width's median call, averaged over the calls (so weighted by how often it runs).

    A median, so a stray slow call (a process growing its heap mid-run, docs/performance.md) does not
    count; per width, because widths cost differently and one median would pick one of them. Calls
    of widths seen once (packed Dyck) count as they are: their mean.
    """
    by_width: dict[str, list[float]] = {}
    for t, w in zip(call_s, widths):
        by_width.setdefault(json.dumps(w), []).append(t)
    return sum(len(ts) * statistics.median(ts) for ts in by_width.values()) / len(call_s)


def measure(p: dict) -> dict:
    """One measurement, in this process; adds throughput, FLOP/s and the load average around it."""
    load0 = os.getloadavg()[0]
    raw = run_sgjax(p) if p["kind"] == "sgjax" else run_peer(p)
    one_width = len({json.dumps(w) for w in raw["widths"]}) <= 1
    per_call = typical_call_s(raw["call_s"], raw["widths"])
    rate = p["population"] * raw.get("steps_per_call", p["steps_per_call"]) / per_call
    cfg = bench_config(p["task"], p["depth"], 1, 1, p["precision"], p["overrides"])
    m = cfg.model
    step_flops = lambda w: train_flops_per_step(
        m.n_layers,
        m.d_model,
        m.d_ff,
        m.vocab_size,  # noqa: E731
        *computed_shape(raw["layout"], w, cfg.train.batch_size),
    )
    sizes = raw.get("group_sizes") or [1]
    flops_C = [
        step_flops(w) if len(sizes) == 1 else sum(n * step_flops(wg) for n, wg in zip(sizes, w)) / sum(sizes)
        for w in raw["widths"]
    ]
    flops = statistics.mean(flops_C)  # per seed-step, averaged over the timed calls' widths (and members' groups)
    res = {
        **p,
        **raw,
        "seed_steps_per_s": rate,
        "per_call_s": per_call,
        "call_statistic": "median" if one_width else "median per width",
        "flops_per_seed_step": flops,
        "achieved_flops": flops * rate,
        "loadavg_1m_before": load0,
        "loadavg_1m_after": os.getloadavg()[0],
    }
    peak = device_peak(raw["device"], p["precision"])
    res["peak_flops"] = peak
    res["fraction_of_peak"] = res["achieved_flops"] / peak if peak else None
    return res


def measure_isolated(p: dict) -> dict:
    """`measure` in a fresh child process (clean peak memory and thread pools); errors become a record."""
    python = p.get("peer_python") if p["kind"] != "sgjax" else None  # a peer may run in another environment
    proc = subprocess.run(
        [python or sys.executable, "-m", "sgjax.bench.speed", "--worker", json.dumps(p)], capture_output=True, text=True
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {**p, "error": " | ".join(tail) or f"exit {proc.returncode}"}
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------- report


def fmt_bytes(n) -> str:
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def results_table(results: list[dict]) -> str:
    """A markdown table: one row per measurement, with sgjax / peer ratios at the same S."""
    by = {(r["kind"], r["population"]): r for r in results if "error" not in r}
    head = (
        "| impl | S | seed-steps/s | s/call (steps/call) | compile s | GFLOP/s | % peak | peak mem | "
        "sgjax / this | load 1m |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for r in results:
        if "error" in r:
            rows.append(f"| {r['kind']} | {r['population']} | error: {r['error'][:80]} | | | | | | | |")
            continue
        ours = by.get(("sgjax", r["population"]))
        ratio = f"{ours['seed_steps_per_s'] / r['seed_steps_per_s']:.2f}x" if ours and r["kind"] != "sgjax" else "-"
        frac = f"{100 * r['fraction_of_peak']:.1f}" if r.get("fraction_of_peak") else "n/a"
        comp = f"{r['compile_s']:.1f}" if r.get("compile_s") is not None else "-"
        mem = fmt_bytes(r.get("peak_device_bytes", r.get("peak_rss_bytes")))
        rows.append(
            f"| {r['kind']} | {r['population']} | {r['seed_steps_per_s']:.2f} | "
            f"{r['per_call_s']:.3f} ({r['steps_per_call']}) | {comp} | {r['achieved_flops'] / 1e9:.1f} | "
            f"{frac} | {mem} | {ratio} | {r['loadavg_1m_before']:.1f}→{r['loadavg_1m_after']:.1f} |"
        )
    evals = [r for r in results if r.get("kind") == "sgjax" and r.get("eval_status")]
    note = ""
    for r in evals:
        if r["eval_status"] == "ok":
            rows_note = f", {r['eval_rows']} rows per member per batch" if r.get("eval_rows") else ""
            note += (
                f"\nEvaluation, S={r['population']}: {r['eval_s']:.2f} s per full val+gen evaluation "
                f"(first call {r['eval_first_s']:.1f} s{rows_note}).\n"
            )
        else:
            note += f"\nEvaluation, S={r['population']}: {r['eval_status']}\n"
    return head + "\n" + "\n".join(rows) + "\n" + note


def best_of(results: list[dict]) -> list[dict]:
    """Per (kind, S), the repeat with the highest throughput (others are noise from a shared machine); one round as it
    is.
    """
    best: dict = {}
    for r in results:
        key = (r["kind"], r["population"])
        if (
            key not in best
            or ("error" in best[key])
            or ("error" not in r and r["seed_steps_per_s"] > best[key]["seed_steps_per_s"])
        ):
            best[key] = r
    return list(best.values())


VECTOR_ISAS = ("avx512f", "avx2", "fma", "neon", "asimd")  # the /proc/cpuinfo flags that decide matmul speed


def cpu_info(cpuinfo: str) -> dict:
    """Model name, family/model numbers and vector ISAs from /proc/cpuinfo's text (VMs often name only 'AMD EPYC')."""
    fields = dict(l.split(":", 1) for l in cpuinfo.splitlines() if ":" in l)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {
        "cpu": fields.get("model name", platform.processor()),
        "cpu_family": fields.get("cpu family"),
        "cpu_model": fields.get("model"),
        "cpu_isa": [f for f in VECTOR_ISAS if f in flags],
    }


def peer_versions(python: str) -> dict:
    """Python and torch versions of another interpreter (the peer's, with --peer-python)."""
    code = "import platform, torch; print(platform.python_version(), torch.__version__)"
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"peer_python": python, "torch": None}
    py, torch_version = proc.stdout.split()
    return {"peer_python": python, "peer_python_version": py, "torch": torch_version}


def machine(peer_python: str | None = None) -> dict:
    """CPU model and vector ISAs, core count, Python and library versions (torch: the peer's)."""
    cpuinfo = Path("/proc/cpuinfo")
    cpu = cpu_info(cpuinfo.read_text()) if cpuinfo.exists() else {"cpu": platform.processor()}
    info = {
        **cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_devices"] = [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
    except Exception as e:  # noqa: BLE001 - informational only
        info["jax"] = f"unavailable ({e})"
    if peer_python is not None:
        return info | peer_versions(peer_python)
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sgjax.train_cli import comma_list

    p.add_argument("--task", default="question", help="question | tense | dyck (default: question)")
    p.add_argument("--depth", type=int, default=6, help="number of layers (default 6)")
    p.add_argument(
        "--seeds",
        type=comma_list(int, "population sizes"),
        default="1,10",
        help="population sizes S to measure, comma-separated (default 1,10)",
    )
    p.add_argument("--steps", type=int, default=20, help="timed steps per member (default 20)")
    p.add_argument("--chunk", type=int, default=5, help="K: steps per jitted call for sgjax (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls after compilation (default 1; peers: 2 steps)")
    p.add_argument("--peer", default="sequential,vmap", help="torch peer modes to run: sequential,vmap or none")
    p.add_argument(
        "--eval",
        action="store_true",
        help="also time one full evaluation of the population",
    )
    p.add_argument(
        "--one-width",
        action="store_true",
        help="sgjax: run every call at the widest planned call's width, one compiled program (packed/unpadded); "
        "--project scales the rate to a whole run by its FLOPs",
    )
    p.add_argument(
        "--precision",
        default="highest",
        choices=("highest", "tensorfloat32", "bfloat16"),
        help="matmul precision of sgjax's step (highest: true fp32)",
    )
    p.add_argument("--seq-len", type=int, default=37, help="ids per padded training row (QF's longest is 37)")
    p.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the best of each is reported")
    p.add_argument(
        "--peer-padding",
        default="batch",
        choices=("fixed", "batch"),
        help="the peer's rows: batch (each batch cut to its longest row, as the original's collate; "
        "default) or fixed (every row padded to the longest training sequence, as sgjax's rows layout)",
    )
    p.add_argument(
        "--peer-malloc",
        default="default",
        choices=("default", "tuned"),
        help="the peer's host malloc: default (as torch runs) or tuned (the settings of sgjax.run.hostmem, as sgjax)",
    )
    p.add_argument("--torch-threads", type=int, default=0, help="torch intra-op threads (default: torch's)")
    p.add_argument(
        "--peer-python",
        metavar="PYTHON",
        help="the Python that runs the peer's children (an environment with torch and sgjax installed; "
        "default: this one), so sgjax on one JAX can be compared with the same peer",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="config override for every implementation, e.g. --set model.dropout=0 (for lever experiments)",
    )
    p.add_argument("--in-process", action="store_true", help="measure in this process instead of one child each")
    p.add_argument("--out", help="write results to this .json (and a .md next to it)")
    p.add_argument(
        "--project",
        nargs="+",
        metavar="FILE.json|task:depth=rate[/eval_s]",
        help="print the paper sweep's projected time from measured rates (a bench file's scaled to its "
        "whole run: its FLOP/s over the run's mean seed-step FLOPs), then exit",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)


def check_args(args) -> tuple[list[int], list[str]]:
    """Population sizes and peers, after refusing what cannot be measured: before any child runs, not as a table row."""
    from sgjax import config as C
    from sgjax.errors import UserError

    sizes, peers = list(args.seeds), [k for k in args.peer.split(",") if k and k != "none"]
    bad = [k for k in peers if k not in KINDS[1:]]
    checks = [
        (not bad, f"--peer {','.join(bad)}: choose from {', '.join(KINDS[1:])} or none"),
        (sizes and min(sizes) >= 1, f"--seeds: population sizes must be >= 1 (got {sizes})"),
        (args.steps >= 1 and args.chunk >= 1, "--steps and --chunk must be >= 1"),
        (
            args.warmup >= 0 and args.repeat >= 1 and args.torch_threads >= 0,
            "--warmup and --torch-threads must be >= 0, --repeat >= 1",
        ),
    ]
    if args.peer_python is not None:
        checks.append(
            (shutil.which(args.peer_python) is not None, f"--peer-python {args.peer_python}: not an executable")
        )
    for ok, msg in checks:
        if not ok:
            raise UserError(msg)
    # the task, depth and --set overrides as every measurement builds them (an unknown task: a ConfigError)
    C.validate(bench_config(args.task, args.depth, max(sizes), args.chunk, args.precision, args.overrides))
    return sizes, peers


def run(args) -> int:
    if args.project:
        from sgjax.bench.projection import project

        print(project(args.project))
        return 0
    sizes, peers = check_args(args)
    if peers and args.peer_python is None:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            print("torch is not importable: the peer is skipped (pip install 'sgjax[bench]')", file=sys.stderr)
            peers = []
    base = {
        "task": args.task,
        "depth": args.depth,
        "precision": args.precision,
        "seq_len": args.seq_len,
        "torch_threads": args.torch_threads,
        "peer_padding": args.peer_padding,
        "peer_malloc": args.peer_malloc,
        "overrides": args.overrides,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "peer_python": args.peer_python,
        "one_width": args.one_width,
    }
    go = measure if args.in_process else measure_isolated
    results = []
    for rnd in range(args.repeat):
        for s in sizes:
            for kind in ["sgjax", *peers]:
                p = {
                    **base,
                    "kind": kind,
                    "population": s,
                    "round": rnd,
                    "eval": args.eval and kind == "sgjax" and rnd == 0,
                }
                if kind == "sgjax":
                    p.update(steps_per_call=args.chunk, calls=math.ceil(args.steps / args.chunk), warmup=args.warmup)
                else:  # the peers step once per call; sequential runs S eager seeds per step, so fewer steps
                    seq = kind == "sequential"
                    steps = max(2, math.ceil(args.steps / s)) if seq else args.steps
                    p.update(steps_per_call=1, calls=steps, warmup=1 if seq and s > 1 else 2)
                print(f"[bench] round {rnd} {kind} S={s} ...", file=sys.stderr, flush=True)
                r = go(p)
                results.append(r)
                msg = r.get("error") or f"{r['seed_steps_per_s']:.2f} seed-steps/s"
                print(f"[bench]   {msg}", file=sys.stderr, flush=True)
                if args.out:  # after every measurement: a bench cut short (a deadline, Ctrl-C) keeps what it measured
                    write_results(args, results, None)
    print(results_table(best_of(results)))
    if args.out:
        # The machine is read last: jax.devices() here would take GPU memory the measuring children need.
        write_results(args, results, machine(args.peer_python))
        print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}", file=sys.stderr)
    return 0


def write_results(args, results: list[dict], machine_info: dict | None) -> None:
    """The bench's JSON and markdown; `complete` is false (and the machine unread) until every measurement is in."""
    best = best_of(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": "sgjax " + " ".join(getattr(args, "argv", ["bench"])),  # argv: set by sgjax.cli.main
        "complete": machine_info is not None,
        "machine": machine_info,
        "flops": "analytic: 3 x (2 x matmul params x tokens + 4 T^2 d per layer and attention row)",
        "results": best,
        "all_rounds": results if args.repeat > 1 else None,
    }
    atomic_write_bytes(out, json.dumps(doc, indent=2).encode())
    machine_line = machine_info if machine_info is not None else "not read yet: the bench stopped before its end"
    atomic_write_bytes(
        out.with_suffix(".md"),
        f"# sgjax bench\n\n`{doc['command']}`\n\nMachine: {machine_line}\n\n{results_table(best)}".encode(),
    )


def worker_main(argv: list[str]) -> int:
    """Child-process entry: measure the JSON-encoded parameters and print one JSON line."""
    p = json.loads(argv[argv.index("--worker") + 1])
    if p["kind"] == "sgjax" or p.get("peer_malloc") == "tuned":
        from sgjax.run import hostmem

        p["malloc_tuned"] = hostmem.keep_freed_memory()
    print(json.dumps(measure(p)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv))
