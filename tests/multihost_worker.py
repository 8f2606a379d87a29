"""One process of a multi-process test: joins over gloo on 127.0.0.1, trains the tiny model 10 steps on its rows of
each global batch (as the mesh's data layout gives them), and prints the per-token losses as JSON (process 0)."""
from __future__ import annotations

import json
import sys

import jax


def main(port: int, process_id: int, num_processes: int, num_partitions: int) -> None:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes,
                             process_id=process_id)
  from flan_jax import optimizers
  from flan_jax import partitioning as pl
  from flan_jax import trainer as trainer_lib
  from tests.test_partitioning import SHAPES, random_batches
  from tests.tiny_model import TinyModel

  part = pl.Partitioner(pl.PartitionerConfig(num_partitions=num_partitions))
  opt = optimizers.Adafactor(optimizers.AdafactorConfig(min_dim_size_to_factor=16), optimizers.constant_schedule(0.05))
  tr = trainer_lib.Trainer(TinyModel(), opt, part, SHAPES)
  state = tr.init_state()
  shard = part.data_layout(8)
  losses = []
  for batch in random_batches(10):
    local = {k: v[shard.first_row:shard.first_row + shard.rows] for k, v in batch.items()}
    state, metrics = tr.train_step(state, tr.global_batch(local))
    losses.append(float(metrics["loss"]) / float(metrics["nonpadding_tokens"]))
  if process_id == 0:
    print(json.dumps({"losses": losses, "mesh": dict(part.mesh.shape), "processes": jax.process_count(),
                      "shards": shard.num_shards}))
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(*(int(a) for a in sys.argv[1:5]))
