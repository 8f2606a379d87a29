"""`flan-jax plan`: per-device memory from shapes, checked by hand on a tiny model and for scale on XXL."""
from __future__ import annotations

import pytest

from flan_jax import optimizers, plan
from flan_jax.models import EncoderDecoderModel, T5Config

# A tiny T5 v1.1 (gated-GELU) that the arithmetic below is done for.
TINY = dict(vocab_size=128, emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64, num_encoder_layers=2,
            num_decoder_layers=2, mlp_activations=("gelu", "linear"), dtype="float32")
LENGTHS = {"inputs": 32, "targets": 16}

# Parameters, counted by hand:
#   token_embedder 128*32 = 4096; logits_dense 32*128 = 4096; relpos_bias 32 buckets * 4 heads = 128 per stack
#   encoder layer: q,k,v,o 4*32*32 = 4096, wi_0/wi_1 2*32*64 = 4096, wo 64*32 = 2048, 2 norms 64   -> 10304
#   decoder layer: self + cross attention 8192, MLP 6144, 3 norms 96                               -> 14432
#   final norms 2*32
TINY_PARAMS = 4096 + 4096 + 2 * 128 + 2 * 10304 + 2 * 14432 + 2 * 32
# On data=2, model=4 (1-D parameter partitioning) every kernel, the embeddings and the relpos tables split 4 ways
# over 'model' (vocab, joined_kv, mlp, heads all divide by 4); the 12 RMSNorm scales (5 encoder, 7 decoder,
# 32 each) stay whole.
NORMS = 12 * 32
TINY_PARAMS_PER_DEVICE = ((TINY_PARAMS - NORMS) // 4 + NORMS) * 4


@pytest.fixture(scope="session")
def tiny_model():
  return EncoderDecoderModel(T5Config(**TINY))


def test_tiny_parameters_and_adafactor_state_by_hand(tiny_model):
  assert TINY_PARAMS == 57_984
  p = plan.estimate(tiny_model, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 2, "model": 4})
  assert p.param_count == TINY_PARAMS
  assert p.params_total == 4 * TINY_PARAMS
  assert p.params == TINY_PARAMS_PER_DEVICE == 59_136
  assert p.gradients == p.params
  # min_dim_size_to_factor=128 > every dim here: each of the 52 parameters keeps a full `v` (sharded as the
  # parameter), and `v_row`, `v_col`, `m` are shape-[1] float32 placeholders; plus the int32 step count.
  assert p.optimizer == TINY_PARAMS_PER_DEVICE + 52 * 3 * 4 + 4


def test_tiny_activations_by_hand(tiny_model):
  # 16 sequences over data=2 -> 8 per device; heads 4/4=1, mlp 64/4=16, vocab 128/4=32 per device; float32.
  # Encoder layer (S=32): input 32*32=1024; projections q,k,v 32*3*8=768 + out 1024 + wi 32*2*16=1024
  #   + wo 1024 = 3840; attention logits+probs 2*32*32=2048 + context 256 = 2304; norms+residual 3*1024
  #   + gated product 32*16=512 = 3584.                                           -> 10752 elements
  # Decoder layer (T=16): input 512; projections (384+512) + (128+2*256+512) + 512 + 512 = 3072;
  #   attention (512+128) + (2*16*32+128) = 1792; elementwise 5*512 + 16*16 = 2816.  -> 8192 elements
  # Outside the layers: embeddings + final norms 2*(32+16)*32 = 3072 elements; logits and log-softmax
  #   2*16*32 float32.
  per_sequence = (2 * 10752 + 2 * 8192 + 3072) * 4 + 2 * 16 * 32 * 4
  p = plan.estimate(tiny_model, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 2, "model": 4})
  assert p.activations == 8 * per_sequence == 1_343_488
  assert p.total == p.params + p.optimizer + p.gradients + p.activations

  # Full remat keeps only each layer's input and recomputes one layer at a time (the encoder's is larger:
  # 3840 + 2304 + 3584 = 9728 elements).
  remat = EncoderDecoderModel(T5Config(**TINY, remat_policy="full"))
  q = plan.estimate(remat, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 2, "model": 4})
  assert q.activations == 8 * ((2 * 1024 + 2 * 512 + 9728 + 3072) * 4 + 2 * 16 * 32 * 4) == 540_672
  assert q.params == p.params


def test_microbatches_and_bad_meshes(tiny_model):
  one = plan.estimate(tiny_model, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 2, "model": 1})
  four = plan.estimate(tiny_model, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 2, "model": 1},
                       num_microbatches=4)
  assert four.local_batch == 2 and one.local_batch == 8
  assert four.activations * 4 == one.activations
  with pytest.raises(ValueError, match="does not split"):
    plan.estimate(tiny_model, optimizers.AdafactorConfig(), 10, LENGTHS, {"data": 4, "model": 1})


def test_factored_slots_are_rows_plus_columns():
  # With min_dim_size_to_factor=32 every kernel (all dims >= 32) is factored: v_row + v_col hold one float per
  # row and per column instead of rows*cols; only the norm scales and relpos tables keep a full `v`.
  model = EncoderDecoderModel(T5Config(**TINY))
  p = plan.estimate(model, optimizers.AdafactorConfig(min_dim_size_to_factor=32), 16, LENGTHS,
                    {"data": 1, "model": 1})
  full = plan.estimate(model, optimizers.AdafactorConfig(), 16, LENGTHS, {"data": 1, "model": 1})
  assert p.optimizer < full.optimizer / 10
  assert p.params == full.params == 4 * TINY_PARAMS
