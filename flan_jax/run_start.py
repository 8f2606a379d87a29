"""Where a run starts: MODEL_DIR's lock, then its newest intact step, else INITIAL_CHECKPOINT_PATH, else a fresh init.

Every read goes through `flan_jax.checkpoints.loader` (verified against the step's manifest); damaged steps after
the newest intact one are set aside so that they are trained again, never trained on.
"""
from __future__ import annotations

import os

import jax
import numpy as np


def lock_model_dir(model_dir: str):
  """MODEL_DIR's lease: process 0 takes it (or refuses, naming the holder), and every process learns which."""
  from flan_jax.checkpoints import loader, lock
  run_lock = lock.RunLock(model_dir)
  error = None
  if jax.process_index() == 0:
    try:
      run_lock.acquire()
    except lock.RunLockError as e:
      error = e
  if not loader.all_processes(error is None):
    raise error or lock.RunLockError(f"process 0 could not lock {model_dir}; see its log")
  return run_lock


def start_state(trainer, model_dir: str, host_it, initial_checkpoint_path: str | None, initial_checkpoint_format: str,
                 random_seed: int):
  """(TrainState, the resume's `loader.Restored` or None): MODEL_DIR's newest intact step, with the damaged steps
  after it set aside so that they are trained again; else INITIAL_CHECKPOINT_PATH; else a fresh init."""
  from flan_jax import train_state as train_state_lib
  from flan_jax.checkpoints import loader, manager
  if not manager.committed_steps(model_dir):
    if not initial_checkpoint_path:
      return trainer.init_state(random_seed), None
    state = initial_state(trainer, initial_checkpoint_path, initial_checkpoint_format)
    print(f"flan-jax train: initialized from {initial_checkpoint_path} (step {int(state.step)})", flush=True)
    return state, None
  abstract = trainer.abstract_state_with_shardings()
  restored = loader.restore(model_dir, abstract_params=abstract.params, abstract_opt_state=abstract.opt_state,
                            with_dataset=True)
  note = "" if restored.verified else " (unverified: the step has no manifest)"
  if restored.damaged:
    skipped = [c.step for c in restored.damaged]
    if jax.process_index() == 0:
      loader.set_aside(model_dir, skipped)
    loader.all_processes(True)  # the others wait until the damaged steps are out of Orbax's sight
    note += (f", the newest intact step: skipped damaged step(s) {skipped}, moved to "
             f"{os.path.join(model_dir, loader.DAMAGED_DIR)}")
  if restored.dataset_state is not None:
    host_it.restore(restored.dataset_state[f"process_{jax.process_index()}"])
  print(f"flan-jax train: resumed from {model_dir} step {restored.step}{note}", flush=True)
  return train_state_lib.TrainState(params=restored.params, opt_state=restored.opt_state), restored


def initial_state(trainer, path: str, fmt: str):
  """Params (and optimizer state, where the source has ours or T5X's) from INITIAL_CHECKPOINT_PATH."""
  from flan_jax.checkpoints import loader

  abstract = trainer.abstract_state_with_shardings()
  if fmt == "auto":
    if os.path.exists(os.path.join(path, "config.json")):
      fmt = "hf"
    elif loader.is_ours(path):
      fmt = "ours"
    else:
      fmt = "t5x"
  if fmt == "ours":
    try:
      restored = loader.restore(path, abstract_params=abstract.params, abstract_opt_state=abstract.opt_state,
                                opt_state_required=False)
    except loader.CheckpointError as e:
      raise loader.CheckpointError(f"INITIAL_CHECKPOINT_PATH={path!r}: {e}") from None
    params, opt_state = restored.params, restored.opt_state
  elif fmt == "t5x":
    from flan_jax.checkpoints import t5x
    ckpt = t5x.T5XCheckpoint(path)
    params = ckpt.params(shardings=trainer.state_shardings.params, expected=abstract.params)
    t5x_opt = ckpt.optimizer_state()
    slots = {}
    from flan_jax.checkpoints import flatten
    for name, value in flatten(t5x_opt["param_states"]).items():
      param_name, slot = name.rsplit("/", 1)
      slots.setdefault(param_name, {})[slot] = np.asarray(value)
    opt_state = trainer.optimizer.state_from_t5x(abstract.params, slots, int(t5x_opt["step"]))
  elif fmt == "hf":
    from flan_jax.checkpoints import hf
    _, params = hf.load(path)
    opt_state = None
  else:
    raise ValueError(f"INITIAL_CHECKPOINT_FORMAT={fmt!r}: choose auto, ours, t5x or hf")
  from flan_jax import train_state as train_state_lib
  if opt_state is None:
    opt_state = trainer.optimizer.init(params)
  return trainer.place_state(train_state_lib.TrainState(params=params, opt_state=opt_state))
