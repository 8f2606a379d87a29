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
import itertools
import json
import logging
import os
import signal
import sys
import time
import traceback
from typing import Any, Mapping, Sequence

import gin
import jax
import numpy as np

from flan_jax import gin_utils
from flan_jax.checkpoints.lock import RunLockError


def _parse_flags(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  bindings, rest = gin_utils.split_gin_flags(argv)
  parser = argparse.ArgumentParser(prog="flan-jax train", description=__doc__.splitlines()[0])
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


def _lock_model_dir(model_dir: str):
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


def _start_state(trainer, model_dir: str, host_it, initial_checkpoint_path: str | None, initial_checkpoint_format: str,
                 random_seed: int):
  """(TrainState, the resume's `loader.Restored` or None): MODEL_DIR's newest intact step, with the damaged steps
  after it set aside so that they are trained again; else INITIAL_CHECKPOINT_PATH; else a fresh init."""
  from flan_jax import train_state as train_state_lib
  from flan_jax.checkpoints import loader, manager
  if not manager.committed_steps(model_dir):
    if not initial_checkpoint_path:
      return trainer.init_state(random_seed), None
    state = _initial_state(trainer, initial_checkpoint_path, initial_checkpoint_format)
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


def _initial_state(trainer, path: str, fmt: str):
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


@gin.configurable(denylist=["gin_config_str"])
def train(
    *,
    model: Any = gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    mixture_or_task_name: str = gin.REQUIRED,
    task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    mixture_or_task_module: Any = None,
    mixture_components: Sequence[tuple[str, float]] | None = None,
    learning_rate: float = 1e-3,
    learning_rate_schedule: str = "constant",
    warmup_steps: int = 0,
    adafactor: Any = None,
    partitioner: Any = None,
    feature_converter: Any = None,
    num_microbatches: int = 1,
    random_seed: int = 0,
    shuffle: bool = True,
    use_cached: bool = False,
    initial_checkpoint_path: str | None = None,
    initial_checkpoint_format: str = "auto",
    checkpoint_period: int = 1000,
    keep_checkpoints: int | None = None,
    eval_period: int = 0,
    eval_mixture_or_task_name: str | None = None,
    eval_split: str = "validation",
    eval_mixture_components: Sequence[tuple[str, float]] | None = None,
    eval_steps: int = 10,
    only_available_data: bool = False,
    input_process: bool = True,
    eval_suites: str | None = None,
    eval_suites_period: int = 0,
    eval_suites_limit: int | None = 20,
    eval_suites_batch_size: int = 8,
    eval_suites_max_input_length: int = 2048,
    eval_suites_max_decode_length: int | None = None,
    log_period: int = 1,
    peak_flops_per_device: float | None = None,
    gin_config_str: str = "",
) -> dict[str, float]:
  """Finetunes `model` on a SeqIO mixture until step `train_steps`; returns the last logged metrics.

  `only_available_data`: leave out the tasks whose data is absent from the data dir (each component of
  `mixture_components` separately, so their mixing rates keep their meaning), warning about each and printing
  the renormalised shares; off, a mixture with a missing part fails before any compile, naming it.
  `input_process`: render a mixture of Flan tasks in a child process without seqio or TensorFlow (the same batches;
  its memory and CPU stay out of this process, and it renders ahead while a step runs).
  `eval_suites` (e.g. 'mmlu_direct,bbh_direct') run every `eval_suites_period` steps through
  `flan_jax.evaluation.make_evaluator` with at most `eval_suites_limit` examples per task; their scores go to
  the metrics as `eval/<suite>` and their outputs to `MODEL_DIR/eval_suites/step_<N>/`.
  """
  from flan_jax import data_layout, optimizers, partitioning, trainer as trainer_lib
  from flan_jax.checkpoints import manager
  from flan_jax.data import feature_converters, input_pipeline
  from flan_jax.metrics_writer import MetricsWriter, measure_matmul_peak_flops

  # --- everything that can be wrong with the configuration fails here, before any compile
  _import_modules(mixture_or_task_module)
  _check_inputs(mixture_or_task_name, mixture_components, eval_mixture_or_task_name if eval_period else None,
                eval_mixture_components)
  mixture_or_task_name = _resolve_mixture(mixture_or_task_name, mixture_components, only_available_data,
                                          "MIXTURE_OR_TASK_NAME", "train.mixture_components")
  if eval_period:
    eval_mixture_or_task_name = _resolve_mixture(eval_mixture_or_task_name or "", eval_mixture_components,
                                                 only_available_data, "EVAL_MIXTURE_OR_TASK_NAME",
                                                 "train.eval_mixture_components")
  suite_evaluator = None
  if eval_suites_period:
    suite_evaluator = _suite_evaluator(
        model, eval_suites, eval_suites_limit, eval_suites_batch_size, eval_suites_max_input_length,
        eval_suites_max_decode_length, os.path.join(model_dir, "eval_suites"))
  part = partitioning.Partitioner(partitioner or partitioning.PartitionerConfig())
  part.check_batch_size(batch_size, "BATCH_SIZE")
  shard = part.data_layout(batch_size)  # hosts of one data-parallel replica read the same rows
  converter = feature_converter or feature_converters.get_feature_converter("encoder_decoder")
  input_config = input_pipeline.InputConfig(
      mixture_or_task_name, dict(task_feature_lengths), batch_size, shuffle=shuffle, seed=random_seed,
      use_cached=use_cached)
  host_it = input_pipeline.host_iterator(input_config, converter, shard, input_process=input_process)
  batch_shapes = {k: (batch_size, length) for k, length in host_it.feature_lengths.items()}
  batch_dtypes = {k: np.int32 for k in batch_shapes}
  schedule = optimizers.make_schedule(learning_rate_schedule, learning_rate, warmup_steps, train_steps)
  optimizer = optimizers.Adafactor(adafactor or optimizers.AdafactorConfig(), schedule)
  trainer = trainer_lib.Trainer(model, optimizer, part, batch_shapes,
                                trainer_lib.TrainerConfig(num_microbatches=num_microbatches, seed=random_seed),
                                batch_dtypes=batch_dtypes)

  run_lock = _lock_model_dir(model_dir)  # one trainer per MODEL_DIR, taken before anything is written there
  try:
    os.makedirs(model_dir, exist_ok=True)
    if jax.process_index() == 0:
      with open(os.path.join(model_dir, "config.gin"), "w") as f:
        f.write(gin_config_str)
      _write_model_spec(model_dir, model)
    print(f"flan-jax train: {part.describe()}; batch {batch_shapes}", flush=True)
    if jax.process_count() > 1:
      print(f"flan-jax train: {data_layout.describe(part.data_layouts(batch_size), batch_size)}", flush=True)

    # --- state: resume from MODEL_DIR, else INITIAL_CHECKPOINT_PATH, else from scratch
    state, resumed = _start_state(trainer, model_dir, host_it, initial_checkpoint_path, initial_checkpoint_format,
                                  random_seed)
    ckpt = manager.Checkpointer(model_dir, max_to_keep=keep_checkpoints, async_save=True)
  except BaseException:
    run_lock.release()
    raise
  step = int(jax.device_get(state.step))
  writer = MetricsWriter(model_dir, resume_step=step)
  if resumed is not None and resumed.damaged:
    writer.write(step, {"checkpoint/damaged_steps_skipped": len(resumed.damaged),
                        "checkpoint/newest_damaged_step": resumed.damaged[0].step}, console=False)
  step_flops = trainer.step_flops()
  peak = peak_flops_per_device or measure_matmul_peak_flops()
  peak_total = peak * part.mesh.devices.size
  if step_flops:
    print(f"flan-jax train: {step_flops / 1e9:.2f} GFLOP per step (XLA count); MFU against "
          f"{peak / 1e9:.1f} GFLOP/s per device ({'stated' if peak_flops_per_device else 'measured f32 GEMM'})",
          flush=True)

  def dataset_state() -> dict:
    # Every process's iterator state, gathered so the checkpoint holds them all.
    local = json.dumps(prefetcher.state())
    if jax.process_count() == 1:
      return {"process_0": json.loads(local)}
    from jax.experimental import multihost_utils
    encoded = np.frombuffer(local.encode().ljust(4096), np.uint8)
    gathered = multihost_utils.process_allgather(encoded)
    return {f"process_{i}": json.loads(bytes(row).decode().strip()) for i, row in enumerate(np.asarray(gathered))}

  def save(force: bool) -> None:
    if ckpt.latest_step() == step:
      return
    run_lock.check()
    ckpt.save(step, params=state.params, opt_state=state.opt_state, dataset_state=dataset_state(), force=force)

  stop = _StopFlag()

  def on_signal(signum, frame):
    del frame
    stop.requested, stop.signal_name = True, signal.Signals(signum).name

  previous = signal.signal(signal.SIGTERM, on_signal)
  prefetcher = input_pipeline.DevicePrefetcher(host_it, trainer.global_batch)
  eval_fn = None
  if eval_period:
    eval_config = dataclasses.replace(input_config, mixture_or_task_name=eval_mixture_or_task_name, split=eval_split,
                                      shuffle=False, num_epochs=1)
    eval_fn = lambda: _evaluate(trainer, state.params, eval_config, converter, shard, eval_steps)  # noqa: E731
  last: dict[str, float] = {}
  pending = None
  t_last = time.perf_counter()
  try:
    while step < train_steps and not stop.requested:
      batch = next(prefetcher)
      state, metrics = trainer.train_step(state, batch)
      step += 1
      if pending is not None:
        last = _log(writer, *pending, step_flops, peak_total, log_period)
      now = time.perf_counter()
      pending = (step, metrics, now - t_last)
      t_last = now
      if step % checkpoint_period == 0:
        save(force=False)
      evaluated = False
      if eval_fn is not None and step % eval_period == 0:
        writer.write(step, eval_fn())
        evaluated = True
      if suite_evaluator is not None and step % eval_suites_period == 0:
        writer.write(step, suite_evaluator(model, state.params, step))
        evaluated = True
      if evaluated:
        t_last = time.perf_counter()  # seconds/step and tokens/s time training, not evaluation
    if pending is not None:
      last = _log(writer, *pending, step_flops, peak_total, log_period)
    save(force=True)
    ckpt.wait_until_finished()
  finally:
    prefetcher.close()
    signal.signal(signal.SIGTERM, previous)
    ckpt.close()
    writer.close()
    run_lock.release()
  if stop.requested:
    print(f"flan-jax train: {stop.signal_name} received; saved step {step} and stopped", file=sys.stderr)
  return last


def _check_inputs(name: str, components: Sequence[tuple[str, float]] | None, eval_name: str | None,
                  eval_components: Sequence[tuple[str, float]] | None) -> None:
  """Every task or mixture named is registered (else an error with "did you mean"), and where they hold Flan tasks
  the vocabulary is there (and so the data dir): checked off the plain catalog before anything is built."""
  from flan_jax.data import data_dir, input_pipeline, mixing, registry, tokenizer
  named = ([(str(c), "train.mixture_components component") for c, _ in components] if components
           else [(name, "MIXTURE_OR_TASK_NAME")])
  if eval_name is not None:
    named += ([(str(c), "train.eval_mixture_components component") for c, _ in eval_components] if eval_components
              else [(eval_name, "EVAL_MIXTURE_OR_TASK_NAME")])
  for item, binding in named:
    input_pipeline.check_mixture(item, binding)
  if any(task in registry.TASKS for item, _ in named for task in mixing.leaves(item)):
    data_dir.data_file(tokenizer.VOCAB_PATH, source="vocab")


def _resolve_mixture(name: str, components: Sequence[tuple[str, float]] | None, only_available: bool,
                     binding: str, components_binding: str) -> str:
  """Registers `components` as `name` (each left to its present tasks with `only_available`) and returns the
  name to train on: `name`, or its present-tasks copy; unknown names or missing data fail naming the binding."""
  from flan_jax.data import availability, input_pipeline
  if components:
    resolved = []
    for component, rate in components:
      input_pipeline.check_mixture(str(component), f"{components_binding} component")
      resolved.append((availability.resolve(str(component), only_available, components_binding), rate))
    components = resolved
  input_pipeline.register_mixture(name, components, components_binding)
  input_pipeline.check_mixture(name, binding)
  return availability.resolve(name, only_available, binding)


def _write_model_spec(model_dir: str, model: Any) -> None:
  """`MODEL_DIR/model.json`, so `flan-jax infer/eval --checkpoint MODEL_DIR` rebuild the trained model."""
  from flan_jax.models import spec
  try:
    spec.save_spec(model_dir, model)
  except TypeError:
    print(f"flan-jax train: note: {type(model).__name__} has no model.json description; infer/eval cannot "
          f"rebuild it from {model_dir}", file=sys.stderr)


def _suite_evaluator(model: Any, suites: str | None, limit: int | None, batch_size: int, max_input_length: int,
                     max_decode_length: int | None, output_dir: str):
  """The evaluation suites' evaluator, with the settings checked before any compile."""
  from flan_jax.evaluation import make_evaluator, suites as suites_lib
  from flan_jax.models import spec
  if not suites:
    raise ValueError("train.eval_suites_period is set but train.eval_suites names no suite "
                     f"(choose from {', '.join(sorted(suites_lib.SUITES))})")
  try:
    suites_lib.get_suites(suites)
  except ValueError as e:
    raise ValueError(f"train.eval_suites={suites!r}: {e}") from None
  try:
    spec.model_spec(model)
  except TypeError:
    raise ValueError(f"train.eval_suites: the suites decode with flan_jax's models; {type(model).__name__} "
                     "is not one") from None
  return make_evaluator(suites, limit=limit, batch_size=batch_size, max_input_length=max_input_length,
                        max_decode_length=max_decode_length, output_dir=output_dir)


def _log(writer, step: int, metrics, seconds: float, step_flops, peak_total, log_period) -> dict:
  """Fetches step `step`'s metrics (after the next step was dispatched, so the host never stalls the device)."""
  from flan_jax import trainer as trainer_lib
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  trainer_lib.check_finite(values, step)
  tokens = values.get("nonpadding_tokens", 0.0)
  values["loss_per_nonpadding_target_token"] = values["loss"] / max(tokens, 1.0)
  values["seconds_per_step"] = seconds
  values["tokens_per_second"] = tokens / max(seconds, 1e-9)
  if step_flops:
    values["mfu"] = step_flops / max(seconds, 1e-9) / peak_total
  writer.write(step, values, console=(step % log_period == 0))
  return values


def _evaluate(trainer, params, config, converter, shard, eval_steps: int) -> dict[str, float]:
  """Teacher-forced metrics over the first `eval_steps` batches of the held-out mixture."""
  from flan_jax.data import input_pipeline
  batches = input_pipeline.host_batches_of(config, converter, shard)
  sums: dict[str, float] = {}
  for batch in itertools.islice(batches, eval_steps):
    m = {k: float(v) for k, v in jax.device_get(trainer.eval_step(params, trainer.global_batch(batch))).items()}
    tokens = m.get("nonpadding_tokens", 0.0)
    for k, v in m.items():
      sums[k] = sums.get(k, 0.0) + (v if k in ("loss", "z_loss", "cross_ent_loss") or k.startswith("num_")
                                    or k == "nonpadding_tokens" else v * tokens)
  tokens = max(sums.get("nonpadding_tokens", 0.0), 1.0)
  out = {}
  for k, v in sums.items():
    summed = k in ("loss", "z_loss", "cross_ent_loss", "nonpadding_tokens") or k.startswith("num_")
    out[f"eval/{k}"] = v if summed else v / tokens
  out["eval/loss_per_nonpadding_target_token"] = sums.get("loss", 0.0) / tokens
  return out


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  verbose = "--verbose" in argv
  if not verbose:
    _quiet_library_noise()
  try:
    args, bindings = _parse_flags(argv)
    _initialize_distributed(args)
    if args.data_dir:
      from flan_jax.data import data_dir
      data_dir.set_data_dir(args.data_dir)
    if args.tfds_data_dir:  # every reader: seqio's, the TF-free TFDS reader, and (through it) the input process
      import seqio
      from flan_jax.data import tfds_source
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
