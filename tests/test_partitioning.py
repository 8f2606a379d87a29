"""Logical-axis rules -> PartitionSpecs, mesh layouts, and sharding invariance of the train step."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from flan_jax import optimizers
from flan_jax import partitioning as pl
from flan_jax import trainer as trainer_lib
from tests.tiny_model import TinyModel

SHAPES = {"encoder_input_tokens": (8, 12), "decoder_input_tokens": (8, 6), "decoder_target_tokens": (8, 6),
          "decoder_loss_weights": (8, 6)}


def random_batches(n: int, seed: int = 0, batch: int = 8, vocab: int = 64) -> list[dict[str, np.ndarray]]:
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    targets = rng.integers(2, vocab, (batch, 6))
    out.append({"encoder_input_tokens": rng.integers(2, vocab, (batch, 12)),
                "decoder_input_tokens": np.concatenate([np.zeros((batch, 1), np.int64), targets[:, :-1]], 1),
                "decoder_target_tokens": targets,
                "decoder_loss_weights": (rng.random((batch, 6)) > 0.2).astype(np.float32)})
  return out


def test_rules_map_logical_axes():
  mesh_devices = jax.devices()
  part = pl.Partitioner(pl.PartitionerConfig(num_partitions=2), mesh_devices)
  assert dict(part.mesh.shape) == {"data": 4, "model": 2}
  assert part.spec(("embed", "mlp"), (16, 32)) == P(None, "model")
  assert part.spec(("vocab", "embed"), (64, 16)) == P("model")
  # A dim that does not divide the mesh axis stays replicated rather than failing.
  assert part.spec(("embed", "mlp"), (16, 33)) == P()
  fsdp = pl.Partitioner(pl.PartitionerConfig(num_partitions=2, parameter_partitioning_dims=2), mesh_devices)
  assert fsdp.spec(("embed", "mlp"), (16, 32)) == P("data", "model")
  assert fsdp.spec(("batch", "embed"), (8, 16)) == P("data")  # 'data' already used by the batch
  rep = pl.Partitioner(pl.PartitionerConfig(num_partitions=2, num_replicas=2), mesh_devices)
  assert dict(rep.mesh.shape) == {"replica": 2, "data": 2, "model": 2}
  assert rep.batch_sharding().spec == P(("replica", "data"))
  assert rep.data_parallel_size == 4
  with pytest.raises(ValueError, match="logical axis 'nonsense' has no partitioning rule"):
    part.spec(("nonsense",), (4,))
  with pytest.raises(ValueError, match="num_partitions=3"):
    pl.Partitioner(pl.PartitionerConfig(num_partitions=3), mesh_devices)
  with pytest.raises(ValueError, match="BATCH_SIZE=6 is not divisible by the data-parallel size 4"):
    part.check_batch_size(6)


def _run(config: pl.PartitionerConfig, devices, batches, state_out: dict | None = None) -> list[float]:
  part = pl.Partitioner(config, devices)
  opt = optimizers.Adafactor(optimizers.AdafactorConfig(min_dim_size_to_factor=16), optimizers.constant_schedule(0.05))
  tr = trainer_lib.Trainer(TinyModel(), opt, part, SHAPES)
  state = tr.init_state()
  losses = []
  for b in batches:
    state, metrics = tr.train_step(state, tr.global_batch(b))
    losses.append(float(metrics["loss"]) / float(metrics["nonpadding_tokens"]))
  if state_out is not None:
    state_out["state"], state_out["trainer"] = state, tr
  return losses


@pytest.fixture(scope="session")
def single_device_losses():
  return _run(pl.PartitionerConfig(), jax.devices()[:1], random_batches(10))


def test_sharding_invariance(single_device_losses):
  batches = random_batches(10)
  out = {}
  model_parallel = _run(pl.PartitionerConfig(num_partitions=2), jax.devices(), batches, out)
  fsdp = _run(pl.PartitionerConfig(num_partitions=2, parameter_partitioning_dims=2), jax.devices(), batches)
  assert single_device_losses[-1] < single_device_losses[0]
  np.testing.assert_allclose(model_parallel, single_device_losses, rtol=0, atol=1e-5)
  np.testing.assert_allclose(fsdp, single_device_losses, rtol=0, atol=1e-5)
  # The state really is spread: the logits kernel (embed, vocab) is split over 'model' on the 4x2 mesh.
  kernel = out["state"].params["decoder"]["logits_dense"]["kernel"]
  assert kernel.sharding.spec == P(None, "model")
  assert kernel.addressable_shards[0].data.shape == (16, 32)
