"""Training input rendered in a child process that imports neither seqio nor TensorFlow.

The trainer's process holds seqio (and with it TensorFlow, ~860 MB resident) for its task registry, plus JAX and
the model; rendering, tokenizing and packing Flan tasks (or UL2R's token tasks) needs none of that. The child
(`python -m flan_jax.data.input_process`, with $FLAN_JAX_SEQIO=0) runs the same stream `input_pipeline.host_batches_of`
runs in-process (`streaming.rated_examples` -> `host_batches.batches`), so its batches are identical, and on a
multi-core host it renders the next batches while the trainer steps.

The job travels as a pickle on the child's stdin: the effective task rates, the `FlanTask`s themselves (pickled by
reference to the modules that registered them, which the child imports) and the token tasks (`token_tasks`, with the
names they read resolved), the stream and batch configs, and the data dirs. Batches come back on its stdout as
length-prefixed pickles; an error in the child comes back as its traceback and is raised here. Everything the child
prints goes to stderr. The child ignores SIGINT and SIGTERM: a signal to the whole process group (Ctrl-C, a
preemption notice) is the trainer's to handle, which saves and then ends the child; if the trainer dies instead, the
child's next write fails and it exits.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import pickle
import signal
import struct
import subprocess
import sys
import traceback
from typing import Any, BinaryIO, Iterator, Mapping

import numpy as np

from flan_jax.data import data_dir as data_dir_lib
from flan_jax.data import host_batches, registry, streaming, tfds_source, token_tasks

_HEADER = struct.Struct("<Q")


class InputProcessError(RuntimeError):
  """The input process failed; the message carries its traceback or exit status."""


@dataclasses.dataclass(frozen=True)
class InputJob:
  rates: Mapping[str, float]
  tasks: Mapping[str, registry.FlanTask | token_tasks.TokenTask]
  stream: streaming.StreamConfig
  layout: host_batches.BatchConfig
  data_dir: str
  tfds_data_dir: str


def job_for(rates: Mapping[str, float], stream: streaming.StreamConfig,
            layout: host_batches.BatchConfig) -> tuple[InputJob | None, str]:
  """The job rendering `rates` in a child process, or (None, why not): only Flan and token tasks render without
  seqio."""
  other = [t for t in rates if t not in registry.TASKS and t not in token_tasks.TASKS]
  if other:
    return None, f"{len(other)} task(s) are not Flan tasks or token tasks and need seqio (e.g. {other[0]})"
  # A task's metrics and postprocessor are not needed to render it (and need not pickle).
  tasks = {t: dataclasses.replace(registry.TASKS[t], postprocess_fn=None, metric_fns=()) if t in registry.TASKS
           else token_tasks.TASKS[t].for_child() for t in rates}
  job = InputJob(dict(rates), tasks, stream, layout, str(data_dir_lib.data_dir()),
                 str(tfds_source.tfds_data_dir()))
  try:
    pickle.dumps(job)
  except (pickle.PicklingError, AttributeError, TypeError) as e:
    return None, f"the tasks do not pickle ({e})"
  return job, ""


class ProcessBatches:
  """The job's batches after the first `skip`, read from a child process; `close()` ends it."""

  def __init__(self, job: InputJob, skip: int = 0):
    # The child imports the modules that registered the tasks (to unpickle them): give it this process's path.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), **{registry.SEQIO_ENV: "0"})
    self._child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   env=env)
    try:
      self._child.stdin.write(pickle.dumps((job, skip), protocol=pickle.HIGHEST_PROTOCOL))
      self._child.stdin.close()
    except BrokenPipeError:
      pass  # the child died at start; reading says why
    self._done = False

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._done:
      raise StopIteration
    kind, payload = _read(self._child.stdout)
    if kind == "batch":
      return payload
    self._done = True
    if kind == "end":
      self._child.wait()
      raise StopIteration
    self.close()
    if kind == "error":
      raise InputProcessError(f"the input process failed:\n{payload}")
    raise InputProcessError(f"the input process ended without finishing (exit status {self._child.returncode}); "
                            "its stderr is above")

  def close(self) -> None:
    if self._child.poll() is None:
      self._child.kill()
    self._child.wait()
    self._child.stdout.close()

  def __del__(self):
    if getattr(self, "_child", None) is not None and self._child.poll() is None:
      self._child.kill()


def _read(stream: BinaryIO) -> tuple[str, Any]:
  header = stream.read(_HEADER.size)
  if len(header) < _HEADER.size:
    return "eof", None
  size = _HEADER.unpack(header)[0]
  body = stream.read(size)
  if len(body) < size:
    return "eof", None
  return pickle.loads(body)


def _write(stream: BinaryIO, message: tuple[str, Any]) -> None:
  body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
  stream.write(_HEADER.pack(len(body)) + body)
  stream.flush()


def batches_of(job: InputJob) -> Iterator[dict[str, np.ndarray]]:
  """The job's batches, in this process."""
  return host_batches.batches(streaming.rated_examples(job.rates, job.stream, job.tasks), job.layout)


def main() -> int:
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
  os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the batch stream
  try:
    job, skip = pickle.load(sys.stdin.buffer)
    data_dir_lib.set_data_dir(job.data_dir)
    tfds_source.set_tfds_data_dir(job.tfds_data_dir)
    for batch in itertools.islice(batches_of(job), skip, None):
      _write(out, ("batch", batch))
    _write(out, ("end", None))
  except BrokenPipeError:
    os._exit(0)  # the trainer closed the stream; exit without flushing into the closed pipe again
  except BaseException:  # noqa: BLE001 - reported to the trainer, which raises it
    _write(out, ("error", traceback.format_exc()))
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
