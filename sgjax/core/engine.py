"""The seed-vmapped training engine: population init, the train step, scanned K-step chunks, the host loop.

Every leaf of the state has a leading population axis S. A member's trajectory is a function of its
integer seed (and lr) alone: init, batch order and dropout keys all derive from (seed, step).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sgjax.config import Config, TrainConfig
from sgjax.core import batching, model, ops, optim

INIT_STREAM, DROPOUT_STREAM = 0, 2  # salts: each purpose gets its own random stream per seed


def lr_at(step, tc: TrainConfig):
    """The original's HF schedule as a multiplier: linear warmup to 1, linear decay to 0 at decay_steps (D4, D25)."""
    step = jnp.asarray(step, jnp.float32)
    warm = step / max(tc.warmup_steps, 1)
    decay = (tc.decay_steps - step) / max(tc.decay_steps - tc.warmup_steps, 1)
    return jnp.maximum(0.0, jnp.where(step < tc.warmup_steps, warm, decay))


def init_member(cfg: Config, seed) -> dict:
    """One member's state: params, optimizer moments, and the frozen flag (NaN isolation)."""
    key = jax.random.fold_in(jax.random.key(seed), INIT_STREAM)
    params = model.init_params(cfg.model, key)
    if not cfg.model.scan_layers:  # the layer loop trains fastest on separate per-layer leaves
        params = model.split_layers(params)
    return {"params": params, "opt": optim.optimizer(cfg.train).init(params), "frozen": jnp.zeros((), bool)}


def init_population(cfg: Config, mesh: Mesh | None = None) -> dict:
    """The state of every member: vmap(init) over the integer seeds (each device builds its own members)."""
    seeds_S = np.asarray(cfg.seeds, np.int32)
    if mesh is None:
        return jax.jit(jax.vmap(lambda s: init_member(cfg, s)))(seeds_S)
    out = NamedSharding(mesh, PartitionSpec("seed"))
    return jax.jit(jax.vmap(lambda s: init_member(cfg, s)), out_shardings=out)(shard_population(seeds_S, mesh))


def abstract_population(cfg: Config, mesh: Mesh) -> dict:
    """Shapes, dtypes and shardings of the population state, without computing it (for restoring)."""
    shapes = jax.eval_shape(jax.vmap(lambda s: init_member(cfg, s)), np.asarray(cfg.seeds, np.int32))
    sharding = NamedSharding(mesh, PartitionSpec("seed"))
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def loss_fn(params, cfg: Config, inputs_BxT, targets_BxT, positions_BxT, attention, dropout_key):
    """Token-mean cross-entropy over every non-pad target (the original's normalize=True).

    `attention` is what the layout adds to causal attention: None (rows), an allowed mask (packed),
    or the sequences' SequenceRows (unpadded).
    """
    rows = attention if isinstance(attention, ops.SequenceRows) else None
    allowed_BxTxT = None if rows is not None else attention
    logits_BxTxV = model.forward(
        cfg.model,
        params,
        inputs_BxT,
        dropout_key=dropout_key,
        allowed_BxTxT=allowed_BxTxT,
        positions_BxT=positions_BxT,
        rows=rows,
    )
    return token_mean_ce(logits_BxTxV, targets_BxT)


def token_mean_ce(logits_BxTxV, targets_BxT) -> jax.Array:
    """Cross-entropy averaged over the non-pad (id 0) targets; 0 when there are none."""
    ce_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, targets_BxT)
    mask_BxT = targets_BxT != 0
    return jnp.sum(ce_BxT * mask_BxT) / jnp.maximum(jnp.sum(mask_BxT), 1)


def global_norm(tree) -> jax.Array:
    """sqrt of the sum of squares of every leaf (the norm that clipping uses)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def member_step(cfg: Config, state, seed, member_lr, step, batch):
    """One update of one member; a non-finite loss or gradient freezes that member for good."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), DROPOUT_STREAM), step)
    loss, grads = jax.value_and_grad(loss_fn)(state["params"], cfg, *batch, key)
    grad_norm = global_norm(grads)
    frozen = state["frozen"] | ~(jnp.isfinite(loss) & jnp.isfinite(grad_norm))
    lr = lr_at(step, cfg.train) * member_lr
    # A frozen member keeps its last finite state; the select is per member, so others never see it.
    params, opt = optim.update(cfg.train, state["params"], state["opt"], grads, grad_norm, lr, frozen)
    new = {"params": params, "opt": opt, "frozen": frozen}
    return new, {"loss": loss, "grad_norm": grad_norm, "lr": lr}


def make_chunk(cfg: Config, layout: str, width: int | tuple[int, int], gathered: bool = False) -> Callable:
    """jit(vmap over S of scan over K steps); state buffers are donated.

    `width` is the row length (rows), the packed length (packed), or (packed length, row length) (unpadded).
    `gathered` (train.group_by=length): the call takes the whole population's state and seeds, and the
    members it steps, (state_S, members_M, seeds_S, lrs_S, idx_MxKxB, step0, ...); the others keep theirs.
    """
    make_batch = {"rows": batching.rows_batch, "packed": batching.packed_batch, "unpadded": batching.unpadded_batch}[
        layout
    ]

    def member_chunk(state, seed, member_lr, idx_KxB, step0, flat_M, starts_N, seq_len_N):
        def body(state, k_idx):
            k, idx_B = k_idx
            batch = make_batch(flat_M, starts_N, seq_len_N, idx_B, width)
            return member_step(cfg, state, seed, member_lr, step0 + k, batch)

        ks = jnp.arange(idx_KxB.shape[0])
        return jax.lax.scan(body, state, (ks, idx_KxB))

    vmapped = jax.vmap(member_chunk, in_axes=(0, 0, 0, 0, None, None, None, None))
    if not gathered:
        return jax.jit(vmapped, donate_argnums=(0,))

    def members_chunk(state_S, members_M, seeds_S, lrs_S, idx_MxKxB, step0, *resident):
        take = lambda x: x[members_M]  # noqa: E731
        state_M, metrics = vmapped(
            jax.tree_util.tree_map(take, state_S), take(seeds_S), take(lrs_S), idx_MxKxB, step0, *resident
        )
        # written back in place: the population's buffers are donated
        return jax.tree_util.tree_map(lambda x, y: x.at[members_M].set(y), state_S, state_M), metrics

    return jax.jit(members_chunk, donate_argnums=(0,))


def split_population(tree, groups: list[slice]) -> list:
    """The tree's members in groups (one group: the tree itself, no copy)."""
    if len(groups) == 1:
        return [tree]
    return [jax.tree_util.tree_map(lambda x, g=g: x[g], tree) for g in groups]


def join_population(trees: list):
    """The groups' members as one tree again (one group: the tree itself, no copy)."""
    if len(trees) == 1:
        return trees[0]
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *trees)


def in_member_order(tree, members_G: list[np.ndarray]):
    """A tree whose leading axis lists the groups' members one group after another, back in population order."""
    inverse_S = np.argsort(np.concatenate(members_G))
    return jax.tree_util.tree_map(lambda x: x[inverse_S], tree)


def host_params(params_S) -> dict:
    """The population's parameters as host numpy, layers stacked ([S, L, ...]): the checkpoint form."""
    return model.stack_layers(to_host(params_S), axis=1)


def seed_mesh(population: int, devices=None) -> Mesh:
    """A one-axis ('seed',) mesh over the most local devices that divide the population evenly."""
    devices = list(devices if devices is not None else jax.devices())
    n = max(d for d in range(1, len(devices) + 1) if population % d == 0)
    return Mesh(np.array(devices[:n]), ("seed",))


def place(x, sharding: NamedSharding):
    """A host array (the same on every process) as a global array with `sharding`; works multi-host."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def shard_population(tree, mesh: Mesh):
    """Place every leaf's leading S axis on the mesh's 'seed' axis."""
    sharding = NamedSharding(mesh, PartitionSpec("seed"))
    return jax.tree_util.tree_map(lambda x: place(x, sharding), tree)


def replicate(tree, mesh: Mesh):
    """Copy arrays (the resident dataset) to every device of the mesh."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda x: place(x, sharding), tree)


def to_host(tree):
    """(Possibly multi-host sharded) arrays as whole numpy arrays on this host: one gather for the tree."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def next_boundary(step: int, total: int, tc: TrainConfig) -> int:
    """End of the chunk starting at `step`: the next multiple of K, log, eval or checkpoint cadence."""
    periods = (tc.chunk_steps, tc.log_every, tc.eval_every, tc.ckpt_every)
    return min([total] + [(step // p + 1) * p for p in periods if p > 0])


@dataclasses.dataclass
class TrainData:
    """The resident training set: every [SOS] w.. [EOS] sequence end to end, and the batch layout."""

    flat_M: np.ndarray  # int32 ids of all sequences, end to end
    starts_N: np.ndarray  # int32 start of each sequence in flat_M
    seq_len_N: np.ndarray  # int32 n + 2
    layout: str  # "rows" | "packed" | "unpadded"
    min_length: int = (
        0  # packed/unpadded: no call is shorter (batching.length_bounds), so rare short ones compile nothing
    )
    tail: tuple[int, int] | None = None  # packed/unpadded: calls above tail[0] run at tail[1] (batching.length_bounds)

    @property
    def n(self) -> int:
        return len(self.seq_len_N)

    @property
    def row_width(self) -> int:
        """Rows layout: every row holds the longest sequence."""
        return int(self.seq_len_N.max())

    def width_for(self, idx_SxKxB: np.ndarray) -> int | tuple[int, int]:
        """The static row/packed length a chunk with these batches needs (unpadded: packed length, row length)."""
        if self.layout == "rows":
            return self.row_width
        length = (batching.packed_length if self.layout == "packed" else batching.unpadded_length)(
            self.seq_len_N, idx_SxKxB
        )
        return self.call_width(int(batching.bounded(length, self.min_length, self.tail)))

    def call_width(self, length: int) -> int | tuple[int, int]:
        """A packed or unpadded call's static width from its packed length (unpadded: with its
        attention rows' length).
        """
        return (length, self.row_width - 1) if self.layout == "unpadded" else length

    def device_arrays(self):
        return jnp.asarray(self.flat_M), jnp.asarray(self.starts_N), jnp.asarray(self.seq_len_N)


def padding_stats(data: TrainData, idx_SxKxB: np.ndarray, width) -> tuple[int, int]:
    """(positions the position-wise layers compute, real target tokens) of a chunk: the padding overhead."""
    real = int((data.seq_len_N[idx_SxKxB] - 1).sum())
    s, k, b = idx_SxKxB.shape
    if data.layout == "rows":
        return s * k * b * (width - 1), real
    return s * k * (width[0] if data.layout == "unpadded" else width), real


def chunk_runner(cfg: Config, data: TrainData, gathered: bool = False):
    """Compile-once (per packed length) chunk functions, keyed by width (make_chunk's `gathered` for all)."""
    cache: dict = {}

    def get(width) -> Callable:
        if width not in cache:
            cache[width] = make_chunk(cfg, data.layout, width, gathered)
        return cache[width]

    return get


def member_grouping(cfg: Config) -> tuple[list[slice], bool]:
    """The population's member groups (train.member_groups), and whether each call gathers its members from one
    state (train.group_by=length) rather than each group keeping its own."""
    groups = batching.member_groups(cfg.population, cfg.train.member_groups)
    return groups, len(groups) > 1 and cfg.train.group_by == "length"


class Population:
    """The population as the host loop steps it: member groups (train.member_groups), each call at its own width.

    Grouped by seed, each group's state lives apart; by length (train.group_by), the state stays one tree
    and every call gathers its members (make_chunk's `gathered`). `padding` counts the positions computed.
    """

    def __init__(self, cfg: Config, data: TrainData, state, mesh: Mesh):
        self.data, self.mesh = data, mesh
        self.groups, self.gathered = member_grouping(cfg)
        apart = [slice(None)] if self.gathered else self.groups  # the groups whose state lives apart
        self.seeds = split_population(shard_population(np.asarray(cfg.seeds, np.int32), mesh), apart)
        self.lrs = split_population(shard_population(np.asarray(cfg.member_lrs, np.float32), mesh), apart)
        self.states = split_population(state, apart)
        self.resident = replicate((data.flat_M, data.starts_N, data.seq_len_N), mesh)
        self.chunk_fn = chunk_runner(cfg, data, self.gathered)
        self.padding = {"positions": 0, "real": 0}

    def step(self, idx_SxKxB: np.ndarray, step: int) -> dict:
        """Dispatch every group's call for these batches; the calls' metrics, members in population order."""
        members_G = batching.call_groups(self.data.seq_len_N, idx_SxKxB, self.groups, self.gathered)
        ms = []
        for g, members in enumerate(members_G):
            idx_MxKxB = idx_SxKxB[members]
            width = self.data.width_for(idx_MxKxB)
            positions, real = padding_stats(self.data, idx_MxKxB, width)
            self.padding["positions"] += positions
            self.padding["real"] += real
            ms.append(self.run(self.chunk_fn(width), g, members, shard_population(idx_MxKxB, self.mesh), step))
        return in_member_order(join_population(ms), members_G) if self.gathered else join_population(ms)

    def call_args(self, g: int, members, idx_MxKxB, step) -> tuple:
        """Group g's call's arguments: its own state, seeds and lrs, or (gathered) the population's and its members."""
        if self.gathered:
            return (self.states[0], members, self.seeds[0], self.lrs[0], idx_MxKxB, step, *self.resident)
        return (self.states[g], self.seeds[g], self.lrs[g], idx_MxKxB, step, *self.resident)

    def run(self, fn: Callable, g: int, members, idx_MxKxB, step) -> dict:
        """Call `fn` (group g's chunk) and keep the state it returns; its metrics."""
        self.states[0 if self.gathered else g], metrics = fn(*self.call_args(g, members, idx_MxKxB, step))
        return metrics

    def state(self) -> dict:
        """The whole population's state (its buffers are donated to the next call: use it before stepping)."""
        return join_population(self.states)

    def params(self) -> dict:
        return join_population([st["params"] for st in self.states])

    def frozen(self) -> np.ndarray:
        return np.concatenate(to_host([st["frozen"] for st in self.states]))
