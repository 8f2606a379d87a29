"""A tiny encoder-decoder with the model interface the trainer relies on, for trainer / partitioning tests.

It is deliberately small (two dense layers each side, no attention) so that tests compile fast; it carries T5X
logical axis names and reports a summed cross-entropy loss, z-loss and token accuracy as the real models do.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

AXES = {
    "token_embedder": {"embedding": P("vocab", "embed")},
    "encoder": {"wi": {"kernel": P("embed", "mlp")}, "wo": {"kernel": P("mlp", "embed")},
                "norm": {"scale": P("embed")}},
    "decoder": {"wi": {"kernel": P("embed", "mlp")}, "wo": {"kernel": P("mlp", "embed")},
                "logits_dense": {"kernel": P("embed", "vocab")}},
}


class _Net(nn.Module):
  vocab: int
  embed: int
  mlp: int
  dropout_rate: float

  @nn.compact
  def __call__(self, enc, dec_in, deterministic: bool):
    emb = self.param("token_embedder", lambda k: {"embedding": jax.random.normal(k, (self.vocab, self.embed))})
    table = emb["embedding"]

    def block(name, x):
      h = nn.Dense(self.mlp, use_bias=False, name=f"{name}_wi")(x)
      h = nn.Dropout(self.dropout_rate)(jax.nn.gelu(h), deterministic=deterministic)
      return x + nn.Dense(self.embed, use_bias=False, name=f"{name}_wo")(h)

    e = block("encoder", table[enc])
    scale = self.param("encoder_norm", nn.initializers.ones, (self.embed,))
    context = jnp.mean(e * scale, axis=1, keepdims=True)
    d = block("decoder", table[dec_in] + context)
    return nn.Dense(self.vocab, use_bias=False, name="decoder_logits")(d)


def _to_tree(flat):
  return {
      "token_embedder": flat["token_embedder"],
      "encoder": {"wi": flat["encoder_wi"], "wo": flat["encoder_wo"], "norm": {"scale": flat["encoder_norm"]}},
      "decoder": {"wi": flat["decoder_wi"], "wo": flat["decoder_wo"], "logits_dense": flat["decoder_logits"]},
  }


def _from_tree(tree):
  return {
      "token_embedder": tree["token_embedder"], "encoder_wi": tree["encoder"]["wi"],
      "encoder_wo": tree["encoder"]["wo"], "encoder_norm": tree["encoder"]["norm"]["scale"],
      "decoder_wi": tree["decoder"]["wi"], "decoder_wo": tree["decoder"]["wo"],
      "decoder_logits": tree["decoder"]["logits_dense"],
  }


class TinyModel:
  def __init__(self, vocab: int = 64, embed: int = 16, mlp: int = 32, dropout_rate: float = 0.0,
               z_loss: float = 1e-4):
    self.net = _Net(vocab, embed, mlp, dropout_rate)
    self.z_loss = z_loss

  def init_variables(self, rng, batch_shapes):
    enc = jnp.zeros(batch_shapes["encoder_input_tokens"], jnp.int32)
    dec = jnp.zeros(batch_shapes["decoder_input_tokens"], jnp.int32)
    return {"params": _to_tree(self.net.init(rng, enc, dec, True)["params"])}

  def logical_axes(self, batch_shapes):
    del batch_shapes
    return AXES

  def loss_fn(self, params, batch, dropout_rng):
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
    logits = self.net.apply({"params": _from_tree(params)}, batch["encoder_input_tokens"],
                            batch["decoder_input_tokens"], dropout_rng is None, rngs=rngs)
    logits = logits.astype(jnp.float32)
    targets = batch["decoder_target_tokens"]
    weights = batch["decoder_loss_weights"]
    log_z = jax.nn.logsumexp(logits, axis=-1)
    gold = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    cross_ent = jnp.sum((log_z - gold) * weights)
    z_loss = self.z_loss * jnp.sum(jnp.square(log_z) * weights)
    accuracy = jnp.sum((jnp.argmax(logits, -1) == targets) * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    return cross_ent + z_loss, {"cross_ent_loss": cross_ent, "z_loss": z_loss, "accuracy": accuracy}


def register_with_gin() -> None:
  """Lets test gin files bind `tiny_model.TinyModel` (they `import tests.tiny_model`)."""
  import gin
  if not gin.config._REGISTRY.get_match("tiny_model.TinyModel"):
    gin.external_configurable(TinyModel, module="tiny_model")


register_with_gin()
