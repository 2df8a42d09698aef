"""A/B of config variants on one population train step: all compiled in one process, timed in turn.

    python experiments/performance/train_step/ab_step.py --arm packed= --arm per_element=model.dropout_draw=per_element
    python experiments/performance/train_step/ab_step.py --arm loop= --arm scan=model.scan_layers=true --rounds 5
    python experiments/performance/train_step/ab_step.py --arm optim= --arm optax=@optax
    python experiments/performance/train_step/ab_step.py --arm ynn= \
        --arm eigen=xla:xla_cpu_experimental_ynn_fusion_type=
    python experiments/performance/train_step/ab_step.py --arm default= \
        --arm no_autotune=xla:xla_gpu_autotune_level=0 --precision highest

Each `--arm NAME=FIELD=VALUE[,FIELD=VALUE...]` is the paper's QF model with those overrides (the
token `@optax` makes that arm update with optax's chain instead of sgjax.core.optim.update; a token
`xla:OPTION=VALUE` compiles that arm with an XLA compiler option, so flags that `XLA_FLAGS` would set
for the whole process are compared in one process). The
step is jitted with the state donated (as in training), on rows of 8 x 36 random tokens; arms run
alternately so that machine noise hits them alike, and the medians are compared with the first arm.
Each arm's first call (`first_call_s`) includes its compile: the number to read for compiler options
that trade compile time against speed. `--precision` is the matmul precision the step is traced
with, as `train.matmul_precision` in training (a GPU's default would be TF32).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from sgjax import config
from sgjax.core import engine, optim


def optax_update(tc, params, opt_state, grads, grad_norm, lr, frozen):
    """The update as optax's chain, then p - lr * u, then the frozen select: what optim.update replaced."""
    del grad_norm  # clip_by_global_norm computes its own
    updates, new_opt = optim.optimizer(tc).update(grads, opt_state, params)
    new = (jax.tree_util.tree_map(lambda p, u: p - lr * u, params, updates), new_opt)
    return jax.tree_util.tree_map(lambda n, o: jnp.where(frozen, o, n), new, (params, opt_state))


def random_tokens(seeds: int):
    """Rows of 8 x 36 random QF-vocabulary ids per member: the step's shape, whatever the words."""
    return jnp.asarray(np.random.default_rng(0).integers(1, 60, (seeds, 8, 36)), jnp.int32)


def option_value(text: str):
    """An XLA compiler option's value: true/false and numbers as such (XLA rejects them as strings), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def compile_arm(overrides: list[str], seeds: int, depth: int, tokens_SxBxT) -> dict:
    """Config, donated jitted step and state of one arm, after its first (compiling) call."""
    use_optax = "@optax" in overrides
    xla_options = {
        k: option_value(v) for k, v in (o[len("xla:") :].partition("=")[::2] for o in overrides if o.startswith("xla:"))
    }
    overrides = [o for o in overrides if o != "@optax" and not o.startswith("xla:")]
    cfg = config.override(config.preset("paper", "question", depth), overrides)
    cfg = dataclasses.replace(cfg, seeds=tuple(range(seeds)))
    member = lambda st, s, x, y: engine.member_step(cfg, st, s, 1.0, 5, (x, y, None, None))
    state = engine.init_population(cfg)
    args = (state, jnp.arange(seeds), tokens_SxBxT, tokens_SxBxT)
    t0 = time.perf_counter()
    real_update, optim.update = optim.update, (optax_update if use_optax else optim.update)
    try:  # the update function is looked up while tracing
        lowered = jax.jit(jax.vmap(member), donate_argnums=(0,)).lower(*args)
    finally:
        optim.update = real_update
    step = lowered.compile(compiler_options=xla_options)
    arm = {"step": step, "times_s": [], "xla_options": xla_options}
    arm["state"], _ = jax.block_until_ready(step(*args))
    arm["first_call_s"] = time.perf_counter() - t0
    return arm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arm", action="append", required=True, metavar="NAME=OVERRIDES")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", help="write the timings to this .json")
    p.add_argument(
        "--precision",
        default="highest",
        choices=("highest", "tensorfloat32", "bfloat16"),
        help="matmul precision while tracing, as train.matmul_precision (default fp32)",
    )
    args = p.parse_args()
    with jax.default_matmul_precision(args.precision):  # read while tracing, as sgjax.run.loop does
        run(args)


def run(args) -> None:
    """Compile every arm, time them in turn for `args.rounds` rounds, and print (and write) the medians."""
    tokens_SxBxT = random_tokens(args.seeds)
    seeds_S = jnp.arange(args.seeds)
    arms, failed = {}, {}
    for spec in args.arm:
        name, _, overrides = spec.partition("=")
        try:
            arms[name] = compile_arm([o for o in overrides.split(",") if o], args.seeds, args.depth, tokens_SxBxT)
        except Exception as e:  # e.g. an XLA option this jaxlib does not know: reported, and the other arms still run
            failed[name] = {"overrides": overrides, "error": f"{type(e).__name__}: {e}"[:500]}
            continue
        arms[name]["overrides"] = overrides
    if not arms:
        raise SystemExit(f"no arm compiled: {failed}")
    for _ in range(args.rounds):
        for arm in arms.values():
            t0 = time.perf_counter()
            arm["state"], _ = jax.block_until_ready(arm["step"](arm["state"], seeds_S, tokens_SxBxT, tokens_SxBxT))
            arm["times_s"].append(time.perf_counter() - t0)
    first = np.median(next(iter(arms.values()))["times_s"])
    out = {
        name: {
            "overrides": a["overrides"],
            "xla_options": a["xla_options"],
            "first_call_s": a["first_call_s"],
            "times_s": a["times_s"],
            "median_s": float(np.median(a["times_s"])),
            "median_vs_first_arm": float(np.median(a["times_s"]) / first),
        }
        for name, a in arms.items()
    }
    out.update(failed)
    out["args"] = vars(args)
    out["device"] = str(jax.devices()[0].device_kind)
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
