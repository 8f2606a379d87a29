"""`flan_jax.sharding_cost`: the HLO collective parser, exact on known programs, and the trainer's step on the tiny
model checked against the arithmetic of its gradients and `flan-jax plan`'s memory estimate (8 CPU devices, from
conftest)."""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from flan_jax import optimizers, plan, sharding_cost

# Async pairs count once, with the -done result; the three spellings of replica groups; other ops are ignored.
ASYNC_HLO = "\n".join([
    "%ars = f32[128]{0} all-reduce-start(f32[128]{0} %p), channel_id=1, replica_groups=[2,4]<=[8], to_apply=%add",
    "%ard = f32[128]{0} all-reduce-done(f32[128]{0} %ars)",
    "%ags = (bf16[4,8]{1,0}, bf16[16,8]{1,0}) all-gather-start(bf16[4,8]{1,0} %q), "
    "replica_groups={{0,1,2,3},{4,5,6,7}}, dimensions={0}",
    "%agd = bf16[16,8]{1,0} all-gather-done((bf16[4,8]{1,0}, bf16[16,8]{1,0}) %ags)",
    "%rs = (f32[2,8]{1,0}, /*index=1*/s32[3]{0}) reduce-scatter(%r, %t), "
    "replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_0','axis_1'}, dimensions={0}",
    "%cps = (f32[8]{0}, f32[8]{0}, u32[], u32[]) collective-permute-start(%s), source_target_pairs={{0,1},{1,0}}",
    "ROOT %cpd = f32[8]{0} collective-permute-done(%cps)",
    "%gte = f32[128]{0} get-tuple-element(%all-reduce.1), index=0",
])


def test_parser_on_hand_written_async_hlo():
  found = sharding_cost.parse_collectives(ASYNC_HLO, num_devices=8)
  assert [(c.kind, c.result_bytes, c.group_size) for c in found] == [
      ("all-reduce", 512, 4), ("all-gather", 256, 4), ("reduce-scatter", 64 + 12, 8), ("collective-permute", 32, 8)]
  assert [c.moved_bytes for c in found] == [2 * 3 / 4 * 512, 3 / 4 * 256, 7 * 76, 32]


def test_parser_on_a_compiled_psum_and_all_gather():
  mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(2, 4), ("a", "b"))

  def body(x):  # x: this device's f32[8, 16] block
    return jax.lax.psum(x * 2.0, "b"), jax.lax.all_gather(x, ("a", "b"), tiled=True)

  fn = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=P(("a", "b")), out_specs=(P("a"), P()), check_vma=False))
  text = fn.lower(jax.ShapeDtypeStruct((64, 16), jnp.float32)).compile().as_text()
  found = sharding_cost.parse_collectives(text, num_devices=8)
  totals = sharding_cost.totals_by_kind(found)
  assert set(totals) == {"all-reduce", "all-gather"}
  assert (totals["all-reduce"].count, totals["all-reduce"].result_bytes) == (1, 8 * 16 * 4)
  assert (totals["all-gather"].count, totals["all-gather"].result_bytes) == (1, 64 * 16 * 4)
  assert [c.group_size for c in found if c.kind == "all-reduce"] == [4]
  assert [c.group_size for c in found if c.kind == "all-gather"] == [8]
  assert totals["all-reduce"].moved_bytes == 2 * 3 / 4 * 512 and totals["all-gather"].moved_bytes == 7 / 8 * 4096


# The tiny model (gin_configs/models/flan_t5_tiny.gin) in float32 without dropout (what XLA:CPU keeps as an
# accelerator would: `sharding_cost.cpu_caveats`), on lengths where activations, not the 32128-row vocabulary,
# decide the peak.
LENGTHS = {"inputs": 512, "targets": 128}
BATCH = 16


@pytest.fixture(scope="module")
def tiny_setup() -> sharding_cost.Setup:
  plan.load_gin(["models/flan_t5_tiny.gin"], ["DROPOUT_RATE = 0.0"])
  config = optimizers.AdafactorConfig(decay_rate=0.8, step_offset=0, min_dim_size_to_factor=128,
                                      clipping_threshold=1.0)  # runs/finetune.gin's
  return sharding_cost.Setup(plan.gin_macro("MODEL"), config, optimizers.constant_schedule(1e-3), BATCH, LENGTHS,
                             "ffd")


@pytest.fixture(scope="module")
def tiny_dp(tiny_setup) -> sharding_cost.MeshReport:
  return sharding_cost.analyze(tiny_setup, sharding_cost.mesh_case("dp"))


def test_data_parallel_all_reduces_the_gradients(tiny_setup, tiny_dp):
  cfg = tiny_setup.model.config
  params = tiny_setup.model.param_shapes({"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8),
                                          "decoder_target_tokens": (1, 8)})
  gradient_bytes = sum(math.prod(p.shape) * 4 for p in jax.tree.leaves(params))
  assert [t.kind for t in tiny_dp.minimum] == ["all-reduce"] and tiny_dp.minimum[0].result_bytes == gradient_bytes
  totals = sharding_cost.totals_by_kind(tiny_dp.collectives)
  assert set(totals) == {"all-reduce"} and all(c.group_size == 8 for c in tiny_dp.collectives)
  # Beyond the gradients XLA sums two things before they shrink: the token embedding's gradient once per use
  # (encoder and decoder lookups, added after the all-reduce) and each layer's relative-position bias gradient
  # as [heads, q, k] (the [heads, buckets] tables' own gradients are then built on every device); plus a few
  # metric scalars.
  embedding = cfg.vocab_size * cfg.emb_dim * 4
  biases = 4 * cfg.num_heads * (cfg.num_encoder_layers * LENGTHS["inputs"] ** 2
                                + cfg.num_decoder_layers * LENGTHS["targets"] ** 2)
  tables = 2 * 4 * cfg.num_heads * cfg.relative_attention_num_buckets
  excess = totals["all-reduce"].result_bytes - gradient_bytes
  assert 0 <= excess - (embedding + biases - tables) < 256


def test_data_parallel_memory_matches_the_plan(tiny_dp):
  memory, estimate = tiny_dp.memory, tiny_dp.estimate
  # State: the compiled arguments are the plan's parameters and Adafactor slots plus this device's rows of the
  # int32 batch: 2 rows of the features T5 reads (jit drops the unused `*_positions`, T5's positions being
  # relative, and the dropout key, dropout being off).
  batch_bytes = BATCH // 8 * 4 * (2 * LENGTHS["inputs"] + 4 * LENGTHS["targets"])
  assert memory.arguments - estimate.params - estimate.optimizer == batch_bytes
  assert memory.aliased == estimate.params + estimate.optimizer  # the donated state is updated in place
  assert abs(tiny_dp.memory_difference) < sharding_cost.MEMORY_TOLERANCE


def test_fsdp_with_activation_annotations_comes_close_to_the_minimum(tiny_setup, tiny_dp):
  # FSDP only pays off when activations keep their batch sharding; the models' annotations say so with the
  # partitioner's rules in flax's scope (`Trainer.scope`, which the trainer traces in). Short sequences keep the
  # relative-position bias gradients, all-reduced as [heads, q, k] (above), out of the way.
  short = dataclasses.replace(tiny_setup, lengths={"inputs": 64, "targets": 32})
  report = sharding_cost.analyze(short, sharding_cost.mesh_case("fsdp"))
  assert [t.kind for t in report.minimum] == ["all-reduce", "all-gather", "reduce-scatter"]
  assert report.moved_ratio < sharding_cost.COLLECTIVE_TOLERANCE
  assert report.memory.arguments < tiny_dp.memory.arguments / 6  # parameters and slots split 8 ways, norms not
