"""The T5 network against the t5x-written fixture, plus packing, cached decoding, scan/remat and bf16."""
from __future__ import annotations

import json
import warnings

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax.models import t5

FIXTURE_CFG = dict(vocab_size=4096, emb_dim=64, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
                   head_dim=16, mlp_dim=128, mlp_activations=("gelu", "linear"), dropout_rate=0.0,
                   logits_via_embedding=False)


def _flat(tree) -> dict:
  return flax.traverse_util.flatten_dict(tree, sep="/")


@pytest.fixture(scope="session")
def fixture_config() -> t5.T5Config:
  return t5.T5Config(**FIXTURE_CFG)


@pytest.fixture(scope="session")
def fixture_params(t5x_tiny_fixture):
  """The step-3 params of the t5x fixture, read with Orbax directly (the importer is tested elsewhere)."""
  import orbax.checkpoint as ocp
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    restored = ocp.PyTreeCheckpointer().restore(str(t5x_tiny_fixture / "ckpt_orbax" / "checkpoint_3" / "state"))
  return jax.tree_util.tree_map(jnp.asarray, restored["target"])


@pytest.fixture(scope="session")
def reference(t5x_tiny_fixture) -> dict:
  return json.loads((t5x_tiny_fixture / "reference" / "outputs.json").read_text())


def _boxed_shapes(module, enc_len=8, dec_len=6):
  ones = lambda n: jnp.ones((2, n), jnp.int32)
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), ones(enc_len), ones(dec_len), ones(dec_len),
                                            enable_dropout=False))["params"]


def test_param_tree_and_axes_match_t5x(fixture_config, t5x_tiny_fixture):
  boxed = _boxed_shapes(t5.Transformer(fixture_config))
  shapes = {k: tuple(v.shape) for k, v in _flat(flax.core.meta.unbox(boxed)).items()}
  ref = json.loads((t5x_tiny_fixture / "param_tree.json").read_text())
  ref_shapes = {k.removeprefix("target/"): tuple(s) for k, (s, _) in ref.items()}
  assert shapes == ref_shapes
  axes = {k: tuple(v) for k, v in _flat(flax.linen.get_partition_spec(boxed)).items()}
  ref_axes = json.loads((t5x_tiny_fixture / "params_axes.json").read_text())
  ref_axes = {k.removesuffix("_axes"): tuple(v) for k, v in ref_axes.items()}
  assert axes == ref_axes
  dtypes = {v.dtype for v in _flat(flax.core.meta.unbox(boxed)).values()}
  assert dtypes == {jnp.dtype("float32")}


def test_forward_matches_t5x_reference(fixture_config, fixture_params, reference, t5x_tiny_fixture):
  batch = {k: jnp.asarray(v) for k, v in reference["eval_batch"].items()}
  module = t5.Transformer(fixture_config)
  logits = module.apply({"params": fixture_params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                        batch["decoder_target_tokens"], enable_dropout=False)
  ref_logits = np.load(t5x_tiny_fixture / "reference" / "logits.npy")
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(logits), ref_logits, atol=1e-5, rtol=0)
  encoded = module.apply({"params": fixture_params}, batch["encoder_input_tokens"], enable_dropout=False,
                         method="encode")
  np.testing.assert_allclose(np.asarray(encoded), np.load(t5x_tiny_fixture / "reference" / "encoder_output.npy"),
                             atol=1e-5, rtol=0)


def _greedy_cached(module, params, enc_tokens, steps):
  """Greedy decoding through the cache contract in t5.py's docstring."""
  b = enc_tokens.shape[0]
  dummy = jnp.ones((b, steps), jnp.int32)
  cache = module.apply({"params": params}, enc_tokens, dummy, dummy, enable_dropout=False, decode=True,
                       mutable=["cache"])[1]["cache"]
  encoded = module.apply({"params": params}, enc_tokens, enable_dropout=False, method="encode")
  step = jax.jit(lambda cache, tok: module.apply(
      {"params": params, "cache": cache}, encoded, enc_tokens, tok, tok, enable_dropout=False, decode=True,
      max_decode_length=steps, method="decode", mutable=["cache"]))
  tok = jnp.zeros((b, 1), jnp.int32)
  out, step_logits = [], []
  for _ in range(steps):
    logits, variables = step(cache, tok)
    cache = variables["cache"]
    step_logits.append(logits[:, 0])
    tok = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    out.append(tok[:, 0])
  return jnp.stack(out, axis=1), jnp.stack(step_logits, axis=1)


def test_cached_decoding_equals_full_forward(fixture_config, fixture_params, reference):
  module = t5.Transformer(fixture_config)
  enc = jnp.asarray(reference["eval_batch"]["encoder_input_tokens"])
  tokens, step_logits = _greedy_cached(module, fixture_params, enc, 8)
  assert tokens[0].tolist() == reference["manual_argmax_decode_no_eos_stop"]
  dec_in = jnp.concatenate([jnp.zeros((1, 1), jnp.int32), tokens[:, :-1]], axis=1)
  full = module.apply({"params": fixture_params}, enc, dec_in, jnp.ones_like(dec_in), enable_dropout=False)
  np.testing.assert_allclose(np.asarray(step_logits), np.asarray(full), atol=1e-5, rtol=0)


@pytest.fixture(scope="session")
def random_params(fixture_config):
  ones = jnp.ones((1, 8), jnp.int32)
  return flax.core.meta.unbox(t5.Transformer(fixture_config).init(jax.random.PRNGKey(1), ones, ones, ones,
                                                                  enable_dropout=False)["params"])


def test_packed_batch_equals_separate_examples(fixture_config, random_params):
  module = t5.Transformer(fixture_config)
  rng = np.random.default_rng(0)
  ex = [(rng.integers(2, 4096, 5), rng.integers(2, 4096, 4)), (rng.integers(2, 4096, 3), rng.integers(2, 4096, 6))]
  def run(enc, tgt, **kw):
    dec_in = kw.pop("dec_in", None)
    if dec_in is None:
      dec_in = np.concatenate([[0], tgt[:-1]])
    return module.apply({"params": random_params}, jnp.asarray([enc]), jnp.asarray([dec_in]), jnp.asarray([tgt]),
                        enable_dropout=False, **{k: jnp.asarray([v]) for k, v in kw.items()})[0]
  enc = np.concatenate([ex[0][0], ex[1][0], [0, 0]])
  tgt = np.concatenate([ex[0][1], ex[1][1], [0]])
  dec_in = np.concatenate([[0], ex[0][1][:-1], [0], ex[1][1][:-1], [0]])
  seg = lambda a, b, pad: np.array([1] * a + [2] * b + [0] * pad)
  pos = lambda a, b, pad: np.concatenate([np.arange(a), np.arange(b), np.zeros(pad, int)])
  packed = run(enc, tgt, dec_in=dec_in, encoder_segment_ids=seg(5, 3, 2), decoder_segment_ids=seg(4, 6, 1),
               encoder_positions=pos(5, 3, 2), decoder_positions=pos(4, 6, 1))
  first = run(*ex[0])
  second = run(*ex[1])
  np.testing.assert_allclose(np.asarray(packed[:4]), np.asarray(first), atol=2e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(packed[4:10]), np.asarray(second), atol=2e-5, rtol=0)


def test_scan_remat_match_unscanned_and_convert(fixture_config, random_params):
  batch = [jnp.asarray([[5, 6, 7, 1, 0, 0, 0, 0]]), jnp.asarray([[0, 9, 10, 11]]), jnp.asarray([[9, 10, 11, 1]])]
  base = t5.Transformer(fixture_config).apply({"params": random_params}, *batch, enable_dropout=False)
  scanned_cfg = t5.T5Config(**{**FIXTURE_CFG, "scan_layers": True, "remat_policy": "full"})
  scanned_module = t5.Transformer(scanned_cfg)
  boxed = _boxed_shapes(scanned_module)
  axes = _flat(flax.linen.get_partition_spec(boxed))
  assert tuple(axes["encoder/layers/attention/query/kernel"]) == ("layers", "embed", "joined_kv")
  scanned = t5.scan_params(random_params, fixture_config)
  shapes = {k: v.shape for k, v in _flat(flax.core.meta.unbox(boxed)).items()}
  assert {k: v.shape for k, v in _flat(scanned).items()} == shapes
  out = scanned_module.apply({"params": scanned}, *batch, enable_dropout=False)
  np.testing.assert_allclose(np.asarray(out), np.asarray(base), atol=1e-5, rtol=0)
  back = t5.unscan_params(scanned, fixture_config)
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), back,
                                                       random_params))
  grads = jax.grad(lambda p: jnp.sum(scanned_module.apply({"params": p}, *batch, enable_dropout=False)))(scanned)
  ref_grads = jax.grad(lambda p: jnp.sum(t5.Transformer(fixture_config).apply({"params": p}, *batch,
                                                                                enable_dropout=False)))(random_params)
  np.testing.assert_allclose(np.asarray(grads["encoder"]["layers"]["mlp"]["wo"]["kernel"][1]),
                             np.asarray(ref_grads["encoder"]["layers_1"]["mlp"]["wo"]["kernel"]), atol=1e-4)


def test_bfloat16_activations_keep_float32_params_and_logits(fixture_config, random_params):
  cfg = t5.T5Config(**{**FIXTURE_CFG, "dtype": "bfloat16"})
  batch = [jnp.asarray([[5, 6, 7, 1]]), jnp.asarray([[0, 9, 10]]), jnp.asarray([[9, 10, 1]])]
  module = t5.Transformer(cfg)
  boxed = _boxed_shapes(module)
  assert {v.dtype for v in _flat(flax.core.meta.unbox(boxed)).values()} == {jnp.dtype("float32")}
  out = module.apply({"params": random_params}, *batch, enable_dropout=False)
  ref = t5.Transformer(fixture_config).apply({"params": random_params}, *batch, enable_dropout=False)
  assert out.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(out - ref))) < 0.1 * float(jnp.max(jnp.abs(ref)))


def test_dropout_needs_rng_and_changes_outputs(random_params):
  cfg = t5.T5Config(**{**FIXTURE_CFG, "dropout_rate": 0.3})
  module = t5.Transformer(cfg)
  batch = [jnp.asarray([[5, 6, 7, 1]]), jnp.asarray([[0, 9, 10]]), jnp.asarray([[9, 10, 1]])]
  det = module.apply({"params": random_params}, *batch, enable_dropout=False)
  a = module.apply({"params": random_params}, *batch, rngs={"dropout": jax.random.PRNGKey(0)})
  b = module.apply({"params": random_params}, *batch, rngs={"dropout": jax.random.PRNGKey(1)})
  assert not np.allclose(a, det) and not np.allclose(a, b)
  with pytest.raises(Exception):
    module.apply({"params": random_params}, *batch)


def test_relative_position_buckets():
  from flan_jax.models.layers import relative_position_bucket
  rel = np.arange(-200, 201)[None, :]
  bi = relative_position_bucket(rel, True, 32, 128)[0]
  causal = relative_position_bucket(rel, False, 32, 128)[0]
  assert bi[200] == 0 and bi[201] == 17 and bi[199] == 1  # key after the query: the upper half
  assert bi.min() == 0 and bi.max() == 31 and causal.max() == 31
  assert (causal[201:] == 0).all()  # the future all share bucket 0 in the causal table
  assert causal[200 - 15] == 15 and causal[200 - 16] == 16 and causal[0] == 31
  assert np.all(np.diff(causal[:201][::-1]) >= 0)


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match="remat_policy"):
    t5.T5Config(**{**FIXTURE_CFG, "remat_policy": "sometimes"})
  with pytest.raises(ValueError, match="emb_dim"):
    t5.T5Config(**{**FIXTURE_CFG, "emb_dim": 0})
