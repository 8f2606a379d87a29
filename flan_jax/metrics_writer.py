"""Training metrics to TensorBoard (clu metric writers) and MODEL_DIR/metrics.jsonl; the fixed peaks MFU is measured
against."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Mapping

import jax
from clu import metric_writers

METRICS_FILE = "metrics.jsonl"


# Dense bf16 peak FLOP/s per jax device, from the vendors' spec sheets, so MFU compares across runs (a GEMM measured at
# start-up varies from run to run). CPU has no such figure: its entry is a nominal 100 GFLOP/s per device, a fixed
# yardstick for comparing CPU runs, not a hardware peak. Matched as substrings of `device_kind`, first match wins.
PEAK_FLOPS = (
    ("TPU v6 lite", 918e12), ("TPU v5 lite", 197e12), ("TPU v5p", 459e12), ("TPU v5", 459e12),
    ("TPU v4", 275e12), ("TPU v3", 61.5e12), ("TPU v2", 22.5e12),
    ("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L4", 121e12), ("V100", 125e12), ("T4", 65e12),
    ("cpu", 100e9),
)


def peak_flops(device: jax.Device) -> tuple[float, str]:
  """(peak FLOP/s, the device kind it was looked up by) for MFU."""
  kind = device.device_kind
  for key, flops in PEAK_FLOPS:
    if key.lower() in kind.lower():
      return flops, kind
  raise ValueError(f"no peak FLOP/s is known for device kind {kind!r}: set LogConfig.peak_flops_per_device")


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

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """One metrics.jsonl row (with the wall-clock `time`) and TensorBoard scalars; names carry their namespace
    (`train/loss`, `eval/bbh_direct`), which TensorBoard groups by."""
    scalars = {k: float(v) for k, v in scalars.items()}
    if not self.is_chief:
      return
    self._tb.write_scalars(step, scalars)
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, "time": round(time.time(), 3), **scalars}, sort_keys=True) + "\n")

  def flush(self) -> None:
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()
