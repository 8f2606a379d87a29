"""Building blocks shared by the T5 encoder-decoder and the decoder-only model.

Every parameter is created through `nn.with_logical_partitioning` with T5X's logical axis names, stored in float32
and cast to the activation dtype at use. Dense kernels are stored 2-D (T5X's layout: attention projections are
`[embed, heads * head_dim]`, named `('embed', 'joined_kv')`), and reshaped to the per-head view when used.

Attention cache contract (flax collection `cache`, created by a call with `decode=True` or `prefill=True`):
  * `cached_key`, `cached_value`: `[batch, kv_heads, head_dim, max_length]` in the activation dtype (T5X's layout:
    the length axis last, so a step writes by a one-hot broadcast rather than a scatter).
  * `cache_index`: int32, the next position to write. A scalar (all rows in step) unless the module was built with
    `per_example_cache_index=True`, then `[batch]` (used by the decoder-only model, whose prompts differ in length).
A `decode=True` call on a module whose cache does not exist yet only creates zeros of the input's shape (the
caller passes full-length dummy inputs); later calls take one token per row, write it at `cache_index` (replacing
the slot), attend to positions `<= cache_index` and advance the index by one. A `prefill=True` call runs the full
prompt and stores its keys/values, zero past each row's `prefill_lengths`, with `cache_index = prefill_lengths`.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Initializer = Callable[..., Array]

NEG_INF = -1e10  # T5X's large negative logit for masked positions; representable in bf16 too.


def logical(x: Array, names: Sequence[str | None]) -> Array:
  """Annotates an activation with logical axis names (a no-op without partitioning rules in scope)."""
  return nn.with_logical_constraint(x, tuple(names))


def activation_fn(name: str) -> Callable[[Array], Array]:
  """'gelu' is T5X's tanh-approximate GELU; 'silu' gives SwiGLU with ('silu', 'linear')."""
  table = {
      "gelu": functools.partial(jax.nn.gelu, approximate=True),
      "gelu_exact": functools.partial(jax.nn.gelu, approximate=False),
      "relu": jax.nn.relu,
      "silu": jax.nn.silu,
      "swish": jax.nn.silu,
      "linear": lambda x: x,
  }
  if name not in table:
    raise ValueError(f"unknown activation {name!r}; known: {sorted(table)}")
  return table[name]


class RMSNorm(nn.Module):
  """T5's LayerNorm: scale only, no mean subtraction, statistics in float32."""
  epsilon: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), (x.shape[-1],),
                       jnp.float32)
    x32 = jnp.asarray(x, jnp.float32)
    var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = jnp.asarray(x32 * jax.lax.rsqrt(var + self.epsilon), self.dtype)
    return y * jnp.asarray(scale, self.dtype)


class Embed(nn.Module):
  """Token embedding looked up by gather (no one-hot matmul); `attend` gives tied logits."""
  num_embeddings: int
  features: int
  dtype: Any = jnp.float32
  embedding_init: Initializer = nn.initializers.normal(stddev=1.0)

  def setup(self):
    self.embedding = self.param("embedding", nn.with_logical_partitioning(self.embedding_init, ("vocab", "embed")),
                                (self.num_embeddings, self.features), jnp.float32)

  def __call__(self, tokens: Array) -> Array:
    out = jnp.take(jnp.asarray(self.embedding, self.dtype), tokens.astype(jnp.int32), axis=0)
    return logical(out, ("batch", "length", "embed"))

  def attend(self, query: Array) -> Array:
    """Logits against the embedding matrix, in float32."""
    return jnp.dot(jnp.asarray(query, jnp.float32), jnp.asarray(self.embedding, jnp.float32).T)


class DenseGeneral(nn.Module):
  """A bias-free projection whose kernel is stored 2-D `[prod(in dims), prod(features)]` as T5X stores it."""
  features: int | tuple[int, ...]
  axis: int | tuple[int, ...] = -1
  kernel_axes: tuple[str, str] = ("embed", "mlp")
  kernel_init: Initializer = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
    axis = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
    axis = tuple(a % x.ndim for a in axis)
    in_shape = tuple(x.shape[a] for a in axis)
    kernel = self.param("kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
                        (int(np.prod(in_shape)), int(np.prod(features))), jnp.float32)
    kernel = jnp.asarray(kernel, self.dtype)
    x = jnp.asarray(x, self.dtype)
    if axis != tuple(range(x.ndim - len(axis), x.ndim)):
      contract = (axis, tuple(range(len(axis))))
      return jax.lax.dot_general(x, jnp.reshape(kernel, in_shape + features), (contract, ((), ())))
    batch_shape = x.shape[:x.ndim - len(axis)]
    y = _matmul(jnp.reshape(x, (-1, kernel.shape[0])), kernel)
    return jnp.reshape(y, batch_shape + features)


@jax.custom_vjp
def _matmul(x: Array, kernel: Array) -> Array:
  """`x @ kernel` for 2-D operands, whose kernel gradient is computed as `x.T @ g` on a materialised `x.T`:
  left to itself XLA:CPU folds the transpose into the dot and instead writes a transposed copy of `g` (for the
  LM head a `[vocab, tokens]` array) and runs the dot outside its fast library path."""
  return jnp.dot(x, kernel)


def _matmul_fwd(x, kernel):
  return jnp.dot(x, kernel), (x, kernel)


def _matmul_bwd(res, g):
  x, kernel = res
  x_t = jax.lax.optimization_barrier(jnp.transpose(x))
  return jnp.dot(g, kernel.T).astype(x.dtype), jnp.dot(x_t, g).astype(kernel.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


class MlpBlock(nn.Module):
  """Gated MLP: product of `act_i(x @ wi_i)`, then `wo` (one activation: a single `wi`)."""
  intermediate_dim: int
  activations: tuple[str, ...] = ("gelu", "linear")
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    hidden = None
    for idx, act in enumerate(self.activations):
      name = "wi" if len(self.activations) == 1 else f"wi_{idx}"
      h = activation_fn(act)(DenseGeneral(self.intermediate_dim, kernel_axes=("embed", "mlp"), dtype=self.dtype,
                                          name=name)(x))
      hidden = h if hidden is None else hidden * h
    hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(hidden, deterministic=deterministic)
    hidden = logical(hidden, ("batch", "length", "mlp"))
    return DenseGeneral(x.shape[-1], kernel_axes=("mlp", "embed"), dtype=self.dtype, name="wo")(hidden)


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> np.ndarray:
  """T5's bucketing of `memory - query` offsets: exact for small offsets, log-spaced up to max_distance."""
  bucket = np.zeros_like(relative_position, dtype=np.int32)
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    bucket += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  with np.errstate(divide="ignore"):
    large = max_exact + (np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps) /
                         np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int32)
  large = np.minimum(large, num_buckets - 1)
  return bucket + np.where(n < max_exact, n, large).astype(np.int32)


class RelativePositionBiases(nn.Module):
  """One `[heads, buckets]` table per stack; returns the `[1, heads, q, k]` bias in the activation dtype."""
  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: Any = jnp.float32
  embedding_init: Initializer = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")

  @nn.compact
  def __call__(self, qlen: int, klen: int, bidirectional: bool) -> Array:
    rel = np.arange(klen)[None, :] - np.arange(qlen)[:, None]
    buckets = relative_position_bucket(rel, bidirectional, self.num_buckets, self.max_distance)
    table = self.param("rel_embedding",
                       nn.with_logical_partitioning(self.embedding_init, ("heads", "relpos_buckets")),
                       (self.num_heads, self.num_buckets), jnp.float32)
    values = jnp.take(jnp.asarray(table, self.dtype), jnp.asarray(buckets), axis=1)  # [heads, q, k]
    return values[None]


def make_attention_mask(query_input: Array, key_input: Array, pairwise_fn=jnp.multiply) -> Array:
  """`[batch, 1, q, k]` boolean mask from per-position query and key vectors."""
  return pairwise_fn(query_input[..., :, None], key_input[..., None, :])[..., None, :, :].astype(bool)


def make_causal_mask(length: int) -> Array:
  idx = jnp.arange(length)
  return (idx[None, :] <= idx[:, None])[None, None]


def make_decoder_mask(decoder_target_tokens: Array, decoder_causal_attention: Array | None = None,
                      decoder_segment_ids: Array | None = None) -> Array:
  """T5X's decoder mask: causal (or full within the prefix marked by `decoder_causal_attention`), no padding keys
  or queries (from target ids), and no attention across packed segments."""
  mask = make_causal_mask(decoder_target_tokens.shape[-1])
  if decoder_causal_attention is not None:
    prefix = make_attention_mask(decoder_causal_attention, decoder_causal_attention, jnp.logical_and)
    mask = jnp.logical_or(mask, prefix)
  nonpad = decoder_target_tokens > 0
  mask = jnp.logical_and(mask, make_attention_mask(nonpad, nonpad, jnp.logical_and))
  if decoder_segment_ids is not None:
    mask = jnp.logical_and(mask, make_attention_mask(decoder_segment_ids, decoder_segment_ids, jnp.equal))
  return mask


def rotate_half_rope(x: Array, positions: Array, theta: float) -> Array:
  """Rotary embedding in the 'rotate half' convention (first and second halves of head_dim pair up, as in HF
  LLaMA), so query/key kernels map without permutation. x: [batch, len, heads, head_dim]; positions: [batch, len]."""
  half = x.shape[-1] // 2
  inv_freq = 1.0 / (theta ** (np.arange(0, half, dtype=np.float32) * 2.0 / x.shape[-1]))
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [b, l, half]
  cos = jnp.concatenate([jnp.cos(angles)] * 2, axis=-1)[:, :, None, :].astype(x.dtype)
  sin = jnp.concatenate([jnp.sin(angles)] * 2, axis=-1)[:, :, None, :].astype(x.dtype)
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return x * cos + rotated * sin


class MultiHeadAttention(nn.Module):
  """Dot-product attention with T5X parameter names (`query`, `key`, `value`, `out`), multi- or grouped-query.

  `query_scale`: 'folded' is T5's convention (no runtime 1/sqrt(head_dim); it lives in the query init),
  'runtime' scales queries at run time (LLaMA's convention, so HF kernels map as they are).
  """
  num_heads: int
  head_dim: int
  num_kv_heads: int | None = None
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  float32_logits: bool = False
  query_scale: str = "folded"
  rope_theta: float | None = None
  per_example_cache_index: bool = False
  kernel_init: Initializer = nn.initializers.variance_scaling(1.0, "fan_in", "normal")

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Array | None = None, bias: Array | None = None, *,
               deterministic: bool = True, decode: bool = False, prefill: bool = False,
               prefill_lengths: Array | None = None, positions: Array | None = None) -> Array:
    kv_heads = self.num_kv_heads or self.num_heads
    if self.num_heads % kv_heads:
      raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={kv_heads}")
    depth_scaling = jnp.sqrt(self.head_dim).astype(jnp.float32)
    if self.query_scale == "folded":
      query_init = lambda *a: self.kernel_init(*a) / depth_scaling
    elif self.query_scale == "runtime":
      query_init = self.kernel_init
    else:
      raise ValueError(f"query_scale must be 'folded' or 'runtime', got {self.query_scale!r}")
    proj = functools.partial(DenseGeneral, kernel_axes=("embed", "joined_kv"), dtype=self.dtype)
    query = proj((self.num_heads, self.head_dim), kernel_init=query_init, name="query")(inputs_q)
    key = proj((kv_heads, self.head_dim), kernel_init=self.kernel_init, name="key")(inputs_kv)
    value = proj((kv_heads, self.head_dim), kernel_init=self.kernel_init, name="value")(inputs_kv)
    if self.query_scale == "runtime":
      query = query / depth_scaling.astype(self.dtype)
    query = logical(query, ("batch", "length", "heads", "kv"))
    key = logical(key, ("batch", "length", "heads", "kv"))
    value = logical(value, ("batch", "length", "heads", "kv"))

    if decode and prefill:
      raise ValueError("decode and prefill are exclusive")
    cache_ready = self.has_variable("cache", "cached_key")
    cur_index = None
    if decode or prefill:
      swap = lambda s: s[:-3] + (s[-2], s[-1], s[-3])  # [b, l, h, d] -> [b, h, d, l]
      cached_key = self.variable("cache", "cached_key", jnp.zeros, swap(key.shape), key.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, swap(value.shape), value.dtype)
      index_shape = (key.shape[0],) if self.per_example_cache_index else ()
      cache_index = self.variable("cache", "cache_index", lambda: jnp.zeros(index_shape, jnp.int32))
      if decode and cache_ready:
        batch, _, _, length = cached_key.value.shape
        if query.shape[1] != 1:
          raise ValueError(f"a cached decode step takes one token per row, got length {query.shape[1]}")
        cur_index = cache_index.value
        if self.rope_theta is not None:
          step_pos = jnp.broadcast_to(cur_index, (batch,))[:, None]
          query = rotate_half_rope(query, step_pos, self.rope_theta)
          key = rotate_half_rope(key, step_pos, self.rope_theta)
        if self.per_example_cache_index:  # rows write at their own positions
          one_hot = jax.nn.one_hot(cur_index, length, dtype=key.dtype)[:, None, None, :]
          keep = 1 - one_hot  # overwrite (not add to) whatever the slot held
          key = cached_key.value * keep + jnp.moveaxis(key, -3, -1) * one_hot
          value = cached_value.value * keep + jnp.moveaxis(value, -3, -1) * one_hot
        else:  # one slot for all rows: written in place, not a pass over the whole cache
          key = jax.lax.dynamic_update_slice_in_dim(cached_key.value, jnp.moveaxis(key, -3, -1), cur_index, axis=-1)
          value = jax.lax.dynamic_update_slice_in_dim(cached_value.value, jnp.moveaxis(value, -3, -1), cur_index,
                                                      axis=-1)
        cached_key.value, cached_value.value = key, value
        cache_index.value = cur_index + 1
        key, value = jnp.moveaxis(key, -1, -3), jnp.moveaxis(value, -1, -3)
        idx = jnp.broadcast_to(cur_index, (batch,))
        step_mask = (jnp.arange(length)[None, :] <= idx[:, None])[:, None, None, :]
        mask = step_mask if mask is None else jnp.logical_and(mask, step_mask)
        if bias is not None and self.per_example_cache_index:  # each row's bias row at its own position
          bias = jnp.moveaxis(jnp.take(bias[0], cur_index, axis=-2), -2, 0)[:, :, None, :]
        elif bias is not None:  # the bias row of the current query position
          bias = jax.lax.dynamic_slice_in_dim(bias, jnp.reshape(cur_index, ()), 1, axis=-2)
    if cur_index is None and self.rope_theta is not None:
      if positions is None:
        positions = jnp.broadcast_to(jnp.arange(query.shape[1]), query.shape[:2])
      query = rotate_half_rope(query, positions, self.rope_theta)
      key = rotate_half_rope(key, positions, self.rope_theta)
    if prefill:
      if prefill_lengths is None:
        raise ValueError("prefill=True needs prefill_lengths")
      lengths = jnp.asarray(prefill_lengths, jnp.int32)
      # zero the slots past each prompt, so the cache holds exactly the prompt
      valid = (jnp.arange(key.shape[1])[None, :] < jnp.reshape(lengths, (-1, 1)))[:, None, None, :]
      cached_key.value = jnp.where(valid, jnp.moveaxis(key, -3, -1), 0).astype(key.dtype)
      cached_value.value = jnp.where(valid, jnp.moveaxis(value, -3, -1), 0).astype(value.dtype)
      cache_index.value = jnp.broadcast_to(lengths, cache_index.value.shape)

    dropout_rng = None
    if not deterministic and self.dropout_rate > 0.0:
      dropout_rng = self.make_rng("dropout")
    x = dot_product_attention(query, key, value, mask, bias, dropout_rng=dropout_rng,
                              dropout_rate=self.dropout_rate, dtype=self.dtype, float32_logits=self.float32_logits)
    out = DenseGeneral(inputs_q.shape[-1], axis=(-2, -1), kernel_axes=("joined_kv", "embed"),
                       kernel_init=self.kernel_init, dtype=self.dtype, name="out")(x)
    return out


def dot_product_attention(query: Array, key: Array, value: Array, mask: Array | None, bias: Array | None, *,
                          dropout_rng: Array | None, dropout_rate: float, dtype: Any,
                          float32_logits: bool) -> Array:
  """query [b, q, h, d], key/value [b, k, kvh, d]; mask bool broadcastable to [b, 1, q, k]; bias [1|b, h, q, k].

  Grouped heads are handled by a [kvh, group] split so keys are never repeated in memory. The mask is applied by a
  select on the logits (no additive fp32 mask tensor), the bias added in the logits' dtype. The gradient is
  written out by hand (`_attention`): autodiff of the same forward keeps several `[b, h, q, k]` temporaries and
  XLA:CPU recomputes the softmax gradient once per consumer (query, key and bias gradients); here the
  probabilities are the only saved `[b, h, q, k]` tensor and the logits' gradient is built once.
  """
  b, q, h, d = query.shape
  kvh = key.shape[-2]
  groups = h // kvh
  if float32_logits:
    query, key = query.astype(jnp.float32), key.astype(jnp.float32)
  if groups > 1:  # a [kvh, group] split of the heads; plain multi-head attention keeps 4-D operands (a size-1
    # group axis makes XLA:CPU copy [b, h, q, k] tensors to insert and drop it)
    query = query.reshape(b, q, kvh, groups, d)
    if bias is not None:
      bias = bias.reshape(bias.shape[0], kvh, groups, *bias.shape[-2:])
    if mask is not None:
      mask = mask[:, :, None]
  keep_scale = None
  if dropout_rng is not None:
    keep_prob = 1.0 - dropout_rate
    shape = [b, kvh, groups, q, key.shape[1]] if groups > 1 else [b, h, q, key.shape[1]]
    shape[-2] = 1  # one dropout pattern per key, shared by all queries (T5X)
    keep = jax.random.bernoulli(dropout_rng, keep_prob, shape)
    keep_scale = keep.astype(dtype) / jnp.asarray(keep_prob, dtype)
  out = _attention(query, key, value.astype(dtype), bias, mask, keep_scale, jnp.dtype(dtype))
  return logical(out.reshape(b, q, h, d), ("batch", "length", "heads", "kv"))


def _specs(query) -> dict[str, str]:
  """einsum index strings: query/output (`q`), key/value (`k`) and logits (`l`), grouped or not."""
  if query.ndim == 5:
    return {"q": "bqhgd", "k": "bkhd", "l": "bhgqk"}
  return {"q": "bqhd", "k": "bkhd", "l": "bhqk"}


def _attention_probs(query, key, bias, mask, dtype):
  s = _specs(query)
  logits = jnp.einsum(f"{s['q']},{s['k']}->{s['l']}", query, key)
  if bias is not None:
    logits = logits + bias.astype(logits.dtype)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.asarray(NEG_INF, logits.dtype))
  return jax.nn.softmax(logits).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _attention(query, key, value, bias, mask, keep_scale, dtype):
  """softmax(q.k + bias, masked) (times the dropout keep scale) . v; query [b, q, h, d] or, grouped,
  [b, q, kvh, groups, d]."""
  return _attention_fwd(query, key, value, bias, mask, keep_scale, dtype)[0]


def _attention_fwd(query, key, value, bias, mask, keep_scale, dtype):
  probs = _attention_probs(query, key, bias, mask, dtype)
  weights = probs if keep_scale is None else probs * keep_scale
  s = _specs(query)
  out = jnp.einsum(f"{s['l']},{s['k']}->{s['q']}", weights, value)
  return out, (query, key, value, bias, mask, keep_scale, probs)


def _attention_bwd(dtype, res, d_out):
  query, key, value, bias, mask, keep_scale, probs = res
  weights = probs if keep_scale is None else probs * keep_scale
  # the key/value gradients are computed transposed, [b, h, d, k], so the [b, h, q, k] operand is read in its
  # stored layout and only the small operand and result are transposed: otherwise XLA:CPU either writes a
  # transposed copy of the [b, h, q, k] tensor or runs the dot outside its fast library path
  s = _specs(query)
  to_kv = lambda x: jnp.transpose(x, (0, 3, 1, 2))  # [b, h, d, k] -> [b, k, h, d]
  d_value = to_kv(jnp.einsum(f"{s['q']},{s['l']}->bhdk", d_out.astype(dtype), weights)).astype(value.dtype)
  d_weights = jnp.einsum(f"{s['q']},{s['k']}->{s['l']}", d_out.astype(dtype), value)
  if keep_scale is not None:
    d_weights = d_weights * keep_scale
  # softmax backward in the logits' dtype: dL/dlogits = p * (dL/dp - sum_k p * dL/dp)
  logits_dtype = jnp.result_type(query.dtype, key.dtype)
  p = probs.astype(logits_dtype)
  d_weights = d_weights.astype(logits_dtype)
  d_logits = p * (d_weights - jnp.sum(p * d_weights, axis=-1, keepdims=True))
  if mask is not None:
    d_logits = jnp.where(mask, d_logits, jnp.zeros((), logits_dtype))
  d_query = jnp.einsum(f"{s['l']},{s['k']}->{s['q']}", d_logits, key).astype(query.dtype)
  d_key = to_kv(jnp.einsum(f"{s['q']},{s['l']}->bhdk", query, d_logits)).astype(key.dtype)
  d_bias = None
  if bias is not None:
    d_bias = _bias_grad(d_logits, bias)
  return d_query, d_key, d_value, d_bias, None, None


_attention.defvjp(_attention_fwd, _attention_bwd)


def _bias_grad(d_logits: Array, bias: Array) -> Array:
  """The logits' gradient summed over the axes `bias` broadcasts along (the batch, for T5's relative-position bias).

  Summed as a dot with a vector of ones: as a reduce, XLA:CPU defers every layer's batch sum into one fusion at the
  end of the backward pass, which keeps all layers' [b, h, q, k] gradients alive and reads them at ~0.5 GB/s
  (0.75-0.9 s of a 6 s Flan-T5-small step at b8 x 512).
  """
  summed = [i for i, n in enumerate(bias.shape) if n == 1 and d_logits.shape[i] != 1]
  if not summed:
    return d_logits.astype(bias.dtype)
  kept = [i for i in range(d_logits.ndim) if i not in summed]
  rows = jnp.transpose(d_logits, summed + kept).reshape(-1, *[d_logits.shape[i] for i in kept])
  total = jnp.tensordot(jnp.ones(rows.shape[0], rows.dtype), rows, axes=1)
  return jnp.expand_dims(total, summed).astype(bias.dtype)


REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "minimal": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    "dots": jax.checkpoint_policies.checkpoint_dots,
}


def remat_policy(name: str):
  if name not in REMAT_POLICIES:
    raise ValueError(f"unknown remat_policy {name!r}; known: {sorted(REMAT_POLICIES)}")
  return REMAT_POLICIES[name]


def stack_layers(layer_cls: type[nn.Module], *, remat: str, scan: bool, num_layers: int, num_broadcast_args: int):
  """Wraps a layer class for remat and/or scan. With scan, the layer's `__call__(carry, *broadcast)` returns
  `(carry, None)` and its params gain a leading `layers` axis."""
  policy = remat_policy(remat)
  if remat != "none":
    layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=not scan)
  if scan:
    layer_cls = nn.scan(layer_cls, variable_axes={"params": 0, "cache": 0}, split_rngs={"params": True,
                        "dropout": True}, in_axes=(nn.broadcast,) * num_broadcast_args, length=num_layers,
                        metadata_params={nn.PARTITION_NAME: "layers"})
  return layer_cls


def unscan_params(tree: dict, num_layers: int, scanned_name: str = "layers") -> dict:
  """Splits every `<stack>/layers/...` array (leading `layers` axis) into `<stack>/layers_0 ... layers_{n-1}`."""
  out = {}
  for key, value in tree.items():
    if key == scanned_name and isinstance(value, dict):
      for i in range(num_layers):
        out[f"{scanned_name}_{i}"] = jax.tree_util.tree_map(lambda a, i=i: a[i], value)
    elif isinstance(value, dict):
      out[key] = unscan_params(value, num_layers, scanned_name)
    else:
      out[key] = value
  return out


def scan_params(tree: dict, num_layers: int, scanned_name: str = "layers") -> dict:
  """Inverse of `unscan_params`: stacks `layers_0 ... layers_{n-1}` under `layers` (leading axis)."""
  names = [f"{scanned_name}_{i}" for i in range(num_layers)]
  if all(n in tree for n in names):
    rest = {k: v for k, v in tree.items() if k not in names}
    if any(k.startswith(f"{scanned_name}_") for k in rest):
      raise ValueError(f"layer keys beyond {num_layers} layers: {sorted(k for k in rest if k.startswith('layers_'))}")
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[tree[n] for n in names])
    return {**{k: scan_params(v, num_layers, scanned_name) if isinstance(v, dict) else v for k, v in rest.items()},
            scanned_name: stacked}
  return {k: scan_params(v, num_layers, scanned_name) if isinstance(v, dict) else v for k, v in tree.items()}
