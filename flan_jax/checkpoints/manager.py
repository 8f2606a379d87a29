"""Our one checkpoint format: an Orbax CheckpointManager directory, one step dir per save.

Items per step: `params` (always), `opt_state` (training checkpoints), `dataset` (the input iterator's JSON
state, so a resumed run sees exactly the batches an uninterrupted run would). `flan-jax convert` writes the
same layout at step 0 with params only, so every reader treats converted and trained directories alike.

Orbax writes each step into a temporary directory and renames it on commit, so a checkpoint left
half-written by a kill is never listed by `all_steps()` and never restored. Right before the commit, every step
gets a manifest of its files' sizes and hashes (`integrity`), which `loader` checks before restoring it.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from flan_jax.checkpoints import integrity

PARAMS = "params"
OPT_STATE = "opt_state"
DATASET = "dataset"
ITEM_NAMES = (PARAMS, OPT_STATE, DATASET)


def abstract_like(tree: Any, shardings: Any = None) -> Any:
  """ShapeDtypeStructs (with target shardings, when given) describing `tree` for a restore."""
  if shardings is None:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def absolute(directory: str | os.PathLike) -> epath.Path:
  """Orbax's tensorstore paths must be absolute; MODEL_DIR is often given relative to the working dir."""
  text = os.fspath(directory)
  return epath.Path(text if "://" in text else os.path.abspath(text))


def committed_steps(directory: str | os.PathLike) -> list[int]:
  """The committed steps of a dir (ascending), read off the file system without Orbax: step dirs with `params`,
  on GCS also with Orbax's commit file; `<step>.orbax-checkpoint-tmp-*` dirs of killed saves are not steps."""
  directory = epath.Path(directory)
  if not directory.is_dir():
    return []
  remote = "://" in os.fspath(directory)
  return sorted(int(p.name) for p in directory.iterdir()
                if p.name.isdigit() and (p / PARAMS).is_dir() and (not remote or (p / "commit_success.txt").exists()))


class Checkpointer:
  """Saves and restores params / optimizer state / dataset state under one directory."""

  def __init__(
      self,
      directory: str | os.PathLike,
      *,
      max_to_keep: int | None = None,
      save_interval_steps: int = 1,
      async_save: bool = True,
      create: bool = True,
  ):
    self.directory = os.fspath(absolute(directory))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_interval_steps=save_interval_steps,
        enable_async_checkpointing=async_save,
        create=create,
        temporary_path_class=integrity.temporary_path_class(self.directory),
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEM_NAMES)

  @staticmethod
  def is_checkpoint_dir(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds at least one committed step of ours (a step dir with a `params` item)."""
    return bool(committed_steps(directory))

  def step_dir(self, step: int) -> epath.Path:
    return epath.Path(self.directory) / str(step)

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(
      self,
      step: int,
      *,
      params: Any,
      opt_state: Any = None,
      dataset_state: dict | None = None,
      force: bool = False,
  ) -> bool:
    """Starts saving `step` (asynchronously unless disabled); returns whether a save was started."""
    items = {PARAMS: ocp.args.StandardSave(params)}
    if opt_state is not None:
      items[OPT_STATE] = ocp.args.StandardSave(opt_state)
    if dataset_state is not None:
      items[DATASET] = ocp.args.JsonSave(dataset_state)
    return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def item_names_at(self, step: int) -> set[str]:
    return {name for name in ITEM_NAMES if (self.step_dir(step) / name).is_dir()}

  def restore(
      self,
      step: int | None = None,
      *,
      abstract_params: Any,
      abstract_opt_state: Any = None,
      with_dataset: bool = True,
  ) -> dict[str, Any]:
    """Restores `step` (default: the latest) onto the shardings carried by the abstract trees.

    Returns a dict with `step`, `params`, and `opt_state` / `dataset_state` when they were asked for and saved.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    present = self.item_names_at(step)
    items = {PARAMS: ocp.args.StandardRestore(abstract_params)}
    if abstract_opt_state is not None:
      if OPT_STATE not in present:
        raise ValueError(f"checkpoint {self.directory} step {step} has no optimizer state (items: {sorted(present)})")
      items[OPT_STATE] = ocp.args.StandardRestore(abstract_opt_state)
    if with_dataset and DATASET in present:
      items[DATASET] = ocp.args.JsonRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return {
        "step": step,
        "params": restored[PARAMS],
        "opt_state": restored[OPT_STATE] if OPT_STATE in items else None,
        "dataset_state": restored[DATASET] if DATASET in items else None,
    }

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
