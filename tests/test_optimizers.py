"""Adafactor: T5X's update math (against a plain numpy transcription), slot shapes matching a t5x-written
checkpoint, import of T5X slots, and the learning-rate schedules."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from flan_jax import optimizers


def _numpy_adafactor_step(p, g, slots, step, lr, min_dim, decay_rate=0.8, eps1=1e-30, eps2=1e-3, clip=1.0):
  """One T5X Adafactor update of a single rank<=2 parameter, written out with numpy in float64."""
  p, g = p.astype(np.float64), g.astype(np.float64)
  decay = 1.0 - (step + 1.0) ** (-decay_rate)
  scale = lr * max(np.sqrt(np.mean(p * p)), eps2)
  g2 = g * g + eps1
  new = dict(slots)
  factored = p.ndim == 2 and sorted(p.shape)[-2] >= min_dim
  if factored:
    small, large = (0, 1) if p.shape[0] <= p.shape[1] else (1, 0)
    new["v_row"] = decay * slots["v_row"] + (1 - decay) * g2.mean(axis=large)
    new["v_col"] = decay * slots["v_col"] + (1 - decay) * g2.mean(axis=small)
    r = (new["v_row"] / new["v_row"].mean()) ** -0.5
    c = new["v_col"] ** -0.5
    u = g * np.expand_dims(r, large) * np.expand_dims(c, small)
  else:
    new["v"] = decay * slots["v"] + (1 - decay) * g2
    u = g / np.sqrt(new["v"])
  u = u / max(1.0, np.sqrt(np.mean(u * u)) / clip)
  return p - scale * u, new


@pytest.fixture(scope="module")
def toy():
  rng = np.random.default_rng(0)
  params = {"a": {"kernel": rng.normal(size=(48, 20)).astype(np.float32)},
            "b": {"kernel": rng.normal(size=(8, 40)).astype(np.float32)},
            "scale": rng.normal(size=(20,)).astype(np.float32),
            "tall": {"kernel": rng.normal(size=(24, 64)).astype(np.float32)}}
  grads = [jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), params) for _ in range(3)]
  return params, grads


def test_update_matches_t5x_math(toy):
  params, grads = toy
  lr = 0.01
  opt = optimizers.Adafactor(optimizers.AdafactorConfig(min_dim_size_to_factor=16),
                             optimizers.constant_schedule(lr))
  state = opt.init(params)
  ref_params = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  flat_state = {}
  for name in ("a", "b", "scale", "tall"):
    flat_state[name] = {k: np.asarray(jax.tree.leaves(getattr(state, k)[name])[0], np.float64)
                        for k in optimizers.SLOTS}
  update = jax.jit(opt.update)
  p = params
  for step, g in enumerate(grads):
    updates, state = update(g, state, p)
    p = jax.tree.map(lambda a, u: a + u, p, updates)
    for name in ("a", "b", "scale", "tall"):
      leaf_p = jax.tree.leaves(ref_params[name])[0]
      leaf_g = np.asarray(jax.tree.leaves(g[name])[0])
      new_p, flat_state[name] = _numpy_adafactor_step(leaf_p, leaf_g, flat_state[name], step, lr, 16)
      ref_params[name] = jax.tree.map(lambda _: new_p, ref_params[name])
  for name in ("a", "b", "scale", "tall"):
    np.testing.assert_allclose(np.asarray(jax.tree.leaves(p[name])[0]), jax.tree.leaves(ref_params[name])[0],
                               rtol=2e-5, atol=2e-6)
  assert int(state.count) == 3
  # (8, 40) is below the factoring threshold 16 on its short side: a full v, shape-[1] factored slots.
  assert state.v["b"]["kernel"].shape == (8, 40) and state.v_row["b"]["kernel"].shape == (1,)
  assert state.v_row["a"]["kernel"].shape == (20,) and state.v_col["a"]["kernel"].shape == (48,)
  assert state.m["a"]["kernel"].shape == (1,)


def _fixture_params_and_slots(t5x_tiny_fixture):
  tree = json.loads((t5x_tiny_fixture / "param_tree.json").read_text())
  decoded = json.loads((t5x_tiny_fixture / "legacy_msgpack_decoded.json").read_text())
  params = {}
  for path, (shape, dtype) in tree.items():
    node = params
    keys = path.split("/")[1:]
    for k in keys[:-1]:
      node = node.setdefault(k, {})
    node[keys[-1]] = jax.ShapeDtypeStruct(tuple(shape), dtype)
  slot_shapes = {}

  def walk(node, prefix):
    if set(node) >= set(optimizers.SLOTS):
      # Inline arrays carry "shape"; tensorstore-written ones carry it under "metadata".
      slot_shapes[prefix] = {k: tuple(node[k]["shape"] if "shape" in node[k] else node[k]["metadata"]["shape"])
                             for k in optimizers.SLOTS}
      return
    for k, v in node.items():
      walk(v, f"{prefix}/{k}" if prefix else k)

  walk(decoded["optimizer"]["state"]["param_states"], "")
  return params, slot_shapes


def test_slot_shapes_match_t5x_checkpoint(t5x_tiny_fixture):
  params, slot_shapes = _fixture_params_and_slots(t5x_tiny_fixture)
  opt = optimizers.Adafactor(optimizers.AdafactorConfig(min_dim_size_to_factor=32), optimizers.constant_schedule(1.0))
  state = jax.eval_shape(opt.init, params)
  ours = {}
  for k in optimizers.SLOTS:
    for path, leaf in jax.tree_util.tree_leaves_with_path(getattr(state, k)):
      ours.setdefault("/".join(p.key for p in path), {})[k] = tuple(leaf.shape)
  assert set(ours) == set(slot_shapes)
  mismatched = {name: (ours[name], slot_shapes[name]) for name in ours if ours[name] != slot_shapes[name]}
  assert not mismatched
  assert any(v["v_row"] != (1,) for v in ours.values())


def test_state_from_t5x_roundtrip_and_shape_errors(t5x_tiny_fixture):
  params, slot_shapes = _fixture_params_and_slots(t5x_tiny_fixture)
  opt = optimizers.Adafactor(optimizers.AdafactorConfig(min_dim_size_to_factor=32), optimizers.constant_schedule(1.0))
  rng = np.random.default_rng(1)
  slots = {name: {k: rng.random(s).astype(np.float32) for k, s in shapes.items()}
           for name, shapes in slot_shapes.items()}
  state = opt.state_from_t5x(params, slots, step=3)
  assert int(state.count) == 3
  np.testing.assert_array_equal(state.v_row["decoder"]["logits_dense"]["kernel"],
                                slots["decoder/logits_dense/kernel"]["v_row"])
  wrong = optimizers.Adafactor(optimizers.AdafactorConfig(min_dim_size_to_factor=128),
                               optimizers.constant_schedule(1.0))
  with pytest.raises(ValueError, match="logits_dense.*min_dim_size_to_factor|min_dim_size_to_factor"):
    wrong.state_from_t5x(params, slots, step=3)
  del slots["decoder/logits_dense/kernel"]
  with pytest.raises(KeyError, match="decoder/logits_dense/kernel"):
    opt.state_from_t5x(params, slots, step=3)


def test_logical_factor_rules_for_stacked_params_and_slot_axes():
  params = {"stack": {"kernel": jnp.ones((3, 8, 40))}, "w": {"kernel": jnp.ones((40, 8))}}
  axes = {"stack": {"kernel": P("layers", "embed", "mlp")}, "w": {"kernel": P("mlp", "embed")}}
  opt = optimizers.Adafactor(optimizers.AdafactorConfig(min_dim_size_to_factor=128),
                             optimizers.constant_schedule(1.0), param_logical_axes=axes)
  state = opt.init(params)
  # Rank 3 with a BATCH ('layers') axis follows the rules: rows = embed, columns = mlp, per layer.
  assert state.v_row["stack"]["kernel"].shape == (3, 8)
  assert state.v_col["stack"]["kernel"].shape == (3, 40)
  # Rank 2 falls back to T5X's size heuristic: both dims < 128, so unfactored.
  assert state.v["w"]["kernel"].shape == (40, 8)
  slot_axes = opt.state_logical_axes(params, axes)
  assert slot_axes.v_row["stack"]["kernel"] == P("layers", "embed")
  assert slot_axes.v_col["stack"]["kernel"] == P("layers", "mlp")
  assert slot_axes.v["w"]["kernel"] == P("mlp", "embed")
  # Per-layer statistics: scaling one layer's gradient leaves the others' updates unchanged.
  g = jax.random.normal(jax.random.key(0), (3, 8, 40))
  u1, _ = opt.update({"stack": {"kernel": g}, "w": {"kernel": jnp.ones((40, 8))}}, state, params)
  g2 = g.at[0].multiply(100.0)
  u2, _ = opt.update({"stack": {"kernel": g2}, "w": {"kernel": jnp.ones((40, 8))}}, state, params)
  np.testing.assert_allclose(u1["stack"]["kernel"][1:], u2["stack"]["kernel"][1:], rtol=1e-6)


def test_schedules():
  const = optimizers.make_schedule("constant", 1e-3)
  assert float(const(0)) == pytest.approx(1e-3) and float(const(10_000)) == pytest.approx(1e-3)
  warm = optimizers.make_schedule("warmup", 1e-3, warmup_steps=10)
  assert float(warm(0)) == pytest.approx(1e-4) and float(warm(9)) == pytest.approx(1e-3)
  rsqrt = optimizers.make_schedule("rsqrt", 1.0, warmup_steps=10_000)
  assert float(rsqrt(5)) == pytest.approx(0.01) and float(rsqrt(40_000)) == pytest.approx(0.005)
  cos = optimizers.make_schedule("cosine", 1.0, warmup_steps=0, decay_steps=100)
  assert float(cos(0)) == pytest.approx(1.0) and float(cos(50)) == pytest.approx(0.5, abs=1e-6)
  assert float(cos(100)) == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
    optimizers.make_schedule("linear", 1.0)


def test_global_norm_clipping_scales_gradients():
  params = {"w": jnp.ones((4,))}
  opt = optimizers.Adafactor(
      optimizers.AdafactorConfig(global_norm_clip_threshold=1.0, multiply_by_parameter_scale=False,
                                 clipping_threshold=None),
      optimizers.constant_schedule(1.0))
  state = opt.init(params)
  # Step 0 has decay 0, so v = g^2 and the update is sign(g) regardless of scale: compare v instead.
  _, big = opt.update({"w": jnp.full((4,), 10.0)}, state, params)
  _, unit = opt.update({"w": jnp.full((4,), 0.5)}, state, params)
  np.testing.assert_allclose(big.v["w"], np.full((4,), 0.25), rtol=1e-6)
  np.testing.assert_allclose(unit.v["w"], np.full((4,), 0.25), rtol=1e-6)
