"""Tiny random Hugging Face models shared by the HF and parity tests (built once per test session).

Every parameter is redrawn from a normal distribution (norm scales and the relative-position tables too), so a
mapping that swapped, dropped or mis-transposed any tensor shows up in the logits. The LM head is untied with its
own weights, as in Flan-T5; transformers 5 ties it to the embedding at construction, so it is replaced after.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import transformers

T5_VOCAB = 96
LLAMA_VOCAB = 80


def _randomize(model: torch.nn.Module, seed: int) -> None:
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, param in model.named_parameters():
      if "layer_norm" in name or "layernorm" in name or name.endswith("norm.weight"):
        param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=gen))
      else:
        fan_in = param.shape[-1] if param.ndim == 2 and "embed" not in name and "shared" not in name else 1
        param.copy_(torch.randn(param.shape, generator=gen) / fan_in ** 0.5)


def hf_t5_config(**overrides) -> transformers.T5Config:
  settings = dict(vocab_size=T5_VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3,
                  num_heads=4, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                  feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                  decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, layer_norm_epsilon=1e-6)
  settings.update(overrides)
  return transformers.T5Config(**settings)


@functools.lru_cache(maxsize=None)
def hf_t5(seed: int = 0) -> transformers.T5ForConditionalGeneration:
  model = transformers.T5ForConditionalGeneration(hf_t5_config()).eval()
  model.lm_head.weight = torch.nn.Parameter(torch.empty(T5_VOCAB, 32))
  _randomize(model, seed)
  assert not torch.equal(model.lm_head.weight, model.shared.weight)
  return model


def hf_llama_config(**overrides) -> transformers.LlamaConfig:
  settings = dict(vocab_size=LLAMA_VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, max_position_embeddings=64, pad_token_id=0, bos_token_id=0,
                  eos_token_id=1, attention_bias=False, mlp_bias=False)
  settings.update(overrides)
  return transformers.LlamaConfig(**settings)


@functools.lru_cache(maxsize=None)
def hf_llama(seed: int = 0) -> transformers.LlamaForCausalLM:
  model = transformers.LlamaForCausalLM(hf_llama_config()).eval()
  if model.lm_head.weight is model.model.embed_tokens.weight:
    model.lm_head.weight = torch.nn.Parameter(torch.empty(LLAMA_VOCAB, 32))
  _randomize(model, seed)
  assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
  return model


def state_dict_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
