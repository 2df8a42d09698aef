"""Kill training with SIGKILL at random moments, resume, repeat; the result must equal an uninterrupted run.

    python experiments/chaos.py --kills 20 --out /tmp/sgjax_chaos

Checks (exit status 1 if any fails): the final parameters of every seed equal the uninterrupted
run's bit for bit (CPU), every retained probe checkpoint loads, the latest state restores, and
metrics.jsonl holds exactly one record per (step, seed).
"""

from __future__ import annotations

import argparse
import json
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
    "--task", "question", "--preset", "smoke", "--steps", "1000", "--no-progress",
    "--set", "train.ckpt_every=20", "--set", "train.chunk_steps=10", "--set", "train.log_every=10",
    "--set", "train.eval_every=0", "--set", "model.d_model=32", "--set", "model.d_ff=64",
]


def train_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "sgjax.cli", "train", *TRAIN_ARGS, "--out", str(out)]


def run_to_end(out: Path) -> None:
    subprocess.run(train_cmd(out), check=True, capture_output=True)


def kill_randomly(out: Path, rng: random.Random, max_wait: float) -> tuple[float, bool]:
    """Start training, SIGKILL it after a random delay; returns (delay, whether it was still running)."""
    proc = subprocess.Popen(train_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delay = rng.uniform(1.0, max_wait)
    try:
        proc.wait(timeout=delay)  # it may finish first: then there is nothing to kill
        return delay, False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return delay, True


def resumed_step(out: Path) -> int | None:
    """The step a rerun would resume from (the latest committed state)."""
    state = out / "state"
    steps = [int(p.name) for p in state.iterdir() if p.name.isdigit()] if state.is_dir() else []
    return max(steps, default=None)


def check(ref: Path, out: Path) -> list[str]:
    """Every problem found comparing the chaotic run with the reference run."""
    from sgjax import checkpoint

    problems = []
    steps = checkpoint.list_steps(out)
    final = checkpoint.list_steps(ref)[-1]
    if final not in steps:
        return [f"no final checkpoint at step {final}"]
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
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r["seed"]) for r in recs]
    ref_keys = [(r["step"], r["seed"]) for r in map(json.loads, (ref / "metrics.jsonl").read_text().splitlines())]
    if keys != ref_keys:
        problems.append(f"metrics.jsonl has {len(keys)} records, the reference {len(ref_keys)}")
    return problems


def chaos(out_dir: Path, kills: int, seed: int = 0, max_wait: float = 8.0) -> list[str]:
    """Run the reference, then `kills` killed-and-resumed attempts, then finish; return the problems."""
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    ref, out = out_dir / "reference", out_dir / "chaos"
    run_to_end(ref)
    rng = random.Random(seed)
    landed = 0
    for i in range(kills):
        delay, killed = kill_randomly(out, rng, max_wait)
        landed += killed
        print(f"kill {i + 1}/{kills} after {delay:.1f}s: {'killed' if killed else 'had finished'}, "
              f"resumes from step {resumed_step(out)}", flush=True)
        if not killed:
            break
    run_to_end(out)
    problems = check(ref, out)
    if landed < min(kills, 1):
        problems.append("no kill landed while training ran: raise --steps or lower --max-wait")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-wait", type=float, default=8.0, help="longest run before a kill, seconds")
    p.add_argument("--out", default="/tmp/sgjax_chaos")
    args = p.parse_args()
    t0 = time.time()
    problems = chaos(Path(args.out), args.kills, args.seed, args.max_wait)
    print(f"{args.kills} kills in {time.time() - t0:.0f}s: " + ("OK, bitwise equal" if not problems else "FAILED"))
    for pr in problems:
        print("  " + pr)
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main())
