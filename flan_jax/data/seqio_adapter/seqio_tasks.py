"""Flan tasks and mixtures as seqio Tasks and Mixtures: the adapter from `registry.TASKS` / `mixing.MIXTURES`.

A Flan task's seqio source renders in Python (`flan_render.render`), tokenizes what it renders in batches (one
SentencePiece call per batch, ids equal to seqio's tokenize) and hands whole batches to
`tf.data.Dataset.from_generator`, split back into examples in TF, so neither the per-example Python->TF conversion
nor seqio's per-example tokenize map is paid. The task then only appends EOS after trimming (`TOKENIZE`).

This is the one module of the data layer that registers with seqio (Flan tasks and mixtures, and UL2R tasks through
`add_ul2r_task`). It is a mirror of the catalog: importing it registers what the catalog already holds and
subscribes to `registry.MIRRORS` for everything added later. The catalog never imports it; `import tasks` does,
unless $FLAN_JAX_SEQIO is 0.
"""
from __future__ import annotations

import functools
import itertools
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

from flan_jax.data.catalog import mixing, registry
from flan_jax.data.rendering import flan_render, tokenizer
from flan_jax.data.seqio_adapter import seqio_denoisers, vocab

if TYPE_CHECKING:
  from flan_jax.data.catalog import ul2r

ENCODE_BATCH = 128


def encoded_batches(examples: Iterator[dict[str, Any]],
                    batch_size: int = ENCODE_BATCH) -> Iterator[dict[str, np.ndarray]]:
  """Rendered examples, `batch_size` at a time, tokenized with one SentencePiece call per batch.

  `inputs` / `targets` are the ids (no EOS yet: seqio's append_eos_after_trim adds it after trimming,
  as after its own tokenize) as flat values + row lengths; the texts stay as `*_pretokenized`.
  """
  sp = tokenizer.processor()
  while True:
    chunk = list(itertools.islice(examples, batch_size))
    if not chunk:
      return
    texts = [ex["inputs"] for ex in chunk] + [ex["targets"] for ex in chunk]
    ids = sp.encode(texts)
    out = {"_template_idx": np.array([ex["_template_idx"] for ex in chunk], np.int32)}
    for i, key in enumerate(("inputs", "targets")):
      part = ids[i * len(chunk):(i + 1) * len(chunk)]
      out[f"{key}_pretokenized"] = np.array(texts[i * len(chunk):(i + 1) * len(chunk)], dtype=object)
      out[f"{key}_lengths"] = np.fromiter(map(len, part), np.int64, len(part))
      out[f"{key}_values"] = np.fromiter(itertools.chain.from_iterable(part), np.int32)
    yield out


def output_signature() -> dict[str, tf.TensorSpec]:
  """The per-batch signature of `encoded_batches`."""
  sig = {f"{k}_{part}": tf.TensorSpec(shape=(None,), dtype=dtype)
         for k in ("inputs", "targets")
         for part, dtype in (("values", tf.int32), ("lengths", tf.int64), ("pretokenized", tf.string))}
  sig["_template_idx"] = tf.TensorSpec(shape=(None,), dtype=tf.int32)
  return sig


def _examples_of_batch(meta: Mapping[str, str]):
  def fn(batch):
    n = tf.shape(batch["_template_idx"])[0]
    out = {k: tf.RaggedTensor.from_row_lengths(batch[f"{k}_values"], batch[f"{k}_lengths"])
           for k in ("inputs", "targets")}
    out.update({f"{k}_pretokenized": batch[f"{k}_pretokenized"] for k in ("inputs", "targets")})
    out["_template_idx"] = batch["_template_idx"]
    out.update({k: tf.fill([n], tf.constant(v, tf.string)) for k, v in meta.items()})
    return out
  return fn


class FlanDataSource(seqio.DataSource):
  """A seqio DataSource rendering one Flan task in Python; shards before rendering."""

  def __init__(self, flan_task: registry.FlanTask):
    self.flan_task = flan_task
    # The source shuffles itself (a permutation of the task's rows per epoch), so a task registered with
    # shuffle_buffer_size=None holds no buffer of rendered, tokenized examples: with seqio's default
    # per-task buffer of 1,000 such examples, memory and start-up work grow with the mixture.
    super().__init__(splits=("train",), performs_internal_shuffling=True)

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str) -> Sequence[str]:
    return [split]

  def num_input_examples(self, split: str) -> int | None:
    # None on purpose: seqio would otherwise cache any task under 10,000 examples in memory,
    # and we stream. Use `num_examples()` for counts.
    return None

  def num_examples(self) -> int:
    return self.flan_task.num_examples()

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                  use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs
    task = self.flan_task
    if split not in self.splits:
      raise ValueError(f"task {task.name} has no split {split!r}; it has {list(self.splits)}")
    task.dataset.check_available()  # fail here, with the download command, not inside TF
    index, count = (shard_info.index, shard_info.num_shards) if shard_info else (0, 1)
    seed = 0 if seed is None else int(seed)
    epochs = itertools.count()  # seqio repeats the dataset by calling the generator again

    def batches():
      return encoded_batches(flan_render.render(task.dataset, task.variant, task.name, seed, index, count,
                                                shuffle=shuffle, epoch=next(epochs)))

    # Whole batches cross from Python into TF (one conversion per batch, not per example), then
    # are split back into examples in TF.
    ds = tf.data.Dataset.from_generator(batches, output_signature=output_signature())
    meta = {"_task_name": task.dataset.task_name, "_task_source": task.dataset.task_source,
            "_template_type": task.variant.template_type}
    return ds.map(_examples_of_batch(meta)).unbatch()


# The source already yields token ids (tokenized in Python, in batches) and the pre-tokenized text, so
# seqio's per-example tokenize map is not needed: only EOS is appended, after trimming, as seqio does.
TOKENIZE = (seqio.CacheDatasetPlaceholder(), seqio.preprocessors.append_eos_after_trim)


def add_task(flan_task: registry.FlanTask) -> None:
  """Registers (or re-registers) one Flan task with seqio."""
  if flan_task.name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(flan_task.name)
  seqio.TaskRegistry.add(flan_task.name, source=FlanDataSource(flan_task), preprocessors=list(TOKENIZE),
                         output_features=vocab.output_features(), postprocess_fn=flan_task.postprocess_fn,
                         metric_fns=list(flan_task.metric_fns), shuffle_buffer_size=None)


def add_mixture(name: str, parts: Sequence[tuple[str, float | Callable[[seqio.Task], float]]]) -> None:
  """Registers (or re-registers) a mixture of (task or mixture name, rate)."""
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  seqio.MixtureRegistry.add(name, list(parts))


def add_ul2r_task(task: ul2r.Ul2rTask) -> None:
  """Registers (or re-registers) a UL2R task with seqio: its documents, tokenized, denoised (`seqio_denoisers`), then
  EOS appended after trimming, as T5's span-corruption tasks."""
  if task.name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(task.name)
  seqio.TaskRegistry.add(
      task.name, source=seqio_denoisers.TextDataSource(task.source),
      preprocessors=[functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
                     seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                     functools.partial(seqio_denoisers.denoise, mixture=task.denoisers),
                     seqio.preprocessors.append_eos_after_trim],
      output_features=vocab.output_features())


class _SeqioMirror:
  """The seqio registries as a mirror of the catalog (`registry.MIRRORS`)."""
  add_task = staticmethod(add_task)
  add_mixture = staticmethod(add_mixture)
  add_ul2r_task = staticmethod(add_ul2r_task)


def _mirror_the_catalog() -> None:
  from flan_jax.data.catalog import token_tasks  # pylint: disable=import-outside-toplevel
  for flan_task in registry.TASKS.values():
    add_task(flan_task)
  for task in token_tasks.TASKS.values():
    add_ul2r_task(task)
  for name, parts in mixing.MIXTURES.items():  # in the order added, so sub-mixtures come first
    add_mixture(name, parts)
  registry.MIRRORS.append(_SeqioMirror)


_mirror_the_catalog()
