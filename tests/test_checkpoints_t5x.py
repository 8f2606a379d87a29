"""T5X checkpoint import: both formats of the t5x-written fixture, Adafactor slots, sharded per-index reads.

The model-level reproduction of t5x's logits / score / loss / decodes is in test_parity_t5.py.
"""
from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from flan_jax.checkpoints import TreeMismatchError, flatten, unflatten
from flan_jax.checkpoints import t5x


@pytest.fixture(scope="session")
def legacy(t5x_tiny_fixture):
  return t5x.T5XCheckpoint(t5x_tiny_fixture / "ckpt_legacy")


@pytest.fixture(scope="session")
def orbax(t5x_tiny_fixture):
  return t5x.T5XCheckpoint(t5x_tiny_fixture / "ckpt_orbax" / "checkpoint_3")


def test_formats_and_step(legacy, orbax):
  assert (legacy.format, orbax.format) == ("legacy", "orbax")
  assert legacy.step == orbax.step == 3
  assert legacy.dir.name == "checkpoint_3"


def test_tree_matches_the_fixture_listing(legacy, orbax, t5x_tiny_fixture):
  params = json.loads((t5x_tiny_fixture / "param_tree.json").read_text())
  state = json.loads((t5x_tiny_fixture / "state_dict_tree.json").read_text())
  for ckpt in (legacy, orbax):
    found = {name: [list(a.shape), str(a.dtype)] for name, a in ckpt.arrays.items()}
    assert found == state
    assert {"target/" + n: [list(s), "float32"] for n, s in ckpt.param_shapes().items()} == params


def test_both_formats_hold_the_same_values(legacy, orbax):
  for name, stored in legacy.arrays.items():
    np.testing.assert_array_equal(stored.read(), orbax.arrays[name].read(), err_msg=name)


def test_inline_and_tensorstore_arrays_are_both_read(legacy, t5x_tiny_fixture):
  # v_row of a kernel is inline in the msgpack; a layer-norm's v is a zarr dir beside it.
  v_row = legacy.arrays["state/param_states/encoder/layers_0/attention/query/kernel/v_row"].read()
  v_norm = legacy.arrays["state/param_states/encoder/encoder_norm/scale/v"].read()
  assert v_row.shape == (64,) and np.all(v_row > 0)  # squared-gradient averages after 3 steps
  assert v_norm.shape == (64,) and np.all(v_norm > 0)
  decoded = json.loads((t5x_tiny_fixture / "legacy_msgpack_decoded.json").read_text())
  placeholder = decoded["optimizer"]["state"]["param_states"]["encoder"]["encoder_norm"]["scale"]["m"]
  np.testing.assert_array_equal(
      legacy.arrays["state/param_states/encoder/encoder_norm/scale/m"].read(), np.asarray(placeholder["value"]))


def test_optimizer_state_has_t5x_slots(legacy):
  state = legacy.optimizer_state()
  assert int(state["step"]) == 3
  slots = state["param_states"]
  query = slots["encoder/layers_0/attention/query/kernel"]
  assert {k: v.shape for k, v in query.items()} == {"m": (1,), "v": (1,), "v_row": (64,), "v_col": (64,)}
  embed = slots["token_embedder/embedding"]
  assert embed["v_row"].shape == (64,) and embed["v_col"].shape == (4096,)  # T5X factors vocab as the column
  norm = slots["decoder/decoder_norm/scale"]
  assert norm["v"].shape == (64,) and norm["v_row"].shape == (1,)
  assert {f"{p}/{k}" for p, s in slots.items() for k in s} == {
      n[len("state/param_states/"):] for n in legacy.arrays if n.startswith("state/param_states/")}


def test_slots_load_into_our_adafactor_to_continue_the_run(legacy):
  from flan_jax import optimizers
  # The fixture's optimizer: decay_rate 0.8, min_dim_size_to_factor 32 (see its README).
  opt = optimizers.Adafactor(optimizers.AdafactorConfig(decay_rate=0.8, min_dim_size_to_factor=32),
                             optimizers.constant_schedule(0.01))
  params = legacy.params()
  t5x_state = legacy.optimizer_state()
  state = opt.state_from_t5x(params, t5x_state["param_states"], int(t5x_state["step"]))
  assert int(state.count) == 3
  np.testing.assert_array_equal(np.asarray(state.v_col["decoder"]["logits_dense"]["kernel"]),
                                legacy.arrays["state/param_states/decoder/logits_dense/kernel/v_col"].read())
  np.testing.assert_array_equal(np.asarray(state.v["encoder"]["relpos_bias"]["rel_embedding"]),
                                legacy.arrays["state/param_states/encoder/relpos_bias/rel_embedding/v"].read())
  # A mismatched factoring (T5X's default 128 here) is refused, naming the slot.
  wrong = optimizers.Adafactor(optimizers.AdafactorConfig(min_dim_size_to_factor=128),
                               optimizers.constant_schedule(0.01))
  with pytest.raises(ValueError, match="min_dim_size_to_factor=128"):
    wrong.state_from_t5x(params, t5x_state["param_states"], 3)


@pytest.mark.parametrize("which", ["ckpt_legacy", "ckpt_orbax"])
def test_sharded_restore_reads_only_local_slices(which, t5x_tiny_fixture):
  ckpt = t5x.T5XCheckpoint(t5x_tiny_fixture / which)  # its own instance: the readers get spied on
  mesh = Mesh(np.array(jax.devices()[:2]).reshape(1, 2), ("data", "model"))
  rules = {"kernel": P(None, "model"), "embedding": P("model", None)}
  shapes = ckpt.param_shapes()
  shardings = {n: NamedSharding(mesh, rules.get(n.rsplit("/", 1)[1], P())) for n in shapes}
  reads: dict[str, list] = {}
  for name in shapes:
    stored = ckpt.arrays["target/" + name]

    def spy(index, name=name, original=stored.reader):
      reads.setdefault(name, []).append(index)
      return original(index)
    stored.reader = spy
  params = flatten(ckpt.params(shardings=unflatten(shardings)))
  during_restore = {name: list(indices) for name, indices in reads.items()}  # the checks below read more
  query = "encoder/layers_0/attention/query/kernel"
  array = params[query]
  assert array.sharding == shardings[query]
  full = ckpt.arrays["target/" + query].read()
  for shard in array.addressable_shards:
    assert shard.data.shape == (64, 32)
    np.testing.assert_array_equal(np.asarray(shard.data), full[shard.index])
  # Each device asked only for its half of the kernel, never the whole array.
  halves = sorted(i[1].indices(64)[:2] for i in during_restore[query])
  assert halves == [(0, 32), (32, 64)]
  embed_rows = sorted(i[0].indices(4096)[:2] for i in during_restore["token_embedder/embedding"])
  assert embed_rows == [(0, 2048), (2048, 4096)]
  for name, value in params.items():
    np.testing.assert_array_equal(np.asarray(value), ckpt.arrays["target/" + name].read(), err_msg=name)
    assert value.sharding == shardings[name]


def test_sharded_optimizer_state_follows_param_shardings(orbax):
  mesh = Mesh(np.array(jax.devices()[:2]).reshape(1, 2), ("data", "model"))
  norm_sharding = NamedSharding(mesh, P("model"))
  state = orbax.optimizer_state(param_shardings={"encoder": {"encoder_norm": {"scale": norm_sharding}}})
  v = state["param_states"]["encoder/encoder_norm/scale"]["v"]
  assert v.sharding == norm_sharding and len(v.addressable_shards) == 2
  np.testing.assert_array_equal(np.asarray(v), orbax.arrays["state/param_states/encoder/encoder_norm/scale/v"].read())
  placeholder = state["param_states"]["encoder/encoder_norm/scale"]["m"]
  assert placeholder.sharding.is_fully_replicated


def test_expected_tree_mismatch_lists_every_difference(legacy):
  expected = {n: jax.ShapeDtypeStruct(s, np.float32) for n, s in legacy.param_shapes().items()}
  del expected["decoder/logits_dense/kernel"]
  expected["decoder/extra/kernel"] = jax.ShapeDtypeStruct((2, 2), np.float32)
  expected["token_embedder/embedding"] = jax.ShapeDtypeStruct((32128, 64), np.float32)
  with pytest.raises(TreeMismatchError) as err:
    legacy.params(expected=unflatten(expected))
  message = str(err.value)
  assert "missing from the checkpoint (1): decoder/extra/kernel" in message
  assert "unexpected in the checkpoint (1): decoder/logits_dense/kernel" in message
  assert "shape mismatch token_embedder/embedding: model [32128, 64], checkpoint [4096, 64]" in message


def test_missing_array_dir_and_bad_path_are_named(tmp_path, t5x_tiny_fixture):
  with pytest.raises(FileNotFoundError, match="not a T5X checkpoint"):
    t5x.T5XCheckpoint(tmp_path)
  broken = tmp_path / "checkpoint_3"
  shutil.copytree(t5x_tiny_fixture / "ckpt_legacy" / "checkpoint_3", broken)
  shutil.rmtree(broken / "target.encoder.layers_0.mlp.wo.kernel")
  with pytest.raises(FileNotFoundError, match=r"checkpoint:target/encoder/layers_0/mlp/wo/kernel: array directory"):
    t5x.T5XCheckpoint(tmp_path)
