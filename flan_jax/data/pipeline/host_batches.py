"""Examples -> rows (FFD-packed, greedy-packed or padded) -> the model's features -> batches, in numpy.

This is what a seqio feature converter does in tf.data (`feature_converters.EncDecFeatureConverter` /
`PrefixLMFeatureConverter`), done a block at a time on ragged columns: rows are assigned for a block of
`block_size` examples (FFD; seqio's greedy next-fit; or one example a row), laid out by `packing.build_rows`, and the
model features computed for the whole block with array ops. The features and their values equal the converter's
(tests compare them on the same examples), so a converter configured in gin keeps meaning what it says.

The training input packs one block of draws at a time (`pipeline.blocks`), so its rows are a pure function of it.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Mapping

import numpy as np

from flan_jax.data.pipeline import packing

if TYPE_CHECKING:  # the layout itself needs no seqio (and so no TensorFlow)
  import seqio

Ragged = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class BatchConfig:
  """model: 'encoder_decoder' or 'prefix_lm'; pack: False, 'greedy' or 'ffd'."""
  model: str
  pack: bool | str
  lengths: Mapping[str, int]
  batch_size: int
  block_size: int = packing.DEFAULT_BLOCK_SIZE
  loss_on_targets_only: bool = True


@dataclasses.dataclass(frozen=True)
class InputLayout:
  """How examples become the model's features: what a seqio feature converter says, as plain data (gin's
  `feature_converters.get_feature_converter` / `EncDecFeatureConverter` / `PrefixLMFeatureConverter` make one, so
  the trainer needs no seqio). model_type: 'encoder_decoder' or 'prefix_lm'; pack: False, 'greedy' or 'ffd'."""
  model_type: str = "encoder_decoder"
  pack: bool | str = "ffd"
  block_size: int = packing.DEFAULT_BLOCK_SIZE
  loss_on_targets_only: bool = True

  def __post_init__(self):
    if self.model_type not in ("encoder_decoder", "prefix_lm"):
      raise ValueError(f"unknown model_type {self.model_type!r}: choose 'encoder_decoder' or 'prefix_lm'")
    if self.pack not in (False, True, "greedy", "ffd"):
      raise ValueError(f"pack={self.pack!r}: choose False, 'greedy' or 'ffd'")
    if self.pack is True:
      object.__setattr__(self, "pack", "greedy")  # seqio's converters pack greedily


def get_feature_converter(model_type: str, pack: bool | str = "ffd",
                          block_size: int = packing.DEFAULT_BLOCK_SIZE) -> InputLayout:
  """'encoder_decoder' or 'prefix_lm' -> its layout (gin: `feature_converters.get_feature_converter`)."""
  return InputLayout(model_type, pack, block_size)


def enc_dec_layout(pack: bool | str = "ffd", block_size: int = packing.DEFAULT_BLOCK_SIZE) -> InputLayout:
  """gin: `feature_converters.EncDecFeatureConverter`."""
  return InputLayout("encoder_decoder", pack, block_size)


def prefix_lm_layout(pack: bool | str = "ffd", block_size: int = packing.DEFAULT_BLOCK_SIZE,
                     loss_on_targets_only: bool = True) -> InputLayout:
  """gin: `feature_converters.PrefixLMFeatureConverter`."""
  return InputLayout("prefix_lm", pack, block_size, loss_on_targets_only)


def config_from_converter(converter: InputLayout | seqio.FeatureConverter, lengths: Mapping[str, int],
                          batch_size: int) -> BatchConfig:
  """The batch layout of an `InputLayout`, or of a seqio feature converter (ours, or seqio's own EncDec / PrefixLM:
  read only when one is given, so seqio is imported only then)."""
  if not isinstance(converter, InputLayout):
    converter = _layout_of_converter(converter)
  lengths = packing.check_lengths(lengths, what="TASK_FEATURE_LENGTHS")
  if set(lengths) != {"inputs", "targets"}:
    raise ValueError(f"TASK_FEATURE_LENGTHS {dict(lengths)} must give exactly 'inputs' and 'targets'")
  return BatchConfig(converter.model_type, converter.pack, lengths, batch_size, converter.block_size,
                     converter.loss_on_targets_only)


def _layout_of_converter(converter: seqio.FeatureConverter) -> InputLayout:
  import seqio  # pylint: disable=import-outside-toplevel,redefined-outer-name
  if isinstance(converter, seqio.PrefixLMFeatureConverter):
    model = "prefix_lm"
  elif isinstance(converter, seqio.EncDecFeatureConverter):
    model = "encoder_decoder"
  else:
    raise ValueError(f"feature converter {type(converter).__name__} is not supported for training input: use "
                     "feature_converters.EncDecFeatureConverter or PrefixLMFeatureConverter")
  # Ours name their packer; seqio's own converters only say whether they pack (greedily).
  return InputLayout(model, getattr(converter, "packer", "greedy" if converter.pack else False),
                     getattr(converter, "block_size", packing.DEFAULT_BLOCK_SIZE),
                     getattr(converter, "loss_on_targets_only", True))


def feature_lengths(config: BatchConfig) -> dict[str, int]:
  """Every model feature of a batch and its length (all int32, [batch_size, length])."""
  if config.model == "encoder_decoder":
    enc, dec = config.lengths["inputs"], config.lengths["targets"]
    out = {"encoder_input_tokens": enc, "decoder_target_tokens": dec, "decoder_input_tokens": dec,
           "decoder_loss_weights": dec}
    if config.pack:
      out.update(encoder_segment_ids=enc, decoder_segment_ids=dec, encoder_positions=enc, decoder_positions=dec)
    return out
  total = config.lengths["inputs"] + config.lengths["targets"]
  names = ["decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights", "decoder_causal_attention"]
  if config.pack:
    names += ["decoder_segment_ids", "decoder_positions"]
  return {k: total for k in names}


def _assign(sizes: np.ndarray, lengths: list[int], pack: bool | str) -> np.ndarray:
  if pack == "ffd":
    return packing.fit_assign(sizes, lengths)
  if pack == "greedy":
    return packing.greedy_assign(sizes, lengths)
  return np.arange(len(sizes), dtype=np.int64)


def _shift_right(x: np.ndarray) -> np.ndarray:
  out = np.zeros_like(x)
  out[:, 1:] = x[:, :-1]
  return out


def _autoregressive_inputs(targets: np.ndarray, segment_ids: np.ndarray | None) -> np.ndarray:
  """Targets shifted right with BOS 0, and 0 at the first position of every packed example (seqio's
  `make_autoregressive_inputs`)."""
  inputs = _shift_right(targets)
  if segment_ids is not None:
    inputs *= segment_ids == _shift_right(segment_ids)
  return inputs


def _concat(columns: Mapping[str, Ragged]) -> dict[str, Ragged]:
  """Prefix LM: each example's inputs followed by its targets, and its input width on every token."""
  (iv, il), (tv, tl) = columns["inputs"], columns["targets"]
  lens = il + tl
  starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
  values = np.empty([int(lens.sum())], np.int32)
  values[np.repeat(starts, il) + _ranges(il)] = iv
  values[np.repeat(starts + il, tl) + _ranges(tl)] = tv
  return {"targets": (values, lens), "inputs_width": (np.repeat(il, lens).astype(np.int32), lens)}


def _ranges(lengths: np.ndarray) -> np.ndarray:
  """0..l-1 for every l in `lengths`, concatenated."""
  total = int(lengths.sum())
  return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def convert_block(columns: Mapping[str, Ragged], config: BatchConfig) -> dict[str, np.ndarray]:
  """One block of examples (ragged columns, already trimmed) -> its rows of model features."""
  if config.model == "prefix_lm":
    columns = _concat(columns)
    total = config.lengths["inputs"] + config.lengths["targets"]
    lengths = {"targets": total, "inputs_width": total}
  else:
    lengths = dict(config.lengths)
  splits = {k: np.concatenate([[0], np.cumsum(columns[k][1])]) for k in lengths}
  sizes = np.stack([columns[k][1] for k in lengths], axis=1)
  row_of = _assign(sizes, list(lengths.values()), config.pack)
  rows = packing.build_rows({k: columns[k][0] for k in lengths}, splits, row_of, lengths)
  segments = rows["targets_segment_ids"]
  out = {"decoder_target_tokens": rows["targets"],
         "decoder_input_tokens": _autoregressive_inputs(rows["targets"], segments if config.pack else None),
         "decoder_loss_weights": (rows["targets"] != 0).astype(np.int32)}
  if config.model == "encoder_decoder":
    out["encoder_input_tokens"] = rows["inputs"]
    if config.pack:
      out.update(encoder_segment_ids=rows["inputs_segment_ids"], encoder_positions=rows["inputs_positions"],
                 decoder_segment_ids=segments, decoder_positions=rows["targets_positions"])
    return out
  width = rows["inputs_width"]
  positions = rows["targets_positions"]  # unpacked rows hold one example, so these are 0, 1, ... as seqio's range
  out["decoder_causal_attention"] = ((positions < width + 1) & (segments > 0)).astype(np.int32)
  if config.loss_on_targets_only:
    out["decoder_loss_weights"] = ((positions < width) ^ (rows["targets"] != 0)).astype(np.int32)
  if config.pack:
    out.update(decoder_segment_ids=segments, decoder_positions=positions)
  return out
