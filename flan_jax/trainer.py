"""Partitioned train and eval steps: abstract state -> shardings -> one jitted, donated step per run.

The model provides `init_variables(rng, batch_shapes)`, `logical_axes(batch_shapes)` (PartitionSpecs of logical
names mirroring the params) and `loss_fn(params, batch, dropout_rng) -> (loss, metrics)` where `loss` is a sum
over the batch's tokens (T5X semantics with `loss_normalizing_factor=None`), so gradients of microbatches add up
to the full batch's gradient.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Mapping

import jax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from flan_jax import partitioning as partitioning_lib
from flan_jax import train_state as train_state_lib

# Metrics the model reports as sums (`loss`, `z_loss`, `cross_ent_loss`, `num_*`) add across microbatches; the
# others are ratios: `*_per_all_target_tokens` are combined weighted by each microbatch's target tokens, every
# other ratio (accuracy, per-non-padding-token losses) weighted by its non-padding target tokens.
TOKENS = "nonpadding_tokens"
EXAMPLES = "num_examples"


def is_summed(name: str) -> bool:
  return name in ("loss", "z_loss", "cross_ent_loss", TOKENS) or name.startswith("num_")


def _weight(name: str, mb: Mapping[str, jax.Array]) -> jax.Array:
  if name.endswith("per_all_target_tokens"):
    return jnp.asarray(mb["decoder_target_tokens"].size, jnp.float32)
  return _token_count(mb)


def _params_of(variables: Any) -> Any:
  if isinstance(variables, Mapping) and set(variables.keys()) == {"params"}:
    return variables["params"]
  return variables


def global_norm(tree: Any) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def _token_count(batch: Mapping[str, jax.Array]) -> jax.Array:
  return jnp.sum(batch["decoder_loss_weights"] > 0).astype(jnp.float32)


def _example_count(batch: Mapping[str, jax.Array]) -> jax.Array:
  """Examples trained on: packed rows number theirs 1, 2, ... in `decoder_segment_ids`; an unpacked row is one
  example when it has a target."""
  if "decoder_segment_ids" in batch:
    return jnp.sum(jnp.max(batch["decoder_segment_ids"], axis=1)).astype(jnp.float32)
  return jnp.sum(jnp.any(batch["decoder_loss_weights"] > 0, axis=1)).astype(jnp.float32)


def _counts(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  return {TOKENS: _token_count(batch), EXAMPLES: _example_count(batch)}


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  num_microbatches: int = 1
  seed: int = 0


class Trainer:
  """Owns the jitted init / train / eval steps for one model, optimizer and mesh."""

  def __init__(
      self,
      model: Any,
      optimizer: Any,
      partitioner: partitioning_lib.Partitioner,
      batch_shapes: Mapping[str, tuple[int, ...]],
      config: TrainerConfig = TrainerConfig(),
      batch_dtypes: Mapping[str, Any] | None = None,
  ):
    self.model = model
    self.optimizer = optimizer
    self.partitioner = partitioner
    self.config = config
    self.batch_shapes = {k: tuple(v) for k, v in batch_shapes.items()}
    self.batch_dtypes = {k: (batch_dtypes or {}).get(k, jnp.float32 if k.endswith("weights") else jnp.int32)
                         for k in self.batch_shapes}
    batch_size = next(iter(self.batch_shapes.values()))[0]
    partitioner.check_batch_size(batch_size)
    if config.num_microbatches < 1 or batch_size % config.num_microbatches:
      raise ValueError(f"num_microbatches={config.num_microbatches} does not divide the batch size {batch_size}")
    if (batch_size // config.num_microbatches) % partitioner.data_parallel_size:
      raise ValueError(
          f"microbatch size {batch_size // config.num_microbatches} is not divisible by the data-parallel size "
          f"{partitioner.data_parallel_size}")

    self.param_logical_axes = model.logical_axes(self.batch_shapes)
    if getattr(optimizer, "param_logical_axes", False) is None:
      optimizer.param_logical_axes = self.param_logical_axes
    self.abstract_state = jax.eval_shape(self._init_fn, jax.random.key(0))
    opt_axes = optimizer.state_logical_axes(self.abstract_state.params, self.param_logical_axes)
    self.state_shardings = train_state_lib.TrainState(
        params=partitioner.shardings_from_logical(self.param_logical_axes, self.abstract_state.params),
        opt_state=partitioner.shardings_from_logical(opt_axes, self.abstract_state.opt_state),
    )
    self.batch_sharding = partitioner.batch_sharding()
    self.batch_shardings = {k: self.batch_sharding for k in self.batch_shapes}
    replicated = partitioner.replicated()
    self._init = jax.jit(self._init_fn, out_shardings=self.state_shardings)
    self._train_step = jax.jit(
        self._train_step_fn,
        in_shardings=(self.state_shardings, self.batch_shardings, replicated),
        out_shardings=(self.state_shardings, replicated),
        donate_argnums=(0,),
    )
    self._eval_step = jax.jit(
        self._eval_step_fn, in_shardings=(self.state_shardings.params, self.batch_shardings),
        out_shardings=replicated)
    self.dropout_key = jax.random.key(config.seed + 1)

  # ------------------------------------------------------------------------------------------- pure fns
  def _init_fn(self, rng: jax.Array) -> train_state_lib.TrainState:
    params = _params_of(self.model.init_variables(rng, self.batch_shapes))
    return train_state_lib.create(params, self.optimizer)

  def _grads_and_metrics(self, params: Any, batch: Mapping[str, jax.Array], rng: jax.Array):
    def loss_fn(p, b, r):
      loss, metrics = self.model.loss_fn(p, b, r)
      return loss, metrics

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    k = self.config.num_microbatches
    if k == 1:
      (loss, metrics), grads = grad_fn(params, batch, rng)
      metrics = dict(metrics, loss=loss, **_counts(batch))
      return grads, metrics

    def split(x):
      x = x.reshape((k, x.shape[0] // k) + x.shape[1:])
      # Each microbatch keeps the batch sharding of the full batch.
      return jax.lax.with_sharding_constraint(
          x, jax.sharding.NamedSharding(self.partitioner.mesh, PartitionSpec(None, *self.batch_sharding.spec)))

    micro = {name: split(v) for name, v in batch.items()}

    def body(carry, inputs):
      acc_grads, acc_metrics = carry
      index, mb = inputs
      (loss, metrics), grads = grad_fn(params, mb, jax.random.fold_in(rng, index))
      metrics = dict(metrics, loss=loss, **_counts(mb))
      weighted = {m: (v if is_summed(m) else v * _weight(m, mb)) for m, v in metrics.items()}
      acc_grads = jax.tree.map(jnp.add, acc_grads, grads)
      acc_metrics = jax.tree.map(jnp.add, acc_metrics, weighted)
      return (acc_grads, acc_metrics), None

    zeros_grads = jax.tree.map(jnp.zeros_like, params)
    metric_shapes = jax.eval_shape(
        lambda: dict(jax.eval_shape(grad_fn, params, jax.tree.map(lambda v: v[0], micro), rng)[0][1],
                     loss=0.0, **{TOKENS: 0.0, EXAMPLES: 0.0}))
    zeros_metrics = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), metric_shapes)
    (grads, metrics), _ = jax.lax.scan(body, (zeros_grads, zeros_metrics), (jnp.arange(k), micro))
    totals = {"all": jnp.asarray(batch["decoder_target_tokens"].size, jnp.float32), "nonpad": metrics[TOKENS]}

    def combine(m, v):
      if is_summed(m):
        return v
      return v / jnp.maximum(totals["all" if m.endswith("per_all_target_tokens") else "nonpad"], 1.0)

    metrics = {m: combine(m, v) for m, v in metrics.items()}
    return grads, metrics

  def _train_step_fn(self, state: train_state_lib.TrainState, batch: Mapping[str, jax.Array], dropout_key: jax.Array):
    rng = jax.random.fold_in(dropout_key, state.step)
    grads, metrics = self._grads_and_metrics(state.params, batch, rng)
    updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
    params = jax.tree.map(lambda p, u: p + u, state.params, updates)
    metrics = dict(metrics)
    metrics["grad_norm"] = global_norm(grads)
    metrics["learning_rate"] = jnp.asarray(self.optimizer.learning_rate(state.step), jnp.float32)
    return train_state_lib.TrainState(params=params, opt_state=opt_state), metrics

  def _eval_step_fn(self, params: Any, batch: Mapping[str, jax.Array]):
    loss, metrics = self.model.loss_fn(params, batch, None)
    return dict(metrics, loss=loss, **_counts(batch))

  # ------------------------------------------------------------------------------------------- public
  @contextlib.contextmanager
  def scope(self):
    """The mesh, and the partitioner's rules for the models' activation annotations (`layers.constrain`):
    without them Flax drops the annotations and XLA picks activation shardings itself (with FSDP, whole-batch
    all-reduces of activations)."""
    with jax.set_mesh(self.partitioner.mesh), nn.logical_axis_rules(self.partitioner.rules):
      yield

  def init_state(self, seed: int | None = None) -> train_state_lib.TrainState:
    with self.scope():
      return self._init(jax.random.key(self.config.seed if seed is None else seed))

  def abstract_state_with_shardings(self) -> train_state_lib.TrainState:
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        self.abstract_state, self.state_shardings)

  def place_state(self, state: train_state_lib.TrainState) -> train_state_lib.TrainState:
    """Puts a host or differently sharded state onto this trainer's shardings."""
    return jax.tree.map(lambda x, s: jax.device_put(x, s), state, self.state_shardings)

  def train_step(self, state: train_state_lib.TrainState, batch: Mapping[str, jax.Array]):
    with self.scope():
      return self._train_step(state, batch, self.dropout_key)

  def eval_step(self, params: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    with self.scope():
      return self._eval_step(params, batch)

  def global_batch(self, local_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    batch_size = next(iter(self.batch_shapes.values()))[0]
    missing = set(self.batch_shapes) - set(local_batch)
    if missing:
      raise KeyError(f"batch lacks features {sorted(missing)} (has {sorted(local_batch)})")
    local = {k: np.asarray(local_batch[k], dtype=self.batch_dtypes[k]) for k in self.batch_shapes}
    return self.partitioner.global_batch(local, batch_size)

  def _lowered_train_step(self):
    with self.scope():
      return self._train_step.lower(
          self.abstract_state_with_shardings(),
          {k: jax.ShapeDtypeStruct(s, self.batch_dtypes[k], sharding=self.batch_sharding)
           for k, s in self.batch_shapes.items()},
          self.dropout_key)

  def compile_train_step(self) -> None:
    """Compiles the train step before its first call, which then reuses the executable: the compile overlaps with
    what runs meanwhile (the input's workers starting and computing their first blocks) instead of following it."""
    self._lowered_train_step().compile()

  def step_flops(self) -> float | None:
    """XLA's FLOP count for one train step over the whole global batch (from the unpartitioned program)."""
    lowered = self._lowered_train_step()
    try:
      cost = lowered.cost_analysis()
    except Exception:  # noqa: BLE001 - backends without cost analysis
      return None
    if isinstance(cost, (list, tuple)):
      cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops else None


def check_finite(metrics: Mapping[str, float], step: int) -> None:
  """Stops training with a clear error when the loss is NaN or infinite."""
  loss = float(metrics["loss"])
  if not np.isfinite(loss):
    raise FloatingPointError(
        f"step {step}: loss is {loss}; training stopped (lower LEARNING_RATE, check the data, or resume from the "
        f"last checkpoint)")
