"""Block b of a host's input: its draws rendered, tokenized, trimmed and packed into rows of model features.

A block is `block_size` consecutive draws of the host's schedule (`schedule.Schedule`), so its rows are a pure
function of (the input's spec, b): grain's workers compute blocks in any order and any number, and the rows are
the same. Within a block the texts are tokenized by one SentencePiece call, then packed by the configured packer
(`host_batches.convert_block`: FFD / best fit, seqio's greedy, or one example a row).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping

import numpy as np

from flan_jax import host_memory
from flan_jax.data.catalog import registry
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import row_store
from flan_jax.data.files import tfds_source
from flan_jax.data.pipeline import host_batches, sources
from flan_jax.data.pipeline import schedule as schedule_lib
from flan_jax.data.rendering import flan_render, tokenizer

Ragged = tuple[np.ndarray, np.ndarray]
FEATURES = ("inputs", "targets")
_EOS = np.asarray([tokenizer.EOS_ID], np.int32)


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """Everything that decides a host's input, in plain data that pickles into grain's workers."""
  tasks: Mapping[str, sources.TaskSpec]
  schedule: schedule_lib.Schedule
  layout: host_batches.BatchConfig
  seed: int
  shuffle: bool
  split: str
  data_dir: str
  tfds_data_dir: str
  # The rows of `flan_datasets(tasks)`, written by this process for the workers to map (None: read them here), so
  # workers never parse the data files, and read rows the way this process did (patched readers, mocks included).
  shared_rows: row_store.SharedRowsRef | None = None

  @property
  def block_size(self) -> int:
    """Draws a block; greedy packing restarts every max(lengths) examples (seqio's batches), so it keeps to whole
    multiples of that."""
    size = self.layout.block_size
    if self.layout.pack == "greedy":
      step = max(self.layout.lengths.values()) if self.layout.model == "encoder_decoder" else sum(
          self.layout.lengths.values())
      size = -(-size // step) * step
    return size


def init_worker(data_dir: str, tfds_data_dir: str) -> None:
  """What a worker process sets before it unpickles the tasks: no seqio registration, the run's data dirs, and
  large frees handed back to the system."""
  os.environ[registry.SEQIO_ENV] = "0"
  data_dir_lib.set_data_dir(data_dir)
  tfds_source.set_tfds_data_dir(tfds_data_dir)
  host_memory.return_large_frees()  # a block's arrays, freed every block


def flan_datasets(tasks: Mapping[str, sources.TaskSpec]) -> list[registry.FlanDataset]:
  """The Flan datasets `tasks` read, each once, in task order (the stores of `InputSpec.shared_rows`)."""
  return list(dict.fromkeys(t.dataset for t in tasks.values() if isinstance(t, registry.FlanTask)))


class PackedBlocks:
  """grain's random-access source of packed blocks: `len()` blocks, `[b]` -> {feature: int32 [rows, length]}."""

  def __init__(self, spec: InputSpec):
    self.spec = spec
    self._sources: dict[int, sources.FlanSource | sources.TokenSource | sources.SeqioSource] = {}

  def __getstate__(self):
    return {"spec": self.spec}  # opened sources (rows, permutations) stay in the process that opened them

  def __setstate__(self, state):  # in a worker
    self.__init__(state["spec"])
    if self.spec.shared_rows is not None:
      flan_render.use_shared_rows(self.spec.shared_rows, flan_datasets(self.spec.tasks),
                                  (self.spec.data_dir, self.spec.tfds_data_dir))

  def __len__(self) -> int:
    return -(-len(self.spec.schedule) // self.spec.block_size)

  def __getitem__(self, b: int) -> dict[str, np.ndarray]:
    size = self.spec.block_size
    start = b * size
    tasks, draws = self.spec.schedule.draws(start, min(start + size, len(self.spec.schedule)))
    items = [self._source(t).draw(g) for t, g in zip(tasks.tolist(), draws.tolist())]
    columns = examples_to_columns([i for i in items if i is not None], self.spec.layout.lengths)
    return host_batches.convert_block(columns, self.spec.layout)

  def _source(self, t: int):
    if t not in self._sources:
      name = self.spec.schedule.names[t]
      self._sources[t] = sources.open_source(self.spec.tasks[name], self.spec.seed, self.spec.shuffle,
                                             self.spec.split)
    return self._sources[t]


def examples_to_columns(items: list[sources.Draw], lengths: Mapping[str, int]) -> dict[str, Ragged]:
  """Draws -> trimmed examples as ragged columns, in draw order. Texts (Flan examples, token-task documents) are
  tokenized in one call; a Flan example gets EOS after trimming (as seqio's `append_eos_after_trim`), a token task's
  examples and a seqio task's come with theirs."""
  texts = []
  for item in items:
    texts += [item.inputs, item.targets] if isinstance(item, sources.Text) else [
        item.text] if isinstance(item, sources.Document) else []
  values, text_lengths = tokenizer.word_pieces().encode(texts)
  ends = np.cumsum(text_lengths).tolist()
  encoded = (values[end - n:end] for end, n in zip(ends, text_lengths.tolist()))
  parts: dict[str, list[np.ndarray]] = {k: [] for k in FEATURES}
  sizes: dict[str, list[int]] = {k: [] for k in FEATURES}
  for item in items:
    if isinstance(item, sources.Text):
      for key in FEATURES:
        ids = next(encoded)[:lengths[key] - 1]
        parts[key] += (ids, _EOS)
        sizes[key].append(len(ids) + 1)
      continue
    if isinstance(item, sources.Document):
      pairs = item.task.examples_of(next(encoded), list(item.key), lengths)
    else:
      pairs = [(item.inputs, item.targets)]
    for inputs, targets in pairs:
      for key, ids in (("inputs", inputs[:lengths["inputs"]]), ("targets", targets[:lengths["targets"]])):
        parts[key].append(np.asarray(ids, np.int32))
        sizes[key].append(len(ids))
  return {key: (np.concatenate(parts[key]) if parts[key] else np.zeros([0], np.int32),
                np.asarray(sizes[key], np.int64)) for key in FEATURES}
