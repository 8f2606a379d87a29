"""The training loop and its hooks: metrics and progress, checkpoints, evaluation, each with its own period.

The loop only steps; everything else is a `Hook` run every `every` steps after the step is dispatched, and once
more at the end (`end`), as levanter's `add_hook(fn, every=N)`. Hooks that take time which is not training
(evaluation) say so (`pauses_clock`), so seconds/step and tokens/s time training alone.

Metric names: `train/loss` is the mean loss per non-padding target token (what the console shows and what to
plot); `train/loss_sum` the loss summed over the batch's target tokens (T5X's `loss`); every other metric keeps
its model name under `train/` (or `eval/` for the held-out mixture).
"""
from __future__ import annotations

import abc
import collections
import dataclasses
import itertools
import sys
import time
from typing import Any, Callable, Mapping, Sequence, TextIO

import jax

from flan_jax import progress as progress_lib
from flan_jax import trainer as trainer_lib


@dataclasses.dataclass(frozen=True)
class StepInfo:
  step: int
  state: Any
  metrics: Any       # this step's metrics, still on the device (None at the end)
  seconds: float     # wall time of this step (time the hooks that pause the clock took is left out)
  input_seconds: float = 0.0  # of which the loop waited for the batch


class Hook(abc.ABC):
  every: int = 1
  pauses_clock: bool = False

  def due(self, step: int) -> bool:
    return self.every > 0 and step % self.every == 0

  @abc.abstractmethod
  def __call__(self, info: StepInfo) -> None:
    """After a step whose number is a multiple of `every`."""

  def end(self, info: StepInfo) -> None:
    """After the last step (also when a signal stopped the run early)."""


def run(trainer, state, batches, step: int, train_steps: int, hooks: Sequence[Hook],
        should_stop: Callable[[], bool]) -> tuple[Any, int]:
  """Steps until `train_steps` (or `should_stop()`), running the due hooks after each step; (state, step)."""
  t_last = time.perf_counter()
  while step < train_steps and not should_stop():
    asked = time.perf_counter()
    batch = next(batches)
    waited = time.perf_counter() - asked
    state, metrics = trainer.train_step(state, batch)
    step += 1
    now = time.perf_counter()
    info = StepInfo(step, state, metrics, now - t_last, waited)
    t_last = now
    due = [hook for hook in hooks if hook.due(step)]
    for hook in due:
      hook(info)
    if any(hook.pauses_clock for hook in due):
      t_last = time.perf_counter()
  final = StepInfo(step, state, None, 0.0)
  for hook in hooks:
    hook.end(final)
  return state, step


def namespaced(values: Mapping[str, float], prefix: str) -> dict[str, float]:
  """`prefix/loss` per non-padding target token, `prefix/loss_sum` summed, the rest under `prefix/`."""
  tokens = max(values.get(trainer_lib.TOKENS, 0.0), 1.0)
  out = {f"{prefix}/loss": values["loss"] / tokens, f"{prefix}/loss_sum": values["loss"]}
  for name, value in values.items():
    if name not in ("loss", "loss_per_nonpadding_target_token"):
      out[f"{prefix}/{name}"] = value
  return out


class MetricsHook(Hook):
  """Fetches each step's metrics one step late (so the host never stalls the device), writes them, and shows
  progress: `step N/TOTAL`, loss, tokens/s and ETA, redrawn in place on a terminal, a line every `log_period`
  steps otherwise. Keeps what the end-of-run summary needs."""

  def __init__(self, writer, total_steps: int, step_flops: float | None, peak_total: float, log_period: int,
               stream: TextIO | None = None):
    self.writer = writer
    self.total_steps = total_steps
    self.step_flops = step_flops
    self.peak_total = peak_total
    self.log_period = max(log_period, 1)
    self.stream = stream or sys.stdout
    self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and writer.is_chief
    self.recent_seconds: collections.deque[float] = collections.deque(maxlen=20)
    self.examples = 0.0
    self.last: dict[str, float] = {}
    self.best: tuple[float, int] | None = None
    self._pending: StepInfo | None = None

  def __call__(self, info: StepInfo) -> None:
    if self._pending is not None:
      self._emit(self._pending)
    self._pending = info

  def end(self, info: StepInfo) -> None:
    if self._pending is not None:
      self._emit(self._pending)
      self._pending = None
    if self.tty:
      self.stream.write("\n")

  def _emit(self, info: StepInfo) -> None:
    values = {k: float(v) for k, v in jax.device_get(info.metrics).items()}
    trainer_lib.check_finite(values, info.step)
    seconds = max(info.seconds, 1e-9)
    row = namespaced(values, "train")
    row["train/seconds_per_step"] = info.seconds
    row["train/input_wait_seconds"] = info.input_seconds
    row["train/tokens_per_second"] = values.get(trainer_lib.TOKENS, 0.0) / seconds
    if self.step_flops:
      row["train/mfu"] = self.step_flops / seconds / self.peak_total
    self.writer.write(info.step, row)
    self.last = row
    self.examples += values.get(trainer_lib.EXAMPLES, 0.0)
    if self.best is None or row["train/loss"] < self.best[0]:
      self.best = (row["train/loss"], info.step)
    self.recent_seconds.append(info.seconds)
    if self.writer.is_chief:
      self._show(info.step, row)

  def _show(self, step: int, row: Mapping[str, float]) -> None:
    line = self.line(step, row)
    if self.tty:
      self.stream.write("\r" + line + "\x1b[K" + ("\n" if step % self.log_period == 0 else ""))
    elif step % self.log_period == 0:
      self.stream.write(line + "\n")
    self.stream.flush()

  def line(self, step: int, row: Mapping[str, float]) -> str:
    parts = [f"step {step}/{self.total_steps}"]
    for key, label, fmt in [("train/loss", "loss", ".4f"), ("train/accuracy", "acc", ".3f"),
                            ("train/learning_rate", "lr", ".2e"), ("train/grad_norm", "|g|", ".3f"),
                            ("train/tokens_per_second", "tok/s", ".0f"), ("train/seconds_per_step", "s/step", ".3f"),
                            ("train/mfu", "MFU", ".3f")]:
      if key in row:
        parts.append(f"{label} {row[key]:{fmt}}")
    mean = sum(self.recent_seconds) / len(self.recent_seconds)
    parts.append(f"ETA {progress_lib.format_seconds(mean * (self.total_steps - step))}")
    return " | ".join(parts)


class CheckpointHook(Hook):
  """Saves every `every` steps (asynchronously: the step goes on while it is written) and at the end."""

  def __init__(self, save: Callable[[int, Any, bool], None], wait: Callable[[], None], every: int):
    self.save = save
    self.wait = wait
    self.every = every

  def __call__(self, info: StepInfo) -> None:
    self.save(info.step, info.state, False)

  def end(self, info: StepInfo) -> None:
    self.save(info.step, info.state, True)
    self.wait()


class EvalHook(Hook):
  """Runs `evaluate(params, step)` -> {'eval/...': value} every `every` steps and writes the result."""
  pauses_clock = True

  def __init__(self, evaluate: Callable[[Any, int], dict[str, float]], writer, every: int):
    self.evaluate = evaluate
    self.writer = writer
    self.every = every

  def __call__(self, info: StepInfo) -> None:
    scores = self.evaluate(info.state.params, info.step)
    self.writer.write(info.step, scores)
    if self.writer.is_chief:
      print(f"[eval] step {info.step}: " + ", ".join(f"{k[len('eval/'):]} {v:.4g}" for k, v in sorted(scores.items())
                                                     if _shown(k)), flush=True)


def _shown(key: str) -> bool:
  return not key.startswith(("eval/num_", "eval/nonpadding", "eval/z_loss", "eval/cross_ent", "eval/loss_"))


def teacher_forced(trainer, batches, eval_steps: int) -> Callable[[Any, int], dict[str, float]]:
  """An `EvalHook` function: teacher-forced metrics over the first `eval_steps` batches that `batches()` gives."""

  def evaluate(params: Any, step: int) -> dict[str, float]:
    del step
    sums: dict[str, float] = {}
    for batch in itertools.islice(batches(), eval_steps):
      m = {k: float(v) for k, v in jax.device_get(trainer.eval_step(params, trainer.global_batch(batch))).items()}
      tokens = m.get(trainer_lib.TOKENS, 0.0)
      for k, v in m.items():  # per-token means are weighted by their batch's tokens
        sums[k] = sums.get(k, 0.0) + (v if trainer_lib.is_summed(k) else v * tokens)
    tokens = max(sums.get(trainer_lib.TOKENS, 0.0), 1.0)
    return namespaced({k: v if trainer_lib.is_summed(k) else v / tokens for k, v in sums.items()}, "eval")

  return evaluate
