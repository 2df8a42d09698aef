"""Train and evaluate a toy QF population from a fresh process (for multi-device and multi-process tests).

python tests/toy_run.py OUT [--devices N] [--stop-at S] [--coordinator HOST:PORT --num-processes N --process-id I]
"""

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--devices", type=int)
    p.add_argument("--stop-at", type=int)
    p.add_argument("--coordinator")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    args = p.parse_args()
    import jax

    from sgjax.cli import enable_compilation_cache

    enable_compilation_cache()  # the repeated runs of a test reuse each other's compiled programs
    if args.coordinator:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    import sgjax.data as data
    from sgjax.data.split import encode_lines
    from sgjax.run import loop
    from tests.conftest import tiny_config

    vocab = data.vocab_for("question")
    text = data.generate(
        "question", {"train": 200, "val": 60, "test": 0, "gen": 60}
    )  # real QF lines, so the evaluator scores something
    splits = {name: encode_lines("question", name, text[name], vocab) for name in ("train", "val", "gen")}
    loop.load_data = lambda cfg: splits
    cfg = dataclasses.replace(tiny_config(steps=20, eval_every=10), seeds=(42, 52, 62, 72))
    devices = jax.devices()[: args.devices] if args.devices else None
    loop.run(cfg, args.out, progress=False, devices=devices, stop_at=args.stop_at)


if __name__ == "__main__":
    main()
