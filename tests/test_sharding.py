"""The seed axis sharded over fake CPU devices: same results as one device; checkpoints move across meshes."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, {root!r})
    import pytest
    from tests.conftest import tiny_config
    from sgjax import checkpoint, loop
    import sgjax.data as data
    from sgjax.data.split import encode_lines
    from sgjax.data.vocab import Vocab

    rng = np.random.default_rng(0)
    words = [f"w{{i:02d}}" for i in range(68)]
    vocab = Vocab.from_words(words)
    lines = [" ".join(rng.choice(words[:12], size=int(rng.integers(4, 16)))) for _ in range(200)]
    split = encode_lines("question", "train", lines, vocab)
    data.vocab_for = lambda task: vocab
    loop.load_data = lambda cfg: {{"train": split, "val": split, "gen": split}}

    import dataclasses
    cfg = dataclasses.replace(tiny_config(steps=20), seeds=(42, 52, 62, 72))
    out = {out!r}
    devs = jax.devices()
    assert len(devs) == 4, devs
    loop.run(cfg, out + "/one", progress=False, evaluator=None, devices=devs[:1])
    loop.run(cfg, out + "/four", progress=False, evaluator=None, devices=devs)
    # Save on 4 devices, resume on 2 (and read the probe checkpoints on 1, with numpy).
    loop.run(cfg, out + "/moved", progress=False, evaluator=None, devices=devs, stop_at=10)
    loop.run(cfg, out + "/moved", progress=False, evaluator=None, devices=devs[:2])
    mesh = loop.engine.seed_mesh(4, devs)
    res = {{}}
    for name in ("one", "four", "moved"):
        seeds, p = checkpoint.load_params(out + "/" + name, 20)
        res[name] = [np.asarray(x).tolist() for x in jax.tree_util.tree_leaves(p)][:3]
    res["mesh_size"] = mesh.devices.size
    res["mesh3"] = loop.engine.seed_mesh(3, devs).devices.size
    print("RESULT" + json.dumps(res))
    """
)


def test_sharded_equals_unsharded_and_checkpoints_move(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(root=root, out=str(tmp_path))], env=env, capture_output=True, text=True, cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.split("RESULT", 1)[1])
    import numpy as np

    assert res["mesh_size"] == 4 and res["mesh3"] == 3  # 4 seeds use 4 devices; 3 seeds use 3 of them
    for a, b, c in zip(res["one"], res["four"], res["moved"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a, c, atol=1e-5)
