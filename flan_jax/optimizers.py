"""Adafactor with T5X's semantics, and the learning-rate schedules Flan and T5X use.

Adafactor keeps, per parameter, four slots named as T5X names them: `v_row` / `v_col` (factored second moments),
`v` (unfactored second moment) and `m` (momentum); slots a parameter does not use are shape-[1] zeros, as in
T5X, so T5X optimizer state maps onto ours one to one (`state_from_t5x`).

The update for parameter p with gradient g at step t (the step count *before* this update):
  decay = 1 - (t - step_offset + 1) ** -decay_rate;  g2 = g * g + epsilon1
  factored:   v_row <- decay v_row + (1 - decay) mean(g2 over column dims); v_col likewise over row dims;
              u = g / sqrt(v_row / mean(v_row over row dims)) / sqrt(v_col)
  unfactored: v <- decay v + (1 - decay) g2;  u = g / sqrt(v)
  u /= max(1, rms(u) / clipping_threshold);  step = lr(t) * max(rms(p), epsilon2) * u   (parameter scale)
  m <- beta1 m + (1 - beta1) step  (only with beta1);  p <- (1 - weight_decay) p - step
Which dims are rows and columns: for parameters of rank <= 2 without a BATCH axis T5X ignores the logical rules
and factors the two largest dims when the second largest is >= min_dim_size_to_factor; higher-rank parameters
use the logical factor rules (vocab/mlp/heads/kv -> COLUMN, embed -> ROW, layers -> BATCH).
"""
from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

Schedule = Callable[[jax.Array], jax.Array]
SLOTS = ("m", "v", "v_row", "v_col")


# ----------------------------------------------------------------------------------------------- schedules
def constant_schedule(value: float) -> Schedule:
  """Flan-T5 finetuning's schedule: a constant learning rate (1e-3 with Adafactor)."""
  return lambda step: jnp.asarray(value, jnp.float32)


def linear_warmup_schedule(base: Schedule, warmup_steps: int) -> Schedule:
  """Scales `base` by min(1, (step + 1) / warmup_steps)."""
  if warmup_steps <= 0:
    return base
  return lambda step: base(step) * jnp.minimum(1.0, (jnp.asarray(step, jnp.float32) + 1.0) / warmup_steps)


def rsqrt_schedule(value: float = 1.0, warmup_steps: int = 10_000) -> Schedule:
  """T5X's pretraining schedule: value / sqrt(max(step, warmup_steps)) (constant during warmup)."""
  return lambda step: value / jnp.sqrt(jnp.maximum(jnp.asarray(step, jnp.float32), float(warmup_steps)))


def cosine_schedule(value: float, decay_steps: int, warmup_steps: int = 0, final_fraction: float = 0.0) -> Schedule:
  """Linear warmup to `value`, then cosine decay to value * final_fraction at decay_steps."""
  def fn(step):
    s = jnp.asarray(step, jnp.float32)
    progress = jnp.clip((s - warmup_steps) / max(1, decay_steps - warmup_steps), 0.0, 1.0)
    cos = final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
    warm = jnp.minimum(1.0, (s + 1.0) / warmup_steps) if warmup_steps > 0 else 1.0
    return value * cos * warm
  return fn


def make_schedule(name: str, learning_rate: float, warmup_steps: int = 0, decay_steps: int = 0) -> Schedule:
  """A schedule by name: 'constant', 'warmup' (linear warmup then constant), 'rsqrt', 'cosine'."""
  if name == "constant":
    return constant_schedule(learning_rate)
  if name == "warmup":
    return linear_warmup_schedule(constant_schedule(learning_rate), warmup_steps)
  if name == "rsqrt":
    return rsqrt_schedule(learning_rate, warmup_steps)
  if name == "cosine":
    if decay_steps <= 0:
      raise ValueError("schedule 'cosine' needs decay_steps > 0")
    return cosine_schedule(learning_rate, decay_steps, warmup_steps)
  raise ValueError(f"unknown learning-rate schedule {name!r} (constant, warmup, rsqrt, cosine)")


# ----------------------------------------------------------------------------------------------- factoring
class FactorDim(enum.Enum):
  NONE = "none"
  BATCH = "batch"
  ROW = "row"
  COLUMN = "column"


def standard_logical_factor_rules() -> dict[str, FactorDim]:
  return {
      "vocab": FactorDim.COLUMN, "embed": FactorDim.ROW, "mlp": FactorDim.COLUMN, "heads": FactorDim.COLUMN,
      "kv": FactorDim.COLUMN, "joined_kv": FactorDim.COLUMN, "relpos_buckets": FactorDim.NONE,
      "layers": FactorDim.BATCH, "stack": FactorDim.BATCH, "mlp_activations": FactorDim.COLUMN,
      "layer_norm_scale": FactorDim.NONE,
  }


@dataclasses.dataclass(frozen=True)
class _Plan:
  """How one parameter is treated: the dims its RMS is taken over, and (row dims, column dims) or None."""
  averaging_dims: tuple[int, ...]
  factored: tuple[tuple[int, ...], tuple[int, ...]] | None


def _heuristic_factor(shape: Sequence[int], min_dim: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
  if len(shape) < 2:
    return None
  order = np.argsort(shape)
  if shape[order[-2]] < min_dim:
    return None
  return (int(order[-2]),), (int(order[-1]),)


@dataclasses.dataclass(frozen=True)
class AdafactorConfig:
  factored: bool = True
  multiply_by_parameter_scale: bool = True
  beta1: float | None = None
  decay_rate: float = 0.8
  step_offset: int = 0
  clipping_threshold: float | None = 1.0
  weight_decay_rate: float | None = None
  min_dim_size_to_factor: int = 128
  epsilon1: float = 1e-30
  epsilon2: float = 1e-3
  global_norm_clip_threshold: float | None = None
  max_parameter_scale: float | None = None


class AdafactorState(NamedTuple):
  """`count`: updates applied (T5X's `state/step`); slot trees mirror the params."""
  count: jax.Array
  m: Any
  v: Any
  v_row: Any
  v_col: Any


def _is_axes_leaf(x: Any) -> bool:
  return x is None or isinstance(x, PartitionSpec)


class Adafactor:
  """An optax-style transformation: `init(params)`, `update(grads, state, params) -> (updates, state)`."""

  def __init__(
      self,
      config: AdafactorConfig,
      learning_rate: Schedule,
      param_logical_axes: Any = None,
      logical_factor_rules: Mapping[str, FactorDim] | None = None,
  ):
    self.config = config
    self.learning_rate = learning_rate
    self.param_logical_axes = param_logical_axes
    self.logical_factor_rules = (
        dict(logical_factor_rules) if logical_factor_rules is not None else standard_logical_factor_rules())

  # --- planning (static, from shapes and logical axes)
  def _rule(self, axes: Sequence[str | None] | None, shape: Sequence[int], path: str) -> tuple[FactorDim, ...] | None:
    if axes is None or len(axes) != len(shape):
      return None
    try:
      rule = tuple(self.logical_factor_rules[a] if a is not None else FactorDim.NONE for a in axes)
    except KeyError as e:
      raise ValueError(f"adafactor: no factor rule for logical axis {e.args[0]!r} of parameter {path}") from None
    if FactorDim.ROW in rule and FactorDim.COLUMN in rule and FactorDim.NONE in rule:
      raise ValueError(f"adafactor: incomplete factor rule {rule} for parameter {path}")
    if FactorDim.ROW not in rule or FactorDim.COLUMN not in rule:
      rule = tuple(FactorDim.NONE if d in (FactorDim.ROW, FactorDim.COLUMN) else d for d in rule)
    return rule

  def _plan(self, shape: Sequence[int], axes: Sequence[str | None] | None, path: str) -> _Plan:
    ndim = len(shape)
    all_dims = tuple(range(ndim))
    if not self.config.factored:
      return _Plan(all_dims, None)
    rule = self._rule(axes, shape, path)
    batch = tuple(i for i, d in enumerate(rule or ()) if d == FactorDim.BATCH)
    if rule is None or (ndim <= 2 and not batch):
      if ndim > 2:
        raise ValueError(f"adafactor: parameter {path} of rank {ndim} needs logical axes to pick factored dims")
      return _Plan(all_dims, _heuristic_factor(shape, self.config.min_dim_size_to_factor))
    rows = tuple(i for i, d in enumerate(rule) if d == FactorDim.ROW)
    cols = tuple(i for i, d in enumerate(rule) if d == FactorDim.COLUMN)
    averaging = tuple(i for i in all_dims if i not in batch)
    return _Plan(averaging, (rows, cols) if rows or cols else None)

  def _plans(self, params: Any) -> tuple[list[_Plan], Any]:
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(params)
    if self.param_logical_axes is not None:
      axes_leaves = treedef.flatten_up_to(self.param_logical_axes)
    else:
      axes_leaves = [None] * len(leaves_with_path)
    plans = [
        self._plan(leaf.shape, tuple(axes) if axes is not None else None, jax.tree_util.keystr(path))
        for (path, leaf), axes in zip(leaves_with_path, axes_leaves)
    ]
    return plans, treedef

  # --- optax interface
  def init(self, params: Any) -> AdafactorState:
    plans, treedef = self._plans(params)
    leaves = treedef.flatten_up_to(params)
    slots = {k: [] for k in SLOTS}
    for p, plan in zip(leaves, plans):
      shape = tuple(p.shape)
      placeholder = jnp.zeros((1,), jnp.float32)
      if plan.factored is not None:
        rows, cols = plan.factored
        slots["v_row"].append(jnp.zeros(tuple(np.delete(shape, cols)), jnp.float32))
        slots["v_col"].append(jnp.zeros(tuple(np.delete(shape, rows)), jnp.float32))
        slots["v"].append(placeholder)
      else:
        slots["v_row"].append(placeholder)
        slots["v_col"].append(placeholder)
        slots["v"].append(jnp.zeros(shape, jnp.float32))
      slots["m"].append(jnp.zeros(shape, jnp.float32) if self.config.beta1 is not None else placeholder)
    return AdafactorState(
        count=jnp.zeros((), jnp.int32), **{k: jax.tree_util.tree_unflatten(treedef, v) for k, v in slots.items()})

  def update(self, grads: Any, state: AdafactorState, params: Any) -> tuple[Any, AdafactorState]:
    c = self.config
    plans, treedef = self._plans(params)
    p_leaves = treedef.flatten_up_to(params)
    g_leaves = [g.astype(jnp.float32) for g in treedef.flatten_up_to(grads)]
    slot_leaves = {k: treedef.flatten_up_to(getattr(state, k)) for k in SLOTS}
    step = state.count
    if c.global_norm_clip_threshold:
      norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in g_leaves))
      scale = c.global_norm_clip_threshold * jnp.minimum(1.0 / c.global_norm_clip_threshold, 1.0 / norm)
      g_leaves = [g * scale for g in g_leaves]
    lr = self.learning_rate(step)
    decay = 1.0 - (jnp.asarray(step - c.step_offset, jnp.float32) + 1.0) ** (-c.decay_rate)
    mixing = 1.0 - decay
    updates, new_slots = [], {k: [] for k in SLOTS}
    for i, (p, g, plan) in enumerate(zip(p_leaves, g_leaves, plans)):
      old = {k: slot_leaves[k][i] for k in SLOTS}
      new = dict(old)
      scale = lr
      if c.multiply_by_parameter_scale:
        pf = p.astype(jnp.float32)
        param_scale = jnp.maximum(jnp.sqrt(jnp.mean(pf * pf, axis=plan.averaging_dims, keepdims=True)), c.epsilon2)
        if c.max_parameter_scale is not None:
          param_scale = jnp.minimum(param_scale, c.max_parameter_scale)
        scale = scale * param_scale
      g2 = g * g + c.epsilon1
      if plan.factored is not None:
        rows, cols = plan.factored
        v_row = decay * old["v_row"] + mixing * jnp.mean(g2, axis=cols)
        v_col = decay * old["v_col"] + mixing * jnp.mean(g2, axis=rows)
        new["v_row"], new["v_col"] = v_row, v_col
        rows_in_v_row = tuple(d - sum(1 for e in cols if e < d) for d in rows)
        row_factor = (v_row / jnp.mean(v_row, axis=rows_in_v_row, keepdims=True)) ** -0.5
        col_factor = v_col ** -0.5
        u = g * jnp.expand_dims(row_factor, cols) * jnp.expand_dims(col_factor, rows)
      else:
        v = decay * old["v"] + mixing * g2
        new["v"] = v
        u = g * v ** -0.5
      if c.clipping_threshold is not None:
        u = u / jnp.maximum(1.0, jnp.sqrt(jnp.mean(u * u, axis=plan.averaging_dims, keepdims=True))
                            / c.clipping_threshold)
      subtrahend = scale * u
      if c.beta1 is not None:
        subtrahend = c.beta1 * old["m"] + (1.0 - c.beta1) * subtrahend
        new["m"] = subtrahend
      delta = -subtrahend
      if c.weight_decay_rate is not None:
        delta = delta - c.weight_decay_rate * p.astype(jnp.float32)
      updates.append(delta.astype(p.dtype))
      for k in SLOTS:
        new_slots[k].append(new[k])
    new_state = AdafactorState(
        count=step + 1, **{k: jax.tree_util.tree_unflatten(treedef, v) for k, v in new_slots.items()})
    return jax.tree_util.tree_unflatten(treedef, updates), new_state

  # --- partitioning
  def state_logical_axes(self, params_abstract: Any, param_logical_axes: Any) -> AdafactorState:
    """PartitionSpecs of logical names for every slot: `v`/`m` follow the parameter, `v_row`/`v_col` drop the
    averaged dims (so FSDP / model parallelism shard them too), placeholders are replicated."""
    plans, treedef = self._plans(params_abstract)
    axes_leaves = treedef.flatten_up_to(param_logical_axes)
    out = {k: [] for k in SLOTS}
    for plan, axes in zip(plans, axes_leaves):
      axes = tuple(axes) if axes is not None else None
      if plan.factored is not None and axes is not None:
        rows, cols = plan.factored
        out["v_row"].append(PartitionSpec(*np.delete(np.array(axes, dtype=object), cols).tolist()))
        out["v_col"].append(PartitionSpec(*np.delete(np.array(axes, dtype=object), rows).tolist()))
        out["v"].append(PartitionSpec())
      else:
        out["v_row"].append(PartitionSpec())
        out["v_col"].append(PartitionSpec())
        out["v"].append(PartitionSpec(*axes) if axes is not None else PartitionSpec())
      out["m"].append(PartitionSpec(*axes) if (axes is not None and self.config.beta1 is not None)
                      else PartitionSpec())
    return AdafactorState(
        count=PartitionSpec(), **{k: jax.tree_util.tree_unflatten(treedef, v) for k, v in out.items()})

  # --- T5X import
  def state_from_t5x(self, params: Any, param_states: Mapping[str, Mapping[str, Any]], step: int) -> AdafactorState:
    """Our state from T5X slots: `param_states['encoder/layers_0/attention/query/kernel'] = {'v_row': ..., ...}`.

    Shapes must be the ones this optimizer would create (same factoring); a mismatch names the parameter.
    """
    template = jax.eval_shape(self.init, params)
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(params)
    slots = {k: [] for k in SLOTS}
    for path, _ in leaves_with_path:
      name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
      if name not in param_states:
        raise KeyError(f"T5X optimizer state has no slots for parameter {name}")
      for k in SLOTS:
        slots[k].append(param_states[name][k])
    state = AdafactorState(
        count=jnp.asarray(step, jnp.int32), **{k: jax.tree_util.tree_unflatten(treedef, v) for k, v in slots.items()})
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(template), jax.tree.leaves(state)):
      if tuple(np.shape(got)) != tuple(want.shape):
        raise ValueError(
            f"T5X slot {jax.tree_util.keystr(path)} has shape {np.shape(got)}, expected {want.shape} "
            f"(min_dim_size_to_factor={self.config.min_dim_size_to_factor} must match the T5X run)")
    return jax.tree.map(lambda x, t: jnp.asarray(x, t.dtype), state, template)
