"""UL2's denoisers as a seqio preprocessor, and a text source as a seqio DataSource: UL2R for seqio / T5X users.

`denoise` works in any seqio Task whose documents arrive tokenized in one feature (after `seqio.preprocessors
.tokenize`), and uses the Task's own vocabulary for paradigm tokens and sentinels (`<extra_id_0>` = the last id, as
T5). It runs the same numpy code as the training stream (`denoisers.denoise_document`) once per document, seeded by
seqio's per-example map seeds (deterministic for a `get_dataset(seed=...)`), and splits each document's examples
into elements. EOS is left to `append_eos_after_trim`, as in T5's span-corruption tasks; segments leave room for it.

Examples here equal the training stream's in distribution, not one by one: the two seed documents differently.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import seqio
import tensorflow as tf

from flan_jax.data.files import text_sources
from flan_jax.data.rendering import denoisers

# Segments are sized for the lengths seqio asks for; where it asks for none (e.g. `flan-jax data show`), UL2's.
UNSIZED_LENGTHS = {"inputs": 512, "targets": 512}


def _vocab(vocabulary: seqio.Vocabulary) -> denoisers.Vocab:
  extra = getattr(vocabulary, "extra_ids", 0)
  if not extra:
    raise ValueError(f"denoise: the targets vocabulary {type(vocabulary).__name__} has no extra ids for sentinels")
  return denoisers.Vocab(vocabulary.vocab_size - 1, extra, lambda text: list(vocabulary.encode(text)))


def denoise(dataset: tf.data.Dataset, sequence_length: Mapping[str, int] | None,
            output_features: Mapping[str, seqio.Feature],
            mixture: denoisers.DenoiserMixture = denoisers.DenoiserMixture(),
            feature: str = "targets") -> tf.data.Dataset:
  """A seqio preprocessor: each document's token ids in `feature` -> examples {inputs, targets} (int32, no EOS)."""
  plan = denoisers.make_plan(mixture, sequence_length or UNSIZED_LENGTHS,
                             _vocab(output_features["targets"].vocabulary))

  def run(tokens: np.ndarray, seed: np.ndarray):
    rng = np.random.default_rng([int(s) % (1 << 64) for s in seed])
    pairs = [(i, t) for _, i, t in denoisers.denoise_document(tokens, plan, rng)]
    out = []
    for part in range(2):
      seqs = [p[part] for p in pairs]
      out += [np.concatenate(seqs).astype(np.int32) if seqs else np.zeros([0], np.int32),
              np.array([len(s) for s in seqs], np.int64)]
    return tuple(out)

  @seqio.map_over_dataset(num_seeds=1)
  def per_document(example, seed):
    values = tf.numpy_function(run, [tf.cast(example[feature], tf.int32), seed],
                               [tf.int32, tf.int64, tf.int32, tf.int64], stateful=False)
    for v in values:
      v.set_shape([None])
    return {key: tf.RaggedTensor.from_row_lengths(values[2 * i], values[2 * i + 1])
            for i, key in enumerate(("inputs", "targets"))}

  return per_document(dataset).unbatch()


class TextDataSource(seqio.DataSource):
  """A `text_sources` source as a seqio DataSource of {'text': document}; shard k of n reads documents k, k + n,
  ... (seqio shuffles the examples after preprocessing)."""

  def __init__(self, source: text_sources.TextSource, splits: tuple[str, ...] = ("train",)):
    self.text_source = source
    super().__init__(splits=splits)

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str) -> list[str]:
    return [split]

  def num_input_examples(self, split: str) -> int | None:
    return None  # unknown without a full read; None also keeps seqio from caching the task in memory

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                  shard_info: seqio.ShardInfo | None = None, *, sequence_length=None, use_cached: bool = False,
                  num_epochs: int | None = 1) -> tf.data.Dataset:
    del shuffle, seed, sequence_length, use_cached, num_epochs
    self.text_source.check_available()  # fail here, saying how to get the data, not inside TF
    index, count = (shard_info.index, shard_info.num_shards) if shard_info else (0, 1)
    source = self.text_source.resolve()

    def documents():
      for j, text in enumerate(source.documents(split)):
        if j % count == index:
          yield {"text": text}

    return tf.data.Dataset.from_generator(documents, output_signature={"text": tf.TensorSpec([], tf.string)})
