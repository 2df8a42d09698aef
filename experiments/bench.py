"""Thin wrapper over `sgjax bench`, plus a lever that needs a patch: cheaper dropout masks.

    .venv/bin/python experiments/bench.py [--uint16-dropout] -- --depth 6 --seeds 10 --peer none ...

--uint16-dropout replaces jax.random.bernoulli (flax's Dropout draws its masks with it) by a test of
16 random bits against round(p * 2^16): half the random bits of the default float32 uniform, and a keep
probability within 1e-5 of 0.9. It measures what a cheaper mask would buy; sgjax itself does not do this.
The patch lives in this process only, so the bench runs in-process (--in-process is added).
"""

from __future__ import annotations

import sys


def patch_uint16_dropout() -> None:
    """Make jax.random.bernoulli draw 16-bit integers instead of float32 uniforms."""
    import jax
    import jax.numpy as jnp

    def bernoulli(key, p=0.5, shape=None):
        shape = jnp.shape(p) if shape is None else tuple(shape)
        bits = jax.random.bits(key, shape, dtype=jnp.uint16)
        return bits < jnp.round(jnp.asarray(p, jnp.float32) * 65536.0).astype(jnp.uint32).astype(jnp.uint16)

    jax.random.bernoulli = bernoulli


def main(argv: list[str]) -> int:
    """Apply the requested patches, then run `sgjax bench` with the arguments after `--`."""
    ours, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else ([], argv)
    if "--uint16-dropout" in ours:
        patch_uint16_dropout()
        rest = [*rest, "--in-process"]
    from sgjax.cli import main as cli_main

    return cli_main(["bench", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
