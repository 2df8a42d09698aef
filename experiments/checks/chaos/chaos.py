"""Kill training at random moments, resume, repeat; the result must equal an uninterrupted run.

    python experiments/checks/chaos/chaos.py --kills 20 --out ../sgjax_chaos
    python experiments/checks/chaos/chaos.py --kills 20 --signals TERM,KILL      # alternate preemption and hard kills

Checks (exit status 1 if any fails): the final parameters of every seed equal the uninterrupted
run's bit for bit (CPU), every retained probe checkpoint loads, the latest state restores, and
metrics.jsonl holds exactly one record per (step, seed). After a SIGTERM (a preemption notice) the
run must also have saved its state at the last step it logged before exiting: no trained step lost.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TRAIN_ARGS = [
    "--task",
    "question",
    "--preset",
    "smoke",
    "--steps",
    "1000",
    "--no-progress",
    "--set",
    "train.ckpt_every=20",
    "--set",
    "train.chunk_steps=10",
    "--set",
    "train.log_every=10",
    "--set",
    "train.eval_every=0",
    "--set",
    "model.d_model=32",
    "--set",
    "model.d_ff=64",
]


def train_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "sgjax.cli", "train", *TRAIN_ARGS, "--out", str(out)]


def run_to_end(out: Path) -> None:
    subprocess.run(train_cmd(out), check=True, capture_output=True)


def kill_randomly(out: Path, rng: random.Random, max_wait: float, sig: str = "KILL") -> tuple[float, bool]:
    """Start training, send SIG`sig` after a random delay; returns (delay, whether it was still running)."""
    proc = subprocess.Popen(train_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delay = rng.uniform(1.0, max_wait)
    try:
        proc.wait(timeout=delay)  # it may finish first: then there is nothing to kill
        return delay, False
    except subprocess.TimeoutExpired:
        proc.send_signal(getattr(signal, f"SIG{sig}"))
        proc.wait()  # SIGTERM: the run saves, then exits by itself
        return delay, True


def last_logged_step(out: Path) -> int | None:
    """The latest step metrics.jsonl records (a torn last line skipped, as the run itself reads it)."""
    from sgjax.run import jsonl

    return max((r["step"] for r in jsonl.read_records(out / "metrics.jsonl")), default=None)


def resumed_step(out: Path) -> int | None:
    """The step a rerun would resume from (the latest committed state)."""
    state = out / "state"
    steps = [int(p.name) for p in state.iterdir() if p.name.isdigit()] if state.is_dir() else []
    return max(steps, default=None)


def check(ref: Path, out: Path) -> list[str]:
    """Every problem found comparing the chaotic run with the reference run."""
    from sgjax.run import checkpoint, jsonl

    problems = []
    steps = checkpoint.list_steps(out)
    final = checkpoint.list_steps(ref)[-1]
    if final not in steps:
        return [f"no final checkpoint at step {final}"]
    if steps != checkpoint.list_steps(ref):  # probe checkpoints are written in the background: none may go missing
        problems.append(f"probe checkpoints at {len(steps)} steps, the reference {len(checkpoint.list_steps(ref))}")
    for s in steps:
        try:
            checkpoint.load_params(out, s)
        except Exception as e:  # noqa: BLE001 - any failure to load is a finding
            problems.append(f"checkpoint {s} does not load: {e}")
    _, a = checkpoint.load_params(ref, final)
    _, b = checkpoint.load_params(out, final)
    flat_a, flat_b = checkpoint.flatten(a), checkpoint.flatten(b)
    for k in flat_a:
        if not np.array_equal(flat_a[k], flat_b[k]):
            problems.append(f"final {k} differs (max |diff| {np.max(np.abs(flat_a[k] - flat_b[k])):.3g})")
    recs = jsonl.read_records(out / "metrics.jsonl")
    torn = len((out / "metrics.jsonl").read_text().splitlines()) - len(recs)
    if torn:  # the reader skips a torn line; after a finished run there must be none
        problems.append(f"metrics.jsonl has {torn} unreadable lines")
    keys = [(r["step"], r["seed"]) for r in recs]
    ref_keys = [(r["step"], r["seed"]) for r in jsonl.read_records(ref / "metrics.jsonl")]
    if keys != ref_keys:
        problems.append(f"metrics.jsonl has {len(keys)} records, the reference {len(ref_keys)}")
    return problems


def chaos(out_dir: Path, kills: int, seed: int = 0, max_wait: float = 8.0, signals=("KILL",)) -> list[str]:
    """Run the reference, then `kills` interrupted-and-resumed attempts (cycling through `signals`), then
    finish; return the problems."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    ref, out = out_dir / "reference", out_dir / "chaos"
    run_to_end(ref)
    rng = random.Random(seed)
    landed, problems = 0, []
    for i in range(kills):
        sig = signals[i % len(signals)]
        delay, killed = kill_randomly(out, rng, max_wait, sig)
        landed += killed
        print(
            f"SIG{sig} {i + 1}/{kills} after {delay:.1f}s: {'landed' if killed else 'had finished'}, "
            f"resumes from step {resumed_step(out)}",
            flush=True,
        )
        if not killed:
            break
        if sig == "TERM" and resumed_step(out) != last_logged_step(out):
            problems.append(
                f"SIGTERM {i + 1}: state saved at step {resumed_step(out)}, but step "
                f"{last_logged_step(out)} was logged: trained steps lost"
            )
    run_to_end(out)
    problems += check(ref, out)
    if landed < min(kills, 1):
        problems.append("no kill landed while training ran: raise --steps or lower --max-wait")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-wait", type=float, default=8.0, help="longest run before a kill, seconds")
    p.add_argument("--out", default="../sgjax_chaos")
    p.add_argument("--signals", default="KILL", help="comma-separated signals to cycle through: KILL, TERM, INT")
    args = p.parse_args()
    t0 = time.time()
    problems = chaos(Path(args.out), args.kills, args.seed, args.max_wait, tuple(args.signals.split(",")))
    print(f"{args.kills} kills in {time.time() - t0:.0f}s: " + ("OK, bitwise equal" if not problems else "FAILED"))
    for pr in problems:
        print("  " + pr)
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main())
