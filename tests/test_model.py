"""Model wrappers: T5X's loss/score on the t5x fixture, init/logical axes, model.json round trip, decoder-only."""
from __future__ import annotations

import dataclasses
import json
import warnings

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax.models import decoder_only, model as model_lib, spec, t5

FIXTURE_CFG = t5.T5Config(vocab_size=4096, emb_dim=64, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
                          head_dim=16, mlp_dim=128)
SHAPES = {"encoder_input_tokens": (2, 8), "decoder_input_tokens": (2, 6), "decoder_target_tokens": (2, 6)}


@pytest.fixture(scope="module")
def fixture_params(t5x_tiny_fixture):
  import orbax.checkpoint as ocp
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    restored = ocp.PyTreeCheckpointer().restore(str(t5x_tiny_fixture / "ckpt_orbax" / "checkpoint_3" / "state"))
  return jax.tree_util.tree_map(jnp.asarray, restored["target"])


@pytest.fixture(scope="module")
def reference(t5x_tiny_fixture):
  return json.loads((t5x_tiny_fixture / "reference" / "outputs.json").read_text())


def test_loss_and_score_match_t5x(fixture_params, reference, t5x_tiny_fixture):
  model = model_lib.EncoderDecoderModel(FIXTURE_CFG, z_loss=1e-4)
  batch = {k: jnp.asarray(v) for k, v in reference["eval_batch"].items()}
  loss, metrics = jax.jit(model.loss_fn)(fixture_params, batch, None)
  ref = reference["loss_fn"]
  np.testing.assert_allclose(float(loss), ref["loss"], rtol=1e-6)
  for name in ("z_loss", "cross_ent_loss", "accuracy", "loss_per_nonpadding_target_token",
               "loss_per_all_target_tokens"):
    np.testing.assert_allclose(float(metrics[name]), ref["metrics"][name], rtol=1e-5, err_msg=name)
  assert float(metrics["num_nonpadding_tokens"]) == 4 and float(metrics["num_target_tokens"]) == 6
  score = jax.jit(model.score_batch)(fixture_params, batch)
  np.testing.assert_allclose(np.asarray(score), np.load(t5x_tiny_fixture / "reference" / "score_batch.npy"),
                             rtol=1e-6)
  assert score.shape == (1,)
  normalized = model_lib.EncoderDecoderModel(FIXTURE_CFG, loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
  nloss, _ = jax.jit(normalized.loss_fn)(fixture_params, batch, None)
  np.testing.assert_allclose(float(nloss), ref["loss"] / 4, rtol=1e-6)


def test_gradient_reaches_every_param(reference):
  model = model_lib.EncoderDecoderModel(FIXTURE_CFG)
  params = model.init_variables(jax.random.PRNGKey(0), SHAPES)
  batch = {k: jnp.asarray(v) for k, v in reference["train_batch"].items()}
  grads = jax.jit(jax.grad(lambda p: model.loss_fn(p, batch, None)[0]))(params)
  norms = {k: float(jnp.linalg.norm(v)) for k, v in flax.traverse_util.flatten_dict(grads, sep="/").items()}
  assert all(np.isfinite(v) and v > 0 for v in norms.values()), norms


def test_init_and_logical_axes_mirror_params():
  model = model_lib.EncoderDecoderModel(FIXTURE_CFG)
  params = model.init_variables(jax.random.PRNGKey(0), SHAPES)
  axes = model.logical_axes(SHAPES)
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
      axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  flat_axes = flax.traverse_util.flatten_dict(axes, sep="/")
  assert tuple(flat_axes["decoder/logits_dense/kernel"]) == ("embed", "vocab")
  assert tuple(flat_axes["encoder/relpos_bias/rel_embedding"]) == ("heads", "relpos_buckets")
  shapes = model.param_shapes(SHAPES)
  assert jax.tree_util.tree_map(lambda a: a.shape, shapes) == jax.tree_util.tree_map(lambda a: a.shape, params)
  with pytest.raises(KeyError, match="decoder_target_tokens"):
    model.init_variables(jax.random.PRNGKey(0), {"encoder_input_tokens": (1, 4), "decoder_input_tokens": (1, 4)})


def test_dropout_rng_changes_loss_and_none_is_deterministic(fixture_params, reference):
  cfg = dataclasses.replace(FIXTURE_CFG, dropout_rate=0.2)
  model = model_lib.EncoderDecoderModel(cfg)
  batch = {k: jnp.asarray(v) for k, v in reference["train_batch"].items()}
  fn = jax.jit(model.loss_fn)
  det1, _ = fn(fixture_params, batch, None)
  det2, _ = fn(fixture_params, batch, None)
  d1, _ = fn(fixture_params, batch, jax.random.PRNGKey(1))
  d2, _ = fn(fixture_params, batch, jax.random.PRNGKey(2))
  assert float(det1) == float(det2) and float(d1) != float(d2) and float(d1) != float(det1)


def test_spec_round_trip(tmp_path):
  model = model_lib.EncoderDecoderModel(dataclasses.replace(FIXTURE_CFG, dtype="bfloat16"), z_loss=0.0,
                                        label_smoothing=0.1, loss_normalizing_factor="AVERAGE_PER_SEQUENCE")
  path = spec.save_spec(tmp_path, model)
  assert path.name == "model.json"
  back = spec.load_model(tmp_path)
  assert type(back) is model_lib.EncoderDecoderModel and back.config == model.config
  assert spec.model_spec(back) == spec.model_spec(model) == json.loads(path.read_text())
  dec = model_lib.DecoderOnlyModel(decoder_only.DecoderOnlyConfig(vocab_size=50, num_kv_heads=2, num_heads=4),
                                   loss_normalizing_factor=3.0)
  back = spec.build_model(json.loads(json.dumps(spec.model_spec(dec))))
  assert back.config == dec.config and back.loss_normalizing_factor == 3.0
  bad = spec.model_spec(model)
  bad["config"]["num_layerz"] = 3
  (tmp_path / "model.json").write_text(json.dumps(bad))
  with pytest.raises(ValueError, match=r"model\.json.*num_layerz"):
    spec.load_model(tmp_path)
  (tmp_path / "model.json").write_text("{\n  \"kind\": \n")
  with pytest.raises(ValueError, match=r"model\.json:\d+"):
    spec.load_model(tmp_path)
  with pytest.raises(FileNotFoundError):
    spec.load_model(tmp_path / "nowhere")


def test_decoder_only_model_loss_uses_targets_only():
  cfg = decoder_only.DecoderOnlyConfig(vocab_size=40, emb_dim=16, num_heads=2, num_layers=1, head_dim=8, mlp_dim=32)
  model = model_lib.DecoderOnlyModel(cfg)
  shapes = {"decoder_input_tokens": (2, 6), "decoder_target_tokens": (2, 6), "decoder_causal_attention": (2, 6)}
  params = model.init_variables(jax.random.PRNGKey(0), shapes)
  batch = {"decoder_target_tokens": jnp.asarray([[5, 6, 7, 8, 1, 0], [9, 10, 11, 1, 0, 0]]),
           "decoder_input_tokens": jnp.asarray([[0, 5, 6, 7, 8, 1], [0, 9, 10, 11, 1, 0]]),
           "decoder_causal_attention": jnp.asarray([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]),
           "decoder_loss_weights": jnp.asarray([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0]], jnp.float32)}
  loss, metrics = jax.jit(model.loss_fn)(params, batch, None)
  logits = model.compute_logits(params, batch)
  logp = jax.nn.log_softmax(logits)
  ll = jnp.take_along_axis(logp, batch["decoder_target_tokens"][..., None], -1)[..., 0]
  np.testing.assert_allclose(np.asarray(model.score_batch(params, batch)),
                             np.asarray(jnp.sum(ll * batch["decoder_loss_weights"], -1)), rtol=1e-5)
  assert float(metrics["num_nonpadding_tokens"]) == 6
  lz = jax.nn.logsumexp(logits, -1)
  np.testing.assert_allclose(float(loss), float(jnp.sum((-ll + 1e-4 * lz ** 2) * batch["decoder_loss_weights"])),
                             rtol=1e-5)
