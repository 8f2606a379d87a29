"""Host data layout from the mesh: which hosts share an input shard, their rows, and meshes no host can feed."""
from __future__ import annotations

import numpy as np
import pytest

from flan_jax import data_layout
from flan_jax.data_layout import DataLayoutError, HostDataLayout


def _grid(shape, devices_per_host):
  """Processes of devices laid out in order (host h owns devices h*k .. h*k+k-1)."""
  return np.arange(int(np.prod(shape))).reshape(shape) // devices_per_host


def test_data_axis_across_hosts_gives_each_host_its_own_shard():
  layouts = data_layout.host_layouts(_grid((4, 1), 1), ["data", "model"], ["data"], 8)
  assert layouts == {h: HostDataLayout(h, 4, 2, 2 * h) for h in range(4)}


def test_model_axis_across_hosts_gives_them_the_same_rows():
  layouts = data_layout.host_layouts(_grid((1, 2), 1), ["data", "model"], ["data"], 8)
  assert layouts == {0: HostDataLayout(0, 1, 8, 0), 1: HostDataLayout(0, 1, 8, 0)}


def test_data_2_by_model_2_over_4_hosts_pairs_them():
  layouts = data_layout.host_layouts(_grid((2, 2), 1), ["data", "model"], ["data"], 8)
  assert data_layout.hosts_by_shard(layouts) == [[0, 1], [2, 3]]
  assert layouts[3] == HostDataLayout(1, 2, 4, 4)


def test_v4_256_with_8_way_model_parallelism():
  # 128 devices on 32 hosts of 4; mesh data=16 x model=8: each model group spans two hosts.
  layouts = data_layout.host_layouts(_grid((16, 8), 4), ["data", "model"], ["data"], 256)
  groups = data_layout.hosts_by_shard(layouts)
  assert groups == [[2 * i, 2 * i + 1] for i in range(16)]
  assert {layout.rows for layout in layouts.values()} == {16}
  line = data_layout.describe(layouts, 256)
  assert line.startswith("input: 16 shard(s) of 16 rows of the 256-row batch over 32 host(s); shard 0: hosts 0,1")
  assert "(8 more shards)" in line


def test_replica_and_data_axes_flatten_replica_major():
  layouts = data_layout.host_layouts(_grid((2, 2, 1), 1), ["replica", "data", "model"], ["replica", "data"], 8)
  assert [layouts[h].first_row for h in range(4)] == [0, 2, 4, 6]


def test_host_with_several_data_positions_reads_their_rows():
  layouts = data_layout.host_layouts(_grid((4, 2), 4), ["data", "model"], ["data"], 8)
  assert layouts == {0: HostDataLayout(0, 2, 4, 0), 1: HostDataLayout(1, 2, 4, 4)}


def test_meshes_no_host_can_feed_are_refused_naming_the_hosts():
  interleaved = np.array([[0], [1], [0], [1]])
  with pytest.raises(DataLayoutError, match=r"host 0 holds data-parallel positions \[0, 2\], not one contiguous"):
    data_layout.host_layouts(interleaved, ["data", "model"], ["data"], 8)
  overlapping = np.array([[0, 0], [0, 1], [1, 1]])
  with pytest.raises(DataLayoutError, match=r"hosts \[0, 1\] hold overlapping but different"):
    data_layout.host_layouts(overlapping, ["data", "model"], ["data"], 6)
  uneven = np.array([[0], [0], [1]])
  with pytest.raises(DataLayoutError, match="different numbers of data-parallel positions"):
    data_layout.host_layouts(uneven, ["data", "model"], ["data"], 6)
  with pytest.raises(DataLayoutError, match="BATCH_SIZE=6 is not divisible by the data-parallel size 4"):
    data_layout.host_layouts(_grid((4, 1), 1), ["data", "model"], ["data"], 6)


def test_partitioner_layout_of_local_devices():
  import jax
  from flan_jax import partitioning as pl
  part = pl.Partitioner(pl.PartitionerConfig(num_partitions=2), jax.devices())
  assert part.data_layout(8) == HostDataLayout(0, 1, 8, 0)
