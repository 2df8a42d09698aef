"""Per-seed batches: epoch permutations (host, from the integer seed) and on-device gathers.

A batch is 8 whole sequences, as the original's RandomSampler + DataLoader. Three layouts:
- rows: [B, T] sequences padded to the longest training sequence;
- packed: the B sequences laid end to end in one row of P positions, attention kept within each
  sequence (a P x P mask) and positions restarting at 0, so Dyck's long tail does not make padding dominate;
- unpadded (QF/TI): packed for the position-wise layers, attention on the sequences gathered into
  [B, T] rows (ops.SequenceRows): the FFN and projections skip the padding, attention stays B x T x T.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from sgjax.core.ops import SequenceRows

BATCH_STREAM = 1  # salt: batch order is its own random stream, apart from init and dropout
# Packed (Dyck) rows are as long as their step's longest batch, which at S = 10 moves to another rung
# of the length ladder almost every step (1.16 steps per call when chunks were cut where it moved,
# experiments/performance/dyck_padding/results/dyck_padding.json). So packed calls take one step each: one compiled
# program per length, not one per (steps, length) pair (49 against 18 over 20k steps of the paper's Dyck at S = 10).
PACKED_STEPS_PER_CALL = 1


@functools.lru_cache(maxsize=64)
def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the training set in `epoch` for `seed`: a pure function of its arguments."""
    return np.random.default_rng([seed, BATCH_STREAM, epoch]).permutation(n).astype(np.int32)


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Line indices of `seed`'s batch at `step` (the incomplete last batch of an epoch is dropped)."""
    steps_per_epoch = n // batch_size
    epoch, k = divmod(step, steps_per_epoch)
    return epoch_permutation(seed, epoch, n)[k * batch_size : (k + 1) * batch_size]


def chunk_indices(seeds, step0: int, k_steps: int, n: int, batch_size: int) -> np.ndarray:
    """Indices for every member and step of a chunk: int32 [S, K, B]."""
    return np.stack([np.stack([batch_indices(s, step0 + k, n, batch_size) for k in range(k_steps)]) for s in seeds])


def round_up_bucket(p: int, base: int = 32, growth: float = 1.1) -> int:
    """Round a packed length up to a ladder of sizes ~10% apart, so few shapes get compiled."""
    size = base
    while size < p:
        size = max(size + base, int(math.ceil(size * growth / base) * base))
    return size


def rows_batch(flat_M, starts_N, seq_len_N, idx_B, width: int):
    """Rows layout: each sequence in its own row of `width` ids; returns (inputs, targets, None, None)."""
    pos_T = jnp.arange(width)
    len_B = seq_len_N[idx_B]
    ids_BxT = jnp.where(
        pos_T[None] < len_B[:, None], flat_M[starts_N[idx_B][:, None] + jnp.minimum(pos_T[None], len_B[:, None] - 1)], 0
    )
    return ids_BxT[:, :-1], ids_BxT[:, 1:], None, None


def _segments(seq_len_N, idx_B, p: int):
    """Each packed position's sequence (B for the padding tail), its offset in it, and the sequences' starts."""
    seg_len_B = seq_len_N[idx_B] - 1  # each sequence of n+2 ids gives n+1 (input, target) pairs
    ends_B = jnp.cumsum(seg_len_B)
    starts_B = ends_B - seg_len_B
    pos_P = jnp.arange(p)
    seg_P = jnp.searchsorted(ends_B, pos_P, side="right")
    within_P = jnp.where(seg_P < idx_B.shape[0], pos_P - starts_B[jnp.minimum(seg_P, idx_B.shape[0] - 1)], 0)
    return seg_P, within_P, starts_B, seg_len_B


def _packed_ids(flat_M, starts_N, idx_B, seg_P, within_P):
    """(inputs_P, targets_P): the packed row's ids, 0 in the padding tail."""
    valid_P = seg_P < idx_B.shape[0]
    at_P = starts_N[idx_B[jnp.minimum(seg_P, idx_B.shape[0] - 1)]] + within_P
    return jnp.where(valid_P, flat_M[at_P], 0), jnp.where(valid_P, flat_M[at_P + 1], 0)


def packed_batch(flat_M, starts_N, seq_len_N, idx_B, p: int):
    """Packed layout: B sequences end to end in one row of length p; attention stays within each."""
    seg_P, within_P, _, _ = _segments(seq_len_N, idx_B, p)
    inputs_P, targets_P = _packed_ids(flat_M, starts_N, idx_B, seg_P, within_P)
    same_PxP = (seg_P[:, None] == seg_P[None, :]) & (seg_P < idx_B.shape[0])[None, :]
    return inputs_P[None], targets_P[None], within_P[None], same_PxP[None]


def unpadded_batch(flat_M, starts_N, seq_len_N, idx_B, shape: tuple[int, int]):
    """Unpadded layout: a packed row of p tokens, and where each sits in [B, t] rows (attention runs on those)."""
    p, t = shape
    b = idx_B.shape[0]
    seg_P, within_P, starts_B, seg_len_B = _segments(seq_len_N, idx_B, p)
    inputs_P, targets_P = _packed_ids(flat_M, starts_N, idx_B, seg_P, within_P)
    pos_T = jnp.arange(t)
    slot_BxT = jnp.where(pos_T[None] < seg_len_B[:, None], starts_B[:, None] + pos_T[None], p)
    at_P = jnp.where(seg_P < b, seg_P * t + within_P, b * t)
    return inputs_P[None], targets_P[None], within_P[None], SequenceRows(slot_BxT, at_P)


def packed_length(seq_len_N: np.ndarray, idx_SxKxB: np.ndarray) -> int:
    """The packed row length a chunk needs: its longest batch (in tokens), rounded to the ladder."""
    return round_up_bucket(int((seq_len_N[idx_SxKxB] - 1).sum(axis=-1).max()))


UNPADDED_MULTIPLE = 16  # unpadded (QF/TI) packed lengths are multiples of this


def round_up(n: int, multiple: int) -> int:
    """n rounded up to a multiple of `multiple`."""
    return -(-n // multiple) * multiple


def unpadded_length(seq_len_N: np.ndarray, idx_SxKxB: np.ndarray, multiple: int = UNPADDED_MULTIPLE) -> int:
    """The unpadded layout's packed length for a whole chunk: its longest batch, rounded up to `multiple`.

    Unlike packed (Dyck) calls, which take one step each, unpadded chunks are not split: QF/TI batches
    vary little, and a run then compiles a few lengths at one K instead of a (K, length) pair for
    every split. With dropout_draw=counter the length does not change a member's results.
    """
    return round_up(int((seq_len_N[idx_SxKxB] - 1).sum(axis=-1).max()), multiple)


def member_groups(population: int, groups: int) -> list[slice]:
    """`groups` contiguous, near-equal slices of the population (train.member_groups)."""
    bounds = np.linspace(0, population, groups + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def call_groups(seq_len_N: np.ndarray, idx_SxKxB: np.ndarray, groups: list[slice], by_length: bool) -> list[np.ndarray]:
    """The members each group's call steps: the group's seeds, or (by_length) as many members of the population
    sorted by their longest batch in this call, so members with long batches pad one another (train.group_by)."""
    members_S = np.arange(idx_SxKxB.shape[0])
    if by_length:
        members_S = np.argsort(member_tokens(seq_len_N, idx_SxKxB), kind="stable")
    return [members_S[g] for g in groups]


def member_tokens(seq_len_N: np.ndarray, idx_SxKxB: np.ndarray) -> np.ndarray:
    """[S] each member's longest batch in a call, in tokens (LM positions)."""
    return (seq_len_N[idx_SxKxB] - 1).sum(axis=-1).max(axis=-1)


def length_bounds(
    seq_len_N: np.ndarray,
    seeds,
    steps: int,
    k_steps: int,
    batch_size: int,
    packed: bool,
    floor_quantile: float = 0.01,
    tail_quantile: float = 0.995,
    samples: int = 400,
    groups: int = 1,
    by_length: bool = False,
):
    """(floor, tail, length_C): a run's length floor and tail, and its calls' lengths as compiled, from one pass over
    its batches.

    With member `groups` (train.member_groups), each group's calls count: a call is one group's, at its
    own width, and length_C holds every group's calls, group after group; `by_length` groups the members
    of each call by their batch lengths (call_groups).

    Floor: the shortest packed length a run compiles, the `floor_quantile` of its calls' lengths over its
    first epoch (`samples` calls spread over it). Shorter calls are rare (Dyck's 6 shortest rungs are 0.5%
    of a 400k-step run at S = 10, QF's shortest 4 chunks of 3,000), yet each would compile its own
    program, a minute on an H200 at fp32; they run padded to the floor instead.

    Tail, (above, longest): the floor's mirror at the top. Calls longer than `above`, the `tail_quantile`
    of the whole run's (floored) lengths, run at its longest. Dyck's longest rungs are rare (its 4 longest
    take 0.2% of a paper run's calls) yet each compiles a program; at the run's longest they compile one.
    None when at most one length lies above the quantile (QF, TI): nothing would merge.

    With model.dropout_draw=counter the length does not change a member's results. Both depend on the
    data, seeds and steps alone, so a resumed run keeps them; the floor does not depend on steps, so an
    extended run keeps it too, and a call longer than `longest` (past the steps) gets its own length.
    """
    epoch_calls = max(len(seq_len_N) // batch_size // k_steps, 1)
    tokens_SxT = step_tokens(seq_len_N, seeds, max(steps, epoch_calls * k_steps), batch_size)
    parts = member_groups(len(seeds), groups)
    picked = np.unique(np.linspace(0, epoch_calls - 1, min(samples, epoch_calls)).astype(np.int64))
    epoch_GxC = group_lengths(tokens_SxT[:, : epoch_calls * k_steps], k_steps, packed, parts, by_length)
    floor = int(np.quantile(epoch_GxC[:, picked], floor_quantile, method="lower"))
    length_C = bounded(group_lengths(tokens_SxT[:, :steps], k_steps, packed, parts, by_length).ravel(), floor)
    above = int(np.quantile(length_C, tail_quantile, method="lower"))
    longer = np.unique(length_C[length_C > above])
    tail = (above, int(longer[-1])) if len(longer) > 1 else None
    return floor, tail, bounded(length_C, floor, tail)


def bounded(length_C, floor: int = 0, tail: tuple[int, int] | None = None):
    """Call lengths as compiled: at least the floor, and a rare long one (above tail[0]) at least tail[1]."""
    length_C = np.maximum(length_C, floor)
    if tail is not None:
        length_C = np.where(length_C > tail[0], np.maximum(length_C, tail[1]), length_C)
    return length_C


def step_tokens(seq_len_N: np.ndarray, seeds, steps: int, batch_size: int) -> np.ndarray:
    """[S, steps] tokens (LM positions) in each member's batch at every step of a run: every epoch's batches summed in
    one reshape.
    """
    n = len(seq_len_N)
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    return np.stack(
        [
            np.concatenate(
                [
                    (seq_len_N[epoch_permutation(seed, e, n)[: per_epoch * batch_size]] - 1)
                    .reshape(per_epoch, batch_size)
                    .sum(1)
                    for e in range(epochs)
                ]
            )[:steps]
            for seed in seeds
        ]
    )


def call_tokens(tokens_SxT: np.ndarray, k_steps: int) -> np.ndarray:
    """[S, calls] each member's longest batch in every call of `k_steps` steps (a last, shorter call: its missing steps
    empty).
    """
    seeds, steps = tokens_SxT.shape
    calls = -(-steps // k_steps)
    return np.pad(tokens_SxT, ((0, 0), (0, calls * k_steps - steps))).reshape(seeds, calls, k_steps).max(axis=2)


def rounded(need_C: np.ndarray, packed: bool) -> np.ndarray:
    """Raw packed lengths rounded as width_for rounds them: to the ladder (packed) or a multiple (unpadded)."""
    rung = {
        int(v): round_up_bucket(int(v)) if packed else round_up(int(v), UNPADDED_MULTIPLE) for v in np.unique(need_C)
    }
    return np.vectorize(rung.__getitem__, otypes=[np.int64])(need_C)


def group_lengths(
    tokens_SxT: np.ndarray, k_steps: int, packed: bool, groups: list[slice], by_length: bool
) -> np.ndarray:
    """[G, calls] the raw packed length of each member group's calls (call_groups: by seed, or by_length)."""
    tokens_SxC = call_tokens(tokens_SxT, k_steps)
    if by_length:  # each call's members sorted by their batch: a group takes the next slice of them
        tokens_SxC = np.sort(tokens_SxC, axis=0)
    return rounded(np.stack([tokens_SxC[g].max(axis=0) for g in groups]), packed)


def call_lengths(
    seq_len_N: np.ndarray,
    seeds,
    steps: int,
    k_steps: int,
    batch_size: int,
    packed: bool,
    floor: int = 0,
    tail: tuple[int, int] | None = None,
) -> np.ndarray:
    """The packed length of every call of a `steps`-step run in calls of `k_steps` (as width_for gives them), at once.

    One program is compiled per distinct length, so this counts a whole run's compiles without walking
    it call by call.
    """
    return bounded(
        group_lengths(step_tokens(seq_len_N, seeds, steps, batch_size), k_steps, packed, [slice(None)], False)[0],
        floor,
        tail,
    )
