"""Flan-T5 encoder-decoder and decoder-only models (Flax), their losses, and the T5X-style model wrappers."""
from flan_jax.models.decoder_only import DecoderOnlyConfig, DecoderOnlyTransformer
from flan_jax.models.model import DecoderOnlyModel, EncoderDecoderModel
from flan_jax.models.t5 import T5Config, Transformer

__all__ = ["DecoderOnlyConfig", "DecoderOnlyTransformer", "DecoderOnlyModel", "EncoderDecoderModel", "T5Config",
           "Transformer"]
