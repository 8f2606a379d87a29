"""The streamed mixture: Flan examples equal their seqio task's, draws follow the rates, epochs and shards cover
every example exactly once, and the stream is a function of its config."""
from __future__ import annotations

import collections

import numpy as np
import pytest
import seqio

from flan_jax.data import mixing, streaming
from tests import fixture_tasks

FLAN_TASK = "cot_creak_template_0to10_zero_shot"


def _examples(name: str, config: streaming.StreamConfig, limit: int | None = None) -> list[tuple[tuple, tuple]]:
  out = []
  for chunk in streaming.mixture_examples(name, config):
    cols = {}
    for k, (values, lens) in chunk.items():
      splits = np.concatenate([[0], np.cumsum(lens)])
      cols[k] = [tuple(values[a:b].tolist()) for a, b in zip(splits[:-1], splits[1:])]
    out += list(zip(cols["inputs"], cols["targets"]))
    if limit is not None and len(out) >= limit:
      return out[:limit]
  return out


@pytest.fixture(scope="module")
def flan_tasks(flan_data_dir):
  del flan_data_dir
  import tasks  # noqa: F401 - registers the CoT tasks
  return FLAN_TASK


def test_flan_examples_equal_the_seqio_task(flan_tasks):
  lengths = {"inputs": 48, "targets": 16}  # short enough that trimming (EOS kept last) happens
  config = streaming.StreamConfig(lengths, seed=3, shuffle=False, num_epochs=1)
  got = _examples(flan_tasks, config, limit=300)
  ds = seqio.TaskRegistry.get(flan_tasks).get_dataset(sequence_length=lengths, shuffle=False, num_epochs=1, seed=3)
  want = [(tuple(ex["inputs"].tolist()), tuple(ex["targets"].tolist())) for ex in ds.take(300).as_numpy_iterator()]
  assert got == want
  assert any(len(i) == 48 and i[-1] == 1 for i, _ in got)


def test_epochs_and_shards_cover_every_example_once(flan_tasks):
  lengths = {"inputs": 512, "targets": 128}
  whole = _examples(flan_tasks, streaming.StreamConfig(lengths, shuffle=True, num_epochs=1))
  assert len(whole) == mixing.num_examples(flan_tasks)
  shards = [_examples(flan_tasks, streaming.StreamConfig(lengths, shuffle=True, num_epochs=1, shard_index=k,
                                                         num_shards=3)) for k in range(3)]
  assert collections.Counter(sum(shards, [])) == collections.Counter(whole)
  assert len(set(shards[0]) & set(shards[1])) <= len(whole) - len(set(whole))  # only rows that repeat in the data
  two = _examples(flan_tasks, streaming.StreamConfig(lengths, shuffle=True, num_epochs=2))
  assert collections.Counter(two) == collections.Counter(whole * 2)
  assert two[:len(whole)] != two[len(whole):]  # the second epoch is reshuffled


def test_draws_follow_the_rates_and_exhausted_tasks_leave():
  mix = "flan_jax_test_stream_mix"
  if mix not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(mix, [(fixture_tasks.TRAIN_TASK, 3.0), (fixture_tasks.EVAL_TASK, 1.0)])
  lengths = {"inputs": 16, "targets": 8}
  heldout = set(_examples(fixture_tasks.EVAL_TASK, streaming.StreamConfig(lengths, shuffle=False, num_epochs=1)))
  assert len(heldout) > 50
  first = _examples(mix, streaming.StreamConfig(lengths, seed=1), limit=2000)
  share = sum(ex in heldout for ex in first) / len(first)
  assert 0.2 < share < 0.3  # 1/4 by rate
  everything = _examples(mix, streaming.StreamConfig(lengths, seed=1, num_epochs=1))
  assert len(everything) == 2000 + 64  # the held-out task runs out first; the other finishes alone
  assert _examples(mix, streaming.StreamConfig(lengths, seed=1), limit=500) == first[:500]
  assert _examples(mix, streaming.StreamConfig(lengths, seed=2), limit=500) != first[:500]


def test_missing_data_fails_at_first_draw_with_the_download_command(flan_tasks, tmp_path):
  from flan_jax.data import data_dir as data_dir_lib
  previous = data_dir_lib.data_dir()
  data_dir_lib.set_data_dir(tmp_path)
  try:
    with pytest.raises(data_dir_lib.DataMissingError, match="flan-jax data download"):
      next(streaming.mixture_examples(flan_tasks, streaming.StreamConfig({"inputs": 8, "targets": 8})))
  finally:
    data_dir_lib.set_data_dir(previous)


def test_rates_must_be_usable():
  mix = "flan_jax_test_zero_rates"
  if mix not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(mix, [(fixture_tasks.TRAIN_TASK, 0.0)])
  with pytest.raises(ValueError, match="not all zero"):
    next(streaming.mixture_examples(mix, streaming.StreamConfig({"inputs": 8, "targets": 8})))


def test_a_task_without_examples_on_its_shard_leaves_the_draw_with_a_warning(flan_tasks, capsys):
  mix = "flan_jax_test_with_empty_shard"
  if mix not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(mix, [(fixture_tasks.EVAL_TASK, 1.0), (flan_tasks, 1.0)])
  # 64 held-out rows over 100 shards: shard 80 has none of them.
  config = streaming.StreamConfig({"inputs": 64, "targets": 16}, shard_index=80, num_shards=100)
  got = _examples(mix, config, limit=40)
  assert len(got) == 40
  assert f"task {fixture_tasks.EVAL_TASK} has no examples in epoch 0 on shard 80 of 100" in capsys.readouterr().err
