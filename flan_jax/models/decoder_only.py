"""A decoder-only transformer for prefix-LM Flan finetuning, configurable from T5X-style to LLaMA-style.

Masking: positions marked by `decoder_causal_attention` (the inputs) attend to each other bidirectionally, the rest
(the targets) causally; padding (`decoder_target_tokens == 0`) and other packed segments are masked out.

Parameter layout (T5X names, 2-D kernels `[in, out]`), with the HF `LlamaForCausalLM` counterpart (kernel = HF
weight transposed):
  token_embedder/embedding [vocab, embed]                        model.embed_tokens.weight (not transposed)
  decoder/layers_i/pre_self_attention_layer_norm/scale [embed]   layers.i.input_layernorm.weight
  decoder/layers_i/self_attention/query/kernel [embed, heads*head_dim]      layers.i.self_attn.q_proj.weight.T
  decoder/layers_i/self_attention/key/kernel [embed, kv_heads*head_dim]     ...k_proj.weight.T
  decoder/layers_i/self_attention/value/kernel [embed, kv_heads*head_dim]   ...v_proj.weight.T
  decoder/layers_i/self_attention/out/kernel [heads*head_dim, embed]        ...o_proj.weight.T
  decoder/layers_i/pre_mlp_layer_norm/scale [embed] (absent with parallel_block)  post_attention_layernorm.weight
  decoder/layers_i/mlp/wi_0/kernel [embed, mlp]  (gate, 'silu')            mlp.gate_proj.weight.T
  decoder/layers_i/mlp/wi_1/kernel [embed, mlp]  (up, 'linear')            mlp.up_proj.weight.T
  decoder/layers_i/mlp/wo/kernel [mlp, embed]                               mlp.down_proj.weight.T
  decoder/decoder_norm/scale [embed]                                        model.norm.weight
  decoder/logits_dense/kernel [embed, vocab] (absent when tied)             lm_head.weight.T
With `position_embedding='rope'` queries/keys rotate in HF's "rotate half" convention, so no permutation of
q/k rows is needed; with `query_scale='runtime'` (the default here) queries are scaled by 1/sqrt(head_dim) at run
time as in HF. `position_embedding='relative'` gives T5X's decoder-only layout (a `decoder/relpos_bias` table).

Cached decoding (cache layout in `layers.py`; `cache_index` is per example, shape [batch]):
  1. Prefill: `logits, vars = apply({'params': p}, tokens[b, L], targets[b, L], decoder_causal_attention=...,
     enable_dropout=False, prefill=True, prefill_lengths=n[b], mutable=['cache'])` runs the prompt (padded to
     the full decode length L) and leaves a cache whose next write position for row r is `n[r]`. Row r's next-token
     logits are `logits[r, n[r] - 1]`.
  2. Each step: `apply({'params': p, 'cache': cache}, tok[b, 1], tok[b, 1], enable_dropout=False, decode=True,
     mutable=['cache'])` writes the token at each row's index (RoPE uses that index as its position), attends to
     positions `<= index`, returns `[b, 1, vocab]` logits and advances each row's index by one.
  Without a prompt, `decode=True` on full-length dummy inputs creates a zero cache with indices 0 (as in T5).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from flan_jax.models import layers as L

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class DecoderOnlyConfig:
  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 8
  num_kv_heads: int | None = None  # None: multi-head; 1: multi-query; else grouped-query
  num_layers: int = 8
  head_dim: int = 64
  mlp_dim: int = 2048
  mlp_activations: tuple[str, ...] = ("silu", "linear")
  dropout_rate: float = 0.0
  logits_via_embedding: bool = False  # tied head (scaled by 1/sqrt(emb_dim) only with position 'relative')
  dtype: str = "float32"
  position_embedding: str = "rope"  # 'rope' or 'relative'
  rope_theta: float = 10000.0
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  query_scale: str = "runtime"  # 'runtime' (LLaMA) or 'folded' (T5X)
  layer_norm_epsilon: float = 1e-6
  parallel_block: bool = False  # attention and MLP read the same normed input and are summed
  float32_attention_logits: bool = False
  remat_policy: str = "none"
  scan_layers: bool = False

  def __post_init__(self):
    object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))
    L.remat_policy(self.remat_policy)
    jnp.dtype(self.dtype)
    if self.position_embedding not in ("rope", "relative"):
      raise ValueError(f"position_embedding must be 'rope' or 'relative', got {self.position_embedding!r}")
    if self.num_kv_heads is not None and self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
    if self.position_embedding == "rope" and self.head_dim % 2:
      raise ValueError(f"rope needs an even head_dim, got {self.head_dim}")

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)


class DecoderOnlyLayer(nn.Module):
  config: DecoderOnlyConfig
  deterministic: bool = True
  decode: bool = False
  prefill: bool = False
  scanned: bool = False

  @nn.compact
  def __call__(self, x: Array, mask: Array | None, bias: Array | None, positions: Array | None,
               prefill_lengths: Array | None):
    cfg, dtype = self.config, self.config.activation_dtype
    drop = lambda y: nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=self.deterministic)
    h = L.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_self_attention_layer_norm")(x)
    attn = L.MultiHeadAttention(
        cfg.num_heads, cfg.head_dim, cfg.num_kv_heads, cfg.dropout_rate, dtype, cfg.float32_attention_logits,
        cfg.query_scale, cfg.rope_theta if cfg.position_embedding == "rope" else None,
        per_example_cache_index=True, name="self_attention")(
            h, h, mask, bias, deterministic=self.deterministic, decode=self.decode, prefill=self.prefill,
            prefill_lengths=prefill_lengths, positions=positions)
    mlp = L.MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, dtype, name="mlp")
    if cfg.parallel_block:
      x = x + drop(attn) + drop(mlp(h, self.deterministic))
    else:
      x = x + drop(attn)
      h = L.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(x)
      x = x + drop(mlp(h, self.deterministic))
    x = L.logical(x, ("batch", "length", "embed"))
    return (x, None) if self.scanned else x


class DecoderOnlyTransformer(nn.Module):
  config: DecoderOnlyConfig

  @nn.compact
  def __call__(self, decoder_input_tokens: Array, decoder_target_tokens: Array,
               decoder_segment_ids: Array | None = None, decoder_positions: Array | None = None,
               decoder_causal_attention: Array | None = None, *, enable_dropout: bool = True,
               decode: bool = False, prefill: bool = False, prefill_lengths: Array | None = None,
               max_decode_length: int | None = None) -> Array:
    cfg, dtype = self.config, self.config.activation_dtype
    deterministic = not enable_dropout
    embedder = L.Embed(cfg.vocab_size, cfg.emb_dim, dtype=dtype, name="token_embedder")
    if decode:
      mask = None  # the cache masks positions not yet written
    else:
      mask = L.make_decoder_mask(decoder_target_tokens, decoder_causal_attention, decoder_segment_ids)
    if decoder_positions is None and decoder_segment_ids is None:
      positions = None  # 0..len-1 along each row
    elif decoder_positions is None:
      raise ValueError("packed decoder-only batches need decoder_positions alongside decoder_segment_ids")
    else:
      positions = decoder_positions
    return DecoderStack(cfg, name="decoder")(embedder, decoder_input_tokens, mask, positions, deterministic,
                                             decode, prefill, prefill_lengths, max_decode_length)


class DecoderStack(nn.Module):
  config: DecoderOnlyConfig

  @nn.compact
  def __call__(self, embedder: L.Embed, tokens: Array, mask: Array | None, positions: Array | None,
               deterministic: bool, decode: bool, prefill: bool, prefill_lengths: Array | None,
               max_decode_length: int | None) -> Array:
    cfg, dtype = self.config, self.config.activation_dtype
    bias = None
    if cfg.position_embedding == "relative":
      length = max_decode_length if decode and max_decode_length else tokens.shape[-1]
      bias = L.RelativePositionBiases(cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance,
                                      cfg.num_heads, dtype, name="relpos_bias")(length, length, False)
      if decode and tokens.shape[-1] == 1 and max_decode_length is None:
        raise ValueError("decode steps with relative position biases need max_decode_length")
    y = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(embedder(tokens), deterministic=deterministic)
    y = y.astype(dtype)
    layer = L.stack_layers(DecoderOnlyLayer, remat=cfg.remat_policy, scan=cfg.scan_layers,
                           num_layers=cfg.num_layers, num_broadcast_args=4)
    if cfg.scan_layers:
      y, _ = layer(cfg, deterministic, decode, prefill, True, name="layers")(y, mask, bias, positions,
                                                                              prefill_lengths)
    else:
      for i in range(cfg.num_layers):
        y = layer(cfg, deterministic, decode, prefill, name=f"layers_{i}")(y, mask, bias, positions,
                                                                            prefill_lengths)
    y = L.RMSNorm(cfg.layer_norm_epsilon, dtype, name="decoder_norm")(y)
    y = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    if cfg.logits_via_embedding:
      logits = embedder.attend(y)
      if cfg.position_embedding == "relative":
        logits = logits / jnp.sqrt(jnp.float32(y.shape[-1]))
    else:
      logits = L.DenseGeneral(cfg.vocab_size, kernel_axes=("embed", "vocab"), dtype=jnp.float32,
                              name="logits_dense")(y)
    return L.logical(logits, ("batch", "length", "vocab"))


def unscan_params(params: dict, config: DecoderOnlyConfig) -> dict:
  return {**params, "decoder": L.unscan_params(params["decoder"], config.num_layers)}


def scan_params(params: dict, config: DecoderOnlyConfig) -> dict:
  return {**params, "decoder": L.scan_params(params["decoder"], config.num_layers)}
