"""The one reader of our checkpoint dirs: train (resume and INITIAL_CHECKPOINT_PATH), convert, eval and infer all
restore through `restore`, so every read is checked the same way.

A step is restored only once its files match its manifest (`integrity`). When no step is asked for, a step that
fails the check is skipped with a warning naming the step and file, and the newest intact step is restored;
`Restored.damaged` lists what was skipped so the trainer can set those steps aside. A step without a manifest
(written before steps carried one) is restored with a warning, and counts as damaged when it cannot be read or
holds non-finite values. A step that passes its check but cannot be restored is not damage (its files are as
written): that is an error, most often a model config other than the one that wrote it. With several processes,
each checks a share of the files and all agree on the outcome.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
from etils import epath

from flan_jax.checkpoints import integrity, manager

RUN_DIR_HINT = "pass the run dir (the one holding model.json and the step dirs)"
DAMAGED_DIR = "damaged_steps"


class CheckpointError(ValueError):
  """A checkpoint dir that cannot be read as asked; the message names the dir, step or file, and what to do."""


@dataclasses.dataclass(frozen=True)
class Restored:
  step: int
  params: Any
  opt_state: Any = None
  dataset_state: dict | None = None
  verified: bool = True  # False: the step has no manifest and was restored unchecked
  damaged: tuple[integrity.StepCheck, ...] = ()  # newer steps skipped as damaged, newest first


def _warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr, flush=True)


def all_processes(ok: bool) -> bool:
  """True where every process says True (one small all-gather on a multi-process job)."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils
  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


def run_dir(directory: str | os.PathLike, *, need_model_json: bool = True) -> epath.Path:
  """`directory` as an absolute path once it is a run dir with committed steps; else an error saying what it is."""
  path = manager.absolute(directory)
  if not path.exists():
    raise CheckpointError(f"{directory}: no such directory; {RUN_DIR_HINT}")
  if not path.is_dir():
    raise CheckpointError(f"{directory} is a file, not a checkpoint dir; {RUN_DIR_HINT}")
  if manager.committed_steps(path):
    if need_model_json and not (path / "model.json").exists():
      raise CheckpointError(f"{directory} has checkpoint steps but no model.json to rebuild the model from "
                            "(flan-jax train and flan-jax convert write one)")
    return path
  for step_dir in (path, path.parent):
    if step_dir.name.isdigit() and (step_dir / manager.PARAMS).is_dir():
      raise CheckpointError(
          f"{directory} is inside step {step_dir.name} of the run dir {step_dir.parent}, not a checkpoint dir: "
          f"{RUN_DIR_HINT}, {step_dir.parent} (and step {step_dir.name} where the command takes a --step)")
  if (path / "model.json").exists():
    raise CheckpointError(f"{directory} has model.json but no committed step (a run killed before its first save "
                          "leaves only <step>.orbax-checkpoint-tmp-* dirs); there is nothing to restore")
  raise CheckpointError(f"{directory} is not a checkpoint dir of ours (no model.json, no step dirs); {RUN_DIR_HINT}")


def is_ours(directory: str | os.PathLike) -> bool:
  """Whether `directory` is, or lies inside, a checkpoint dir of ours (committed steps, model.json, a step dir)."""
  path = manager.absolute(directory)
  return (bool(manager.committed_steps(path)) or (path / "model.json").exists()
          or any(d.name.isdigit() and (d / manager.PARAMS).is_dir() for d in (path, path.parent)))


def _check(ckpt: manager.Checkpointer, step: int) -> integrity.StepCheck:
  """The step's check, shared out over the processes; any process's damage makes it damaged for all."""
  local = integrity.check_step(ckpt.step_dir(step), step, (jax.process_index(), jax.process_count()))
  if all_processes(local.status != integrity.DAMAGED) or local.status == integrity.DAMAGED:
    return local
  return dataclasses.replace(local, status=integrity.DAMAGED,
                             problems=("a file checked by another process differs from the manifest (see its log)",))


def _first_line(error: BaseException, limit: int = 300) -> str:
  """The error's type and first line, cut short (TensorStore's messages carry a whole spec)."""
  text = (str(error).strip().splitlines() or [""])[0]
  return f"{type(error).__name__}: {text[:limit]}{' ...' if len(text) > limit else ''}"


def _non_finite(tree: Any, item: str) -> str | None:
  """The name of the first float array in `tree` holding NaN or inf, or None."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if hasattr(leaf, "dtype") and np.issubdtype(leaf.dtype, np.floating) and not bool(jax.numpy.isfinite(leaf).all()):
      return f"{item}{jax.tree_util.keystr(path)}"
  return None


def _restore_step(ckpt: manager.Checkpointer, step: int, abstract_params: Any, abstract_opt_state: Any,
                  opt_state_required: bool, with_dataset: bool) -> dict[str, Any]:
  present = ckpt.item_names_at(step)
  if abstract_opt_state is not None and manager.OPT_STATE not in present:
    if opt_state_required:
      raise CheckpointError(f"{ckpt.directory} step {step} has no optimizer state (items: {sorted(present)}); "
                            "it can initialize a run (INITIAL_CHECKPOINT_PATH) but not resume one")
    abstract_opt_state = None
  return ckpt.restore(step, abstract_params=abstract_params, abstract_opt_state=abstract_opt_state,
                      with_dataset=with_dataset)


def _try_step(ckpt: manager.Checkpointer, step: int, request: dict[str, Any],
              warn: Callable[[str], None]) -> Restored | integrity.StepCheck:
  """The restored step, or its check marked damaged."""
  check = _check(ckpt, step)
  if check.status == integrity.DAMAGED:
    return check
  if check.status == integrity.UNVERIFIED:
    warn(f"{ckpt.directory}: {check.summary()}; restoring it unverified")
  try:
    items, error = _restore_step(ckpt, step, **request), None
  except CheckpointError:
    raise
  except Exception as e:  # noqa: BLE001 - whatever reading a damaged step raises
    items, error = None, e
  if check.status == integrity.VERIFIED:
    if not all_processes(error is None):
      raise CheckpointError(
          f"{ckpt.directory} step {step}: its files match its manifest, yet it cannot be restored "
          f"({_first_line(error) if error else 'on another process'}); is this the model config that wrote it?"
      ) from error
    return Restored(step, items["params"], items["opt_state"], items["dataset_state"])
  bad = None if error else (_non_finite(items["params"], "params") or _non_finite(items["opt_state"], "opt_state"))
  if all_processes(error is None and bad is None):
    return Restored(step, items["params"], items["opt_state"], items["dataset_state"], verified=False)
  problem = (f"cannot be restored: {_first_line(error)}" if error else
             f"non-finite values in {bad}" if bad else "could not be restored on another process")
  return dataclasses.replace(check, status=integrity.DAMAGED, problems=(problem,))


def restore(directory: str | os.PathLike, *, abstract_params: Any, abstract_opt_state: Any = None,
            opt_state_required: bool = True, with_dataset: bool = False, step: int | None = None,
            warn: Callable[[str], None] = _warn) -> Restored:
  """Restores `step` (default: the newest intact one) onto the shardings the abstract trees carry.

  `abstract_opt_state`: also restore the optimizer state (when the step has none: an error, or with
  `opt_state_required=False` params only). Errors are `CheckpointError`s naming the dir, the step and the file.
  """
  path = run_dir(directory, need_model_json=False)
  request = dict(abstract_params=abstract_params, abstract_opt_state=abstract_opt_state,
                 opt_state_required=opt_state_required, with_dataset=with_dataset)
  damaged: list[integrity.StepCheck] = []
  with manager.Checkpointer(path, async_save=False, create=False) as ckpt:
    steps = ckpt.all_steps()
    if not steps:
      raise CheckpointError(f"{path}: no committed step to restore")
    if step is not None and step not in steps:
      raise CheckpointError(f"{directory} has no step {step}; its steps: {sorted(steps)}")
    for candidate in [step] if step is not None else sorted(steps, reverse=True):
      outcome = _try_step(ckpt, candidate, request, warn)
      if isinstance(outcome, Restored):
        return dataclasses.replace(outcome, damaged=tuple(damaged))
      if step is not None:
        raise CheckpointError(f"{path}: {outcome.summary()}; `flan-jax checkpoints verify {path}` shows the "
                              "state of every step")
      warn(f"{path}: {outcome.summary()}; falling back to an older step")
      damaged.append(outcome)
  raise CheckpointError(
      f"{path}: no intact step ({'; '.join(c.summary() for c in damaged)}); nothing was restored: restore the "
      "dir from a copy, or move it aside and start afresh")


def read_model(path: epath.Path):
  """The model `path/model.json` describes (read through epath, so `gs://` dirs work)."""
  from flan_jax.models import spec
  source = path / spec.SPEC_FILENAME
  try:
    data = json.loads(source.read_text())
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{source}:{e.lineno}: invalid JSON: {e.msg}") from None
  try:
    return spec.build_model(data, source=os.fspath(source))
  except ValueError as e:
    raise CheckpointError(str(e)) from None


def load_model(directory: str | os.PathLike, step: int | None = None):
  """(model, params on the first device, step) from a run dir: what infer, eval and convert read."""
  from flan_jax.models import model as model_lib
  path = run_dir(directory)
  model = read_model(path)
  names = ["decoder_input_tokens", "decoder_target_tokens"]
  if isinstance(model, model_lib.EncoderDecoderModel):
    names.append("encoder_input_tokens")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  shapes = model.param_shapes({name: (1, 8) for name in names})
  abstract = manager.abstract_like(shapes, jax.tree.map(lambda _: device, shapes))
  restored = restore(path, abstract_params=abstract, step=step)
  return model, restored.params, restored.step


def set_aside(directory: str | os.PathLike, steps: list[int]) -> epath.Path:
  """Moves damaged step dirs to `<directory>/damaged_steps/<step>-<unix time>`, out of Orbax's sight, so a
  resumed run can save those steps again; returns where they went."""
  root = manager.absolute(directory)
  target = root / DAMAGED_DIR
  target.mkdir(parents=True, exist_ok=True)
  for step in steps:
    destination = target / f"{step}-{int(time.time())}"
    try:
      (root / str(step)).rename(destination)
    except OSError as e:
      raise CheckpointError(f"{root / str(step)}: damaged, and could not be moved aside to {destination} ({e}); "
                            "move or delete it by hand, then resume") from None
  return target
