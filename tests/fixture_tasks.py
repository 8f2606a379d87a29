"""Small deterministic SeqIO tasks for trainer / input-pipeline tests (no data dir needed).

`flan_jax_test_copy`: inputs are random token ids, targets a fixed function of them (reverse, mod 120, + 2), so
a model can learn it and a falling loss is meaningful. `flan_jax_test_copy_heldout` draws other rows.
"""
from __future__ import annotations

import numpy as np
import seqio
import tensorflow as tf

VOCAB_SIZE = 128
TRAIN_TASK = "flan_jax_test_copy"
EVAL_TASK = "flan_jax_test_copy_heldout"


def _examples(seed: int, n: int) -> tuple[list[list[int]], list[list[int]]]:
  rng = np.random.default_rng(seed)
  inputs, targets = [], []
  for _ in range(n):
    length = int(rng.integers(3, 10))
    x = rng.integers(2, VOCAB_SIZE - 8, length)
    inputs.append(x.tolist())
    targets.append(((x[::-1][: max(2, length // 2)] % 120) + 2).tolist())
  return inputs, targets


def _source(seed: int, n: int) -> seqio.FunctionDataSource:
  inputs, targets = _examples(seed, n)

  def fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices({
        "inputs": tf.ragged.constant(inputs, dtype=tf.int32),
        "targets": tf.ragged.constant(targets, dtype=tf.int32),
    }).map(lambda ex: {k: v for k, v in ex.items()})

  return seqio.FunctionDataSource(fn, splits=("train", "validation"), num_input_examples={"train": n,
                                                                                          "validation": n})


def _features() -> dict[str, seqio.Feature]:
  vocab = seqio.PassThroughVocabulary(size=VOCAB_SIZE, eos_id=1)
  return {"inputs": seqio.Feature(vocab, add_eos=True), "targets": seqio.Feature(vocab, add_eos=True)}


def _register(name: str, seed: int, n: int) -> None:
  if name in seqio.TaskRegistry.names():
    return
  seqio.TaskRegistry.add(
      name, source=_source(seed, n), output_features=_features(),
      preprocessors=[lambda ds: ds.map(lambda ex: {k: v.to_tensor() if isinstance(v, tf.RaggedTensor) else v
                                                   for k, v in ex.items()}),
                     seqio.preprocessors.append_eos_after_trim])


_register(TRAIN_TASK, seed=0, n=2000)
_register(EVAL_TASK, seed=1, n=64)
