"""The hand-written backward passes of `layers` (attention, 2-D dense) equal autodiff of the plain formulas."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax.models import layers as L


def _reference_attention(query, key, value, mask, bias, keep_scale):
  """The textbook formula, differentiated by JAX: softmax(q.k + bias, masked to NEG_INF) * keep . v."""
  groups = query.shape[2] // key.shape[2]
  key, value = jnp.repeat(key, groups, axis=2), jnp.repeat(value, groups, axis=2)
  logits = jnp.einsum("bqhd,bkhd->bhqk", query, key)
  if bias is not None:
    logits = logits + bias
  if mask is not None:
    logits = jnp.where(mask, logits, L.NEG_INF)
  weights = jax.nn.softmax(logits)
  if keep_scale is not None:
    weights = weights * keep_scale
  return jnp.einsum("bhqk,bkhd->bqhd", weights, value)


@pytest.mark.parametrize("kv_heads,with_bias,with_mask,dropout", [
    (4, True, True, False), (4, False, False, False), (2, True, True, True), (2, False, True, False),
    (1, True, False, True)])
def test_attention_gradient_equals_autodiff(kv_heads, with_bias, with_mask, dropout):
  r = np.random.default_rng(kv_heads + 2 * with_bias + 4 * with_mask)
  b, q, k, h, d = 2, 5, 7, 4, 3
  query = jnp.asarray(r.normal(size=(b, q, h, d)), jnp.float32)
  key = jnp.asarray(r.normal(size=(b, k, kv_heads, d)), jnp.float32)
  value = jnp.asarray(r.normal(size=(b, k, kv_heads, d)), jnp.float32)
  bias = jnp.asarray(r.normal(size=(1, h, q, k)), jnp.float32) if with_bias else None
  mask = None
  if with_mask:
    mask = jnp.asarray(r.random((b, 1, q, k)) > 0.3).at[0, 0, 1].set(False)  # row 1 of example 0: all masked
  rng = jax.random.PRNGKey(3) if dropout else None
  keep_scale = None
  if dropout:  # the mask dot_product_attention draws for this rng: one pattern per key, shared by all queries
    groups = h // kv_heads
    shape = [b, kv_heads, groups, 1, k] if groups > 1 else [b, h, 1, k]
    keep_scale = (jax.random.bernoulli(rng, 0.7, shape).astype(jnp.float32) / 0.7).reshape(b, h, 1, k)
  cot = jnp.asarray(r.normal(size=(b, q, h, d)), jnp.float32)

  def ours(qq, kk, vv, bb):
    return jnp.sum(L.dot_product_attention(qq, kk, vv, mask, bb, dropout_rng=rng, dropout_rate=0.3,
                                           dtype=jnp.float32, float32_logits=False) * cot)

  def ref(qq, kk, vv, bb):
    return jnp.sum(_reference_attention(qq, kk, vv, mask, bb, keep_scale) * cot)

  args = (query, key, value, bias if with_bias else jnp.zeros((1, h, q, k), jnp.float32))
  v1, g1 = jax.jit(jax.value_and_grad(ours, argnums=(0, 1, 2, 3)))(*args)
  v2, g2 = jax.value_and_grad(ref, argnums=(0, 1, 2, 3))(*args)
  np.testing.assert_allclose(float(v1), float(v2), rtol=1e-5, atol=1e-5)
  for name, a, e in zip(("query", "key", "value", "bias"), g1, g2):
    assert a.shape == e.shape, name
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-4, atol=1e-5, err_msg=name)
  # masked logits get no gradient: the bias gradient is zero wherever every example masks the position
  if with_mask:
    never = ~np.asarray(jnp.any(mask, axis=0))
    assert not np.any(np.asarray(g1[3])[:, :, never[0]])


def test_dense_kernel_and_input_gradients_equal_autodiff():
  r = np.random.default_rng(0)
  x = jnp.asarray(r.normal(size=(2, 3, 4, 5)), jnp.float32)
  for axis, features in ((-1, 6), ((-2, -1), 6), (-1, (2, 3))):
    layer = L.DenseGeneral(features, axis=axis, kernel_axes=("embed", "mlp"))
    kernel = nn.meta.unbox(layer.init(jax.random.PRNGKey(0), x))["params"]["kernel"]
    ax = (axis,) if isinstance(axis, int) else axis
    in_shape = tuple(x.shape[a] for a in ax)
    feats = (features,) if isinstance(features, int) else features
    cot = jnp.asarray(r.normal(size=x.shape[:x.ndim - len(ax)] + feats), jnp.float32)
    ours = lambda xx, kk: jnp.sum(layer.apply({"params": {"kernel": kk}}, xx) * cot)
    ref = lambda xx, kk: jnp.sum(jnp.tensordot(xx, kk.reshape(in_shape + feats), len(ax)) * cot)
    g1 = jax.jit(jax.grad(ours, argnums=(0, 1)))(x, kernel)
    g2 = jax.grad(ref, argnums=(0, 1))(x, kernel)
    for a, e in zip(g1, g2):
      np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-5, atol=1e-5)
