"""seqio feature converters with a selectable packer: encoder-decoder and prefix-LM (decoder-only).

`pack=False` pads each example; `pack='greedy'` (or True) is seqio's own next-fit packer; `pack='ffd'` is our
fit-decreasing packer (`flan_jax.data.pipeline.packing`), which needs fewer rows when one feature binds. The model
features are exactly seqio's (`EncDecFeatureConverter`, `PrefixLMFeatureConverter`): only the packer differs, so
`seqio.get_dataset(..., feature_converter=...)` and T5X-style trainers take them as they are.

FFD inside tf.data: the stream is cut into blocks of `block_size` examples (`ragged_batch`), each block is packed by one
stateless `numpy_function` call and unbatched, so the rows are a pure function of the input stream and tf.data's own
iterator checkpoints (`tf.train.Checkpoint(iterator=...)`) save and restore the packed stream exactly.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import seqio
import tensorflow as tf

from flan_jax.data.pipeline import packing

PACKERS = (False, "greedy", "ffd")


def _packer_name(pack: bool | str) -> bool | str:
  if pack is True:
    return "greedy"
  if pack not in PACKERS:
    raise ValueError(f"pack={pack!r}: choose one of False (pad only), 'greedy' (seqio's packer) or 'ffd' "
                     "(fit-decreasing, ours)")
  return pack


def ffd_pack_dataset(ds: tf.data.Dataset, lengths: Mapping[str, int],
                     block_size: int = packing.DEFAULT_BLOCK_SIZE) -> tf.data.Dataset:
  """FFD-packs the features in `lengths` (trimmed to them); same output contract as seqio's trim_and_pack_dataset."""
  lengths = packing.check_lengths(lengths)
  keys = list(lengths)
  for k in keys:
    if k not in ds.element_spec:
      raise ValueError(f"cannot pack feature {k!r}: the dataset has only {sorted(ds.element_spec)}")
    if ds.element_spec[k].shape.rank != 1:
      raise ValueError(f"cannot pack feature {k!r}: packing needs 1-D features, its shape is "
                       f"{ds.element_spec[k].shape}")
  ds = ds.map(lambda ex: {k: tf.cast(ex[k][:lengths[k]], tf.int32) for k in keys},
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.ragged_batch(block_size)

  def pack(*flat):
    values = {k: flat[2 * i] for i, k in enumerate(keys)}
    splits = {k: flat[2 * i + 1] for i, k in enumerate(keys)}
    sizes = np.stack([np.diff(splits[k]) for k in keys], axis=1)
    row_of = packing.fit_assign(sizes, [lengths[k] for k in keys])
    rows = packing.build_rows(values, splits, row_of, lengths)
    return tuple(rows[f"{k}{suffix}"] for k in keys for suffix in ("", "_segment_ids", "_positions"))

  out_names = [f"{k}{suffix}" for k in keys for suffix in ("", "_segment_ids", "_positions")]

  def pack_batch(batch):
    flat = []
    for k in keys:
      flat += [batch[k].flat_values, batch[k].row_splits]
    outs = tf.numpy_function(pack, flat, [tf.int32] * len(out_names), stateful=False)
    packed = {}
    for name, t in zip(out_names, outs):
      t.set_shape([None, lengths[packing_feature(name)]])
      packed[name] = t
    return packed

  return ds.map(pack_batch).unbatch()


def packing_feature(name: str) -> str:
  """The packed feature a `*_segment_ids` / `*_positions` column belongs to."""
  for suffix in ("_segment_ids", "_positions"):
    if name.endswith(suffix):
      return name[:-len(suffix)]
  return name


class _SelectablePacker:
  """Mixin over a seqio FeatureConverter: replaces seqio's packer when pack='ffd'; validates lengths up front."""

  def _init_packer(self, pack: bool | str, block_size: int) -> bool:
    self._packer = _packer_name(pack)
    if block_size <= 0:
      raise ValueError(f"block_size must be positive, got {block_size}")
    self._block_size = block_size
    return bool(self._packer)

  @property
  def packer(self) -> bool | str:
    return self._packer

  @property
  def block_size(self) -> int:
    return self._block_size

  def _pack_or_pad(self, ds: tf.data.Dataset, packed_lengths: Mapping[str, int]) -> tf.data.Dataset:
    if self._packer == "ffd":
      return ffd_pack_dataset(ds, packed_lengths, self._block_size)
    return super()._pack_or_pad(ds, packed_lengths)  # type: ignore[misc]

  def _check_task_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> None:
    expected = set(self.TASK_FEATURES)  # type: ignore[attr-defined]
    name = type(self).__name__
    if set(task_feature_lengths) != expected:
      raise ValueError(f"{name}: task_feature_lengths {dict(task_feature_lengths)} are inconsistent with the "
                       f"converter: it needs exactly {sorted(expected)}")
    packing.check_lengths(task_feature_lengths, what=f"{name}: task_feature_lengths")

  def __call__(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    self._check_task_feature_lengths(task_feature_lengths)
    return super().__call__(ds, task_feature_lengths)  # type: ignore[misc]


class EncDecFeatureConverter(_SelectablePacker, seqio.EncDecFeatureConverter):
  """seqio's encoder-decoder converter with pack in {False, 'greedy', 'ffd'}."""

  def __init__(self, pack: bool | str = "ffd", block_size: int = packing.DEFAULT_BLOCK_SIZE, **kwargs):
    super().__init__(pack=self._init_packer(pack, block_size), **kwargs)


class PrefixLMFeatureConverter(_SelectablePacker, seqio.PrefixLMFeatureConverter):
  """seqio's prefix-LM converter (decoder_causal_attention marks the input prefix plus one position, loss on targets
  only by default) with pack in {False, 'greedy', 'ffd'}; examples are packed on their concatenated length."""

  def __init__(self, pack: bool | str = "ffd", block_size: int = packing.DEFAULT_BLOCK_SIZE,
               loss_on_targets_only: bool = True, **kwargs):
    super().__init__(loss_on_targets_only=loss_on_targets_only, pack=self._init_packer(pack, block_size), **kwargs)


def get_feature_converter(model_type: str, pack: bool | str = "ffd",
                          block_size: int = packing.DEFAULT_BLOCK_SIZE) -> seqio.FeatureConverter:
  """'encoder_decoder' or 'prefix_lm' -> the matching converter."""
  if model_type == "encoder_decoder":
    return EncDecFeatureConverter(pack=pack, block_size=block_size)
  if model_type == "prefix_lm":
    return PrefixLMFeatureConverter(pack=pack, block_size=block_size)
  raise ValueError(f"unknown model_type {model_type!r}: choose 'encoder_decoder' or 'prefix_lm'")
