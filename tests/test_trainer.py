"""Train step: microbatching gives the full batch's update; dropout RNG is folded per step; metrics combine."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from flan_jax import optimizers
from flan_jax import partitioning as pl
from flan_jax import trainer as trainer_lib
from tests.test_partitioning import SHAPES, random_batches
from tests.tiny_model import TinyModel


def _trainer(num_microbatches: int, dropout_rate: float = 0.0, devices=None) -> trainer_lib.Trainer:
  part = pl.Partitioner(pl.PartitionerConfig(num_partitions=2), devices or jax.devices()[:2])
  opt = optimizers.Adafactor(optimizers.AdafactorConfig(min_dim_size_to_factor=16), optimizers.constant_schedule(0.05))
  return trainer_lib.Trainer(TinyModel(dropout_rate=dropout_rate), opt, part, SHAPES,
                             trainer_lib.TrainerConfig(num_microbatches=num_microbatches))


def test_four_microbatches_give_the_full_batch_update():
  batch = random_batches(1, seed=3)[0]
  results = {}
  for k in (1, 4):
    tr = _trainer(k)
    state = tr.init_state()
    new_state, metrics = tr.train_step(state, tr.global_batch(batch))
    results[k] = (jax.device_get(new_state.params), jax.device_get(new_state.opt_state),
                  {m: float(v) for m, v in metrics.items()})
  full, micro = results[1], results[4]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), full[0], micro[0])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), full[1], micro[1])
  for name in ("loss", "z_loss", "accuracy", "grad_norm", "nonpadding_tokens", "learning_rate"):
    assert micro[2][name] == pytest.approx(full[2][name], rel=1e-5), name
  # The update moved the params at all (the comparison above is not between two no-ops).
  init = jax.device_get(_trainer(1).init_state().params)
  assert not np.allclose(init["decoder"]["wi"]["kernel"], full[0]["decoder"]["wi"]["kernel"])


def test_microbatch_count_must_divide():
  with pytest.raises(ValueError, match="num_microbatches=3 does not divide the batch size 8"):
    _trainer(3)


def test_dropout_rng_is_folded_per_step():
  tr = _trainer(1, dropout_rate=0.5)
  batch = tr.global_batch(random_batches(1, seed=4)[0])
  params = tr.init_state().params
  rng0 = jax.random.fold_in(tr.dropout_key, 0)
  rng1 = jax.random.fold_in(tr.dropout_key, 1)
  loss = jax.jit(lambda p, r: tr.model.loss_fn(p, batch, r)[0])
  assert float(loss(params, rng0)) != float(loss(params, rng1))
  # Two train steps from the same state at the same step draw the same dropout mask.
  s1, m1 = tr.train_step(tr.init_state(), batch)
  s2, m2 = tr.train_step(tr.init_state(), batch)
  assert float(m1["loss"]) == float(m2["loss"])
  assert float(m1["loss"]) == pytest.approx(float(loss(params, rng0)), rel=1e-6)
  del s1, s2


def test_check_finite_names_the_step():
  trainer_lib.check_finite({"loss": 1.0}, step=3)
  with pytest.raises(FloatingPointError, match="step 12: loss is nan"):
    trainer_lib.check_finite({"loss": float("nan")}, step=12)
  with pytest.raises(FloatingPointError, match="step 2: loss is inf"):
    trainer_lib.check_finite({"loss": float("inf")}, step=2)


def _backend_compiles(run) -> int:
  """How many XLA compiles `run()` sets off."""
  seen: list[str] = []
  listening = [True]

  def listen(event: str, duration: float, **kwargs) -> None:
    del duration, kwargs
    if listening[0] and event == "/jax/core/compile/backend_compile_duration":
      seen.append(event)

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    run()
  finally:
    listening[0] = False
  return len(seen)


def test_a_step_compiled_ahead_is_not_compiled_again():
  """The loop compiles the step while the input starts (`compile_train_step`); the first step reuses it."""
  batch = random_batches(1, seed=5)[0]
  ahead, cold = _trainer(1), _trainer(1)
  ahead_state, cold_state = ahead.init_state(), cold.init_state()
  assert _backend_compiles(ahead.compile_train_step) == 1
  assert _backend_compiles(lambda: ahead.train_step(ahead_state, ahead.global_batch(batch))) == 0
  assert _backend_compiles(lambda: cold.train_step(cold_state, cold.global_batch(batch))) == 1
