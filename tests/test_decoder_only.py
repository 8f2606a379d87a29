"""Decoder-only model: param layout, prefix-LM masking, packing with RoPE, prefill + cached decoding, scan."""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax.models import decoder_only as D

LLAMA = dict(vocab_size=97, emb_dim=32, num_heads=4, num_kv_heads=2, num_layers=2, head_dim=8, mlp_dim=48,
             mlp_activations=("silu", "linear"), layer_norm_epsilon=1e-5)


def _flat(tree):
  return flax.traverse_util.flatten_dict(tree, sep="/")


def _init(cfg, length=8):
  ones = jnp.ones((1, length), jnp.int32)
  return flax.core.meta.unbox(D.DecoderOnlyTransformer(cfg).init(jax.random.PRNGKey(0), ones, ones,
                                                                 enable_dropout=False)["params"])


@pytest.fixture(scope="session")
def llama_cfg():
  return D.DecoderOnlyConfig(**LLAMA)


@pytest.fixture(scope="session")
def llama_params(llama_cfg):
  return _init(llama_cfg)


@pytest.fixture(scope="session")
def forward(llama_cfg):
  module = D.DecoderOnlyTransformer(llama_cfg)
  return jax.jit(lambda p, *a, **kw: module.apply({"params": p}, *a, enable_dropout=False, **kw))


def test_param_layout_is_the_documented_one(llama_cfg, llama_params):
  shapes = {k: v.shape for k, v in _flat(llama_params).items()}
  e, v = 32, 97
  assert shapes["token_embedder/embedding"] == (v, e)
  assert shapes["decoder/layers_0/self_attention/query/kernel"] == (e, 4 * 8)
  assert shapes["decoder/layers_0/self_attention/key/kernel"] == (e, 2 * 8)
  assert shapes["decoder/layers_0/self_attention/value/kernel"] == (e, 2 * 8)
  assert shapes["decoder/layers_0/self_attention/out/kernel"] == (4 * 8, e)
  assert shapes["decoder/layers_1/mlp/wi_0/kernel"] == (e, 48)
  assert shapes["decoder/layers_1/mlp/wo/kernel"] == (48, e)
  assert shapes["decoder/layers_1/pre_mlp_layer_norm/scale"] == (e,)
  assert shapes["decoder/decoder_norm/scale"] == (e,)
  assert shapes["decoder/logits_dense/kernel"] == (e, v)
  assert len(shapes) == 2 + 1 + 2 * 9
  parallel = _init(D.DecoderOnlyConfig(**{**LLAMA, "parallel_block": True, "logits_via_embedding": True}))
  keys = set(_flat(parallel))
  assert "decoder/layers_0/pre_mlp_layer_norm/scale" not in keys and "decoder/logits_dense/kernel" not in keys
  boxed = jax.eval_shape(lambda: D.DecoderOnlyTransformer(llama_cfg).init(
      jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), jnp.int32), enable_dropout=False))
  axes = _flat(flax.linen.get_partition_spec(boxed["params"]))
  assert tuple(axes["decoder/layers_0/self_attention/key/kernel"]) == ("embed", "joined_kv")
  assert tuple(axes["decoder/logits_dense/kernel"]) == ("embed", "vocab")


def test_prefix_lm_masking(forward, llama_params):
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, 97, (1, 8))
  causal = np.array([[1, 1, 1, 1, 0, 0, 0, 0]])  # 4 input positions, 4 target positions
  base = forward(llama_params, tokens, tokens, decoder_causal_attention=causal)
  changed_input = tokens.copy()
  changed_input[0, 3] = (tokens[0, 3] + 1) % 95 + 2
  out = forward(llama_params, changed_input, changed_input, decoder_causal_attention=causal)
  assert not np.allclose(out[0, 0], base[0, 0])  # inputs attend bidirectionally: position 0 sees position 3
  changed_target = tokens.copy()
  changed_target[0, 6] = (tokens[0, 6] + 1) % 95 + 2
  out = forward(llama_params, changed_target, changed_target, decoder_causal_attention=causal)
  np.testing.assert_allclose(out[0, :6], base[0, :6], atol=1e-6)  # targets are causal
  assert not np.allclose(out[0, 6], base[0, 6])
  plain = forward(llama_params, changed_input, changed_input)  # no prefix: fully causal
  ref = forward(llama_params, tokens, tokens)
  np.testing.assert_allclose(plain[0, :3], ref[0, :3], atol=1e-6)


def test_packed_rows_equal_separate_examples(forward, llama_params):
  rng = np.random.default_rng(1)
  a, b = rng.integers(2, 97, 5), rng.integers(2, 97, 6)
  ca, cb = np.array([1, 1, 0, 0, 0]), np.array([1, 1, 1, 0, 0, 0])
  packed_tokens = np.concatenate([a, b, [0]])[None]
  packed = forward(llama_params, packed_tokens, packed_tokens,
                   decoder_segment_ids=np.array([[1] * 5 + [2] * 6 + [0]]),
                   decoder_positions=np.concatenate([np.arange(5), np.arange(6), [0]])[None],
                   decoder_causal_attention=np.concatenate([ca, cb, [0]])[None])
  sep_a = forward(llama_params, a[None], a[None], decoder_causal_attention=ca[None])
  sep_b = forward(llama_params, b[None], b[None], decoder_causal_attention=cb[None])
  np.testing.assert_allclose(packed[0, :5], sep_a[0], atol=2e-5)
  np.testing.assert_allclose(packed[0, 5:11], sep_b[0], atol=2e-5)


@pytest.mark.parametrize("variant", ["llama", "relative_scanned"])
def test_prefill_then_cached_steps_equal_full_forward(variant, llama_cfg, llama_params):
  if variant == "llama":
    cfg, params = llama_cfg, llama_params
  else:
    cfg = D.DecoderOnlyConfig(**{**LLAMA, "num_kv_heads": 1, "position_embedding": "relative",
                                 "query_scale": "folded", "parallel_block": True, "scan_layers": True})
    params = _init(cfg)
  module = D.DecoderOnlyTransformer(cfg)
  rng = np.random.default_rng(2)
  total = 10
  full_tokens = rng.integers(2, 97, (2, total))
  lengths = np.array([3, 5])
  causal = (np.arange(total)[None] < lengths[:, None]).astype(np.int32)
  prompt = np.where(causal > 0, full_tokens, 0)
  logits, state = module.apply({"params": params}, prompt, np.maximum(prompt, 1), decoder_causal_attention=causal,
                               enable_dropout=False, prefill=True, prefill_lengths=lengths, mutable=["cache"])
  cache = state["cache"]
  step = jax.jit(lambda c, t: module.apply({"params": params, "cache": c}, t, t, enable_dropout=False, decode=True,
                                           max_decode_length=total, mutable=["cache"]))
  full = module.apply({"params": params}, full_tokens, full_tokens, decoder_causal_attention=causal,
                      enable_dropout=False)
  np.testing.assert_allclose(logits[0, :3], full[0, :3], atol=2e-5)
  # feed each row's true continuation token by token from its own prompt length
  for t in range(total - lengths.max()):
    pos = lengths + t
    tok = full_tokens[np.arange(2), pos][:, None]
    step_logits, state = step(cache, tok)
    cache = state["cache"]
    for r in range(2):
      np.testing.assert_allclose(step_logits[r, 0], full[r, pos[r]], atol=2e-5)
  index = jax.tree_util.tree_leaves({k: v for k, v in _flat(cache).items() if k.endswith("cache_index")})[0]
  assert np.asarray(index).reshape(-1, 2)[0].tolist() == (lengths + total - lengths.max()).tolist()


def test_scan_conversion_round_trip_and_equal_outputs(llama_cfg, llama_params, forward):
  scanned_cfg = D.DecoderOnlyConfig(**{**LLAMA, "scan_layers": True, "remat_policy": "minimal"})
  scanned = D.scan_params(llama_params, llama_cfg)
  assert scanned["decoder"]["layers"]["self_attention"]["query"]["kernel"].shape == (2, 32, 32)
  tokens = np.arange(2, 10)[None]
  out = D.DecoderOnlyTransformer(scanned_cfg).apply({"params": scanned}, tokens, tokens, enable_dropout=False)
  np.testing.assert_allclose(out, forward(llama_params, tokens, tokens), atol=1e-5)
  back = D.unscan_params(scanned, llama_cfg)
  assert _flat(back).keys() == _flat(llama_params).keys()
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(back),
                                                  jax.tree_util.tree_leaves(llama_params)))


def test_rope_matches_rotation_by_position():
  from flan_jax.models.layers import rotate_half_rope
  x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 3, 1, 4)), jnp.float32)
  pos = jnp.asarray([[0, 1, 5]])
  out = np.asarray(rotate_half_rope(x, pos, 10000.0))
  np.testing.assert_allclose(out[0, 0], x[0, 0], atol=1e-6)
  for i, p in enumerate([0, 1, 5]):
    for j, freq in enumerate([1.0, 1.0 / 100.0]):  # pairs (0, 2) and (1, 3) rotate at theta^(-2j/d)
      c, s = np.cos(p * freq), np.sin(p * freq)
      x1, x2 = float(x[0, i, 0, j]), float(x[0, i, 0, j + 2])
      np.testing.assert_allclose(out[0, i, 0, [j, j + 2]], [x1 * c - x2 * s, x2 * c + x1 * s], atol=1e-5)


def test_config_validation():
  with pytest.raises(ValueError, match="num_kv_heads"):
    D.DecoderOnlyConfig(**{**LLAMA, "num_kv_heads": 3})
  with pytest.raises(ValueError, match="position_embedding"):
    D.DecoderOnlyConfig(**{**LLAMA, "position_embedding": "alibi"})
