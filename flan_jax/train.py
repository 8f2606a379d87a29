"""`flan-jax train` / `python -m flan_jax.train`: T5X-style finetuning driven by gin.

Flags: --gin_file (repeatable), --gin.NAME=VALUE, --gin_bindings, --gin_search_paths, --data_dir, --tfds_data_dir,
and for multi-host runs --coordinator_address / --process_count / --process_index (on TPU, jax finds them itself).
`gin_configs/runs/finetune.gin` binds `train` to T5X's macros (MODEL_DIR, MIXTURE_OR_TASK_NAME, TRAIN_STEPS, ...).
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import importlib
import json
import logging
import os
import re
import signal
import sys
import time
import traceback
from typing import Any, Sequence

import gin
import jax
import numpy as np

from flan_jax import gin_utils, progress as progress_lib, run_start, train_hooks
from flan_jax.checkpoints.lock import RunLockError
from flan_jax.train_config import CheckpointConfig, DatasetConfig, EvalConfig, LogConfig, SuiteEvalConfig


def _parse_flags(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  bindings, rest = gin_utils.split_gin_flags(argv)
  parser = argparse.ArgumentParser(prog="flan-jax train", description=__doc__.splitlines()[0], epilog=_usage(),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  gin_utils.add_flags(parser)
  parser.add_argument("--data_dir", default=None, help="the Flan data dir (default $FLAN_JAX_DATA_DIR)")
  parser.add_argument("--tfds_data_dir", default=None, help="TFDS data dir (read only)")
  parser.add_argument("--coordinator_address", default=None, help="host:port of process 0 (multi-host)")
  parser.add_argument("--process_count", type=int, default=None)
  parser.add_argument("--process_index", type=int, default=None)
  parser.add_argument("--cpu_collectives", default="gloo", help="CPU cross-process collectives (multi-host CPU)")
  parser.add_argument("--verbose", action="store_true", help="also print the traceback of a reported error")
  args = parser.parse_args(rest)
  return args, bindings + list(args.gin_bindings)


def _usage() -> str:
  """How a run is configured, and T5X's macros with their defaults, read from `runs/finetune.gin` itself."""
  macros = []
  for line in (gin_utils.REPO_GIN_DIR / "runs" / "finetune.gin").read_text().splitlines():
    match = re.fullmatch(r"([A-Z][A-Z0-9_]*) = (.+?)(?:\s+# (.*))?", line.strip())
    if match:
      name, value, note = match.groups()
      macros.append(f"  {name} = {value}" + (f"  ({note})" if note else ""))
  return "\n".join([
      "A run is gin files plus bindings, as in T5X:",
      "  flan-jax train --gin_file=gin_configs/runs/flan_t5_tiny_cpu.gin --gin.MODEL_DIR=\"'runs/tiny'\"",
      "  flan-jax train --gin_file=models/flan_t5_small.gin --gin_file=runs/finetune.gin \\",
      "    --gin.MODEL_DIR=\"'runs/x'\" --gin.MIXTURE_OR_TASK_NAME=\"'cot_submix'\" \\",
      "    --gin.TASK_FEATURE_LENGTHS=\"{'inputs': 512, 'targets': 128}\" --gin.TRAIN_STEPS=1000",
      "--gin.NAME=VALUE sets a macro (strings keep their quotes) or any binding (--gin.utils.LogConfig.period=10);",
      "gin files are found as given, then under gin_configs/. A macro no binding reads is an error.",
      "",
      "The macros of runs/finetune.gin, with their defaults (%gin.REQUIRED: set them):",
      *macros,
  ])


def _initialize_distributed(args: argparse.Namespace) -> None:
  if args.coordinator_address is None and args.process_count is None:
    if os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("CLOUD_TPU_TASK_ID"):
      jax.distributed.initialize()
    return
  if None in (args.coordinator_address, args.process_count, args.process_index):
    raise ValueError("--coordinator_address, --process_count and --process_index go together")
  if args.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", args.cpu_collectives)
  jax.distributed.initialize(coordinator_address=args.coordinator_address, num_processes=args.process_count,
                             process_id=args.process_index)


@dataclasses.dataclass
class _StopFlag:
  requested: bool = False
  signal_name: str = ""


def _import_modules(modules: Any) -> None:
  if not modules:
    return
  for name in ([modules] if isinstance(modules, str) else modules):
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ValueError(f"MIXTURE_OR_TASK_MODULE={name!r} could not be imported: {e}") from None


@gin.configurable(denylist=["gin_config_str"])
def train(
    *,
    model: Any = gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    dataset: DatasetConfig = gin.REQUIRED,
    checkpoint: CheckpointConfig = CheckpointConfig(),
    evaluation: EvalConfig = EvalConfig(),
    suite_evaluation: SuiteEvalConfig = SuiteEvalConfig(),
    log: LogConfig = LogConfig(),
    learning_rate: float = 1e-3,
    learning_rate_schedule: str = "constant",
    warmup_steps: int = 0,
    adafactor: Any = None,
    partitioner: Any = None,
    feature_converter: Any = None,
    num_microbatches: int = 1,
    random_seed: int = 0,
    gin_config_str: str = "",
) -> dict[str, float]:
  """Finetunes `model` on `dataset` until step `train_steps`; returns the run's summary (`_summary`)."""
  from flan_jax import data_layout, optimizers, partitioning, trainer as trainer_lib
  from flan_jax.data.pipeline import host_batches, host_input, input_pipeline

  # --- everything that can be wrong with the configuration fails here, before any compile
  mixture, eval_mixture, suite_evaluator = _checked_inputs(model, model_dir, dataset, evaluation, suite_evaluation)
  part = partitioning.Partitioner(partitioner or partitioning.PartitionerConfig())
  part.check_batch_size(dataset.batch_size, "BATCH_SIZE")
  shard = part.data_layout(dataset.batch_size)  # hosts of one data-parallel replica read the same rows
  converter = feature_converter or host_batches.InputLayout()
  input_config = input_pipeline.InputConfig(mixture, dict(dataset.task_feature_lengths), dataset.batch_size,
                                            shuffle=dataset.shuffle, seed=random_seed, use_cached=dataset.use_cached)
  host_it = input_pipeline.host_iterator(input_config, converter, shard, workers=dataset.input_workers)
  eval_spec = None
  if evaluation.period:
    eval_spec = input_pipeline.input_spec(dataclasses.replace(
        input_config, mixture_or_task_name=eval_mixture, split=evaluation.split, shuffle=False, num_epochs=1),
        converter, shard)
  batch_shapes = {k: (dataset.batch_size, length) for k, length in host_it.feature_lengths.items()}
  schedule = optimizers.make_schedule(learning_rate_schedule, learning_rate, warmup_steps, train_steps)
  optimizer = optimizers.Adafactor(adafactor or optimizers.AdafactorConfig(), schedule)
  trainer = trainer_lib.Trainer(model, optimizer, part, batch_shapes,
                                trainer_lib.TrainerConfig(num_microbatches=num_microbatches, seed=random_seed),
                                batch_dtypes={k: np.int32 for k in batch_shapes})

  run_lock = run_start.lock_model_dir(model_dir)  # one trainer per MODEL_DIR, taken before anything is written
  try:
    _write_run_files(model_dir, model, gin_config_str)
    print(f"flan-jax train: {part.describe()}; batch {batch_shapes}", flush=True)
    if jax.process_count() > 1:
      layouts = part.data_layouts(dataset.batch_size)
      print(f"flan-jax train: {data_layout.describe(layouts, dataset.batch_size)}", flush=True)
    state, resumed = run_start.start_state(trainer, model_dir, host_it, checkpoint.initial_path,
                                           checkpoint.initial_format, random_seed)
    step = int(jax.device_get(state.step))
    if step >= train_steps:
      print(f"flan-jax train: {model_dir} is already at step {step} (TRAIN_STEPS={train_steps}); nothing to do",
            flush=True)
      host_it.close()
      run_lock.release()
      return {}
    loop = _Loop(trainer, model_dir, host_it, checkpoint, train_steps, step, run_lock)
  except BaseException:
    run_lock.release()
    raise
  with loop:
    if resumed is not None and resumed.damaged:
      loop.writer.write(step, {"checkpoint/damaged_steps_skipped": len(resumed.damaged),
                               "checkpoint/newest_damaged_step": resumed.damaged[0].step})
    hooks = [loop.metrics_hook(log, part), train_hooks.CheckpointHook(loop.save, loop.ckpt.wait_until_finished,
                                                                       checkpoint.period)]
    if evaluation.period:
      batches = functools.partial(host_input.HostBatches, eval_spec, {}, workers=0)
      hooks.append(train_hooks.EvalHook(train_hooks.teacher_forced(trainer, batches, evaluation.steps),
                                        loop.writer, evaluation.period))
    if suite_evaluator is not None:
      hooks.append(train_hooks.EvalHook(functools.partial(suite_evaluator, model), loop.writer,
                                        suite_evaluation.period))
    compile_start = time.perf_counter()
    trainer.compile_train_step()  # meanwhile the prefetcher's thread starts the input (workers, first blocks)
    print(f"flan-jax train: compiled the train step in {time.perf_counter() - compile_start:.1f} s", flush=True)
    start = time.perf_counter()
    _, end_step = train_hooks.run(trainer, state, loop.prefetcher, step, train_steps, hooks,
                                  lambda: loop.stop.requested)
    summary = _summary(hooks[0], model_dir, step, end_step, train_steps, time.perf_counter() - start)
  if loop.stop.requested:
    print(f"flan-jax train: {loop.stop.signal_name} received; saved step {end_step} and stopped", file=sys.stderr)
  return summary


class _Loop:
  """What the loop holds open (checkpointer, metrics writer, input prefetcher, SIGTERM handler) and closes."""

  def __init__(self, trainer, model_dir: str, host_it, checkpoint: CheckpointConfig, train_steps: int, step: int,
               run_lock):
    from flan_jax.checkpoints import manager
    from flan_jax.data.pipeline import input_pipeline
    from flan_jax.metrics_writer import MetricsWriter
    self.trainer = trainer
    self.train_steps = train_steps
    self.ckpt = manager.Checkpointer(model_dir, max_to_keep=checkpoint.keep, async_save=True)
    self.writer = MetricsWriter(model_dir, resume_step=step)
    self.stop = _StopFlag()
    self._previous = signal.signal(signal.SIGTERM, self._on_signal)
    self.prefetcher = input_pipeline.DevicePrefetcher(host_it, trainer.global_batch)
    self.run_lock = run_lock

  def _on_signal(self, signum, frame) -> None:
    del frame
    self.stop.requested, self.stop.signal_name = True, signal.Signals(signum).name

  def __enter__(self) -> _Loop:
    return self

  def __exit__(self, *exc) -> None:
    self.prefetcher.close()
    signal.signal(signal.SIGTERM, self._previous)
    self.ckpt.close()
    self.writer.close()
    self.run_lock.release()

  def metrics_hook(self, log: LogConfig, part) -> train_hooks.MetricsHook:
    from flan_jax.metrics_writer import peak_flops
    step_flops = self.trainer.step_flops()
    if log.peak_flops_per_device:
      peak, kind = log.peak_flops_per_device, "LogConfig.peak_flops_per_device"
    else:
      peak, kind = peak_flops(jax.devices()[0])
    if step_flops:
      print(f"flan-jax train: {step_flops / 1e9:.2f} GFLOP per step (XLA count); MFU against {peak / 1e9:,.0f} "
            f"GFLOP/s per device ({kind})", flush=True)
    return train_hooks.MetricsHook(self.writer, self.train_steps, step_flops, peak * part.mesh.devices.size,
                                   log.period)

  def save(self, step: int, state, force: bool) -> None:
    if self.ckpt.latest_step() == step:
      return
    self.run_lock.check()
    self.ckpt.save(step, params=state.params, opt_state=state.opt_state, dataset_state=self._dataset_state(),
                   force=force)

  def _dataset_state(self) -> dict:
    # Every process's iterator state, gathered so the checkpoint holds them all.
    local = json.dumps(self.prefetcher.state())
    if jax.process_count() == 1:
      return {"process_0": json.loads(local)}
    from jax.experimental import multihost_utils
    encoded = np.frombuffer(local.encode().ljust(4096), np.uint8)
    gathered = multihost_utils.process_allgather(encoded)
    return {f"process_{i}": json.loads(bytes(row).decode().strip()) for i, row in enumerate(np.asarray(gathered))}


def _summary(metrics: train_hooks.MetricsHook, model_dir: str, start_step: int, end_step: int, train_steps: int,
             seconds: float) -> dict[str, float]:
  """The end-of-run summary: printed (process 0) and returned with the last step's metrics."""
  summary = dict(metrics.last, steps=end_step - start_step, seconds=seconds, examples=metrics.examples)
  if metrics.best is not None and jax.process_index() == 0:
    best_loss, best_step = metrics.best
    print(f"flan-jax train: done: step {end_step}/{train_steps} ({end_step - start_step} this run) in "
          f"{progress_lib.format_seconds(seconds)}; loss per target token {metrics.last['train/loss']:.4f} "
          f"(best {best_loss:.4f} at step {best_step}); {metrics.examples:,.0f} examples seen; checkpoint "
          f"{os.path.join(os.path.abspath(model_dir), str(end_step))}", flush=True)
  return summary


def _checked_inputs(model: Any, model_dir: str, dataset: DatasetConfig, evaluation: EvalConfig,
                    suites: SuiteEvalConfig):
  """(mixture to train on, held-out mixture or None, suite evaluator or None), every setting checked."""
  _import_modules(dataset.module)
  _check_inputs(dataset.mixture_or_task_name, dataset.mixture_components,
                (evaluation.mixture_or_task_name or "") if evaluation.period else None, evaluation.mixture_components)
  mixture = _resolve_mixture(dataset.mixture_or_task_name, dataset.mixture_components, dataset.only_available,
                             "MIXTURE_OR_TASK_NAME", "utils.DatasetConfig.mixture_components")
  eval_mixture = None
  if evaluation.period:
    eval_mixture = _resolve_mixture(evaluation.mixture_or_task_name or "", evaluation.mixture_components,
                                    dataset.only_available, "EVAL_MIXTURE_OR_TASK_NAME",
                                    "EvalConfig.mixture_components")
  suite_evaluator = None
  if suites.period:
    suite_evaluator = _suite_evaluator(model, suites, os.path.join(model_dir, "eval_suites"))
  return mixture, eval_mixture, suite_evaluator


def _write_run_files(model_dir: str, model: Any, gin_config_str: str) -> None:
  os.makedirs(model_dir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(model_dir, "config.gin"), "w") as f:
      f.write(gin_config_str)
    _write_model_spec(model_dir, model)


def _check_inputs(name: str, components: Sequence[tuple[str, float]] | None, eval_name: str | None,
                  eval_components: Sequence[tuple[str, float]] | None) -> None:
  """Every task or mixture named is registered (else an error with "did you mean"), and where they hold Flan tasks
  or UL2R tasks the vocabulary is there (and so the data dir): checked off the plain catalogs before anything is
  built."""
  from flan_jax.data.catalog import mixing, registry, token_tasks
  from flan_jax.data.files import data_dir
  from flan_jax.data.pipeline import input_pipeline
  from flan_jax.data.rendering import tokenizer
  named = ([(str(c), "utils.DatasetConfig.mixture_components component") for c, _ in components] if components
           else [(name, "MIXTURE_OR_TASK_NAME")])
  if eval_name is not None:
    named += ([(str(c), "EvalConfig.mixture_components component") for c, _ in eval_components] if eval_components
              else [(eval_name, "EVAL_MIXTURE_OR_TASK_NAME")])
  for item, binding in named:
    input_pipeline.check_mixture(item, binding)
  if any(task in registry.TASKS or task in token_tasks.TASKS for item, _ in named for task in mixing.leaves(item)):
    data_dir.data_file(tokenizer.VOCAB_PATH, source="vocab")


def _resolve_mixture(name: str, components: Sequence[tuple[str, float]] | None, only_available: bool,
                     binding: str, components_binding: str) -> str:
  """Registers `components` as `name` (each left to its present tasks with `only_available`) and returns the
  name to train on: `name`, or its present-tasks copy; missing data fails naming the binding. (`_check_inputs`
  has checked every name.)"""
  from flan_jax.data.catalog import availability
  from flan_jax.data.pipeline import input_pipeline
  if components:
    components = [(availability.resolve(str(component), only_available, components_binding), rate)
                  for component, rate in components]
  input_pipeline.register_mixture(name, components, components_binding)
  return availability.resolve(name, only_available, binding)


def _write_model_spec(model_dir: str, model: Any) -> None:
  """`MODEL_DIR/model.json`, so `flan-jax infer/eval --checkpoint MODEL_DIR` rebuild the trained model."""
  from flan_jax.models import spec
  try:
    spec.save_spec(model_dir, model)
  except TypeError:
    print(f"flan-jax train: note: {type(model).__name__} has no model.json description; infer/eval cannot "
          f"rebuild it from {model_dir}", file=sys.stderr)


def _suite_evaluator(model: Any, config: SuiteEvalConfig, output_dir: str):
  """The evaluation suites' evaluator, with the settings checked before any compile."""
  from flan_jax.evaluation import make_evaluator, suites as suites_lib
  from flan_jax.models import spec
  if not config.suites:
    raise ValueError("EVAL_SUITES_PERIOD is set but EVAL_SUITES names no suite "
                     f"(choose from {', '.join(sorted(suites_lib.SUITES))})")
  try:
    suites_lib.get_suites(config.suites)
  except ValueError as e:
    raise ValueError(f"EVAL_SUITES={config.suites!r}: {e}") from None
  try:
    spec.model_spec(model)
  except TypeError:
    raise ValueError(f"EVAL_SUITES: the suites decode with flan_jax's models; {type(model).__name__} "
                     "is not one") from None
  return make_evaluator(config.suites, limit=config.limit, batch_size=config.batch_size,
                        max_input_length=config.max_input_length, max_decode_length=config.max_decode_length,
                        output_dir=output_dir)


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  verbose = "--verbose" in argv
  if not verbose:
    _quiet_library_noise()
  try:
    args, bindings = _parse_flags(argv)
    _initialize_distributed(args)
    if args.data_dir:
      from flan_jax.data.files import data_dir
      data_dir.set_data_dir(args.data_dir)
    if args.tfds_data_dir:  # every reader: seqio's, the TF-free TFDS reader, and (through it) the input process
      import seqio
      from flan_jax.data.files import tfds_source
      seqio.set_tfds_data_dir_override(args.tfds_data_dir)
      tfds_source.set_tfds_data_dir(args.tfds_data_dir)
    search = [p for p in args.gin_search_paths.split(",") if p]
    gin_utils.parse(args.gin_file, bindings, search)
    train(gin_config_str=gin.config_str())
  except (gin_utils.GinConfigError, ValueError, KeyError, OSError, FloatingPointError, RunLockError) as e:
    # What a user can fix gets one line (naming the file, step or binding); --verbose adds the traceback.
    if verbose:
      traceback.print_exc()
    message = str(e).split("\n  In call to configurable")[0]  # gin's note naming `train`: noise here
    print(f"flan-jax train: error: {message}{_what_to_do(e)}", file=sys.stderr)
    return 1
  return 0


@functools.cache  # once per process
def _quiet_library_noise() -> None:
  """Without --verbose: a failed background write (a full disk, say) reaches `main`, which reports it in one line,
  but on its way Orbax (through absl) and asyncio log it with its traceback, and TensorStore's callbacks into the
  event loop Orbax has closed print theirs. Those records and tracebacks are left out."""
  for name in ("absl", "asyncio"):
    logging.getLogger(name).addFilter(_without_exceptions)
  previous = sys.unraisablehook

  def hook(unraisable) -> None:
    if not (isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value)):
      previous(unraisable)
  sys.unraisablehook = hook


def _without_exceptions(record: logging.LogRecord) -> bool:
  return record.exc_info is None


def _what_to_do(error: BaseException) -> str:
  text = str(error)
  if "RESOURCE_EXHAUSTED" in text or getattr(error, "errno", None) == errno.ENOSPC or "No space left" in text:
    return ("\nMODEL_DIR's disk is full: its committed steps are intact; free space, then run the same command "
            "to resume from the last of them")
  return ""


if __name__ == "__main__":
  sys.exit(main())
