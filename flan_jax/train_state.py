"""The training state: parameters and optimizer state; the step is the optimizer's update count."""
from __future__ import annotations

from typing import Any

import flax.struct
import jax


@flax.struct.dataclass
class TrainState:
  params: Any
  opt_state: Any

  @property
  def step(self) -> jax.Array:
    return self.opt_state.count


def create(params: Any, optimizer: Any) -> TrainState:
  return TrainState(params=params, opt_state=optimizer.init(params))
