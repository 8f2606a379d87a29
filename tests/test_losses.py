"""Losses: values against numpy, T5X's z-loss gradient, label smoothing, normalizing-factor modes."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax.models import losses


def _np_log_softmax(x):
  m = x.max(-1, keepdims=True)
  lz = np.log(np.exp(x - m).sum(-1, keepdims=True)) + m
  return x - lz, lz[..., 0]


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 7)).astype(np.float32) * 3
  targets = rng.integers(0, 7, (2, 5))
  weights = (rng.random((2, 5)) > 0.3).astype(np.float32)
  return logits, targets, weights


def test_cross_entropy_and_z_loss_values(data):
  logits, targets, weights = data
  loss, z, wsum = losses.compute_weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(targets),
                                                        jnp.asarray(weights), z_loss=1e-2)
  ls, lz = _np_log_softmax(logits.astype(np.float64))
  ce = -np.take_along_axis(ls, targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(float(z), (1e-2 * lz ** 2 * weights).sum(), rtol=1e-5)
  np.testing.assert_allclose(float(loss), ((ce + 1e-2 * lz ** 2) * weights).sum(), rtol=1e-5)
  assert float(wsum) == weights.sum()
  unweighted, _, n = losses.compute_weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
  np.testing.assert_allclose(float(unweighted), ce.sum(), rtol=1e-5)
  assert float(n) == targets.size


def test_gradient_is_t5x_custom_vjp(data):
  logits, targets, _ = data
  onehot = jax.nn.one_hot(targets, 7)
  g = jax.grad(lambda x: jnp.sum(losses.cross_entropy_with_logits(x, onehot, 1e-2)[0]))(jnp.asarray(logits))
  ls, lz = _np_log_softmax(logits.astype(np.float64))
  expected = (1 + 2 * 1e-2 * lz)[..., None] * np.exp(ls) - np.asarray(onehot)
  np.testing.assert_allclose(np.asarray(g), expected, atol=1e-5)
  # for normalised targets it equals autodiff of the forward formula
  auto = jax.grad(lambda x: jnp.sum(-jnp.sum(onehot * jax.nn.log_softmax(x), -1)
                                    + 1e-2 * jax.nn.logsumexp(x, -1) ** 2))(jnp.asarray(logits))
  np.testing.assert_allclose(np.asarray(g), np.asarray(auto), atol=1e-5)
  # the reported z-loss output carries no gradient
  gz = jax.grad(lambda x: jnp.sum(losses.cross_entropy_with_logits(x, onehot, 1e-2)[1]))(jnp.asarray(logits))
  assert not np.any(np.asarray(gz))


def test_label_smoothing_is_relative_to_the_smoothed_entropy(data):
  logits, targets, _ = data
  eps, v = 0.1, 7
  loss, _, _ = losses.compute_weighted_cross_entropy(jnp.asarray(logits), jnp.asarray(targets),
                                                     label_smoothing=eps)
  soft = np.full((2, 5, v), eps / (v - 1))
  np.put_along_axis(soft, targets[..., None], 1 - eps, -1)
  ls, _ = _np_log_softmax(logits.astype(np.float64))
  entropy = -(soft * np.log(soft)).sum(-1)
  np.testing.assert_allclose(float(loss), (-(soft * ls).sum(-1) - entropy).sum(), rtol=1e-5)
  # a prediction equal to the smoothed distribution costs nothing
  perfect, _, _ = losses.compute_weighted_cross_entropy(jnp.log(jnp.asarray(soft, jnp.float32)),
                                                        jnp.asarray(targets), label_smoothing=eps)
  assert abs(float(perfect)) < 1e-4


def test_normalizing_factor_modes():
  targets = jnp.asarray([[5, 6, 7, 8, 9, 0], [5, 6, 0, 0, 0, 0]])
  weights = jnp.asarray([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]], jnp.float32)
  batch = {"decoder_target_tokens": targets, "decoder_loss_weights": weights}
  assert losses.get_loss_normalizing_factor_and_weights(None, batch) == (None, weights)
  assert losses.get_loss_normalizing_factor_and_weights(2.5, batch)[0] == 2.5
  f, w = losses.get_loss_normalizing_factor_and_weights("NUM_REAL_TARGET_TOKENS", batch)
  assert float(f) == 7 and np.array_equal(w, weights)
  f, _ = losses.get_loss_normalizing_factor_and_weights("num_total_target_tokens", batch)
  assert f == 12
  f, w = losses.get_loss_normalizing_factor_and_weights("AVERAGE_PER_SEQUENCE", batch)
  assert float(f) == pytest.approx(2.0)
  np.testing.assert_allclose(w[0, :5], 0.2)
  np.testing.assert_allclose(w[1, :2], 0.5)
  # packed: two segments in row 0 count as two sequences
  packed = dict(batch, decoder_segment_ids=jnp.asarray([[1, 1, 1, 2, 2, 0], [1, 1, 0, 0, 0, 0]]))
  f, w = losses.get_loss_normalizing_factor_and_weights(losses.LossNormalizingFactor.AVERAGE_PER_SEQUENCE, packed)
  assert float(f) == pytest.approx(3.0)
  np.testing.assert_allclose(np.asarray(w[0]), [1 / 3, 1 / 3, 1 / 3, 0.5, 0.5, 0], atol=1e-6)
  # without loss weights, non-padding targets count
  f, w = losses.get_loss_normalizing_factor_and_weights("NUM_REAL_TARGET_TOKENS",
                                                        {"decoder_target_tokens": targets})
  assert float(f) == 7


def test_bad_normalizing_factor_is_rejected():
  for bad in ("PER_TOKEN", -1.0, True):
    with pytest.raises(ValueError, match="loss_normalizing_factor"):
      losses.parse_loss_normalizing_factor(bad)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_sparse_targets_equal_one_hot_targets(data, smoothing):
  """The one-hot-free loss gives the soft-target loss's values and T5X gradient, with and without smoothing."""
  logits, targets, _ = data
  x, t = jnp.asarray(logits), jnp.asarray(targets)
  soft = jax.nn.one_hot(t, 7) * (1 - smoothing - smoothing / 6) + smoothing / 6
  dense = lambda x: losses.cross_entropy_with_logits(x, soft, 1e-2)
  sparse = lambda x: losses.sparse_cross_entropy_with_logits(x, t, 1e-2, smoothing)
  for a, b in zip(dense(x), sparse(x)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-6)
  g_dense = jax.grad(lambda x: jnp.sum(dense(x)[0] * jnp.arange(1.0, 6.0)))(x)
  g_sparse = jax.jit(jax.grad(lambda x: jnp.sum(sparse(x)[0] * jnp.arange(1.0, 6.0))))(x)
  np.testing.assert_allclose(np.asarray(g_sparse), np.asarray(g_dense), atol=1e-6)
  assert not np.any(np.asarray(jax.grad(lambda x: jnp.sum(sparse(x)[1]))(x)))
