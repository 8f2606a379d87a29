"""Model wrappers with T5X's `EncoderDecoderModel` / `DecoderOnlyModel` semantics: init, loss, scoring.

Batches use seqio/T5X feature names (see CONTRIBUTING.md). `loss_fn` returns T5X's loss (summed weighted
cross-entropy plus z-loss, divided by the loss-normalizing factor when one is set) and metrics as plain scalars;
`score_batch` returns each example's summed target log-likelihood (weighted by `decoder_loss_weights`, no z-loss).
"""
from __future__ import annotations

from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from flan_jax.models import losses
from flan_jax.models.decoder_only import DecoderOnlyConfig, DecoderOnlyTransformer
from flan_jax.models.t5 import T5Config, Transformer

Array = jax.Array
Batch = Mapping[str, Array]

_ENC_DEC_INPUTS = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")
_DEC_ONLY_INPUTS = ("decoder_input_tokens", "decoder_target_tokens")


def _check_batch(batch: Batch, required: tuple[str, ...], kind: str) -> None:
  missing = [k for k in required if k not in batch]
  if missing:
    raise KeyError(f"{kind} batch lacks features {missing}; it has {sorted(batch)}")


class BaseModel:
  """Shared machinery; subclasses set `module`, `_required` and `_apply`."""
  module: nn.Module
  config: Any
  _required: tuple[str, ...]

  def __init__(self, z_loss: float = 1e-4, label_smoothing: float = 0.0, loss_normalizing_factor=None):
    if not 0.0 <= label_smoothing < 1.0:
      raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    self.z_loss = float(z_loss)
    self.label_smoothing = float(label_smoothing)
    self.loss_normalizing_factor = losses.parse_loss_normalizing_factor(loss_normalizing_factor)

  def _dummy_batch(self, batch_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Array]:
    _check_batch(batch_shapes, self._required, type(self).__name__)
    return {k: jnp.ones(tuple(s), jnp.int32) for k, s in batch_shapes.items()
            if k != "decoder_loss_weights"}

  def _init(self, rng: Array, batch_shapes: Mapping[str, tuple[int, ...]]):
    batch = self._dummy_batch(batch_shapes)
    return self.module.init({"params": rng}, **self._module_inputs(batch), enable_dropout=False)["params"]

  def init_variables(self, rng: Array, batch_shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """Fresh float32 params (unboxed: plain arrays) for batches of the given feature shapes."""
    shapes = _freeze(batch_shapes)
    return nn.meta.unbox(jax.jit(lambda r: self._init(r, shapes))(rng))

  def param_shapes(self, batch_shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """`jax.ShapeDtypeStruct`s of the params, without allocating them."""
    return nn.meta.unbox(self._boxed_shapes(batch_shapes))

  def logical_axes(self, batch_shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """PartitionSpecs of logical axis names, one per param (mirrors the params tree)."""
    return nn.get_partition_spec(self._boxed_shapes(batch_shapes))

  def _boxed_shapes(self, batch_shapes: Mapping[str, tuple[int, ...]]):
    shapes = _freeze(batch_shapes)
    return jax.eval_shape(lambda r: self._init(r, shapes), jax.random.PRNGKey(0))

  def compute_logits(self, params: dict, batch: Batch, dropout_rng: Array | None = None) -> Array:
    _check_batch(batch, self._required, type(self).__name__)
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    return self.module.apply({"params": params}, **self._module_inputs(batch), enable_dropout=rngs is not None,
                             rngs=rngs)

  def loss_fn(self, params: dict, batch: Batch, dropout_rng: Array | None) -> tuple[Array, dict[str, Array]]:
    """T5X's loss and metrics; `dropout_rng=None` runs deterministically."""
    logits = self.compute_logits(params, batch, dropout_rng)
    factor, weights = losses.get_loss_normalizing_factor_and_weights(self.loss_normalizing_factor, batch)
    targets = batch["decoder_target_tokens"]
    loss, z_loss, _ = losses.compute_weighted_cross_entropy(
        logits, targets, weights, self.label_smoothing, self.z_loss, factor)
    return loss, compute_metrics(logits, targets, weights, loss, z_loss)

  def score_batch(self, params: dict, batch: Batch) -> Array:
    """[batch] summed log-likelihood of the targets under `decoder_loss_weights` (or non-padding targets)."""
    logits = self.compute_logits(params, batch)
    targets = batch["decoder_target_tokens"]
    weights = batch.get("decoder_loss_weights")
    if weights is None:
      weights = targets > 0
    token_ll = -losses.sparse_cross_entropy_with_logits(logits, targets, 0.0)[0]
    return jnp.sum(token_ll * jnp.asarray(weights, token_ll.dtype), axis=-1)


def _freeze(shapes: Mapping[str, tuple[int, ...]]):
  return flax.core.FrozenDict({k: tuple(int(d) for d in v) for k, v in shapes.items()})


def compute_metrics(logits: Array, targets: Array, weights: Array | None, loss: Array,
                    z_loss: Array) -> dict[str, Array]:
  """Scalars for one batch; `num_*` and `loss` are sums, so microbatches and hosts add them up."""
  mask = jnp.asarray(targets > 0 if weights is None else weights, jnp.float32)
  num_nonpadding = jnp.sum(mask)
  num_total = jnp.asarray(targets.size, jnp.float32)
  correct = jnp.sum((jnp.argmax(logits, axis=-1) == targets) * mask)
  return {
      "loss": loss,
      "z_loss": z_loss,
      "cross_ent_loss": loss - z_loss,
      "accuracy": correct / jnp.maximum(num_nonpadding, 1e-8),
      "num_correct_tokens": correct,
      "num_target_tokens": num_total,
      "num_nonpadding_tokens": num_nonpadding,
      "loss_per_nonpadding_target_token": loss / jnp.maximum(num_nonpadding, 1e-8),
      "loss_per_all_target_tokens": loss / num_total,
      "z_loss_per_all_target_tokens": z_loss / num_total,
      "cross_ent_loss_per_all_target_tokens": (loss - z_loss) / num_total,
  }


class EncoderDecoderModel(BaseModel):
  """T5X's EncoderDecoderModel over `flan_jax.models.t5.Transformer`."""
  _required = _ENC_DEC_INPUTS

  def __init__(self, config: T5Config, z_loss: float = 1e-4, label_smoothing: float = 0.0,
               loss_normalizing_factor=None):
    super().__init__(z_loss, label_smoothing, loss_normalizing_factor)
    if not isinstance(config, T5Config):
      raise TypeError(f"EncoderDecoderModel needs a T5Config, got {type(config).__name__}")
    self.config = config
    self.module = Transformer(config)

  @staticmethod
  def _module_inputs(batch: Batch) -> dict[str, Array]:
    keys = _ENC_DEC_INPUTS + ("encoder_segment_ids", "decoder_segment_ids", "encoder_positions",
                              "decoder_positions")
    return {k: batch[k] for k in keys if batch.get(k) is not None}


class DecoderOnlyModel(BaseModel):
  """T5X's DecoderOnlyModel (prefix LM when the batch has `decoder_causal_attention`)."""
  _required = _DEC_ONLY_INPUTS

  def __init__(self, config: DecoderOnlyConfig, z_loss: float = 1e-4, label_smoothing: float = 0.0,
               loss_normalizing_factor=None):
    super().__init__(z_loss, label_smoothing, loss_normalizing_factor)
    if not isinstance(config, DecoderOnlyConfig):
      raise TypeError(f"DecoderOnlyModel needs a DecoderOnlyConfig, got {type(config).__name__}")
    self.config = config
    self.module = DecoderOnlyTransformer(config)

  @staticmethod
  def _module_inputs(batch: Batch) -> dict[str, Array]:
    keys = _DEC_ONLY_INPUTS + ("decoder_segment_ids", "decoder_positions", "decoder_causal_attention")
    return {k: batch[k] for k in keys if batch.get(k) is not None}
