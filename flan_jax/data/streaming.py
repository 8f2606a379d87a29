"""A mixture's examples for training, streamed in Python: tasks sampled by rate -> token ids, EOS after trimming.

Why not `seqio.get_dataset` of the mixture: it builds one tf.data pipeline per task up front (~0.1 s and its own
buffers each, minutes and GBs for the ~18,000 tasks of the Flan 2022 collection) and then pays tf.data's per-element
cost on every example. Here a task is opened at its first draw, Flan tasks are rendered by `registry.render` (the
same Python code their seqio source runs, so examples are the same) and a draw's worth of examples is tokenized by
one SentencePiece call. Token tasks (`token_tasks.TASKS`: UL2R's denoised text) yield ids themselves. Other seqio
tasks are read through their own `task.get_dataset`, so any registered task or mixture works. A mixture of Flan and
token tasks needs neither seqio nor TensorFlow here: with $FLAN_JAX_SEQIO=0 a process renders the Flan collection
without them (~860 MB less resident memory).

Semantics follow seqio's mixture: each draw picks a task with probability proportional to its rate; with
`num_epochs` a task that runs out leaves the draw (rates renormalised over the others) and the stream ends when all
have; without, a task starts its next epoch (rows reshuffled, as `render(epoch=...)` does). Shard k of n reads rows
k, k + n, ... of every task (`render`'s sharding) and draws with its own seed. Everything is a function of
(mixture, lengths, seed, shard, shuffle), so a stream rebuilt from the same config repeats exactly.

Output: chunks of examples as ragged columns, `{"inputs": (values, lengths), "targets": (values, lengths)}` (int32
values, int64 lengths) — what `host_batches` packs without a per-example Python object.
"""
from __future__ import annotations

import dataclasses
import itertools
import sys
from typing import Iterator, Mapping

import numpy as np

from flan_jax.data import mixing, registry, token_tasks, tokenizer

FEATURES = ("inputs", "targets")
DRAWS_PER_CHUNK = 256  # examples tokenized per SentencePiece call; also the granularity of task sampling
Ragged = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class StreamConfig:
  """What decides the stream. `lengths`: per-feature length; ids are trimmed to it (EOS kept as seqio keeps it)."""
  lengths: Mapping[str, int]
  seed: int = 0
  shuffle: bool = True
  num_epochs: int | None = None
  shard_index: int = 0
  num_shards: int = 1
  split: str = "train"
  use_cached: bool = False


class _FlanTask:
  """One Flan task's rendered (inputs, targets) strings, epoch after epoch."""

  eos = {"inputs": True, "targets": True}  # as every Flan task's output features (`vocab.output_features`)

  def __init__(self, task: registry.FlanTask, config: StreamConfig, shuffle_rows: int):
    if config.split != "train":
      raise ValueError(f"task {task.name} has no split {config.split!r}; it has ['train']")
    task.dataset.check_available()  # fails here, naming the download command
    self.task = task
    self.config = config
    self.shuffle_rows = shuffle_rows if config.shuffle else 0

  def epoch(self, epoch: int) -> Iterator[tuple[str, str]]:
    c = self.config
    for ex in registry.render(self.task.dataset, self.task.variant, self.task.name, c.seed, c.shard_index,
                              c.num_shards, shuffle_buffer=self.shuffle_rows, epoch=epoch):
      yield ex["inputs"], ex["targets"]


class _TokenTask:
  """A token task's (inputs, targets) ids, epoch after epoch."""

  def __init__(self, task: token_tasks.TokenTask, config: StreamConfig, shuffle_rows: int):
    task.check_available()  # fails here, saying how to get the data
    self.task = task
    self.config = config
    self.shuffle_rows = shuffle_rows if config.shuffle else 0

  def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    return self.task.examples(self.config, self.shuffle_rows, epoch)


class _SeqioTask:
  """Any other seqio task: its own pipeline (preprocessors, tokenization, EOS), read as numpy."""

  def __init__(self, task, config: StreamConfig):
    missing = [k for k in FEATURES if k not in task.output_features]
    if missing:
      raise ValueError(f"task {task.name} has no {missing} feature(s): the training input needs inputs and targets")
    self.task = task
    self.config = config

  def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    import seqio  # pylint: disable=import-outside-toplevel
    c = self.config
    ds = self.task.get_dataset(sequence_length=dict(c.lengths), split=c.split, shuffle=c.shuffle,
                               seed=c.seed + epoch, shard_info=seqio.ShardInfo(c.shard_index, c.num_shards),
                               num_epochs=1, use_cached=c.use_cached)
    for ex in ds.as_numpy_iterator():
      yield ex["inputs"], ex["targets"]


class _Draw:
  """A task's examples, opened at its first draw; `next()` is None once its epochs are spent, or when an epoch
  has no example (a task with no row on this shard): that task leaves the draw with a warning, not a spin."""

  def __init__(self, name: str, reader: _FlanTask | _TokenTask | _SeqioTask, config: StreamConfig):
    self.name = name
    self.reader = reader
    self._config = config
    self._epoch = 0
    self._yielded = 0
    self._it = reader.epoch(0)

  def next(self):
    while True:
      item = next(self._it, None)
      if item is not None:
        self._yielded += 1
        return item
      if not self._yielded:
        c = self._config
        print(f"warning: task {self.name} has no examples in epoch {self._epoch} on shard {c.shard_index} of "
              f"{c.num_shards}; it leaves the mixture's draw", file=sys.stderr, flush=True)
        return None
      self._epoch += 1
      self._yielded = 0
      if self._config.num_epochs is not None and self._epoch >= self._config.num_epochs:
        return None
      self._it = self.reader.epoch(self._epoch)


def mixture_examples(name: str, config: StreamConfig) -> Iterator[dict[str, Ragged]]:
  """Chunks of up to DRAWS_PER_CHUNK examples of the task or mixture `name`, drawn by rate (see module doc)."""
  return rated_examples(mixing.rates(name), config, what=f"mixture {name}")


def rated_examples(rates: Mapping[str, float], config: StreamConfig,
                   tasks: Mapping[str, registry.FlanTask | token_tasks.TokenTask] | None = None,
                   what: str = "mixture") -> Iterator[dict[str, Ragged]]:
  """`mixture_examples` of tasks at these effective rates. `tasks` (default: `registry.TASKS` and
  `token_tasks.TASKS`) holds the Flan tasks, rendered here, and the token tasks; any other is read through seqio."""
  tasks = {**token_tasks.TASKS, **registry.TASKS} if tasks is None else tasks
  names = sorted(rates)
  weights = np.array([rates[t] for t in names], np.float64)
  if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
    raise ValueError(f"{what}: rates must be finite, non-negative and not all zero; got "
                     f"{dict(zip(names, weights.tolist()))}")
  plan = registry.shuffle_plan(rates)
  draws: dict[int, _Draw] = {}
  live = weights > 0
  rng = np.random.default_rng([config.seed, config.shard_index, config.num_shards])
  sp = tokenizer.processor()

  def open_task(i: int) -> _Draw:
    task = tasks.get(names[i])
    if isinstance(task, registry.FlanTask):
      reader = _FlanTask(task, config, plan[names[i]])
    elif task is not None:
      reader = _TokenTask(task, config, plan[names[i]])
    else:
      import seqio  # pylint: disable=import-outside-toplevel
      reader = _SeqioTask(seqio.TaskRegistry.get(names[i]), config)
    return _Draw(names[i], reader, config)

  while live.any():
    p = np.where(live, weights, 0.0)
    picks = rng.choice(len(names), size=DRAWS_PER_CHUNK, p=p / p.sum())
    items: list[tuple[_Draw, tuple]] = []
    for i in picks.tolist():
      if not live[i]:
        continue  # ran out earlier in this chunk; the next chunk redraws without it
      if i not in draws:
        draws[i] = open_task(i)
      item = draws[i].next()
      if item is None:
        live[i] = False
        del draws[i]
        continue
      items.append((draws[i], item))
    if items:
      yield _chunk(sp, items, config.lengths)


def _chunk(sp, items: list[tuple[_Draw, tuple]], lengths: Mapping[str, int]) -> dict[str, Ragged]:
  """Tokenizes the chunk's rendered examples in one call, trims every example to `lengths` (Flan tasks: EOS after
  trimming, as seqio's `append_eos_after_trim`; other tasks arrive tokenized with their EOS), keeps draw order and
  lays the chunk out as ragged columns."""
  texts = [item for _, item in items if isinstance(item[0], str)]
  encoded = sp.encode([t[0] for t in texts] + [t[1] for t in texts]) if texts else []
  tokenized_inputs, tokenized_targets = iter(encoded[:len(texts)]), iter(encoded[len(texts):])
  by_feature: dict[str, list[list[int]]] = {k: [] for k in FEATURES}
  for draw, item in items:
    if isinstance(item[0], str):
      eos = draw.reader.eos
      for key, seq in (("inputs", next(tokenized_inputs)), ("targets", next(tokenized_targets))):
        length = lengths[key]
        by_feature[key].append(seq[:length - 1] + [tokenizer.EOS_ID] if eos[key] else seq[:length])
    else:
      for key, seq in zip(FEATURES, item):
        by_feature[key].append(np.asarray(seq, np.int32)[:lengths[key]].tolist())
  out = {}
  for key, seqs in by_feature.items():
    lens = np.fromiter(map(len, seqs), np.int64, len(seqs))
    out[key] = (np.fromiter(itertools.chain.from_iterable(seqs), np.int32, int(lens.sum())), lens)
  return out
