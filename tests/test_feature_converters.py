"""Our converters against seqio's own: same features, dtypes, shapes and per-segment content, for every packer."""
from __future__ import annotations

import collections

import numpy as np
import pytest
import seqio
import tensorflow as tf

from flan_jax.data.seqio_adapter import feature_converters as fc
from tests.batch_checks import assert_batches_equal

LENGTHS = {"inputs": 40, "targets": 12}


def _examples(n: int = 120, seed: int = 0) -> list[dict[str, np.ndarray]]:
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    li, lt = int(rng.integers(1, 16)), int(rng.integers(1, 9))
    inputs = np.append(rng.integers(2, 500, li - 1), 1).astype(np.int32)  # EOS-terminated, as Flan tasks are
    targets = np.append(rng.integers(2, 500, lt - 1), 1).astype(np.int32)
    out.append({"inputs": inputs, "targets": targets})
  return out


def _dataset(examples) -> tf.data.Dataset:
  """An in-graph dataset (no Python generator), so tf.data can checkpoint its iterators."""
  cols = {}
  for k in ("inputs", "targets"):
    lens = [len(e[k]) for e in examples]
    padded = np.zeros([len(examples), max(lens)], np.int32)
    for i, e in enumerate(examples):
      padded[i, :lens[i]] = e[k]
    cols[k] = (padded, np.array(lens, np.int32))
  ds = tf.data.Dataset.from_tensor_slices(cols)
  return ds.map(lambda ex: {k: ex[k][0][:ex[k][1]] for k in ex})


def _run(converter, examples, lengths=LENGTHS) -> list[dict[str, np.ndarray]]:
  return list(converter(_dataset(examples), lengths).as_numpy_iterator())


def _encdec_segments(rows) -> collections.Counter:
  """Each packed example as (encoder tokens, encoder positions, targets, decoder inputs, loss weights, positions)."""
  out = collections.Counter()
  for r in rows:
    for s in range(1, int(r["decoder_segment_ids"].max()) + 1):
      e, d = r["encoder_segment_ids"] == s, r["decoder_segment_ids"] == s
      out[tuple(tuple(x.tolist()) for x in (
          r["encoder_input_tokens"][e], r["encoder_positions"][e], r["decoder_target_tokens"][d],
          r["decoder_input_tokens"][d], r["decoder_loss_weights"][d], r["decoder_positions"][d]))] += 1
  return out


def _prefix_segments(rows) -> collections.Counter:
  out = collections.Counter()
  for r in rows:
    for s in range(1, int(r["decoder_segment_ids"].max()) + 1):
      m = r["decoder_segment_ids"] == s
      out[tuple(tuple(r[k][m].tolist()) for k in sorted(r) if k != "decoder_segment_ids")] += 1
  return out


def _specs(rows):
  return {k: (v.shape, v.dtype) for k, v in rows[0].items()}


@pytest.fixture(scope="module")
def examples():
  return _examples()


def test_encdec_ffd_matches_seqio_packed_features_and_segments(examples):
  ours = _run(fc.EncDecFeatureConverter(pack="ffd"), examples)
  theirs = _run(seqio.EncDecFeatureConverter(pack=True), examples)
  assert _specs(ours) == _specs(theirs)
  assert set(ours[0]) == {"encoder_input_tokens", "encoder_segment_ids", "encoder_positions", "decoder_target_tokens",
                          "decoder_input_tokens", "decoder_segment_ids", "decoder_positions", "decoder_loss_weights"}
  assert _encdec_segments(ours) == _encdec_segments(theirs)
  assert sum(_encdec_segments(ours).values()) == len(examples)
  assert len(ours) < len(theirs)
  for r in ours:
    # BOS 0 at every segment start of the decoder inputs.
    starts = (r["decoder_positions"] == 0) & (r["decoder_segment_ids"] > 0)
    assert np.all(r["decoder_input_tokens"][starts] == 0)


def test_encdec_greedy_and_unpacked_are_seqio_exactly(examples):
  assert fc.EncDecFeatureConverter(pack=True).packer == "greedy"
  for pack, seqio_pack in [("greedy", True), (False, False)]:
    ours = _run(fc.EncDecFeatureConverter(pack=pack), examples)
    theirs = _run(seqio.EncDecFeatureConverter(pack=seqio_pack), examples)
    assert_batches_equal(ours, theirs)


def test_prefix_lm_ffd_matches_seqio_segments(examples):
  ours = _run(fc.PrefixLMFeatureConverter(pack="ffd"), examples)
  theirs = _run(seqio.PrefixLMFeatureConverter(pack=True), examples)
  assert _specs(ours) == _specs(theirs)
  assert "decoder_causal_attention" in ours[0]
  assert _prefix_segments(ours) == _prefix_segments(theirs)
  assert len(ours) <= len(theirs)


def test_prefix_lm_causal_attention_marks_the_prefix_plus_one(examples):
  rows = _run(fc.PrefixLMFeatureConverter(pack=False), examples[:5])
  for ex, r in zip(examples[:5], rows):
    n_in, n_tgt = len(ex["inputs"]), len(ex["targets"])
    np.testing.assert_array_equal(r["decoder_causal_attention"][:n_in + 1], 1)
    assert r["decoder_causal_attention"][n_in + 1:].sum() == 0
    np.testing.assert_array_equal(r["decoder_loss_weights"][n_in:n_in + n_tgt], 1)
    assert r["decoder_loss_weights"].sum() == n_tgt
    np.testing.assert_array_equal(r["decoder_target_tokens"][:n_in + n_tgt], np.concatenate([ex["inputs"],
                                                                                             ex["targets"]]))


def test_get_dataset_with_ffd_converter_on_a_registered_task(examples):
  name = "test_feature_converters_in_memory"
  vocab = seqio.PassThroughVocabulary(size=512)
  seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(lambda split, shuffle_files, seed=None: _dataset(examples), splits=["train"]),
      output_features={"inputs": seqio.Feature(vocab, add_eos=False), "targets": seqio.Feature(vocab, add_eos=False)})
  try:
    ds = seqio.get_dataset(name, task_feature_lengths=LENGTHS, dataset_split="train", shuffle=False,
                           feature_converter=fc.EncDecFeatureConverter(pack="ffd"))
    rows = list(ds.as_numpy_iterator())
    assert sum(int(r["decoder_segment_ids"].max()) for r in rows) == len(examples)
  finally:
    seqio.TaskRegistry.remove(name)


def test_tf_data_checkpoint_resumes_the_packed_stream_exactly(tmp_path):
  examples = _examples(300, seed=1)
  conv = fc.EncDecFeatureConverter(pack="ffd", block_size=64)
  full = [r["encoder_input_tokens"] for r in _run(conv, examples)]
  it = iter(conv(_dataset(examples), LENGTHS))
  for _ in range(7):
    next(it)
  ckpt = tf.train.Checkpoint(iterator=it)
  path = ckpt.write(str(tmp_path / "it"))
  it2 = iter(conv(_dataset(examples), LENGTHS))
  tf.train.Checkpoint(iterator=it2).read(path).assert_consumed()
  rest = [r["encoder_input_tokens"].numpy() for r in it2]
  assert len(rest) == len(full) - 7
  for a, b in zip(rest, full[7:]):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("lengths, match", [
    ({"inputs": 40}, r"\{'inputs': 40\} are inconsistent with the converter: it needs exactly \['inputs', 'targets'\]"),
    ({"inputs": 40, "targets": 0}, r"\{'inputs': 40, 'targets': 0\} are inconsistent: \['targets'\]"),
    ({"inputs": 40, "targets": 12, "extra": 3}, r"'extra': 3"),
])
def test_inconsistent_lengths_are_named(examples, lengths, match):
  for conv in (fc.EncDecFeatureConverter(pack="ffd"), fc.PrefixLMFeatureConverter(pack="greedy")):
    with pytest.raises(ValueError, match=match):
      conv(_dataset(examples), lengths)


def test_unknown_packer_and_model_type_are_errors():
  with pytest.raises(ValueError, match="pack='best'"):
    fc.EncDecFeatureConverter(pack="best")
  with pytest.raises(ValueError, match="unknown model_type 'gpt'"):
    fc.get_feature_converter("gpt")
  assert isinstance(fc.get_feature_converter("prefix_lm", pack=False), seqio.PrefixLMFeatureConverter)
