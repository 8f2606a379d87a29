"""Which rows of each global batch every host reads, derived from the mesh (T5X's `get_data_layout`).

A global batch is split over the mesh's data axes ('replica', 'data'): data-parallel position `d` holds rows
`[d * r, (d + 1) * r)`. A host feeds exactly the positions of its own devices, so:
- hosts whose devices cover the same data-parallel positions (the model axis spans them) must read the *same*
  rows: they form one input shard;
- a host's positions must be one contiguous run, and shards must not overlap partially, or no host-local array
  can describe its part of the batch.

The layout is computed from the grid of process indices alone, so `flan-jax plan` can print it for a slice it is
not running on, and training validates it before anything is compiled.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np


class DataLayoutError(ValueError):
  """The mesh cannot feed its batch from host-local rows; the message says which hosts and positions."""


@dataclasses.dataclass(frozen=True)
class HostDataLayout:
  """One host's part of the input.

  shard_index / num_shards: which distinct stream of rows this host reads (hosts of one shard read the same);
  rows: the host's rows per global batch (`batch_size // num_shards`); first_row: where they start in it.
  """
  shard_index: int
  num_shards: int
  rows: int
  first_row: int

  @classmethod
  def even(cls, shard_index: int, num_shards: int, batch_size: int) -> HostDataLayout:
    """Shard `shard_index` of `num_shards` equal blocks (one host per shard: a 1-D data-parallel mesh)."""
    if batch_size % num_shards:
      raise DataLayoutError(f"BATCH_SIZE={batch_size} is not divisible by the {num_shards} input shards")
    rows = batch_size // num_shards
    return cls(shard_index, num_shards, rows, shard_index * rows)


def _data_positions(process_grid: np.ndarray, axis_names: Sequence[str],
                    data_axes: Sequence[str]) -> dict[int, set[int]]:
  """process index -> the data-parallel positions its devices hold (data axes flattened, first one major)."""
  data_dims = [axis_names.index(a) for a in data_axes]
  sizes = [process_grid.shape[i] for i in data_dims]
  positions: dict[int, set[int]] = {}
  for index, process in np.ndenumerate(process_grid):
    position = int(np.ravel_multi_index([index[i] for i in data_dims], sizes)) if sizes else 0
    positions.setdefault(int(process), set()).add(position)
  return positions


def host_layouts(process_grid: np.ndarray, axis_names: Sequence[str], data_axes: Sequence[str],
                 batch_size: int) -> dict[int, HostDataLayout]:
  """Every host's layout for a mesh whose devices belong to the processes in `process_grid` (same shape)."""
  data_parallel = math.prod(process_grid.shape[axis_names.index(a)] for a in data_axes)
  if batch_size % data_parallel:
    raise DataLayoutError(f"BATCH_SIZE={batch_size} is not divisible by the data-parallel size {data_parallel}")
  rows_per_position = batch_size // data_parallel
  spans: dict[int, tuple[int, int]] = {}
  for process, positions in sorted(_data_positions(process_grid, axis_names, data_axes).items()):
    lo, hi = min(positions), max(positions) + 1
    if len(positions) != hi - lo:
      raise DataLayoutError(
          f"host {process} holds data-parallel positions {sorted(positions)}, not one contiguous run: its rows "
          "of the batch are not one block (lay the mesh out so each host's devices are adjacent on the data axes)")
    spans[process] = (lo, hi)
  distinct = sorted(set(spans.values()))
  for (lo_a, hi_a), (lo_b, hi_b) in zip(distinct, distinct[1:]):
    if lo_b < hi_a:
      sharing = sorted(p for p, s in spans.items() if s in ((lo_a, hi_a), (lo_b, hi_b)))
      raise DataLayoutError(
          f"hosts {sharing} hold overlapping but different data-parallel positions ({lo_a}-{hi_a - 1} and "
          f"{lo_b}-{hi_b - 1}): hosts must hold the same positions or disjoint ones")
  widths = {hi - lo for lo, hi in distinct}
  if len(widths) != 1:
    raise DataLayoutError(f"hosts hold different numbers of data-parallel positions ({sorted(widths)}); "
                          "every input shard must have as many rows")
  return {process: HostDataLayout(shard_index=distinct.index(span), num_shards=len(distinct),
                                  rows=(span[1] - span[0]) * rows_per_position,
                                  first_row=span[0] * rows_per_position)
          for process, span in spans.items()}


def hosts_by_shard(layouts: Mapping[int, HostDataLayout]) -> list[list[int]]:
  """The hosts reading each shard, in shard order."""
  groups: dict[int, list[int]] = {}
  for process, layout in sorted(layouts.items()):
    groups.setdefault(layout.shard_index, []).append(process)
  return [groups[i] for i in sorted(groups)]


def describe(layouts: Mapping[int, HostDataLayout], batch_size: int, limit: int = 8) -> str:
  """One line: how many shards, rows per host, and which hosts share a shard."""
  groups = hosts_by_shard(layouts)
  any_layout = next(iter(layouts.values()))
  shown = "; ".join(f"shard {i}: host{'s' if len(g) > 1 else ''} {','.join(map(str, g))}"
                    for i, g in enumerate(groups[:limit]))
  more = f"; ... ({len(groups) - limit} more shards)" if len(groups) > limit else ""
  return (f"input: {any_layout.num_shards} shard(s) of {any_layout.rows} rows of the {batch_size}-row batch over "
          f"{len(layouts)} host(s); {shown}{more}")
