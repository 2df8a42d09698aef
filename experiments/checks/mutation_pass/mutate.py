"""A mutation pass over the modules that carry the science: does the suite catch each slip?

Each mutation replaces exact text in a copy of the repository (sgjax/ and tests/) and runs the test
files named beside it; a mutation is caught when they fail. Results go to a JSON file and a markdown
table (docs/testing.md holds the table).

    python experiments/checks/mutation_pass/mutate.py --out experiments/checks/mutation_pass/results
    python experiments/checks/mutation_pass/mutate.py --only eps_1e-8,no_root --out /tmp/m   # a few
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# (name, what it does, [(file, old, new), ...], test files)
MODEL_TESTS = ["tests/test_reference_model.py", "tests/test_decode.py", "tests/test_model.py"]
MUTATIONS = [
    # the paper preset's optimizer settings
    (
        "eps_1e-8",
        "AdamW eps 1e-7 -> 1e-8 in the paper preset",
        [("sgjax/config.py", "adam_eps: float = 1e-7", "adam_eps: float = 1e-8")],
        ["tests/test_paper_preset.py"],
    ),
    (
        "weight_decay",
        "weight decay 0 -> 0.01",
        [("sgjax/config.py", "weight_decay: float = 0.0", "weight_decay: float = 0.01")],
        ["tests/test_paper_preset.py"],
    ),
    (
        "clip_10",
        "clip 1.0 -> 10 (the paper's text, not its code)",
        [("sgjax/config.py", "clip_norm: float = 1.0", "clip_norm: float = 10.0")],
        ["tests/test_paper_preset.py"],
    ),
    (
        "optimizer_all_three",
        "eps, weight decay and clip changed together",
        [
            ("sgjax/config.py", "adam_eps: float = 1e-7", "adam_eps: float = 1e-8"),
            ("sgjax/config.py", "weight_decay: float = 0.0", "weight_decay: float = 0.01"),
            ("sgjax/config.py", "clip_norm: float = 1.0", "clip_norm: float = 10.0"),
        ],
        ["tests/test_paper_preset.py"],
    ),
    (
        "warmup_5k",
        "warmup 10k -> 5k",
        [("sgjax/config.py", "warmup_steps: int = 10_000", "warmup_steps: int = 5_000")],
        ["tests/test_paper_preset.py"],
    ),
    # randomness
    (
        "same_dropout_key",
        "every seed given the same dropout key",
        [
            (
                "sgjax/core/engine.py",
                "jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), DROPOUT_STREAM), step)",
                "jax.random.fold_in(jax.random.fold_in(jax.random.key(0), DROPOUT_STREAM), step)",
            )
        ],
        ["tests/test_randomness.py"],
    ),
    (
        "dropout_salt_is_init_salt",
        "the dropout stream's salt made equal to the init stream's",
        [("sgjax/core/engine.py", "INIT_STREAM, DROPOUT_STREAM = 0, 2", "INIT_STREAM, DROPOUT_STREAM = 0, 0")],
        ["tests/test_randomness.py"],
    ),
    (
        "same_dropout_every_step",
        "a member's dropout masks the same at every step",
        [
            (
                "sgjax/core/engine.py",
                "jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), DROPOUT_STREAM), step)",
                "jax.random.fold_in(jax.random.key(seed), DROPOUT_STREAM)",
            )
        ],
        ["tests/test_randomness.py"],
    ),
    (
        "no_attention_dropout",
        "the attention-probability dropout site removed",
        [("sgjax/core/model.py", "drop(attn_BxHxTxS), v_BxSxHxK", "attn_BxHxTxS, v_BxSxHxK")],
        ["tests/test_randomness.py"],
    ),
    (
        "no_ffn_hidden_dropout",
        "the FFN's hidden-layer dropout site removed",
        [("sgjax/core/model.py", "drop(jax.nn.relu(x_BxTxD @ w1_DxF + b1_F))", "jax.nn.relu(x_BxTxD @ w1_DxF + b1_F)")],
        ["tests/test_randomness.py"],
    ),
    (
        "same_batches_every_seed",
        "every seed draws the same batch order",
        [
            (
                "sgjax/core/batching.py",
                "np.random.default_rng([seed, BATCH_STREAM, epoch])",
                "np.random.default_rng([0, BATCH_STREAM, epoch])",
            )
        ],
        ["tests/test_randomness.py"],
    ),
    (
        "same_permutation_every_epoch",
        "every epoch the same permutation",
        [
            (
                "sgjax/core/batching.py",
                "np.random.default_rng([seed, BATCH_STREAM, epoch])",
                "np.random.default_rng([seed, BATCH_STREAM, 0])",
            )
        ],
        ["tests/test_randomness.py"],
    ),
    # the model, in the model and the decoder alike
    (
        "pre_ln",
        "post-LN made pre-LN",
        [
            (
                "sgjax/core/model.py",
                "        q_BxTxHxK = to_rows(x_BxTxD @ wq_DxD)\n        k_BxSxHxK = to_rows(x_BxTxD @ wk_DxD)\n"
                "        v_BxSxHxK = to_rows(x_BxTxD @ wv_DxD)\n",
                '        n_BxTxD = nn.LayerNorm(epsilon=1e-5, name="norm1")(x_BxTxD)\n'
                "        q_BxTxHxK = to_rows(n_BxTxD @ wq_DxD)\n        k_BxSxHxK = to_rows(n_BxTxD @ wk_DxD)\n"
                "        v_BxSxHxK = to_rows(n_BxTxD @ wv_DxD)\n",
            ),
            (
                "sgjax/core/model.py",
                'x_BxTxD = nn.LayerNorm(epsilon=1e-5, name="norm1")(x_BxTxD + drop(from_rows(ctx_BxTxHxK) @ wo_DxD))',
                "x_BxTxD = x_BxTxD + drop(from_rows(ctx_BxTxHxK) @ wo_DxD)",
            ),
        ],
        MODEL_TESTS,
    ),
    (
        "no_sqrt_d",
        "the embedding's sqrt(d) scale dropped",
        [
            (
                "sgjax/core/model.py",
                "x_BxTxD = emb_VxD[tokens_BxT] * math.sqrt(d) + pe_BxTxD",
                "x_BxTxD = emb_VxD[tokens_BxT] + pe_BxTxD",
            ),
        ],
        MODEL_TESTS,
    ),
    (
        "sin_cos_swapped",
        "sin and cos swapped in the position table",
        [
            (
                "sgjax/core/model.py",
                "pe_PxD[:, 0::2] = np.sin(pos_Px1 * div_half)\n    pe_PxD[:, 1::2] = np.cos(pos_Px1 * div_half)",
                "pe_PxD[:, 0::2] = np.cos(pos_Px1 * div_half)\n    pe_PxD[:, 1::2] = np.sin(pos_Px1 * div_half)",
            )
        ],
        MODEL_TESTS,
    ),
    (
        "no_padding_mask",
        "padding keys attended to",
        [
            (
                "sgjax/core/model.py",
                "keep_BxTxS = causal_TxT[None] & (tokens_BxT != 0)[:, None, :]",
                "keep_BxTxS = jnp.broadcast_to(causal_TxT[None], (b, t, t))",
            )
        ],
        MODEL_TESTS,
    ),
    (
        "gelu",
        "ReLU made GELU in the FFN",
        [
            (
                "sgjax/core/model.py",
                "drop(jax.nn.relu(x_BxTxD @ w1_DxF + b1_F))",
                "drop(jax.nn.gelu(x_BxTxD @ w1_DxF + b1_F))",
            )
        ],
        MODEL_TESTS,
    ),
    # the step
    (
        "loss_counts_padding",
        "the loss averaged over padded targets too",
        [("sgjax/core/engine.py", "mask_BxT = targets_BxT != 0", "mask_BxT = targets_BxT >= 0")],
        ["tests/test_reference_model.py"],
    ),
    (
        "no_bias_correction",
        "Adam's bias correction dropped",
        [("sgjax/core/optim.py", "bias1, bias2 = 1 - b1**count, 1 - b2**count", "bias1, bias2 = 1.0, 1.0")],
        ["tests/test_reference_model.py", "tests/test_optim.py"],
    ),
    (
        "clip_after_adam",
        "clipping skipped (the threshold ignored)",
        [
            (
                "sgjax/core/optim.py",
                "clip = lambda g: jnp.where(grad_norm < tc.clip_norm, g, (g / grad_norm) * tc.clip_norm)",
                "clip = lambda g: g",
            )
        ],
        ["tests/test_reference_model.py", "tests/test_optim.py"],
    ),
    (
        "eps_inside_sqrt",
        "eps moved inside the square root",
        [
            (
                "sgjax/core/optim.py",
                "u = (m / bias1) / (jnp.sqrt(v / bias2) + eps)",
                "u = (m / bias1) / jnp.sqrt(v / bias2 + eps)",
            )
        ],
        ["tests/test_reference_model.py", "tests/test_optim.py"],
    ),
    (
        "coupled_weight_decay",
        "weight decay added to the gradient (Adam + L2, not AdamW)",
        [
            ("sgjax/core/optim.py", "        if tc.weight_decay:\n            u = u + tc.weight_decay * p\n", ""),
            (
                "sgjax/core/optim.py",
                "mu = jax.tree_util.tree_map(lambda m, g: jnp.where(frozen, m, (1 - b1) * clip(g) + b1 * m), "
                "adam.mu, grads)",
                "grads = jax.tree_util.tree_map(lambda g, p: g + tc.weight_decay * p, grads, params)\n"
                "    mu = jax.tree_util.tree_map(lambda m, g: jnp.where(frozen, m, (1 - b1) * clip(g) + b1 * m), "
                "adam.mu, grads)",
            ),
        ],
        ["tests/test_reference_model.py", "tests/test_optim.py"],
    ),
    (
        "warmup_off_by_one",
        "the first update at lr 1/warmup instead of 0",
        [
            (
                "sgjax/core/engine.py",
                "warm = step / max(tc.warmup_steps, 1)",
                "warm = (step + 1) / max(tc.warmup_steps, 1)",
            )
        ],
        ["tests/test_reference_model.py", "tests/test_train.py"],
    ),
    (
        "targets_not_shifted",
        "rows batches predict the current token, not the next",
        [
            (
                "sgjax/core/batching.py",
                "return ids_BxT[:, :-1], ids_BxT[:, 1:], None, None",
                "return ids_BxT[:, :-1], ids_BxT[:, :-1], None, None",
            )
        ],
        ["tests/test_train.py"],
    ),
    # scoring and evaluation
    (
        "dyck_all_far_swapped",
        "Dyck's all-closings and far-closings keys swapped",
        [
            (
                "sgjax/evaluation/evaluate.py",
                '("gen", "dyck", "all"): "gen_acc",\n    ("gen", "dyck", "far"): "gen_acc_far",',
                '("gen", "dyck", "all"): "gen_acc_far",\n    ("gen", "dyck", "far"): "gen_acc",',
            )
        ],
        ["tests/test_evaluate.py"],
    ),
    (
        "qf_unrestricted_is_restricted",
        "QF's unrestricted accuracy computed with the restricted argmax",
        [
            (
                "sgjax/evaluation/evaluate.py",
                'out["acc_unrestricted"] = jnp.sum(v & (jnp.argmax(last_BxV, -1) == b["gold"]))',
                'out["acc_unrestricted"] = out["acc"]',
            )
        ],
        ["tests/test_evaluate.py"],
    ),
    (
        "qf_candidates",
        "QF's restricted argmax without 'don't'",
        [
            (
                "sgjax/evaluation/scoring.py",
                'AUXILIARIES = ("does", "doesn\'t", "do", "don\'t")',
                'AUXILIARIES = ("does", "doesn\'t", "do")',
            )
        ],
        ["tests/test_scoring.py", "tests/test_evaluate.py"],
    ),
    (
        "ti_main_verb",
        "TI's main verb: the RC test looks at the wrong tag",
        [
            (
                "sgjax/evaluation/scoring.py",
                'k = 1 if len(tags) > 2 and tags[2] == "R" else 0',
                'k = 1 if len(tags) > 2 and tags[1] == "R" else 0',
            )
        ],
        ["tests/test_scoring.py", "tests/test_evaluate.py"],
    ),
    (
        "dyck_distance",
        "Dyck's far filter at distance > 10 instead of >= 10",
        [
            (
                "sgjax/evaluation/scoring.py",
                "keep = np.asarray(distances) >= min_distance",
                "keep = np.asarray(distances) > min_distance",
            )
        ],
        ["tests/test_scoring.py"],
    ),
    # the probe
    (
        "probe_next_gold",
        "each projected tree paired with the next sentence's gold parse",
        [
            (
                "sgjax/analysis/probe/run.py",
                'rec["tparseval"] = parse_f1(trees[m], gold, include_root=True)',
                'rec["tparseval"] = parse_f1(trees[m], gold[1:] + gold[:1], include_root=True)',
            )
        ],
        ["tests/test_probe.py"],
    ),
    (
        "no_root",
        "tparseval computed without the root span",
        [
            (
                "sgjax/analysis/probe/run.py",
                'rec["tparseval"] = parse_f1(trees[m], gold, include_root=True)',
                'rec["tparseval"] = parse_f1(trees[m], gold, include_root=False)',
            )
        ],
        ["tests/test_probe.py"],
    ),
    (
        "greedy_argmin",
        "the greedy tree splits where the score is lowest",
        [
            (
                "sgjax/analysis/probe/tree_projection.py",
                "return a + int(np.argmax(node_pairs(c_NxN, a, b)))",
                "return a + int(np.argmin(node_pairs(c_NxN, a, b)))",
            )
        ],
        ["tests/test_tree_projection.py"],
    ),
    # checkpoints and resume
    (
        "members_saved_under_the_wrong_seed",
        "each member's parameters saved under the next seed's name",
        [
            (
                "sgjax/run/checkpoint.py",
                "np.savez(f, **{k: v[i] for k, v in flat.items()})",
                "np.savez(f, **{k: v[(i + 1) % len(seeds)] for k, v in flat.items()})",
            )
        ],
        ["tests/test_train.py"],
    ),
    (
        "resume_skips_opt_state",
        "a resumed run starts the optimizer moments afresh",
        [
            (
                "sgjax/run/loop.py",
                "state, _ = ckpts.restore_state(step, engine.abstract_population(cfg, mesh), cfg.seeds)",
                "state, _ = ckpts.restore_state(step, engine.abstract_population(cfg, mesh), cfg.seeds)\n"
                '            state = {**state, "opt": engine.init_population(cfg, mesh)["opt"]}',
            )
        ],
        ["tests/test_train.py"],
    ),
]


def apply(tree: Path, edits) -> None:
    """Replace each edit's old text (present exactly once) in the copy."""
    for rel, old, new in edits:
        path = tree / rel
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"{rel}: the text to mutate occurs {text.count(old)} times: {old[:60]!r}")
        path.write_text(text.replace(old, new))


def run_one(name: str, edits, tests, timeout: int, root: Path = ROOT) -> dict:
    """Copy, mutate, run the tests; caught = the tests failed."""
    with tempfile.TemporaryDirectory(prefix=f"mut_{name}_") as tmp:
        tree = Path(tmp)
        for part in ("sgjax", "tests", "pyproject.toml"):
            src = root / part
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tree / part)
        apply(tree, edits)
        env = {**os.environ, "PYTHONPATH": str(tree), "SGJAX_NO_COMPILE_CACHE": "1"}
        t0 = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        failed = [l.split(" ")[1] for l in proc.stdout.splitlines() if l.startswith("FAILED ")]
        return {
            "caught": proc.returncode != 0,
            "by": failed[0] if failed else None,
            "rc": proc.returncode,
            "seconds": round(time.time() - t0, 1),
        }


def table(results: list[dict]) -> str:
    lines = ["| mutation | caught by |", "|---|---|"]
    for r in results:
        by = f"`{r['by']}`" if r["caught"] and r["by"] else ("caught (error)" if r["caught"] else "**not caught**")
        lines.append(f"| {r['what']} | {by} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--only", help="comma-separated mutation names")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--src", type=Path, default=ROOT, help="the repository to mutate (default: this one)")
    args = p.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m[0] in args.only.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, what, edits, tests in chosen:
        r = {"name": name, "what": what, "tests": tests, **run_one(name, edits, tests, args.timeout, args.src)}
        print(f"{name}: {'caught by ' + str(r['by']) if r['caught'] else 'NOT CAUGHT'} ({r['seconds']} s)", flush=True)
        results.append(r)
    (args.out / "mutations.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "mutations.md").write_text(table(results))


if __name__ == "__main__":
    main()
