"""Training metrics to TensorBoard (clu metric writers), MODEL_DIR/metrics.jsonl and a console line."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Mapping

import jax
import jax.numpy as jnp
from clu import metric_writers

METRICS_FILE = "metrics.jsonl"


def measure_matmul_peak_flops(size: int = 1024, repeats: int = 5) -> float:
  """FLOP/s of a float32 size x size GEMM on one local device: the stated peak MFU is measured against."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * size ** 3 / best


class MetricsWriter:
  """Process 0 writes; other processes only keep the console quiet."""

  def __init__(self, model_dir: str, resume_step: int = 0):
    self.is_chief = jax.process_index() == 0
    self.path = os.path.join(model_dir, METRICS_FILE)
    self._tb = metric_writers.create_default_writer(
        os.path.join(model_dir, "tensorboard"), just_logging=not self.is_chief, asynchronous=True)
    if self.is_chief:
      self._truncate_after(resume_step)

  def _truncate_after(self, step: int) -> None:
    """A resumed run re-runs the steps after its checkpoint: drop the lines a killed run wrote past it."""
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = f.readlines()
    kept = []
    for number, line in enumerate(lines, 1):
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        print(f"warning: {self.path}:{number}: unreadable metrics line (a killed write?) dropped", file=sys.stderr)
        continue
      if int(record.get("step", 0)) <= step:
        kept.append(line if line.endswith("\n") else line + "\n")
    with open(self.path, "w") as f:
      f.writelines(kept)

  def write(self, step: int, scalars: Mapping[str, float], console: bool = True) -> None:
    scalars = {k: float(v) for k, v in scalars.items()}
    if not self.is_chief:
      return
    self._tb.write_scalars(step, scalars)
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, **scalars}, sort_keys=True) + "\n")
    if console:
      print(self.progress_line(step, scalars), flush=True)

  @staticmethod
  def progress_line(step: int, s: Mapping[str, float]) -> str:
    if "eval/loss_per_nonpadding_target_token" in s:
      return (f"[eval] step {step}: loss/token {s['eval/loss_per_nonpadding_target_token']:.4f} "
              f"accuracy {s.get('eval/accuracy', float('nan')):.4f}")
    if s and all(k.startswith("eval/") for k in s):  # the evaluation suites' scores (percent)
      return f"[eval] step {step}: " + ", ".join(f"{k[len('eval/'):]} {v:.2f}" for k, v in sorted(s.items()))
    parts = [f"step {step}"]
    for key, label, fmt in [("loss_per_nonpadding_target_token", "loss/token", ".4f"), ("accuracy", "acc", ".3f"),
                            ("learning_rate", "lr", ".2e"), ("grad_norm", "|g|", ".3f"),
                            ("tokens_per_second", "tok/s", ".0f"), ("seconds_per_step", "s/step", ".3f"),
                            ("mfu", "MFU", ".3f")]:
      if key in s:
        parts.append(f"{label} {s[key]:{fmt}}")
    return " | ".join(parts)

  def flush(self) -> None:
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()
