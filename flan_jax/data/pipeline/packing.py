"""Packing several examples into each fixed-length row: our fit packer ('ffd'), and seqio's greedy packer.

seqio's packer is greedy next-fit: it walks the stream and starts a new row as soon as the next example does not fit
in every feature of the current one (and flushes every `max(lengths)` examples). When one feature is much fuller than
the other (Flan CoT at 2048/512: targets 93% full, inputs 25%) that leaves ~8% more rows than needed.

The 'ffd' packer packs each block of examples by row-by-row fill and, unless that is within 1% of the block's lower
bound, also by fit-decreasing, keeping whichever needs fewer rows:
- `ffd_assign`, fit-decreasing: examples in decreasing order of their summed share of the row lengths, each into the
  open row with the least room left in the binding feature where all its features fit (best fit). Within 1% of the
  bound when one feature binds throughout (CoT zero-shot, few-shot).
- `fill_assign`, row by row: a row is opened with the example that fills it most, then filled with whichever example
  that still fits brings the row's weighted room closest to zero. Weighting the feature that binds less (by its
  demand ratio to the power 6, found on CoT) makes rows use it up, so rows full of long targets also take long
  inputs. It wins on mixed zero-/few-shot streams, where FFD leaves rows that fill one feature and not the other
  (cot_submix: FFD +12.9% over the bound, fill +0.6%).
Rows come out ordered by the earliest example they hold; inside a row examples keep stream order.

Determinism: the stream is cut into consecutive blocks of `block_size` examples and each block is packed on its own,
so the packed rows are a pure function of the input stream.

Output per packed feature `k` (as seqio's `trim_and_pack_dataset`): `k` (tokens, 0-padded), `k_segment_ids` (1, 2, ...
per example in the row, 0 on padding) and `k_positions` (0, 1, ... inside each example).
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_BLOCK_SIZE = 4096  # examples packed together: larger blocks pack slightly tighter and cost more per example
FILL_WEIGHT_POWER = 6


def check_lengths(lengths: Mapping[str, int], what: str = "packed lengths") -> dict[str, int]:
  """Validates `{feature: length}`; the error names every length given."""
  if not lengths:
    raise ValueError(f"{what} are empty: give a positive length per feature, e.g. {{'inputs': 2048, 'targets': 512}}")
  bad = {k: v for k, v in lengths.items() if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0}
  if bad:
    raise ValueError(f"{what} {dict(lengths)} are inconsistent: {sorted(bad)} must be positive integers")
  return {k: int(v) for k, v in lengths.items()}


def lower_bound_rows(token_sums: Mapping[str, int], lengths: Mapping[str, int]) -> int:
  """No packer needs fewer rows than max over features of ceil(sum of tokens / row length)."""
  return max((math.ceil(token_sums[k] / lengths[k]) for k in lengths), default=0)


def over_half_row(sizes: np.ndarray, lengths: Sequence[int]) -> int:
  """Examples longer than half a row in some feature: no two share a row, so rows >= this count too (the bound
  that binds for few-shot inputs near the row length)."""
  cap = np.asarray(lengths, np.int64)
  return int(np.any(np.minimum(np.asarray(sizes, np.int64), cap) > cap // 2, axis=1).sum())


def ffd_assign(sizes: np.ndarray, capacity: Sequence[int]) -> np.ndarray:
  """Fit-decreasing row assignment in several dimensions (best fit on the binding feature).

  Examples go in decreasing order of their summed share of the row lengths (ties in stream order); each goes into
  the open row with the least room left in the binding feature (the one with the largest total share) where all
  its features fit, else into a new row. Best fit keeps the search a bisection over rows sorted by that room, and
  packs as tightly as first fit here (both within 1% of the bound on Flan CoT).

  Args:
    sizes: [n, d] non-negative lengths, each at most the capacity of its dimension.
    capacity: [d] row lengths.

  Returns:
    [n] row index of every example; rows are numbered by their earliest example (row 0 holds example 0).
  """
  sizes, cap = _validated(sizes, capacity)
  n, d = sizes.shape
  if n == 0:
    return np.zeros([0], np.int64)
  key = int(np.argmax(sizes.sum(axis=0) / cap))
  order = np.lexsort((np.arange(n), -(sizes / cap).sum(axis=1)))
  size_list, cap_list, dims = sizes.tolist(), cap.tolist(), range(d)
  room: list[list[int]] = []  # per row, the room left in each feature
  by_room: list[tuple[int, int]] = []  # (room left in the binding feature, row), sorted
  bin_of = np.empty([n], np.int64)
  for i in order.tolist():
    size = size_list[i]
    j = bisect.bisect_left(by_room, (size[key], -1))
    row = -1
    while j < len(by_room):
      candidate = by_room[j][1]
      if all(room[candidate][x] >= size[x] for x in dims):
        row = candidate
        del by_room[j]
        break
      j += 1
    if row < 0:
      row = len(room)
      room.append(list(cap_list))
    left = room[row]
    for x in dims:
      left[x] -= size[x]
    bisect.insort(by_room, (left[key], row))
    bin_of[i] = row
  return _in_stream_order(bin_of, len(room))


def _in_stream_order(row_of: np.ndarray, num_rows: int) -> np.ndarray:
  """Renumbers rows by their earliest member, so output order follows the stream."""
  first = np.full([num_rows], len(row_of), np.int64)
  np.minimum.at(first, row_of, np.arange(len(row_of)))
  rank = np.empty([num_rows], np.int64)
  rank[np.argsort(first, kind="stable")] = np.arange(num_rows)
  return rank[row_of]


def _validated(sizes: np.ndarray, capacity: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """[n, d] sizes and [d] row lengths as int64, every example within the row lengths."""
  sizes = np.asarray(sizes, dtype=np.int64)
  cap = np.asarray(capacity, dtype=np.int64)
  if sizes.size == 0:
    sizes = sizes.reshape(0, len(cap))
  if np.any(sizes > cap):
    raise ValueError(f"an example of lengths {sizes[np.any(sizes > cap, axis=1)][0].tolist()} exceeds the row "
                     f"lengths {cap.tolist()}; trim examples before packing")
  return sizes, cap


def fill_assign(sizes: np.ndarray, capacity: Sequence[int]) -> np.ndarray:
  """Row-by-row best fill (see the module doc); same contract as `ffd_assign`.

  With shares a (example size / row length) and weighted room r left in the row, the next example is the fitting
  one maximising 2 a.r - |a|^2, i.e. leaving the least weighted room squared; an empty row takes the example that
  maximises it for r = 1, which is a fixed order, so opening a row costs nothing.
  """
  sizes, cap = _validated(sizes, capacity)
  n, d = sizes.shape
  if n == 0:
    return np.zeros([0], np.int64)
  share = sizes / cap
  demand = share.sum(axis=0)
  weight = (demand.max() / np.maximum(demand, 1e-9)) ** FILL_WEIGHT_POWER
  weighted = share * weight
  norm = (weighted * share).sum(axis=1)
  opening_order = np.argsort(-(2 * weighted.sum(axis=1) - norm), kind="stable")
  # Per-feature 1-D columns: gathers and compares on them cost less than on [n, d] rows.
  size_cols = [sizes[:, x] for x in range(d)]
  weighted_cols = [2 * weighted[:, x] / cap[x] for x in range(d)]
  row_of = np.full([n], -1, np.int64)
  free = np.ones([n], bool)
  rows = 0
  for first in opening_order.tolist():
    if not free[first]:
      continue
    free[first] = False
    row_of[first] = rows
    room = (cap - sizes[first]).tolist()
    fits = free.copy()
    for x in range(d):
      fits &= size_cols[x] <= room[x]
    candidates = np.flatnonzero(fits)
    while len(candidates):
      score = -norm[candidates]
      for x in range(d):
        score += weighted_cols[x][candidates] * room[x]
      pick = int(candidates[int(np.argmax(score))])
      free[pick] = False
      row_of[pick] = rows
      keep = free[candidates]
      for x in range(d):
        room[x] -= int(size_cols[x][pick])
        keep &= size_cols[x][candidates] <= room[x]
      candidates = candidates[keep]
    rows += 1
  return _in_stream_order(row_of, rows)


FILL_GOOD_ENOUGH = 1.01  # fill rows within 1% of the block's lower bound: FFD is not tried


def fit_assign(sizes: np.ndarray, capacity: Sequence[int]) -> np.ndarray:
  """The 'ffd' packer: `fill_assign`, or `ffd_assign` where that needs fewer rows. FFD is tried only when fill is
  more than 1% above the block's lower bound (it is the costlier pass on mixed streams, where fill wins)."""
  fill = fill_assign(sizes, capacity)
  if not len(fill):
    return fill
  sums = np.asarray(sizes, np.int64).sum(axis=0)
  bound = lower_bound_rows(dict(enumerate(sums.tolist())), dict(enumerate(capacity)))
  if fill.max() + 1 <= FILL_GOOD_ENOUGH * bound:
    return fill
  ffd = ffd_assign(sizes, capacity)
  return ffd if ffd.max() < fill.max() else fill


def build_rows(values: Mapping[str, np.ndarray], row_splits: Mapping[str, np.ndarray], row_of: np.ndarray,
               lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
  """Lays the examples of a block out in their rows (vectorised, no per-example Python).

  `values[k]`/`row_splits[k]` are the ragged tokens of feature k (example i is values[splits[i]:splits[i+1]]);
  `row_of[i]` is the packed row of example i. Examples keep stream order inside a row.
  """
  n = len(row_of)
  num_rows = int(row_of.max()) + 1 if n else 0
  # Rank of each example inside its row (stream order) -> segment id.
  by_row = np.lexsort((np.arange(n), row_of))
  seg = np.empty([n], np.int64)
  starts_of_rows = np.searchsorted(row_of[by_row], np.arange(num_rows))
  counts = np.bincount(row_of, minlength=num_rows)
  seg[by_row] = np.arange(n) - np.repeat(starts_of_rows, counts)
  out: dict[str, np.ndarray] = {}
  for k, length in lengths.items():
    splits = np.asarray(row_splits[k], np.int64)
    lens = np.diff(splits)
    # Offset of each example inside its row: lengths of the earlier examples of the same row.
    sorted_lens = lens[by_row]
    csum = np.cumsum(sorted_lens) - sorted_lens
    row_start_csum = np.repeat(csum[starts_of_rows], counts)
    offset = np.empty([n], np.int64)
    offset[by_row] = csum - row_start_csum
    example_of_token = np.repeat(np.arange(n), lens)
    pos = np.arange(splits[-1] - splits[0]) - np.repeat(splits[:-1] - splits[0], lens)
    rows = row_of[example_of_token]
    cols = offset[example_of_token] + pos
    tokens = np.zeros([num_rows, length], np.int32)
    segment_ids = np.zeros([num_rows, length], np.int32)
    positions = np.zeros([num_rows, length], np.int32)
    tokens[rows, cols] = np.asarray(values[k])[splits[0]:splits[-1]]
    segment_ids[rows, cols] = seg[example_of_token] + 1
    positions[rows, cols] = pos
    out[k] = tokens
    out[f"{k}_segment_ids"] = segment_ids
    out[f"{k}_positions"] = positions
  return out


def pack_block(examples: Sequence[Mapping[str, np.ndarray]], lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
  """Packs one block of examples (each trimmed to `lengths`) with FFD; returns [rows, length] arrays per feature."""
  lengths = check_lengths(lengths)
  trimmed = {k: [np.asarray(ex[k], np.int32)[:length] for ex in examples] for k, length in lengths.items()}
  values, splits = {}, {}
  for k, seqs in trimmed.items():
    lens = np.fromiter((len(s) for s in seqs), np.int64, len(seqs))
    splits[k] = np.concatenate([[0], np.cumsum(lens)])
    values[k] = np.concatenate(seqs) if seqs else np.zeros([0], np.int32)
  sizes = np.stack([np.diff(splits[k]) for k in lengths], axis=1) if examples else np.zeros([0, len(lengths)])
  row_of = fit_assign(sizes, list(lengths.values()))
  return build_rows(values, splits, row_of, lengths)


def ffd_row_count(sizes: np.ndarray, lengths: Sequence[int], block_size: int = DEFAULT_BLOCK_SIZE) -> int:
  """Rows the 'ffd' packer needs for examples of `sizes` [n, d] (already trimmed), block by block."""
  sizes = np.asarray(sizes, np.int64)
  total = 0
  for start in range(0, len(sizes), block_size):
    row_of = fit_assign(sizes[start:start + block_size], lengths)
    total += int(row_of.max()) + 1 if len(row_of) else 0
  return total


def greedy_assign(sizes: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
  """Rows as seqio's `trim_and_pack_dataset` makes them: next-fit over the stream, a fresh row at every batch of
  max(lengths) examples; returns the row of every example (sizes already trimmed)."""
  sizes = np.asarray(sizes, np.int64)
  cap = np.asarray(lengths, np.int64)
  batch = int(cap.max())
  row_of = np.empty([len(sizes)], np.int64)
  row = -1
  used = cap  # forces a new row for the first example
  for i, size in enumerate(sizes):
    if i % batch == 0 or np.any(used + size > cap):
      row += 1
      used = size.copy()
    else:
      used = used + size
    row_of[i] = row
  return row_of


def greedy_row_count(sizes: np.ndarray, lengths: Sequence[int]) -> int:
  """Rows seqio's greedy packer makes for examples of `sizes` [n, d] (trimmed here)."""
  sizes = np.minimum(np.asarray(sizes, np.int64), np.asarray(lengths, np.int64))
  return int(greedy_assign(sizes, lengths)[-1]) + 1 if len(sizes) else 0
