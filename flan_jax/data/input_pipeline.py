"""Per-host training input: this process's shard of a SeqIO mixture -> batches -> global device arrays.

Each host reads its input shard of the mixture (`flan_jax.data_layout`: hosts of one data-parallel replica read the
same shard; `streaming`: tasks sampled by rate, rendered and tokenized in Python) and packs it into batches of the
shard's rows as the configured feature converter lays them out (`host_batches`); the trainer assembles global
arrays from the host-local rows.
The iterator's state is the number of batches consumed (plus what identifies the stream); restoring rebuilds the
same deterministic stream and skips exactly that many batches, so a resumed run sees the batches an uninterrupted
run would. With `input_process`, a mixture of Flan tasks (and token tasks) is rendered in a child process without
seqio or TensorFlow (`input_process.py`): the same batches, with the pipeline's memory and CPU outside the trainer's
process.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
import queue
import sys
import threading
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import seqio

from flan_jax.data import host_batches, input_process as input_process_lib, mixing, registry, streaming, token_tasks
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


def batch_config(config: InputConfig, feature_converter: seqio.FeatureConverter,
                 shard: HostDataLayout) -> host_batches.BatchConfig:
  """This host's batch layout (`shard.rows` rows); errors name the binding."""
  check_mixture(config.mixture_or_task_name)
  if shard.rows * shard.num_shards != config.batch_size:
    raise InputConfigError(f"BATCH_SIZE={config.batch_size} is not {shard.num_shards} input shards of "
                           f"{shard.rows} rows")
  try:
    return host_batches.config_from_converter(feature_converter, config.task_feature_lengths, shard.rows)
  except ValueError as e:
    raise InputConfigError(str(e)) from None


def host_batches_of(config: InputConfig, feature_converter: seqio.FeatureConverter,
                    shard: HostDataLayout) -> Iterator[dict[str, np.ndarray]]:
  """This host's batches (`shard.rows` rows of shard `shard.shard_index`), endless unless num_epochs is set."""
  layout = batch_config(config, feature_converter, shard)
  examples = streaming.mixture_examples(config.mixture_or_task_name, stream_config(config, shard))
  return host_batches.batches(examples, layout)


def stream_config(config: InputConfig, shard: HostDataLayout) -> streaming.StreamConfig:
  """What decides this host's example stream (hosts of one input shard read the same one)."""
  return streaming.StreamConfig(
      lengths=dict(config.task_feature_lengths), seed=config.seed, shuffle=config.shuffle,
      num_epochs=config.num_epochs, shard_index=shard.shard_index, num_shards=shard.num_shards, split=config.split,
      use_cached=config.use_cached)


class ResumableIterator:
  """Numpy batches from a deterministic stream; `state()` / `restore(state)` by replaying and skipping exactly.

  `feature_lengths`: every feature of a batch and its length (the batches are int32 [rows, length]).
  `make_batches(skip)` gives the stream's batches after the first `skip`; replaying renders and packs the skipped
  batches again (no device work): the stream is a pure function of the config, so this is exactly where an
  uninterrupted run would be.
  """

  def __init__(self, make_batches: Callable[[int], Iterator[dict[str, np.ndarray]]], identity: Mapping[str, Any],
               feature_lengths: Mapping[str, int], start: int = 0):
    self._make_batches = make_batches
    self.identity = dict(identity)
    self.feature_lengths = dict(feature_lengths)
    self._it = None
    self._reset(start)

  def _reset(self, start: int) -> None:
    self.close()
    self._it = None  # made at the first read, so a restore right after construction starts one stream, not two
    self.consumed = start

  def close(self) -> None:
    """Ends the current stream's input process, if it has one."""
    if isinstance(self._it, input_process_lib.ProcessBatches):
      self._it.close()

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._it is None:
      self._it = self._make_batches(self.consumed)
    batch = next(self._it)
    self.consumed += 1
    return batch

  def state(self, consumed: int | None = None) -> dict[str, Any]:
    return dict(self.identity, batches_consumed=self.consumed if consumed is None else consumed)

  def restore(self, state: Mapping[str, Any]) -> None:
    mismatched = {k: (state.get(k), v) for k, v in self.identity.items()
                  if k != "num_shards" and state.get(k) != v}
    if mismatched:
      raise InputConfigError(
          f"the checkpoint's dataset state does not match this run's input: {mismatched} (saved, now)")
    if state.get("num_shards") != self.identity.get("num_shards"):
      print(f"warning: resuming with {self.identity.get('num_shards')} input shards where the checkpoint had "
            f"{state.get('num_shards')}; per-host shards differ, so the batch stream differs", file=sys.stderr)
    self._reset(int(state["batches_consumed"]))


def host_iterator(config: InputConfig, feature_converter: seqio.FeatureConverter, shard: HostDataLayout,
                  input_process: bool = False) -> ResumableIterator:
  """This process's resumable batches; with `input_process`, rendered in a child process when every task of the
  mixture is a Flan or token task (else here, with a note saying why)."""
  identity = {"mixture_or_task_name": config.mixture_or_task_name, "batch_size": config.batch_size,
              "seed": config.seed, "split": config.split, "num_shards": shard.num_shards,
              "task_feature_lengths": dict(config.task_feature_lengths)}
  layout = batch_config(config, feature_converter, shard)  # validates before any compile
  job, why = None, ""
  if input_process:
    job, why = input_process_lib.job_for(mixing.rates(config.mixture_or_task_name),
                                         stream_config(config, shard), layout)
  if input_process and job is None:
    print(f"note: {config.mixture_or_task_name} is rendered in the training process: {why}", file=sys.stderr)
  if job is not None:
    make = functools.partial(input_process_lib.ProcessBatches, job)
  else:
    def make(skip: int) -> Iterator[dict[str, np.ndarray]]:
      return itertools.islice(host_batches_of(config, feature_converter, shard), skip, None)
  return ResumableIterator(make, identity, host_batches.feature_lengths(layout))


class DevicePrefetcher:
  """Turns host batches into global device arrays on a background thread, `depth` batches ahead.

  `consumed` counts the batches handed to the caller, which is what a checkpoint must record (batches still
  in the queue were read from the host iterator but not trained on).
  """

  _DONE = object()

  def __init__(self, iterator: ResumableIterator, place: Callable[[dict[str, np.ndarray]], Any], depth: int = 2):
    self._iterator = iterator
    self._place = place
    self.consumed = iterator.consumed
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
        if not self._put(self._place(batch)):
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
    self.consumed += 1
    return item

  def state(self) -> dict[str, Any]:
    return self._iterator.state(self.consumed)

  def close(self) -> None:
    # Join rather than leave the daemon thread inside the input (a task read through TF among it): a thread
    # killed inside TF at interpreter exit aborts the process ("FATAL: exception not rethrown").
    self._stop.set()
    self._iterator.close()  # an input process ends now, so a read blocked on it returns
    self._thread.join(timeout=120)
