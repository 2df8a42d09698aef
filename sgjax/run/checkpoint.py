"""Orbax checkpoints of a run (the only module that imports orbax); layout in docs/checkpoints.md.

run_dir/
  config.json                         the run's Config
  checkpoints/<step>/params/seed_<seed>.npz   one member's parameters (numpy-loadable), kept every ckpt_every
  checkpoints/<step>/meta/metadata            JSON: step, seeds, lrs, nonfinite
  state/<step>/state/...              latest full training state (params + Adam moments), for resume
  state/<step>/meta/metadata
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import traverse_util

from sgjax import config as config_lib
from sgjax.errors import CheckpointError, UserError
from sgjax.run import compat, jsonl

SEP = "/"  # joins nested dict keys in the npz files: "layers/q", "embed"


def flatten(tree: dict) -> dict[str, np.ndarray]:
    """Nested dict of arrays -> {"a/b": array}."""
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(tree, sep=SEP).items()}


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    """{"a/b": array} -> nested dict."""
    return traverse_util.unflatten_dict(flat, sep=SEP)


def seed_of(path) -> int | None:
    """seed_52.npz -> 52; None for another name."""
    try:
        return int(path.stem.removeprefix("seed_"))
    except ValueError:
        return None


def read_npz(path) -> dict[str, np.ndarray]:
    """One member's flat parameters; an unreadable file is a CheckpointError that names it."""
    try:
        with path.open("rb") as f, np.load(f) as z:
            return {k: z[k] for k in z.files}
    except (
        Exception
    ) as e:  # BadZipFile, EOFError, OSError; ValueError with numpy's allow_pickle hint, which misleads here
        raise CheckpointError(
            f"corrupt checkpoint {path}: the file is unreadable, not a complete .npz archive ({type(e).__name__})"
        ) from e


def write_members(directory, params_S, seeds) -> None:
    """One .npz per member: params_S's leaves carry the population axis in front, in `seeds` order."""
    if jax.process_index() != 0:  # params arrive gathered on every host; one writes
        return
    flat = flatten(params_S)
    for i, seed in enumerate(seeds):
        with (directory / f"seed_{seed}.npz").open("wb") as f:
            np.savez(f, **{k: v[i] for k, v in flat.items()})


def owned(tree):
    """Host arrays that own their memory: a view of a device buffer is copied, since training donates those buffers."""
    return jax.tree_util.tree_map(lambda x: x if isinstance(x, np.ndarray) and x.flags.owndata else np.array(x), tree)


class MembersNpzHandler(ocp.handlers.AsyncCheckpointHandler):
    """Writes a population's params as one plain .npz per member (seed), readable with numpy alone.

    The files are written in Orbax's background commit, so training goes on meanwhile (a paper
    checkpoint is 0.76 GB at depth 6, S = 10; docs/checkpoints.md).
    """

    async def async_save(self, directory: epath.Path, args: "MembersSave") -> list:
        params_S, seeds = owned(args.params), tuple(args.seeds)

        async def write():
            write_members(directory, params_S, seeds)

        # Awaits Orbax's signal that the step's temporary directory exists, then runs in its commit thread.
        return [ocp.future.CommitFutureAwaitingContractedSignals(write(), name="members_npz_save")]

    def save(self, directory: epath.Path, args: "MembersSave"):
        write_members(directory, args.params, args.seeds)

    def restore(self, directory: epath.Path, args: "MembersRestore | None" = None):
        by_seed = {seed_of(p): p for p in directory.glob("seed_*.npz")}
        by_seed.pop(None, None)  # not a member file (e.g. seed_x.npz)
        seeds = sorted(by_seed)
        files = [by_seed[s] for s in seeds]
        if args is not None and args.seeds is not None:
            missing = [s for s in args.seeds if s not in by_seed]
            if missing:
                raise CheckpointError(f"{directory}: no parameters for seeds {missing}")
            files, seeds = [by_seed[s] for s in args.seeds], list(args.seeds)
        if not files:
            raise CheckpointError(f"corrupt checkpoint {directory}: its parameter files (seed_<seed>.npz) are missing")
        members = [read_npz(p) for p in files]
        want = (
            args.shapes if args is not None and args.shapes is not None else {k: v.shape for k, v in members[0].items()}
        )  # without a config: every member as the first
        for path, m in zip(files, members):
            check_member(path, m, want)
        stacked = {k: np.stack([m[k] for m in members]) for k in members[0]}
        return {"seeds": seeds, "params": unflatten(stacked)}


@ocp.args.register_with_handler(MembersNpzHandler, for_save=True)
@dataclasses.dataclass
class MembersSave(ocp.args.CheckpointArgs):
    params: Any
    seeds: tuple[int, ...]


@ocp.args.register_with_handler(MembersNpzHandler, for_restore=True)
@dataclasses.dataclass
class MembersRestore(ocp.args.CheckpointArgs):
    seeds: tuple[int, ...] | None = None
    shapes: dict | None = None  # {"layers/q": shape} a member's arrays must have (the run's model)


def check_member(path: Path, arrays: dict[str, np.ndarray], want: dict[str, tuple]) -> None:
    """Refuse a member file that lacks an array, has one too many, or one of another shape, naming file and array."""
    missing, extra = sorted(set(want) - set(arrays)), sorted(set(arrays) - set(want))
    wrong = [(k, arrays[k].shape, tuple(want[k])) for k in want if k in arrays and arrays[k].shape != tuple(want[k])]
    if missing or extra or wrong:
        what = (
            f"lacks {missing[0]!r}"
            if missing
            else f"has an array the model does not, {extra[0]!r}"
            if extra
            else f"{wrong[0][0]!r} has shape {wrong[0][1]} where the run's model has {wrong[0][2]}"
        )
        raise CheckpointError(f"corrupt checkpoint {path}: it {what}: written by another model, or damaged")


@functools.cache
def param_shapes(m: config_lib.ModelConfig) -> dict[str, tuple]:
    """{"layers/q": shape} of one member's parameters in the checkpoint form (stacked layers)."""
    from sgjax.core import model

    tree = jax.eval_shape(lambda: model.init_params(m, jax.random.key(0)))
    return {k: tuple(x.shape) for k, x in traverse_util.flatten_dict(tree, sep=SEP).items()}


@jax.jit
def fingerprints(state_S) -> jax.Array:
    """uint32 [S]: a checksum of each member's whole state, computed where the state lives.

    Every leaf's bits are summed with odd weights (2i + 1), mod 2^32: one flipped bit always changes
    its member's sum (2^k times an odd number is never 0 mod 2^32). Orbax's OCDBT data has no checksum.
    """
    total = 0
    for j, leaf in enumerate(jax.tree_util.tree_leaves(state_S)):
        x = leaf.reshape(leaf.shape[0], -1)
        bits = jax.lax.bitcast_convert_type(x, jnp.uint32) if x.dtype.itemsize == 4 else x.astype(jnp.uint32)
        weights = 2 * jnp.arange(bits.shape[1], dtype=jnp.uint32) + 1
        total = total + jnp.sum(bits * weights, axis=1, dtype=jnp.uint32) * jnp.uint32(2 * j + 1)
    return total


def _manager(directory: Path, max_to_keep: int | None, items: tuple[str, ...]) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True)
    return ocp.CheckpointManager(epath.Path(directory).absolute(), options=options, item_names=items)


@dataclasses.dataclass
class RunCheckpoints:
    """The two managers of a run: probe checkpoints (params, kept) and the latest full state."""

    run_dir: Path
    keep_all: bool = True

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        self.params = _manager(self.run_dir / "checkpoints", None if self.keep_all else 1, ("params", "meta"))
        # two states: if the latest fails its checksums, the one before is there to resume from
        self.state = _manager(self.run_dir / "state", 2, ("state", "meta"))

    def save_params(self, step: int, params_S, meta: dict) -> None:
        """Probe checkpoint: every member's params at `step` (host arrays, written in the background)."""
        args = ocp.args.Composite(params=MembersSave(params_S, tuple(meta["seeds"])), meta=ocp.args.JsonSave(meta))
        self._one_save_at_a_time(self.state)
        self.params.save(step, args=args)

    def save_state(self, step: int, state_S, meta: dict) -> None:
        """Resume checkpoint: the full training state (async; the previous one is kept until it commits).

        A state is saved only once every probe checkpoint before its step has committed, so a resume
        can lose at most the one at its own step, which it writes again from the state.
        """
        self._one_save_at_a_time(self.params)
        if (
            self.params.latest_step() or 0
        ) < step:  # an interruption's state, after the last probe checkpoint (in flight or not)
            self.params.wait_until_finished()
        meta = {**meta, "fingerprints": member_fingerprints(state_S)}
        self.state.save(
            step, args=ocp.args.Composite(state=ocp.args.StandardSave(state_S), meta=ocp.args.JsonSave(meta))
        )

    @staticmethod
    def _one_save_at_a_time(other) -> None:
        """Across processes, let the other manager's save finish first.

        Two managers finalizing at once in several processes reuse one Orbax barrier name and fail
        ("Barrier ... is already ongoing"); one process has no barrier, so its saves stay overlapped.
        """
        if jax.process_count() > 1:
            other.wait_until_finished()

    def drop_params_after(self, step: int) -> None:
        """Delete probe checkpoints newer than the resumed state (a kill between the two saves); they are redone."""
        for s in self.params.all_steps():
            if s > step:
                self.params.delete(s)

    def has_params(self, step: int) -> bool:
        """Whether a probe checkpoint at `step` has committed or is being written by this manager (Orbax's own list)."""
        return step in self.params.all_steps()

    def latest_state_step(self) -> int | None:
        return self.state.latest_step()

    def restore_state(self, step: int, abstract_state_S, seeds=None) -> tuple[Any, dict]:
        """The full state at `step`, laid out like `abstract_state_S` (shapes, dtypes, shardings) and, if given, of
        `seeds`.
        """
        check_state_fits(self.run_dir / "state" / str(step), abstract_state_S, seeds)
        try:
            out = self.state.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state_S), meta=ocp.args.JsonRestore()),
            )
        except Exception as e:  # orbax raises many types for a truncated/corrupt directory
            raise CheckpointError(
                f"cannot restore {self.run_dir / 'state' / str(step)}: {short_reason(e)}; "
                f"{self.last_good_state(step, abstract_state_S)}"
            ) from e
        bad = corrupt_members(out.state, dict(out.meta))
        if bad:
            raise CheckpointError(
                f"the training state at step {step} is corrupt: {', '.join(f'seed {s}' for s in bad)} failed "
                f"{'its' if len(bad) == 1 else 'their'} checksum; {self.last_good_state(step, abstract_state_S)}"
            )
        return out.state, dict(out.meta)

    def last_good_state(self, bad_step: int, abstract_state_S) -> str:
        """Where to go from a corrupt state: the newest earlier state that passes its checksums."""
        state_dir = self.run_dir / "state"
        for s in sorted((s for s in self.state.all_steps() if s < bad_step), reverse=True):
            try:
                out = self.state.restore(
                    s,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state_S), meta=ocp.args.JsonRestore()
                    ),
                )
            except Exception:
                continue
            if not corrupt_members(out.state, dict(out.meta)):
                return (
                    f"the last good state is at step {s}: delete {state_dir / str(bad_step)} and rerun to resume "
                    f"from it"
                )
        return f"no earlier state is kept: move {self.run_dir} aside and start the run again"

    def wait(self) -> None:
        """Block until background writes have committed."""
        self.params.wait_until_finished()
        self.state.wait_until_finished()

    def close(self) -> None:
        self.params.close()
        self.state.close()


def short_reason(e: BaseException, most: int = 240) -> str:
    """The gist of a storage error: its first line, without TensorStore's spec dump, at most `most` characters."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0].split(" [tensorstore_spec")[0]
    return text if len(text) <= most else text[: most - 1] + "…"


def member_fingerprints(state_S) -> list[int]:
    """`fingerprints` of every member on this host (gathered across processes when the population spans them)."""
    from sgjax.core.engine import to_host

    return [int(f) for f in to_host(fingerprints(state_S))]


def corrupt_members(state_S, meta: dict) -> list:
    """Seeds whose restored state does not match the checksums saved with it (none saved: none checked)."""
    saved = meta.get("fingerprints")
    if saved is None:  # a state saved before checksums existed
        return []
    now = member_fingerprints(state_S)
    seeds = meta.get("seeds") or list(range(len(now)))
    return [seed for seed, a, b in zip(seeds, now, saved) if a != b]


def saved_state_step(run_dir) -> int | None:
    """The latest committed full-state step, found without creating anything (a manager creates state/)."""
    return max(ocp.step.checkpoint_steps(Path(run_dir) / "state"), default=None)


def saved_probe_steps(run_dir) -> list[int]:
    """Steps with a finished probe checkpoint, ascending (no config.json needed, unlike list_steps)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return []
    return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit() and (p / "params").is_dir())


def leaf_shapes(tree) -> dict[str, tuple]:
    """{"params/embed": shape} of a state tree or its Orbax metadata (dicts, lists, tuples, namedtuples alike)."""
    key = lambda k: str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
    return {"/".join(map(key, path)): tuple(x.shape) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def saved_state_shapes(step_dir: Path) -> tuple[dict[str, tuple], list | None] | None:
    """(leaf shapes, seeds) of a saved state, from its metadata alone; None if that is unreadable."""
    handler = ocp.handlers.StandardCheckpointHandler()
    try:
        tree = handler.metadata(epath.Path(step_dir).absolute() / "state")
        seeds = json.loads((Path(step_dir) / "meta" / "metadata").read_text()).get("seeds")
    except Exception:  # a corrupt state: the restore itself reports it
        return None
    finally:
        handler.close()
    return leaf_shapes(getattr(tree, "tree", tree)), seeds


def check_state_fits(step_dir: Path, abstract_state_S, seeds) -> None:
    """Refuse a state of another population or model shape before Orbax tries it.

    Orbax would fail with advice that does not apply here (strict=False, padding) and leave its
    asyncio tasks printing "Event loop is closed" tracebacks at exit.
    """
    saved = saved_state_shapes(step_dir)
    if saved is None:
        return
    (saved_shapes, saved_seeds), want = saved, leaf_shapes(abstract_state_S)
    diff = shape_differences(saved_shapes, want)
    n_saved, n_want = saved_shapes.get("frozen", (None,))[0], want.get("frozen", (None,))[0]
    problems = []
    if n_saved != n_want or (seeds is not None and saved_seeds is not None and list(saved_seeds) != list(seeds)):
        problems.append(
            f"the saved state has {n_saved} members (seeds {_seeds(saved_seeds)}), this config {n_want} (seeds "
            f"{_seeds(seeds)})"
        )
    if diff:
        problems.append(
            f"the saved model's shapes differ from this config's "
            f"({'; '.join(diff[:3])}{'; …' if len(diff) > 3 else ''})"
        )
    if problems:
        raise CheckpointError(
            f"cannot restore {step_dir}: {'; '.join(problems)}; --override cannot change the population or the model "
            "shape: rerun with the run's own settings, or use another --out for a new run"
        )


def shape_differences(saved: dict, want: dict) -> list[str]:
    """Leaves whose per-member shape (the leading S axis dropped) differs or that one side lacks; parameters first."""
    fmt = lambda shape: "absent" if shape is None else "x".join(map(str, shape[1:])) or "scalar"
    out = []
    for k in sorted(set(saved) | set(want), key=lambda k: (not k.startswith("params/"), k)):
        a, b = saved.get(k), want.get(k)
        if a is None or b is None or a[1:] != b[1:]:
            out.append(f"{k.removeprefix('params/')} saved {fmt(a)}, now {fmt(b)}")
    return out


def _seeds(seeds) -> str:
    return "unknown" if seeds is None else ",".join(map(str, seeds))


def _check_run_dir(run_dir) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise CheckpointError(f"{run_dir} is not a sgjax run directory (no config.json)")
    return run_dir


def load_config(run_dir) -> config_lib.Config:
    """The Config a run was trained with."""
    run_dir = _check_run_dir(run_dir)
    path = run_dir / "config.json"
    try:
        doc = jsonl.read_json(path, "the run's config")
    except UserError as e:
        raise CheckpointError(str(e)) from None
    try:  # a field that is not the config's, or of another type (validate compares it)
        return config_lib.validate(compat.saved_config(doc))
    except (TypeError, ValueError, AttributeError) as e:
        if isinstance(e, config_lib.ConfigError):
            raise CheckpointError(f"{path} is corrupt: {e}") from None
        raise CheckpointError(f"{path} is corrupt: a field is unknown or of the wrong type ({e})") from None


def list_steps(run_dir) -> list[int]:
    """Steps with a finished probe checkpoint of a run directory, ascending."""
    return saved_probe_steps(_check_run_dir(run_dir))


def load_params(run_dir, step: int, seeds=None) -> tuple[list[int], dict]:
    """(seeds, params with a leading member axis, numpy arrays) of a probe checkpoint, checked against
    the run's model.
    """
    path = Path(run_dir) / "checkpoints" / str(step) / "params"
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at step {step} in {run_dir} (have {list_steps(run_dir)})")
    shapes = param_shapes(load_config(run_dir).model)
    try:
        out = MembersNpzHandler().restore(
            epath.Path(path), MembersRestore(None if seeds is None else tuple(seeds), shapes)
        )
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"corrupt checkpoint {path}: {e}") from e
    return out["seeds"], out["params"]


def load_member(run_dir, step: int, seed: int) -> dict:
    """One seed's parameters as a nested dict of numpy arrays (reads one .npz)."""
    path = Path(run_dir) / "checkpoints" / str(step) / "params" / f"seed_{seed}.npz"
    if not path.exists():
        raise CheckpointError(f"no parameters for seed {seed} at step {step}: {path} is missing")
    return unflatten(read_npz(path))


def dir_bytes(path) -> int:
    """Disk use of a directory tree, in bytes."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
