"""The input process: the same batches as in-process rendering (skip included), no TensorFlow in the child, errors
carried back with their traceback, and non-Flan mixtures refused with the reason."""
from __future__ import annotations

import itertools
import os
import signal

import pytest

from flan_jax.data import availability, host_batches, input_process, mixing, streaming
from tests import fixture_tasks
from tests.batch_checks import assert_batches_equal

LAYOUT = host_batches.BatchConfig("encoder_decoder", "ffd", {"inputs": 128, "targets": 32}, batch_size=4)
STREAM = streaming.StreamConfig({"inputs": 128, "targets": 32}, seed=5)


@pytest.fixture(scope="module")
def cot_rates(flan_data_dir):
  import tasks  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  return mixing.rates(availability.resolve("cot_zsopt", only_available=True))


def test_child_batches_equal_in_process_batches_and_skip(cot_rates):
  job, why = input_process.job_for(cot_rates, STREAM, LAYOUT)
  assert job is not None, why
  here = list(itertools.islice(input_process.batches_of(job), 6))
  child = input_process.ProcessBatches(job)
  try:
    assert_batches_equal(here, [next(child) for _ in range(6)])
    # Rendered without TensorFlow: no TF library is mapped into the child.
    with open(f"/proc/{child._child.pid}/maps") as f:  # pylint: disable=protected-access
      assert "tensorflow" not in f.read()
  finally:
    child.close()
  assert child._child.poll() is not None  # pylint: disable=protected-access
  resumed = input_process.ProcessBatches(job, skip=4)
  try:
    assert_batches_equal(here[4:], [next(resumed) for _ in range(2)])
  finally:
    resumed.close()


def test_a_finite_stream_ends(cot_rates):
  one = {"cot_gsm8k_template_0_zero_shot": 1.0}
  job, _ = input_process.job_for(one, streaming.StreamConfig(STREAM.lengths, num_epochs=1), LAYOUT)
  child = input_process.ProcessBatches(job)
  assert len(list(child)) == len(list(input_process.batches_of(job))) > 0
  assert next(child, None) is None


def test_child_errors_come_back_with_their_traceback(cot_rates, tmp_path):
  job, _ = input_process.job_for(cot_rates, STREAM, LAYOUT)
  broken = input_process.InputJob(job.rates, job.tasks, job.stream, job.layout, str(tmp_path), job.tfds_data_dir)
  child = input_process.ProcessBatches(broken)
  with pytest.raises(input_process.InputProcessError, match=r"(?s)Traceback.*DataMissingError.*flan-jax data download"):
    next(child)


def test_non_flan_tasks_stay_in_process():
  job, why = input_process.job_for({fixture_tasks.TRAIN_TASK: 1.0}, STREAM, LAYOUT)
  assert job is None and fixture_tasks.TRAIN_TASK in why and "not Flan tasks" in why


def test_child_leaves_group_signals_to_the_trainer(cot_rates):
  job, _ = input_process.job_for(cot_rates, STREAM, LAYOUT)
  child = input_process.ProcessBatches(job)
  try:
    first = next(child)
    for sig in (signal.SIGINT, signal.SIGTERM):
      os.kill(child._child.pid, sig)  # pylint: disable=protected-access
    assert_batches_equal([first] + [next(child) for _ in range(3)], list(itertools.islice(input_process.batches_of(job), 4)))
  finally:
    child.close()


def test_child_that_dies_is_an_error(cot_rates):
  job, _ = input_process.job_for(cot_rates, STREAM, LAYOUT)
  child = input_process.ProcessBatches(job)
  next(child)
  os.kill(child._child.pid, 9)  # pylint: disable=protected-access
  with pytest.raises(input_process.InputProcessError, match="ended without finishing"):
    for _ in range(10_000):
      next(child)
