"""Per-host training input: this process's shard of a mixture -> grain -> batches -> global device arrays.

Each host reads its input shard of the mixture (`flan_jax.data_layout`: hosts of one data-parallel replica read the
same shard). `input_spec` validates the names, lengths and data, and gathers what grain's workers need
(`pipeline.blocks.InputSpec`); `host_iterator` gives the host's batches (`pipeline.host_input`), whose state is saved
with each checkpoint and restored at the same cost at any position; `DevicePrefetcher` assembles global arrays from
the host-local rows ahead of the step.
"""
from __future__ import annotations

import dataclasses
import difflib
import queue
import sys
import threading
from typing import Any, Callable, Mapping

import numpy as np

from flan_jax.data.catalog import mixing, registry, token_tasks
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import tfds_source
from flan_jax.data.pipeline import blocks, host_batches, host_input, schedule, sources
from flan_jax.data.rendering import flan_render
from flan_jax.data_layout import HostDataLayout


class InputConfigError(ValueError):
  """A bad input setting; the message names the gin binding."""


@dataclasses.dataclass(frozen=True)
class InputConfig:
  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  batch_size: int
  split: str = "train"
  shuffle: bool = True
  seed: int = 0
  num_epochs: int | None = None
  use_cached: bool = False


def known_names() -> set[str]:
  """Every task and mixture training can read: the Flan and token-task catalogs, plus seqio's registries where seqio
  is already loaded (a MIXTURE_OR_TASK_MODULE registered tasks of its own); a catalog name never imports seqio or
  TF."""
  names = set(registry.TASKS) | set(token_tasks.TASKS) | set(mixing.MIXTURES)
  if "seqio" in sys.modules:
    names |= set(seqio_registry_names())
  return names


def seqio_registry_names() -> list[str]:
  import seqio  # pylint: disable=import-outside-toplevel
  return list(seqio.MixtureRegistry.names()) + list(seqio.TaskRegistry.names())


def check_mixture(name: str, binding: str = "MIXTURE_OR_TASK_NAME") -> None:
  """Fails with the binding, "did you mean" and where names come from, unless `name` is registered."""
  if name in registry.TASKS or name in token_tasks.TASKS or name in mixing.MIXTURES:
    return
  known = known_names()
  if name in known:
    return
  close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
  hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
  raise InputConfigError(
      f"{binding}={name!r} is not a registered task or mixture; {hint}({len(known)} registered: "
      "`flan-jax data list`; a module of your own goes in MIXTURE_OR_TASK_MODULE)")


def register_mixture(name: str | None, components: Any, binding: str) -> None:
  """Registers `name` as a mixture of (task or mixture, rate) pairs, for run configs that mix existing ones."""
  if not components:
    return
  components = [(str(c), float(r)) for c, r in components]
  for component, _ in components:
    check_mixture(component, f"{binding} component")
  if name in known_names():
    if mixing.rates(name) != mixing.flattened_rates(components):
      raise InputConfigError(f"{binding}: mixture {name!r} is already registered with other components")
    return
  mixing.add_mixture(name, components)


def batch_config(config: InputConfig, layout: host_batches.InputLayout | Any,
                 shard: HostDataLayout) -> host_batches.BatchConfig:
  """This host's batch layout (`shard.rows` rows); errors name the binding."""
  check_mixture(config.mixture_or_task_name)
  if shard.rows * shard.num_shards != config.batch_size:
    raise InputConfigError(f"BATCH_SIZE={config.batch_size} is not {shard.num_shards} input shards of "
                           f"{shard.rows} rows")
  try:
    return host_batches.config_from_converter(layout, config.task_feature_lengths, shard.rows)
  except ValueError as e:
    raise InputConfigError(str(e)) from None


def input_spec(config: InputConfig, layout: host_batches.InputLayout | Any,
               shard: HostDataLayout) -> blocks.InputSpec:
  """What decides this host's input (hosts of one input shard get the same), validated: names, lengths, rates, and
  every task's data present (a missing file fails here, before any compile, naming the download command)."""
  batch = batch_config(config, layout, shard)
  rates = mixing.rates(config.mixture_or_task_name)
  tasks = {t: sources.for_workers(t, config.split, config.task_feature_lengths, config.use_cached)
           for t, r in rates.items() if r > 0}
  sizes = None
  if config.num_epochs is not None:
    sizes = {t: sources.open_source(spec, config.seed, False, config.split).size() for t, spec in tasks.items()}
    empty = sorted(t for t, n in sizes.items() if not n)
    if empty:
      raise InputConfigError(f"MIXTURE_OR_TASK_NAME={config.mixture_or_task_name!r}: task(s) {empty} have no "
                             f"examples in split {config.split!r}")
  try:
    sched = schedule.Schedule.of({t: rates[t] for t in tasks}, sizes, config.seed, shard.shard_index,
                                 shard.num_shards, config.num_epochs)
  except ValueError as e:
    raise InputConfigError(f"MIXTURE_OR_TASK_NAME={config.mixture_or_task_name!r}: {e}") from None
  return blocks.InputSpec(tasks, sched, batch, config.seed, config.shuffle, config.split,
                          str(data_dir_lib.data_dir()), str(tfds_source.tfds_data_dir()))


def host_iterator(config: InputConfig, layout: host_batches.InputLayout | Any, shard: HostDataLayout,
                  workers: int = 2) -> host_input.HostBatches:
  """This process's resumable batches, computed by `workers` grain processes (0: here)."""
  identity = {"mixture_or_task_name": config.mixture_or_task_name, "batch_size": config.batch_size,
              "seed": config.seed, "split": config.split, "num_shards": shard.num_shards,
              "task_feature_lengths": dict(config.task_feature_lengths)}
  spec = input_spec(config, layout, shard)
  shared = None
  if workers:
    # Rows are read from the data here, once, into a file every worker maps (the pages are shared between them).
    shared = flan_render.share_rows(blocks.flan_datasets(spec.tasks))
    flan_render.release_rows()
    spec = dataclasses.replace(spec, shared_rows=shared.ref)
  return host_input.HostBatches(spec, identity, workers, shared)


class DevicePrefetcher:
  """Turns host batches into global device arrays on a background thread, `depth` batches ahead.

  Each queued batch carries the input's state after it, so `state()` is where the batches handed to the caller end
  (batches still in the queue were read from the host input but not trained on).
  """

  _DONE = object()

  def __init__(self, iterator: host_input.HostBatches, place: Callable[[dict[str, np.ndarray]], Any],
               depth: int = 2):
    self._iterator = iterator
    self._place = place
    self._state = iterator.state()
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._work, daemon=True)
    self._thread.start()

  def _put(self, item: Any) -> bool:
    """Queues `item` unless asked to stop first; returns whether it was queued."""
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _work(self) -> None:
    try:
      for batch in self._iterator:
        if not self._put((self._place(batch), self._iterator.state())):
          return
      self._put(self._DONE)
    except BaseException as e:  # noqa: BLE001 - re-raised in the consumer thread
      self._put(e)

  def __iter__(self):
    return self

  def __next__(self) -> Any:
    item = self._queue.get()
    if item is self._DONE:
      raise StopIteration
    if isinstance(item, BaseException):
      raise item
    batch, self._state = item
    return batch

  def state(self) -> dict[str, Any]:
    return dict(self._state)

  def close(self) -> None:
    self._stop.set()
    self._thread.join(timeout=120)
    self._iterator.close()  # grain's workers end once nothing reads from them
