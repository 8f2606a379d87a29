"""A tiny random Flan-T5-shaped checkpoint dir (model.json + Orbax step 0), for the eval / infer entry points."""
from __future__ import annotations

import pathlib

import jax

from flan_jax.checkpoints.manager import Checkpointer
from flan_jax.models import model as model_lib
from flan_jax.models import spec
from flan_jax.models.t5 import T5Config

TINY_T5 = dict(vocab_size=32128, emb_dim=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
               head_dim=8, mlp_dim=32)


def write_tiny_checkpoint(directory: pathlib.Path, seed: int = 0) -> tuple[model_lib.EncoderDecoderModel, dict]:
  model = model_lib.EncoderDecoderModel(T5Config(**TINY_T5))
  shapes = {k: (1, 8) for k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  params = model.init_variables(jax.random.PRNGKey(seed), shapes)
  spec.save_spec(directory, model)
  with Checkpointer(directory, async_save=False) as ckpt:
    ckpt.save(0, params=params)
  return model, params
