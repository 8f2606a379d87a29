"""Device meshes and T5X-style logical-axis rules: where every parameter, optimizer slot and batch lives.

The mesh has axes ('data', 'model') or ('replica', 'data', 'model'). Parameters and activations carry logical
axis names (`embed`, `mlp`, `heads`, `vocab`, `batch`, ...); the rules below map each to a mesh axis. With
`parameter_partitioning_dims=2` the `embed` dimension of every parameter is also split over 'data', which
shards the parameters and optimizer state FSDP-style (T5X's 2-D parameter partitioning).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flan_jax import data_layout

DATA = "data"
MODEL = "model"
REPLICA = "replica"

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]


def standard_logical_axis_rules(
    activation_partitioning_dims: int = 1,
    parameter_partitioning_dims: int = 1,
    with_replica: bool = False,
) -> list[tuple[str, str | tuple[str, ...] | None]]:
  """T5X's standard rules. Rules are tried in order; a mesh axis already used by a spec is skipped."""
  if activation_partitioning_dims not in (1, 2) or parameter_partitioning_dims not in (1, 2):
    raise ValueError(
        "activation_partitioning_dims and parameter_partitioning_dims must be 1 or 2, got "
        f"{activation_partitioning_dims} and {parameter_partitioning_dims}")
  batch_axes: str | tuple[str, ...] = (REPLICA, DATA) if with_replica else DATA
  rules: list[tuple[str, Any]] = [
      ("batch", batch_axes),
      ("vocab", MODEL),
      ("mlp", MODEL),
      ("heads", MODEL),
      ("joined_kv", MODEL),
      ("kv", None),
      ("length", None),
      ("relpos_buckets", None),
      ("abspos_buckets", None),
      ("layers", None),
      ("stack", None),
      ("mlp_activations", None),
  ]
  if activation_partitioning_dims == 2:
    rules.append(("embed", MODEL))
  if parameter_partitioning_dims == 2:
    rules.append(("embed", DATA))
  rules.append(("embed", None))
  return rules


def logical_to_mesh_spec(
    logical_axes: Sequence[str | None] | None,
    rules: LogicalRules,
    shape: Sequence[int] | None = None,
    mesh: Mesh | None = None,
) -> PartitionSpec:
  """Maps a tuple of logical names to a PartitionSpec; a dimension that does not divide stays replicated."""
  if logical_axes is None:
    return PartitionSpec()
  used: set[str] = set()
  out: list[Any] = []
  for dim, name in enumerate(logical_axes):
    chosen = None
    if name is not None:
      known = False
      for rule_name, mesh_axes in rules:
        if rule_name != name:
          continue
        known = True
        if mesh_axes is None:
          chosen = None
          break
        axes = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
        if mesh is not None:
          axes = tuple(a for a in axes if a in mesh.shape)
          if not axes:
            continue
        if used.intersection(axes):
          continue
        if shape is not None and mesh is not None:
          size = math.prod(mesh.shape[a] for a in axes)
          if shape[dim] % size:
            continue
        chosen = axes[0] if len(axes) == 1 else axes
        break
      if not known:
        raise ValueError(f"logical axis {name!r} has no partitioning rule (rules: {[r for r, _ in rules]})")
    if chosen is not None:
      used.update((chosen,) if isinstance(chosen, str) else chosen)
    out.append(chosen)
  while out and out[-1] is None:
    out.pop()
  return PartitionSpec(*out)


def _is_spec(x: Any) -> bool:
  return isinstance(x, PartitionSpec)


@dataclasses.dataclass(frozen=True)
class PartitionerConfig:
  """How to lay the devices out.

  num_partitions: model-parallel size (the 'model' axis); model_parallel_submesh: a TPU submesh (x, y, z, core)
  whose product is used instead; num_replicas: an outer 'replica' axis (pure data parallel, params replicated).
  """
  num_partitions: int | None = 1
  model_parallel_submesh: tuple[int, ...] | None = None
  num_replicas: int = 1
  activation_partitioning_dims: int = 1
  parameter_partitioning_dims: int = 1
  logical_axis_rules: tuple[tuple[str, Any], ...] | None = None


class Partitioner:
  """Builds the mesh and turns logical axes into shardings; jits functions over them."""

  def __init__(self, config: PartitionerConfig = PartitionerConfig(), devices: Sequence[jax.Device] | None = None):
    self.config = config
    devices = list(jax.devices() if devices is None else devices)
    if config.model_parallel_submesh is not None:
      model = math.prod(config.model_parallel_submesh)
    else:
      model = config.num_partitions or 1
    n = len(devices)
    if n % (model * config.num_replicas):
      raise ValueError(
          f"partitioner: {n} devices do not divide into num_partitions={model} x num_replicas="
          f"{config.num_replicas} (bindings Partitioner.num_partitions / model_parallel_submesh / num_replicas)")
    data = n // (model * config.num_replicas)
    if config.num_replicas > 1:
      shape, names = (config.num_replicas, data, model), (REPLICA, DATA, MODEL)
    else:
      shape, names = (data, model), (DATA, MODEL)
    # mesh_utils lays out known TPU/GPU topologies for fast collectives; others (CPU, odd slices) keep device order.
    try:
      grid = mesh_utils.create_device_mesh(shape, devices=devices, allow_split_physical_axes=True)
    except (ValueError, NotImplementedError, AssertionError):
      grid = np.asarray(devices).reshape(shape)
    self.mesh = Mesh(grid, names)
    self.rules = list(config.logical_axis_rules) if config.logical_axis_rules else standard_logical_axis_rules(
        config.activation_partitioning_dims, config.parameter_partitioning_dims, with_replica=config.num_replicas > 1)

  @property
  def data_axes(self) -> tuple[str, ...]:
    return tuple(a for a in (REPLICA, DATA) if a in self.mesh.shape)

  @property
  def data_parallel_size(self) -> int:
    return math.prod(self.mesh.shape[a] for a in self.data_axes)

  def spec(self, logical_axes: Sequence[str | None] | None, shape: Sequence[int] | None = None) -> PartitionSpec:
    return logical_to_mesh_spec(logical_axes, self.rules, shape, self.mesh)

  def sharding(self, spec: PartitionSpec) -> NamedSharding:
    return NamedSharding(self.mesh, spec)

  def shardings_from_logical(self, logical_tree: Any, abstract_tree: Any) -> Any:
    """NamedShardings for `abstract_tree`, given a tree of logical-axis PartitionSpecs mirroring it."""
    def one(logical, abstract):
      names = tuple(logical) if logical is not None else None
      return self.sharding(self.spec(names, abstract.shape))
    return jax.tree.map(one, logical_tree, abstract_tree, is_leaf=lambda x: x is None or _is_spec(x))

  def replicated(self) -> NamedSharding:
    return self.sharding(PartitionSpec())

  def batch_sharding(self) -> NamedSharding:
    axes = self.data_axes
    return self.sharding(PartitionSpec(axes if len(axes) > 1 else axes[0]))

  def check_batch_size(self, batch_size: int, binding: str = "BATCH_SIZE") -> None:
    """Fails early (before any compile) when the global batch does not split over the data axes."""
    if batch_size % self.data_parallel_size:
      raise ValueError(
          f"{binding}={batch_size} is not divisible by the data-parallel size {self.data_parallel_size} "
          f"(mesh {dict(self.mesh.shape)})")

  def data_layouts(self, batch_size: int) -> dict[int, data_layout.HostDataLayout]:
    """Every host's rows of a `batch_size` global batch, from where its devices sit on the data axes."""
    processes = np.vectorize(lambda d: d.process_index, otypes=[int])(self.mesh.devices)
    return data_layout.host_layouts(processes, list(self.mesh.axis_names), self.data_axes, batch_size)

  def data_layout(self, batch_size: int) -> data_layout.HostDataLayout:
    """This host's rows of a `batch_size` global batch."""
    return self.data_layouts(batch_size)[jax.process_index()]

  def global_batch(self, local_batch: dict[str, np.ndarray], global_batch_size: int) -> dict[str, jax.Array]:
    """Global arrays, sharded over the data axes, from this host's rows of the batch (`data_layout`): hosts of one
    input shard pass the same rows."""
    sharding = self.batch_sharding()
    out = {}
    for name, value in local_batch.items():
      value = np.asarray(value)
      global_shape = (global_batch_size,) + value.shape[1:]
      out[name] = jax.make_array_from_process_local_data(sharding, value, global_shape)
    return out

  def describe(self) -> str:
    return f"mesh {dict(self.mesh.shape)} over {self.mesh.devices.size} devices ({jax.process_count()} processes)"

