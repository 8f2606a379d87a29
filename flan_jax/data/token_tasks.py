"""The catalog of token tasks: tasks that make (inputs, targets) token ids themselves, beside `registry.TASKS`.

A Flan task renders strings that the stream tokenizes; a token task (UL2R's denoised text, `ul2r.Ul2rTask`) yields
ids, EOS appended and fitted to the stream's feature lengths, so the training stream (`streaming`) reads it without
seqio and the input process (`input_process`) renders it in its child. Mixtures name token tasks as they name any
task (`mixing.add_mixture`). Like `registry`, this module imports neither seqio nor TensorFlow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Protocol

import numpy as np

if TYPE_CHECKING:
  from flan_jax.data.streaming import StreamConfig


class TokenTask(Protocol):
  """What the stream needs of a token task."""
  name: str

  def check_available(self) -> None:
    """Raises DataMissingError (saying how to get the data) when the task's data is absent."""

  def for_child(self) -> TokenTask:
    """This task with every name it reads by resolved, so that it pickles into the input process."""

  def examples(self, config: StreamConfig, shuffle_rows: int, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of shard `config.shard_index` of `config.num_shards`: (inputs, targets) int32 ids with EOS, no
    longer than `config.lengths`; a function of (config, epoch), shuffled within `shuffle_rows` examples."""


TASKS: dict[str, TokenTask] = {}


def register(task: TokenTask) -> str:
  """Adds (or replaces) `task` in the catalog."""
  TASKS[task.name] = task
  return task.name
