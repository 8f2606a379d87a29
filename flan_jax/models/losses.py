"""T5X's losses: cross-entropy with z-loss (and T5X's custom gradient), label smoothing, loss normalisation.

The z-loss term is `z_loss * log(Z)^2` per token, added to the cross-entropy, where Z is the softmax partition
function; it keeps log(Z) near 0. The gradient with respect to the logits is T5X's:
`(1 + 2 * z_loss * log Z) * softmax(logits) - targets` (it assumes the soft targets sum to one).
"""
from __future__ import annotations

import enum
import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


@jax.custom_vjp
def cross_entropy_with_logits(logits: Array, targets: Array, z_loss: float | Array) -> tuple[Array, Array]:
  """Per-token `(cross_entropy + z_loss_term, z_loss_term)` for soft `targets` over the last axis."""
  log_z = jax.nn.logsumexp(logits, axis=-1)
  log_softmax = logits - log_z[..., None]
  total_z_loss = z_loss * jnp.square(log_z)
  return -jnp.sum(targets * log_softmax, axis=-1) + total_z_loss, total_z_loss


def _cross_entropy_fwd(logits, targets, z_loss):
  max_logit = jnp.max(logits, axis=-1, keepdims=True)
  shifted = logits - jax.lax.stop_gradient(max_logit)
  exp_shifted = jnp.exp(shifted)
  sum_exp = jnp.sum(exp_shifted, axis=-1, keepdims=True)
  log_softmax = shifted - jnp.log(sum_exp)
  log_z = jnp.squeeze(jnp.log(sum_exp) + max_logit, axis=-1)
  total_z_loss = z_loss * jnp.square(log_z)
  loss = -jnp.sum(targets * log_softmax, axis=-1) + total_z_loss
  return (loss, total_z_loss), (targets, z_loss, exp_shifted, sum_exp, log_softmax, log_z)


def _cross_entropy_bwd(res, g):
  targets, z_loss, exp_shifted, sum_exp, log_softmax, log_z = res
  g = g[0]  # only the total loss carries gradient; the z-loss output is for reporting
  deriv = (1.0 + 2.0 * z_loss * log_z)[..., None] * exp_shifted / sum_exp - targets
  return g[..., None] * deriv, -g[..., None] * log_softmax, jnp.zeros_like(z_loss)


cross_entropy_with_logits.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


def _smoothing(label_smoothing: float, vocab_size: int) -> tuple[float, float]:
  """(weight on the target id, weight on every other id) of the smoothed target distribution."""
  confidence = 1.0 - label_smoothing
  return confidence, (1.0 - confidence) / (vocab_size - 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def sparse_cross_entropy_with_logits(logits: Array, targets: Array, z_loss: float | Array,
                                     label_smoothing: float = 0.0) -> tuple[Array, Array]:
  """`cross_entropy_with_logits` for integer `targets` (label-smoothed by `label_smoothing`), same values and
  T5X gradient, without a `[..., vocab]` one-hot: the target logit is gathered and the smoothed part uses
  `sum(log_softmax) = sum(logits) - vocab * log Z`. The backward pass builds its `[..., vocab]` gradient in one
  elementwise pass over the logits (the only vocab-sized tensor it writes)."""
  return _sparse_fwd(logits, targets, z_loss, label_smoothing)[0]


def _sparse_fwd(logits, targets, z_loss, label_smoothing):
  on, off = _smoothing(label_smoothing, logits.shape[-1])
  log_z = jax.nn.logsumexp(jax.lax.stop_gradient(logits), axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  loss = (on - off) * (log_z - target_logit)
  if off:
    loss = loss + off * (logits.shape[-1] * log_z - jnp.sum(logits, axis=-1))
  total_z_loss = z_loss * jnp.square(log_z)
  return (loss + total_z_loss, total_z_loss), (logits, targets, z_loss, log_z)


def _sparse_bwd(label_smoothing, res, g):
  logits, targets, z_loss, log_z = res
  on, off = _smoothing(label_smoothing, logits.shape[-1])
  g = g[0]  # only the total loss carries gradient; the z-loss output is for reporting
  is_target = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1) == targets[..., None]
  soft = jnp.where(is_target, jnp.asarray(on, logits.dtype), jnp.asarray(off, logits.dtype))
  scale = (1.0 + 2.0 * z_loss * log_z)[..., None]
  deriv = scale * jnp.exp(logits - log_z[..., None]) - soft
  return g[..., None] * deriv, None, jnp.zeros_like(z_loss)


sparse_cross_entropy_with_logits.defvjp(lambda logits, targets, z_loss, ls: _sparse_fwd(logits, targets, z_loss, ls),
                                        _sparse_bwd)


def compute_weighted_cross_entropy(logits: Array, targets: Array, weights: Array | None = None,
                                   label_smoothing: float = 0.0, z_loss: float = 0.0,
                                   loss_normalizing_factor: float | Array | None = None
                                   ) -> tuple[Array, Array, Array]:
  """Summed (loss, z_loss, weight_sum) over tokens, as T5X computes them.

  Label smoothing puts `1 - label_smoothing` on the target and spreads the rest evenly over the other ids; the
  entropy of that distribution is subtracted so a perfect prediction has zero loss. Without weights every
  position counts. A normalizing factor divides both sums.
  """
  if logits.ndim != targets.ndim + 1:
    raise ValueError(f"logits {logits.shape} must have one more axis than targets {targets.shape}")
  vocab_size = logits.shape[-1]
  confidence, low_confidence = _smoothing(label_smoothing, vocab_size)
  normalizing_constant = -(confidence * np.log(confidence) +
                           (vocab_size - 1) * low_confidence * np.log(low_confidence + 1e-20))
  total_loss, total_z_loss = sparse_cross_entropy_with_logits(logits, targets, z_loss, float(label_smoothing))
  total_loss = total_loss - normalizing_constant
  weight_sum = jnp.asarray(np.prod(targets.shape), jnp.float32)
  if weights is not None:
    total_loss = total_loss * weights
    total_z_loss = total_z_loss * weights
    weight_sum = jnp.sum(weights)
  if loss_normalizing_factor is not None:
    total_loss = total_loss / loss_normalizing_factor
    total_z_loss = total_z_loss / loss_normalizing_factor
  return jnp.sum(total_loss), jnp.sum(total_z_loss), weight_sum


class LossNormalizingFactor(enum.Enum):
  """T5X's special normalizing factors (a float is the constant mode)."""
  NUM_REAL_TARGET_TOKENS = 1
  NUM_TOTAL_TARGET_TOKENS = 2
  AVERAGE_PER_SEQUENCE = 3


def parse_loss_normalizing_factor(value) -> float | LossNormalizingFactor | None:
  """None, a positive number, a `LossNormalizingFactor` or its name (as gin and model.json write it)."""
  if value is None or isinstance(value, LossNormalizingFactor):
    return value
  if isinstance(value, str):
    try:
      return LossNormalizingFactor[value.upper()]
    except KeyError:
      raise ValueError(f"unknown loss_normalizing_factor {value!r}; use a number or one of "
                       f"{[m.name for m in LossNormalizingFactor]}") from None
  if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
    return float(value)
  raise ValueError(f"loss_normalizing_factor must be None, a positive number or a mode name, got {value!r}")


def _sum_weights_per_segment(segment_ids: Array, weights: Array) -> Array:
  """For each token, the summed weight of the packed segment it belongs to (segment 0 is padding)."""
  same = segment_ids[..., :, None] == segment_ids[..., None, :]
  return jnp.sum(jnp.where(same, weights[..., None, :], 0.0), axis=-1)


def get_loss_normalizing_factor_and_weights(loss_normalizing_factor, batch: Mapping[str, Array]
                                            ) -> tuple[float | Array | None, Array | None]:
  """The factor to divide the summed loss by, and the (possibly rescaled) per-token loss weights.

  Special modes derive weights from `decoder_target_tokens > 0` when the batch has no `decoder_loss_weights`.
  AVERAGE_PER_SEQUENCE divides each token's weight by its sequence's (packed segment's) total weight, so every
  sequence counts the same; the factor is then the sum of the new weights (the number of sequences).
  """
  factor = parse_loss_normalizing_factor(loss_normalizing_factor)
  weights = batch.get("decoder_loss_weights")
  if not isinstance(factor, LossNormalizingFactor):
    return factor, weights
  if weights is None:
    weights = jnp.asarray(batch["decoder_target_tokens"] > 0, jnp.float32)
  weights = jnp.asarray(weights, jnp.float32)
  if factor is LossNormalizingFactor.NUM_REAL_TARGET_TOKENS:
    return jnp.sum(weights), weights
  if factor is LossNormalizingFactor.NUM_TOTAL_TARGET_TOKENS:
    return float(np.prod(batch["decoder_target_tokens"].shape)), weights
  if "decoder_segment_ids" in batch and batch["decoder_segment_ids"] is not None:
    per_token = _sum_weights_per_segment(batch["decoder_segment_ids"], weights)
  else:
    per_token = jnp.sum(weights, axis=-1, keepdims=True)
  weights = jnp.nan_to_num(weights / per_token, nan=0.0, posinf=0.0, neginf=0.0)
  return jnp.sum(weights), weights
