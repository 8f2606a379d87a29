"""The numpy batches equal what the seqio feature converters make of the same examples, for every model type and
packer; blocks and batches are cut where they should be."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from flan_jax.data import feature_converters, host_batches

LENGTHS = {"inputs": 24, "targets": 10}


def _examples(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    li, lt = int(rng.integers(1, LENGTHS["inputs"] + 1)), int(rng.integers(1, LENGTHS["targets"] + 1))
    # Skewed lengths (mostly short inputs, some near full) so packers differ from each other.
    if rng.random() < 0.7:
      li = int(rng.integers(1, 6))
    out.append({"inputs": np.append(rng.integers(2, 90, li - 1), 1).astype(np.int32),
                "targets": np.append(rng.integers(2, 90, lt - 1), 1).astype(np.int32)})
  return out


def _chunks(examples, size: int):
  for start in range(0, len(examples), size):
    part = examples[start:start + size]
    yield {k: (np.concatenate([e[k] for e in part]), np.array([len(e[k]) for e in part], np.int64))
           for k in ("inputs", "targets")}


def _seqio_rows(converter, examples) -> list[dict[str, np.ndarray]]:
  ds = tf.data.Dataset.from_generator(
      lambda: iter(examples), output_signature={k: tf.TensorSpec([None], tf.int32) for k in ("inputs", "targets")})
  return list(converter(ds, LENGTHS).as_numpy_iterator())


@pytest.mark.parametrize("model", ["encoder_decoder", "prefix_lm"])
@pytest.mark.parametrize("pack", [False, "greedy", "ffd"])
def test_rows_equal_the_seqio_converter(model, pack):
  examples = _examples(150)
  converter = feature_converters.get_feature_converter(model, pack=pack, block_size=64)
  want = _seqio_rows(converter, examples)
  config = host_batches.config_from_converter(converter, LENGTHS, batch_size=1)
  got = [{k: v[0] for k, v in b.items()} for b in host_batches.batches(_chunks(examples, 37), config)]
  assert len(got) == len(want)
  assert set(got[0]) == set(want[0]) == set(host_batches.feature_lengths(config))
  for i, (g, w) in enumerate(zip(got, want)):
    for k in w:
      np.testing.assert_array_equal(g[k], w[k], err_msg=f"row {i} feature {k}")
      assert g[k].shape == (host_batches.feature_lengths(config)[k],)
  if pack:
    assert len(got) < len(examples)


def test_blocks_are_exact_slices_of_the_stream():
  examples = _examples(100)
  cut = list(host_batches.blocks(_chunks(examples, 7), 32))
  assert [len(b["inputs"][1]) for b in cut] == [32, 32, 32, 4]
  flat = np.concatenate([b["targets"][0] for b in cut])
  np.testing.assert_array_equal(flat, np.concatenate([e["targets"] for e in examples]))


def test_batches_drop_only_the_last_partial_batch():
  examples = _examples(50)
  config = host_batches.BatchConfig("encoder_decoder", False, LENGTHS, batch_size=8, block_size=16)
  got = list(host_batches.batches(_chunks(examples, 9), config))
  assert len(got) == 50 // 8
  tokens = np.concatenate([b["encoder_input_tokens"] for b in got])
  for row, ex in zip(tokens, examples):
    np.testing.assert_array_equal(row[:len(ex["inputs"])], ex["inputs"])


def test_converter_errors_name_what_is_wrong():
  with pytest.raises(ValueError, match="TASK_FEATURE_LENGTHS"):
    host_batches.config_from_converter(feature_converters.get_feature_converter("encoder_decoder"),
                                       {"inputs": 8}, 2)
  import seqio
  with pytest.raises(ValueError, match="LMFeatureConverter is not supported"):
    host_batches.config_from_converter(seqio.LMFeatureConverter(), LENGTHS, 2)
