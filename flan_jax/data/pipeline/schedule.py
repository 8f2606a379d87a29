"""Which task each draw of the mixture reads, and which of that task's draws: O(1) for any position.

seqio mixes by rate: each draw picks task t with probability rate_t / sum(rates) (rates are `min(cap, n)` for the
Flan collection, `mixing.rates`). Here the stream is cut into mixture epochs of L draws in which task t gets exactly
c_t draws, c_t proportional to its rate (largest remainders, at least 1 for any positive rate), in an order
permuted per mixture epoch. Every task's share is then its rate's, as seqio's in expectation but without its
sampling noise, and draw K is a pure function of K: in mixture epoch e = K // L, slot K % L holds task t (the
slots' tasks are a seeded shuffle of the c_t copies of each) and is t's j-th slot of the epoch, so it reads t's
draw e * c_t + j (a task's own stream runs in order, epoch after epoch of its examples). With `num_epochs`, c_t is the task's size and the stream ends after that many mixture epochs: every
example is read exactly `num_epochs` times, as seqio's finite mixture reads them.

Host shard s of S reads global draws s, s + S, ... (hosts of one data-parallel replica read the same shard).
"""
from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Mapping, Sequence

import numpy as np

EPOCH_DRAWS = 1 << 20  # L for a rated (endless) mixture: shares exact to ~1e-6 of the stream


def apportion(rates: Sequence[float], total: int) -> np.ndarray:
  """Integer draws per task summing to about `total`, proportional to `rates` (largest remainders); every
  positive rate gets at least one draw, so no task is silently left out."""
  w = np.asarray(rates, np.float64)
  if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
    raise ValueError(f"mixture rates must be finite, non-negative and not all zero; got {w.tolist()}")
  raw = w / w.sum() * total
  counts = np.floor(raw).astype(np.int64)
  short = total - int(counts.sum())
  counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
  return np.where(w > 0, np.maximum(counts, 1), 0)


@dataclasses.dataclass(frozen=True)
class Schedule:
  names: tuple[str, ...]
  counts: tuple[int, ...]  # draws of each task per mixture epoch
  seed: int
  shard_index: int = 0
  num_shards: int = 1
  num_epochs: int | None = None

  @classmethod
  def of(cls, rates: Mapping[str, float], sizes: Mapping[str, int] | None, seed: int, shard_index: int,
         num_shards: int, num_epochs: int | None) -> Schedule:
    """`sizes` (draws per task epoch) are needed with `num_epochs` only."""
    names = tuple(sorted(rates))
    if num_epochs is None:
      counts = apportion([rates[t] for t in names], EPOCH_DRAWS)
    else:
      counts = np.array([sizes[t] if rates[t] > 0 else 0 for t in names], np.int64)
    return cls(names, tuple(int(c) for c in counts), seed, shard_index, num_shards, num_epochs)

  @property
  def epoch_draws(self) -> int:
    return sum(self.counts)

  def __len__(self) -> int:
    """Draws of this host's shard (a finite mixture), else the largest index numpy addresses."""
    if self.num_epochs is None:
      return np.iinfo(np.int64).max // (2 * self.num_shards)
    total = self.num_epochs * self.epoch_draws
    return max(0, -(-(total - self.shard_index) // self.num_shards))

  def draws(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """(task index, that task's draw) for this host's draws [start, stop)."""
    k = np.arange(start, stop, dtype=np.int64) * self.num_shards + self.shard_index
    epoch, slot = np.divmod(k, self.epoch_draws)
    tasks = np.empty_like(slot)
    draws = np.empty_like(slot)
    counts = np.asarray(self.counts, np.int64)
    for e in np.unique(epoch).tolist():
      here = epoch == e
      labels, rank = self._epoch(e)
      tasks[here] = labels[slot[here]]
      draws[here] = e * counts[tasks[here]] + rank[slot[here]]
    return tasks, draws

  @functools.cached_property
  def _names_key(self) -> int:
    return zlib.crc32("\n".join(self.names).encode())

  def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    return _mixture_epoch(self.seed % (1 << 32), self._names_key, epoch, self.counts)


@functools.lru_cache(maxsize=2)
def _mixture_epoch(seed: int, names_key: int, epoch: int, counts: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
  """Slot -> task, and slot -> how many earlier slots of the epoch hold that task (so each task's draws run in
  order). One task: the identity."""
  labels = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
  if len(counts) > 1:
    labels = labels[np.random.default_rng([seed, names_key, epoch]).permutation(len(labels))]
  order = np.argsort(labels, kind="stable")
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.empty(len(labels), np.int32 if len(labels) < 2**31 else np.int64)
  rank[order] = np.arange(len(labels)) - starts[labels[order]]
  return labels, rank
