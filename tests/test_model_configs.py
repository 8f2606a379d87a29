"""Every gin model config instantiates (shapes only, via jax.eval_shape) with the public Flan-T5 sizes."""
from __future__ import annotations

import math

import gin
import numpy as np
import pytest

from flan_jax.models import model as model_lib
from flan_jax.models.t5 import T5Config
from tests.conftest import REPO_ROOT

MODEL_GIN = REPO_ROOT / "gin_configs" / "models"

# Parameter counts of the public checkpoints (google/flan-t5-*, embedding and untied LM head included).
PUBLIC_COUNTS = {"small": 76_961_152, "base": 247_577_856, "large": 783_150_080, "xl": 2_849_757_184,
                 "xxl": 11_135_332_352}
PUBLIC_ROUNDED = {"small": 77e6, "base": 248e6, "large": 783e6, "xl": 2.85e9, "xxl": 11.1e9}


@pytest.fixture(scope="module", autouse=True)
def _registered():
  from flan_jax import gin_utils
  gin_utils.register_configurables()
  yield
  gin.clear_config()


@gin.configurable("test_model_configs_probe")
def _probe(value=None):
  return value


def _macro_model():
  """Evaluates the MODEL macro (a `@models.X()` reference) by binding it to a probe."""
  gin.query_parameter("%MODEL")
  gin.parse_config("test_model_configs_probe.value = %MODEL")
  return _probe()


def _model_from_gin(name: str):
  gin.clear_config()
  gin.parse_config_file(str(MODEL_GIN / f"{name}.gin"))
  try:
    return _macro_model()
  finally:
    gin.clear_config()


def _closed_form_t5_count(cfg: T5Config) -> int:
  """Counted by hand from the T5 v1.1 layout, independently of the Flax modules."""
  e, inner, m = cfg.emb_dim, cfg.num_heads * cfg.head_dim, cfg.mlp_dim
  mlp = len(cfg.mlp_activations) * e * m + m * e
  attn = 4 * e * inner
  enc_layer = attn + mlp + 2 * e
  dec_layer = 2 * attn + mlp + 3 * e
  relpos = cfg.num_heads * cfg.relative_attention_num_buckets
  head = 0 if cfg.logits_via_embedding else e * cfg.vocab_size
  return (cfg.vocab_size * e + head + cfg.num_encoder_layers * enc_layer + cfg.num_decoder_layers * dec_layer
          + 2 * relpos + 2 * e)


def _count(model) -> int:
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 4), "decoder_target_tokens": (1, 4)}
  if isinstance(model, model_lib.DecoderOnlyModel):
    shapes = {"decoder_input_tokens": (1, 8), "decoder_target_tokens": (1, 8)}
  import jax
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(model.param_shapes(shapes)))


@pytest.mark.parametrize("size", ["small", "base", "large", "xl", "xxl"])
def test_flan_t5_sizes_match_public_counts(size):
  model = _model_from_gin(f"flan_t5_{size}")
  assert isinstance(model, model_lib.EncoderDecoderModel)
  cfg = model.config
  assert cfg.vocab_size == 32128 and cfg.mlp_activations == ("gelu", "linear") and not cfg.logits_via_embedding
  assert (model.z_loss, model.label_smoothing, model.loss_normalizing_factor) == (1e-4, 0.0, None)
  count = _count(model)
  print(f"flan_t5_{size}: {count:,} params ({count / 1e6:.1f}M)")
  assert count == _closed_form_t5_count(cfg)
  assert count == PUBLIC_COUNTS[size]
  assert np.isclose(count, PUBLIC_ROUNDED[size], rtol=0.01)


def test_tiny_configs_instantiate():
  t5_tiny = _model_from_gin("flan_t5_tiny")
  assert isinstance(t5_tiny, model_lib.EncoderDecoderModel)
  n = _count(t5_tiny)
  print(f"flan_t5_tiny: {n:,} params")
  assert n == _closed_form_t5_count(t5_tiny.config) and n < 5_000_000
  dec = _model_from_gin("decoder_only_tiny")
  assert isinstance(dec, model_lib.DecoderOnlyModel)
  c = dec.config
  kv = c.num_kv_heads * c.head_dim
  expected = (2 * c.vocab_size * c.emb_dim + c.emb_dim
              + c.num_layers * (c.emb_dim * (2 * c.num_heads * c.head_dim + 2 * kv) + 3 * c.emb_dim * c.mlp_dim
                                + 2 * c.emb_dim))
  n = _count(dec)
  print(f"decoder_only_tiny: {n:,} params")
  assert n == expected


def test_gin_overrides_reach_the_config():
  gin.clear_config()
  gin.parse_config_files_and_bindings([str(MODEL_GIN / "flan_t5_small.gin")],
                                      ["DROPOUT_RATE = 0.1", "ACTIVATION_DTYPE = 'bfloat16'", "SCAN_LAYERS = True",
                                       "REMAT_POLICY = 'minimal'", "LOSS_NORMALIZING_FACTOR = 'NUM_REAL_TARGET_TOKENS'"],
                                      finalize_config=False)
  try:
    model = _macro_model()
  finally:
    gin.clear_config()
  assert (model.config.dropout_rate, model.config.dtype, model.config.scan_layers,
          model.config.remat_policy) == (0.1, "bfloat16", True, "minimal")
  assert model.loss_normalizing_factor.name == "NUM_REAL_TARGET_TOKENS"
  assert _count(model) == PUBLIC_COUNTS["small"]
