"""Per-host input: shards differ per process, a restored iterator continues exactly, the prefetcher counts only
batches handed out, and configuration errors name the binding."""
from __future__ import annotations

import pytest

from flan_jax.data import availability, feature_converters, input_pipeline
from flan_jax.data_layout import HostDataLayout
from tests import fixture_tasks
from tests.batch_checks import assert_batches_equal

CONFIG = input_pipeline.InputConfig(fixture_tasks.TRAIN_TASK, {"inputs": 16, "targets": 8}, batch_size=4, seed=7)


def _converter():
  return feature_converters.get_feature_converter("encoder_decoder", pack=False)


def _shard(index: int = 0, count: int = 1, batch_size: int = 4) -> HostDataLayout:
  return HostDataLayout.even(index, count, batch_size)


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_restore_continues_exactly():
  it = input_pipeline.host_iterator(CONFIG, _converter(), _shard())
  reference = _take(it, 8)
  it2 = input_pipeline.host_iterator(CONFIG, _converter(), _shard())
  _take(it2, 3)
  state = it2.state()
  assert state["batches_consumed"] == 3
  fresh = input_pipeline.host_iterator(CONFIG, _converter(), _shard())
  fresh.restore(state)
  assert_batches_equal(_take(fresh, 5), reference[3:])
  other = input_pipeline.host_iterator(
      input_pipeline.InputConfig(fixture_tasks.TRAIN_TASK, {"inputs": 16, "targets": 8}, batch_size=4, seed=8),
      _converter(), _shard())
  with pytest.raises(input_pipeline.InputConfigError, match="seed"):
    other.restore(state)


def test_hosts_read_disjoint_shards():
  a = input_pipeline.host_iterator(CONFIG, _converter(), _shard(0, 2))
  b = input_pipeline.host_iterator(CONFIG, _converter(), _shard(1, 2))
  ba, bb = next(a), next(b)
  assert ba["encoder_input_tokens"].shape == (2, 16)  # 4 global rows over 2 processes
  rows_a = {tuple(r) for r in ba["encoder_input_tokens"]}
  rows_b = {tuple(r) for r in bb["encoder_input_tokens"]}
  assert not rows_a & rows_b


def test_prefetcher_state_counts_consumed_batches():
  it = input_pipeline.host_iterator(CONFIG, _converter(), _shard())
  pre = input_pipeline.DevicePrefetcher(it, lambda b: b, depth=3)
  try:
    first = next(pre)
    assert pre.state()["batches_consumed"] == 1
  finally:
    pre.close()
  assert first["encoder_input_tokens"].shape == (4, 16)


def test_errors_name_the_binding():
  with pytest.raises(input_pipeline.InputConfigError, match="MIXTURE_OR_TASK_NAME='nope' is not a registered"):
    input_pipeline.check_mixture("nope")
  with pytest.raises(input_pipeline.InputConfigError, match=f"did you mean '{fixture_tasks.TRAIN_TASK}'"):
    input_pipeline.check_mixture(fixture_tasks.TRAIN_TASK[:-1] + "x")
  with pytest.raises(input_pipeline.InputConfigError, match="BATCH_SIZE=4 is not 3 input shards of 2 rows"):
    input_pipeline.host_iterator(CONFIG, _converter(), HostDataLayout(0, 3, 2, 0))
  with pytest.raises(input_pipeline.InputConfigError, match="train.mixture_components component='missing'"):
    input_pipeline.register_mixture("x_mix", [("missing", 1.0)], "train.mixture_components")
  input_pipeline.register_mixture("flan_jax_test_mix", [(fixture_tasks.TRAIN_TASK, 1.0)], "m")
  input_pipeline.register_mixture("flan_jax_test_mix", [(fixture_tasks.TRAIN_TASK, 1.0)], "m")  # same: fine
  with pytest.raises(input_pipeline.InputConfigError, match="already registered with other components"):
    input_pipeline.register_mixture("flan_jax_test_mix", [(fixture_tasks.EVAL_TASK, 1.0)], "m")


def test_input_process_gives_the_same_batches_resumes_and_closes(flan_data_dir, capsys):
  import tasks  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  from flan_jax.data import input_process, mixing  # pylint: disable=import-outside-toplevel
  config = input_pipeline.InputConfig(availability.resolve("cot_zsopt", only_available=True),
                                      {"inputs": 64, "targets": 16}, batch_size=4, seed=3)
  here = _take(input_pipeline.host_iterator(config, _converter(), _shard()), 4)
  it = input_pipeline.host_iterator(config, _converter(), _shard(), input_process=True)
  assert_batches_equal(_take(it, 2), here[:2])
  it.restore(it.state(3))
  assert_batches_equal([next(it)], here[3:])
  pre = input_pipeline.DevicePrefetcher(it, lambda b: b, depth=1)
  next(pre)
  child = it._it  # pylint: disable=protected-access
  assert isinstance(child, input_process.ProcessBatches)
  pre.close()  # ends the child, so the prefetch thread blocked on it returns at once
  assert child._child.poll() is not None  # pylint: disable=protected-access
  # A mixture with a non-Flan task stays in this process, saying why.
  _take(input_pipeline.host_iterator(CONFIG, _converter(), _shard(), input_process=True), 1)
  assert f"{fixture_tasks.TRAIN_TASK} is rendered in the training process" in capsys.readouterr().err
