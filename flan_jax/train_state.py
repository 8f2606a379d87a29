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

  def as_dict(self) -> dict[str, Any]:
    return {"params": self.params, "opt_state": self.opt_state}


def create(params: Any, optimizer: Any) -> TrainState:
  return TrainState(params=params, opt_state=optimizer.init(params))
