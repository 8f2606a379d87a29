"""The T5 v1.1 / Flan-T5 encoder-decoder, as T5X's `examples/t5/network.py` defines it.

Pre-norm RMSNorm blocks without biases, gated-GELU MLP, relative position biases (one table per stack, shared by its
layers, bidirectional in the encoder, causal in the decoder, none in cross-attention), a token embedding shared by
both stacks, and a separate float32 LM head (`logits_via_embedding=True` gives T5 1.0's tied head, rescaled by
1/sqrt(emb_dim)). Parameter names and 2-D kernel layouts are T5X's (`encoder/layers_0/attention/query/kernel`, ...).

Cached decoding (the contract `flan_jax.decoding` relies on; the cache layout is described in `layers.py`):
  1. `cache = apply({'params': p}, enc_tokens, ones[b, L], ones[b, L], enable_dropout=False, decode=True,
     mutable=['cache'])[1]['cache']` creates a zero cache for at most L decoder positions (its outputs are unused).
  2. `encoded = apply({'params': p}, enc_tokens, enable_dropout=False, method='encode')`.
  3. Each step: `logits, vars = apply({'params': p, 'cache': cache}, encoded, enc_tokens, tok[b, 1], tok[b, 1],
     enable_dropout=False, decode=True, max_decode_length=L, method='decode', mutable=['cache'])` gives the
     `[b, 1, vocab]` float32 logits of the next position; `vars['cache']` is the cache advanced by one.
  Step t (cache_index t) equals position t of the full forward pass on the same decoder inputs.
With `scan_layers=True` the cache arrays carry a leading `layers` axis like the params.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from flan_jax.models import layers as L

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class T5Config:
  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 6
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  head_dim: int = 64
  mlp_dim: int = 1024
  mlp_activations: tuple[str, ...] = ("gelu", "linear")
  dropout_rate: float = 0.0
  logits_via_embedding: bool = False
  dtype: str = "float32"
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  float32_attention_logits: bool = False
  layer_norm_epsilon: float = 1e-6
  remat_policy: str = "none"
  scan_layers: bool = False

  def __post_init__(self):
    object.__setattr__(self, "mlp_activations", tuple(self.mlp_activations))
    L.remat_policy(self.remat_policy)  # validates the name
    jnp.dtype(self.dtype)
    for name in ("vocab_size", "emb_dim", "num_heads", "num_encoder_layers", "num_decoder_layers", "head_dim",
                 "mlp_dim"):
      if int(getattr(self, name)) <= 0:
        raise ValueError(f"T5Config.{name} must be positive, got {getattr(self, name)}")

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)


def _dropout(cfg: T5Config, x: Array, deterministic: bool) -> Array:
  return nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


class EncoderLayer(nn.Module):
  config: T5Config
  deterministic: bool = True
  scanned: bool = False

  @nn.compact
  def __call__(self, x: Array, mask: Array | None, bias: Array):
    cfg, dtype = self.config, self.config.activation_dtype
    h = L.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_attention_layer_norm")(x)
    h = L.MultiHeadAttention(cfg.num_heads, cfg.head_dim, dropout_rate=cfg.dropout_rate, dtype=dtype,
                             float32_logits=cfg.float32_attention_logits, name="attention")(
                                 h, h, mask, bias, deterministic=self.deterministic)
    x = x + _dropout(cfg, h, self.deterministic)
    h = L.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(x)
    h = L.MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, dtype, name="mlp")(h, self.deterministic)
    x = L.logical(x + _dropout(cfg, h, self.deterministic), ("batch", "length", "embed"))
    return (x, None) if self.scanned else x


class DecoderLayer(nn.Module):
  config: T5Config
  deterministic: bool = True
  decode: bool = False
  scanned: bool = False

  @nn.compact
  def __call__(self, x: Array, encoded: Array, mask: Array | None, cross_mask: Array | None, bias: Array):
    cfg, dtype = self.config, self.config.activation_dtype
    h = L.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_self_attention_layer_norm")(x)
    h = L.MultiHeadAttention(cfg.num_heads, cfg.head_dim, dropout_rate=cfg.dropout_rate, dtype=dtype,
                             float32_logits=cfg.float32_attention_logits, name="self_attention")(
                                 h, h, mask, bias, deterministic=self.deterministic, decode=self.decode)
    x = x + _dropout(cfg, h, self.deterministic)
    h = L.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_cross_attention_layer_norm")(x)
    h = L.MultiHeadAttention(cfg.num_heads, cfg.head_dim, dropout_rate=cfg.dropout_rate, dtype=dtype,
                             float32_logits=cfg.float32_attention_logits, name="encoder_decoder_attention")(
                                 h, encoded, cross_mask, None, deterministic=self.deterministic)
    x = x + _dropout(cfg, h, self.deterministic)
    h = L.RMSNorm(cfg.layer_norm_epsilon, dtype, name="pre_mlp_layer_norm")(x)
    h = L.MlpBlock(cfg.mlp_dim, cfg.mlp_activations, cfg.dropout_rate, dtype, name="mlp")(h, self.deterministic)
    x = L.logical(x + _dropout(cfg, h, self.deterministic), ("batch", "length", "embed"))
    return (x, None) if self.scanned else x


class Encoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, tokens: Array, mask: Array | None, deterministic: bool) -> Array:
    cfg, dtype = self.config, self.config.activation_dtype
    bias = L.RelativePositionBiases(cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance,
                                    cfg.num_heads, dtype, name="relpos_bias")(tokens.shape[-1], tokens.shape[-1],
                                                                              True)
    x = _dropout(cfg, self.shared_embedding(tokens), deterministic).astype(dtype)
    layer = L.stack_layers(EncoderLayer, remat=cfg.remat_policy, scan=cfg.scan_layers,
                           num_layers=cfg.num_encoder_layers, num_broadcast_args=2)
    if cfg.scan_layers:
      x, _ = layer(cfg, deterministic, True, name="layers")(x, mask, bias)
    else:
      for i in range(cfg.num_encoder_layers):
        x = layer(cfg, deterministic, name=f"layers_{i}")(x, mask, bias)
    x = L.RMSNorm(cfg.layer_norm_epsilon, dtype, name="encoder_norm")(x)
    return _dropout(cfg, x, deterministic)


class Decoder(nn.Module):
  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoded: Array, tokens: Array, mask: Array | None, cross_mask: Array | None,
               deterministic: bool, decode: bool, max_decode_length: int | None) -> Array:
    cfg, dtype = self.config, self.config.activation_dtype
    length = max_decode_length if decode and max_decode_length else tokens.shape[-1]
    bias = L.RelativePositionBiases(cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance,
                                    cfg.num_heads, dtype, name="relpos_bias")(length, length, False)
    y = _dropout(cfg, self.shared_embedding(tokens), deterministic).astype(dtype)
    layer = L.stack_layers(DecoderLayer, remat=cfg.remat_policy, scan=cfg.scan_layers,
                           num_layers=cfg.num_decoder_layers, num_broadcast_args=4)
    if cfg.scan_layers:
      y, _ = layer(cfg, deterministic, decode, True, name="layers")(y, encoded, mask, cross_mask, bias)
    else:
      for i in range(cfg.num_decoder_layers):
        y = layer(cfg, deterministic, decode, name=f"layers_{i}")(y, encoded, mask, cross_mask, bias)
    y = L.RMSNorm(cfg.layer_norm_epsilon, dtype, name="decoder_norm")(y)
    y = _dropout(cfg, y, deterministic)
    if cfg.logits_via_embedding:
      logits = self.shared_embedding.attend(y) / jnp.sqrt(jnp.float32(y.shape[-1]))
    else:
      logits = L.DenseGeneral(cfg.vocab_size, kernel_axes=("embed", "vocab"), dtype=jnp.float32,
                              name="logits_dense")(y)
    return L.logical(logits, ("batch", "length", "vocab"))


class Transformer(nn.Module):
  """T5X's `network.Transformer`: `__call__`, `encode`, `decode` with the same arguments."""
  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = L.Embed(cfg.vocab_size, cfg.emb_dim, dtype=cfg.activation_dtype)
    self.encoder = Encoder(cfg, self.token_embedder)
    self.decoder = Decoder(cfg, self.token_embedder)

  def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Array | None = None, *,
             enable_dropout: bool = True) -> Array:
    mask = L.make_attention_mask(encoder_input_tokens > 0, encoder_input_tokens > 0, jnp.logical_and)
    if encoder_segment_ids is not None:
      mask = jnp.logical_and(mask, L.make_attention_mask(encoder_segment_ids, encoder_segment_ids, jnp.equal))
    return self.encoder(encoder_input_tokens, mask, not enable_dropout)

  def decode(self, encoded: Array, encoder_input_tokens: Array, decoder_input_tokens: Array,
             decoder_target_tokens: Array, encoder_segment_ids: Array | None = None,
             decoder_segment_ids: Array | None = None, decoder_positions: Array | None = None, *,
             enable_dropout: bool = True, decode: bool = False, max_decode_length: int | None = None) -> Array:
    del decoder_positions  # relative position biases use offsets within the row; segments are masked apart
    if decode:
      mask = None
      cross_mask = L.make_attention_mask(jnp.ones_like(decoder_target_tokens) > 0, encoder_input_tokens > 0,
                                         jnp.logical_and)
    else:
      mask = L.make_decoder_mask(decoder_target_tokens, decoder_segment_ids=decoder_segment_ids)
      cross_mask = L.make_attention_mask(decoder_target_tokens > 0, encoder_input_tokens > 0, jnp.logical_and)
      if encoder_segment_ids is not None:
        if decoder_segment_ids is None:
          raise ValueError("encoder_segment_ids given without decoder_segment_ids")
        cross_mask = jnp.logical_and(cross_mask, L.make_attention_mask(decoder_segment_ids, encoder_segment_ids,
                                                                       jnp.equal))
    return self.decoder(encoded, decoder_input_tokens, mask, cross_mask, not enable_dropout, decode,
                        max_decode_length)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array, decoder_target_tokens: Array,
               encoder_segment_ids: Array | None = None, decoder_segment_ids: Array | None = None,
               encoder_positions: Array | None = None, decoder_positions: Array | None = None, *,
               enable_dropout: bool = True, decode: bool = False, max_decode_length: int | None = None) -> Array:
    del encoder_positions
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                       encoder_segment_ids, decoder_segment_ids, decoder_positions, enable_dropout=enable_dropout,
                       decode=decode, max_decode_length=max_decode_length)


def unscan_params(params: dict, config: T5Config) -> dict:
  """Scanned params (`encoder/layers/...` with a leading layers axis) to T5X's `layers_i` layout."""
  out = dict(params)
  out["encoder"] = L.unscan_params(params["encoder"], config.num_encoder_layers)
  out["decoder"] = L.unscan_params(params["decoder"], config.num_decoder_layers)
  return out


def scan_params(params: dict, config: T5Config) -> dict:
  """T5X's `layers_i` layout to the scanned layout used when `config.scan_layers` is set."""
  out = dict(params)
  out["encoder"] = L.scan_params(params["encoder"], config.num_encoder_layers)
  out["decoder"] = L.scan_params(params["decoder"], config.num_decoder_layers)
  return out
