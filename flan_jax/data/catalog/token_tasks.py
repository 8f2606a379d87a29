"""The catalog of token tasks: tasks that make (inputs, targets) token ids themselves, beside `registry.TASKS`.

A Flan task renders strings that the training input tokenizes; a token task (UL2R's denoised text, `ul2r.Ul2rTask`)
turns each of its documents, tokenized, into examples with EOS, fitted to the input's feature lengths, so the
training input (`pipeline.sources`) reads it without seqio. Mixtures name token tasks as they name any task
(`mixing.add_mixture`). Like `registry`, this module imports neither seqio nor TensorFlow.
"""
from __future__ import annotations

from typing import Mapping, Protocol

import numpy as np


class TokenTask(Protocol):
  """What the training input needs of a token task."""
  name: str

  def check_available(self) -> None:
    """Raises DataMissingError (saying how to get the data) when the task's data is absent."""

  def for_child(self) -> TokenTask:
    """This task with every name it reads by resolved, so that it pickles into an input worker."""

  def documents(self, split: str) -> list[str]:
    """The task's documents, in a fixed order."""

  def examples_of(self, ids: np.ndarray, key: list[int],
                  lengths: Mapping[str, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (inputs, targets) int32 ids with EOS, no longer than `lengths`, of one tokenized document: a function of
    (ids, key)."""


TASKS: dict[str, TokenTask] = {}


def register(task: TokenTask) -> str:
  """Adds (or replaces) `task` in the catalog."""
  TASKS[task.name] = task
  return task.name
