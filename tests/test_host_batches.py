"""The numpy batches equal what the seqio feature converters make of the same examples, for every model type and
packer, through the training input's blocks and batches; blocks and batches are cut where they should be."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from flan_jax.data.pipeline import blocks, host_batches, host_input, schedule, sources
from flan_jax.data.seqio_adapter import feature_converters

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


def _spec(examples, config: host_batches.BatchConfig) -> blocks.InputSpec:
  """An input reading these examples once, in order (as the pipeline holds a seqio task's examples)."""
  ragged = [(np.concatenate([e[k] for e in examples]), np.array([len(e[k]) for e in examples], np.int64))
            for k in ("inputs", "targets")]
  task = sources.SeqioExamples("examples", *ragged)
  order = schedule.Schedule(("examples",), (len(examples),), seed=0, num_epochs=1)
  return blocks.InputSpec({"examples": task}, order, config, seed=0, shuffle=False, split="train", data_dir="",
                          tfds_data_dir="")


def _batches(examples, config: host_batches.BatchConfig) -> list[dict[str, np.ndarray]]:
  return list(host_input.HostBatches(_spec(examples, config), {}, workers=0))


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
  got = [{k: v[0] for k, v in b.items()} for b in _batches(examples, config)]
  assert len(got) == len(want)
  assert set(got[0]) == set(want[0]) == set(host_batches.feature_lengths(config))
  for i, (g, w) in enumerate(zip(got, want)):
    for k in w:
      np.testing.assert_array_equal(g[k], w[k], err_msg=f"row {i} feature {k}")
      assert g[k].shape == (host_batches.feature_lengths(config)[k],)
  if pack:
    assert len(got) < len(examples)


def test_blocks_are_exact_slices_of_the_stream_computed_in_any_order():
  examples = _examples(100)
  config = host_batches.BatchConfig("encoder_decoder", False, LENGTHS, batch_size=1, block_size=32)
  packed = blocks.PackedBlocks(_spec(examples, config))
  last_first = {b: packed[b] for b in reversed(range(len(packed)))}
  cut = [last_first[b] for b in range(len(packed))]
  assert [len(b["decoder_target_tokens"]) for b in cut] == [32, 32, 32, 4]
  rows = np.concatenate([b["decoder_target_tokens"] for b in cut])
  for row, ex in zip(rows, examples, strict=True):
    np.testing.assert_array_equal(row[row != 0], ex["targets"])


def test_batches_drop_only_the_last_partial_batch():
  examples = _examples(50)
  config = host_batches.BatchConfig("encoder_decoder", False, LENGTHS, batch_size=8, block_size=16)
  it = host_input.HostBatches(_spec(examples, config), {}, workers=0)
  got = list(it)
  assert len(got) == 50 // 8 and next(it, None) is None
  resumed = host_input.HostBatches(_spec(examples, config), {}, workers=0)
  resumed.restore(it.state())
  assert next(resumed, None) is None  # the 2 rows left over make no batch, however the input is resumed
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


@pytest.mark.parametrize("model", ["encoder_decoder", "prefix_lm"])
@pytest.mark.parametrize("pack", [False, "greedy", "ffd"])
def test_a_plain_layout_is_the_converter_it_stands_for(model, pack):
  converter = feature_converters.get_feature_converter(model, pack=pack, block_size=64)
  assert host_batches.config_from_converter(host_batches.InputLayout(model, pack, 64), LENGTHS, 2) == \
      host_batches.config_from_converter(converter, LENGTHS, 2)
  assert host_batches.InputLayout(model, True).pack == "greedy"  # seqio's converters pack greedily
  with pytest.raises(ValueError, match="unknown model_type 'lm'"):
    host_batches.InputLayout("lm", pack)
