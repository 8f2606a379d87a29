"""Training metrics to TensorBoard event files and MODEL_DIR/metrics.jsonl; the fixed peaks MFU is measured against.

The event files are written with tensorboard's own record framing and protos, not TensorFlow's summary writer: the
trainer process then never imports TensorFlow (seconds of import, ~860 MB resident) for its metrics.
"""
from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import time
from typing import Mapping

import jax
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.record_writer import RecordWriter

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
# TF's summary writer flushes at least this often too: TensorBoard sees a run at most this far behind.
FLUSH_SECONDS = 120.0


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


class EventFile:
  """One TensorBoard event file: an Event per step, each scalar in it as `tf.summary.scalar` writes one (a float32
  tensor with the scalars plugin's metadata). Records go to a buffered file, flushed every FLUSH_SECONDS and on
  `flush`, so writing a step's scalars costs a fraction of a millisecond: no writer thread is needed to keep the step
  loop from waiting on the disk."""

  _ids = itertools.count()  # two writers of one process within one second still get two files

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(self._ids)}.v2"
    self.path = os.path.join(logdir, name)
    self._records = RecordWriter(open(self.path, "wb"))  # pylint: disable=consider-using-with  (closed by close)
    self._metadata = scalar_metadata.create_summary_metadata(display_name=None, description=None)
    self._add(event_pb2.Event(file_version="brain.Event:2"))
    self.flush()

  def _add(self, event: event_pb2.Event) -> None:
    event.wall_time = time.time()
    self._records.write(event.SerializeToString())

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    values = [summary_pb2.Summary.Value(tag=name, metadata=self._metadata, tensor=tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(), float_val=[value]))
              for name, value in scalars.items()]
    self._add(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=values)))
    if time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
      self.flush()

  def flush(self) -> None:
    self._records.flush()
    self._flushed_at = time.monotonic()

  def close(self) -> None:
    self._records.close()


class MetricsWriter:
  """Process 0 writes; other processes only keep the console quiet."""

  def __init__(self, model_dir: str, resume_step: int = 0):
    self.is_chief = jax.process_index() == 0
    self.path = os.path.join(model_dir, METRICS_FILE)
    self._events = EventFile(os.path.join(model_dir, TENSORBOARD_DIR)) if self.is_chief else None
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
    if self._events is None:  # not the chief
      return
    self._events.write_scalars(step, scalars)
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, "time": round(time.time(), 3), **scalars}, sort_keys=True) + "\n")

  def flush(self) -> None:
    if self._events is not None:
      self._events.flush()

  def close(self) -> None:
    if self._events is not None:
      self._events.close()
