"""Random access to every kind of task the training input mixes: draw g of a task is a pure function of g.

A task's draws run epoch after epoch over `size()` draws an epoch:
- a Flan task (`registry.TASKS`): draw g is example g of its stream (`flan_render.FlanExamples`: template by source
  position, permuted each epoch, few-shot exemplars keyed by position), as text;
- a token task (`token_tasks.TASKS`, UL2R): draw g is a document (permuted each epoch); it becomes one or more
  examples once tokenized, denoised with a Generator keyed by (seed, task, epoch, document);
- any other task is a seqio task (a T5X user's MIXTURE_OR_TASK_MODULE): its split is read once through seqio, with
  its own preprocessing and EOS, when the input is built (in the trainer's process, which then holds seqio), and
  travels to the workers as token ids; its draws are those examples, permuted each epoch.

Tasks travel to grain's worker processes by pickle: Flan tasks by reference to the modules that registered them
(imported there with $FLAN_JAX_SEQIO=0: no seqio, no TensorFlow), token tasks with the names they read resolved.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Mapping, Union

import numpy as np

from flan_jax.data.catalog import registry, token_tasks
from flan_jax.data.rendering import flan_render

Ragged = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Text:
  """A rendered Flan example: EOS is appended after trimming, as seqio's `append_eos_after_trim`."""
  inputs: str
  targets: str


@dataclasses.dataclass(frozen=True)
class Document:
  """A token task's document: `task.examples_of(tokens, key, lengths)` makes its examples."""
  task: token_tasks.TokenTask
  text: str
  key: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Ids:
  """A seqio task's example, already trimmed and with its EOS."""
  inputs: np.ndarray
  targets: np.ndarray


Draw = Union[Text, Document, Ids, None]  # None: a few-shot query FLAN drops


class FlanSource:
  def __init__(self, task: registry.FlanTask, seed: int, shuffle: bool):
    self._examples = flan_render.FlanExamples.of(task, seed, shuffle)

  def size(self) -> int:
    return self._examples.num_examples()

  def draw(self, g: int) -> Draw:
    ex = self._examples.example(g)
    return None if ex is None else Text(ex["inputs"], ex["targets"])


class TokenSource:
  def __init__(self, task: token_tasks.TokenTask, seed: int, shuffle: bool, split: str):
    self._task, self._seed = task, seed
    self._documents = task.documents(split)
    if not self._documents:
      raise ValueError(f"task {task.name} has no documents in split {split!r}")
    self._position = flan_render.EpochOrder(task.name, seed, shuffle, len(self._documents))

  def size(self) -> int:
    return len(self._documents)

  def draw(self, g: int) -> Draw:
    epoch, i = divmod(g, len(self._documents))
    d = self._position(epoch, i)
    key = (self._seed % (1 << 32), zlib.crc32(self._task.name.encode()), epoch, d)
    return Document(self._task, self._documents[d], key)


@dataclasses.dataclass(frozen=True)
class SeqioExamples:
  """A seqio task's examples of one split as ragged token ids (values, lengths) per feature."""
  name: str
  inputs: Ragged
  targets: Ragged

  @classmethod
  def read(cls, name: str, split: str, lengths: Mapping[str, int], use_cached: bool = False) -> SeqioExamples:
    import seqio  # pylint: disable=import-outside-toplevel - only a seqio task needs it
    task = seqio.get_mixture_or_task(name)
    missing = [k for k in ("inputs", "targets") if k not in task.output_features]
    if missing:
      raise ValueError(f"task {name} has no {missing} feature(s): the training input needs inputs and targets")
    ds = task.get_dataset(sequence_length=dict(lengths), split=split, shuffle=False, num_epochs=1,
                          use_cached=use_cached)
    columns: dict[str, list[np.ndarray]] = {"inputs": [], "targets": []}
    for ex in ds.as_numpy_iterator():
      for k, seqs in columns.items():
        seqs.append(np.asarray(ex[k], np.int32)[:lengths[k]])
    if not columns["inputs"]:
      raise ValueError(f"task {name} has no examples in split {split!r}")
    ragged = {k: (np.concatenate(v), np.array([len(s) for s in v], np.int64)) for k, v in columns.items()}
    return cls(name, ragged["inputs"], ragged["targets"])


class SeqioSource:
  def __init__(self, examples: SeqioExamples, seed: int, shuffle: bool):
    self._examples = examples
    self._starts = {k: np.concatenate([[0], np.cumsum(r[1])]) for k, r in
                    (("inputs", examples.inputs), ("targets", examples.targets))}
    self._position = flan_render.EpochOrder(examples.name, seed, shuffle, len(examples.inputs[1]))

  def size(self) -> int:
    return len(self._examples.inputs[1])

  def draw(self, g: int) -> Draw:
    epoch, i = divmod(g, self.size())
    p = self._position(epoch, i)
    x, y = (values[s[p]:s[p + 1]] for values, s in ((self._examples.inputs[0], self._starts["inputs"]),
                                                    (self._examples.targets[0], self._starts["targets"])))
    return Ids(x, y)


TaskSpec = Union[registry.FlanTask, token_tasks.TokenTask, SeqioExamples]


def for_workers(name: str, split: str, lengths: Mapping[str, int], use_cached: bool = False) -> TaskSpec:
  """What a worker needs to read task `name`: checked for availability here, so a missing file fails at build."""
  if name in registry.TASKS:
    task = registry.TASKS[name]
    if split != "train":
      raise ValueError(f"task {name} has no split {split!r}; it has ['train']")
    task.dataset.check_available()
    # A task's metrics and postprocessor are not needed to render it (and need not pickle).
    return dataclasses.replace(task, postprocess_fn=None, metric_fns=())
  if name in token_tasks.TASKS:
    token_tasks.TASKS[name].check_available()
    return token_tasks.TASKS[name].for_child()
  return SeqioExamples.read(name, split, lengths, use_cached)


def open_source(spec: TaskSpec, seed: int, shuffle: bool, split: str) -> FlanSource | TokenSource | SeqioSource:
  if isinstance(spec, registry.FlanTask):
    return FlanSource(spec, seed, shuffle)
  if isinstance(spec, SeqioExamples):
    return SeqioSource(spec, seed, shuffle)
  return TokenSource(spec, seed, shuffle, split)
