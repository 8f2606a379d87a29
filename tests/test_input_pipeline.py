"""Per-host input: mixtures follow their rates, epochs and shards cover every example once, the batches are a function
of the seed, a state of two numbers restores them exactly at the cost of one block, grain's worker processes give the
batches this process gives (without TensorFlow, for Flan, UL2R and seqio-only tasks), the prefetcher counts only
batches handed out, and bad inputs fail clearly, naming the binding or the task."""
from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import os
import pathlib
import shutil
import signal
import time

import numpy as np
import pytest
import seqio
import tensorflow as tf

from flan_jax.data.catalog import mixing, ul2r
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import text_sources
from flan_jax.data.pipeline import blocks, host_batches, host_input, input_pipeline, schedule
from flan_jax.data_layout import HostDataLayout
from tests import fixture_tasks
from tests.batch_checks import assert_batches_equal

LENGTHS = {"inputs": 16, "targets": 8}
CONFIG = input_pipeline.InputConfig(fixture_tasks.TRAIN_TASK, LENGTHS, batch_size=4, seed=7)
UNPACKED = host_batches.InputLayout(pack=False)
FLAN_TASK = "cot_creak_template_0to10_zero_shot"

Example = tuple[tuple[int, ...], tuple[int, ...]]


def _shard(index: int = 0, count: int = 1, batch_size: int = 4) -> HostDataLayout:
  return HostDataLayout.even(index, count, batch_size)


def _take(it, n: int) -> list[dict[str, np.ndarray]]:
  return [next(it) for _ in range(n)]


def _config(name: str, batch_size: int = 1, lengths: dict[str, int] | None = None,
            **kwargs) -> input_pipeline.InputConfig:
  return input_pipeline.InputConfig(name, lengths or LENGTHS, batch_size=batch_size, **kwargs)


def _examples(config: input_pipeline.InputConfig, shard: HostDataLayout | None = None,
              limit: int | None = None) -> list[Example]:
  """The examples of an input read one per row (no packing), padding off, in order."""
  it = input_pipeline.host_iterator(config, UNPACKED, shard or _shard(batch_size=config.batch_size), workers=0)
  rows = ((x, y) for batch in it for x, y in zip(batch["encoder_input_tokens"], batch["decoder_target_tokens"]))
  return [(tuple(x[x != 0].tolist()), tuple(y[y != 0].tolist())) for x, y in itertools.islice(rows, limit)]


def _seqio_mixture(name: str, parts: list[tuple[str, float]]) -> str:
  if name not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(name, parts)
  return name


@pytest.fixture(scope="module")
def flan_catalog(flan_data_dir):
  del flan_data_dir
  import tasks  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import


# --- the schedule of draws

def test_the_schedule_gives_each_task_its_share_of_every_mixture_epoch():
  assert schedule.apportion([3.0, 1.0], 8).tolist() == [6, 2]
  assert schedule.apportion([1.0, 1e-9], 100).tolist() == [100, 1]  # a positive rate is never left out
  counts = (6, 3, 1)
  sched = schedule.Schedule(("a", "b", "c"), counts, seed=5)
  tasks, draws = sched.draws(0, 30)
  for e in range(3):
    epoch_tasks, epoch_draws = tasks[10 * e:10 * (e + 1)], draws[10 * e:10 * (e + 1)]
    # Each task gets exactly its draws, and reads its own stream in order, epoch after epoch.
    for t, c in enumerate(counts):
      assert epoch_draws[epoch_tasks == t].tolist() == list(range(e * c, (e + 1) * c))
  assert tasks[:10].tolist() != tasks[10:20].tolist()  # each mixture epoch is shuffled anew
  # Any stretch is computed on its own, the same as in sequence.
  assert [a.tolist() for a in sched.draws(13, 17)] == [tasks[13:17].tolist(), draws[13:17].tolist()]
  assert (schedule.Schedule(("a", "b", "c"), counts, seed=5).draws(0, 30)[0] == tasks).all()
  assert (schedule.Schedule(("a", "b", "c"), counts, seed=6).draws(0, 30)[0] != tasks).any()
  # Host shard k of 3 reads global draws k, k + 3, ...; with num_epochs the shards end together.
  finite = [schedule.Schedule(("a", "b", "c"), counts, 5, k, 3, num_epochs=2) for k in range(3)]
  assert [len(s) for s in finite] == [7, 7, 6]
  for k, s in enumerate(finite):
    assert [a.tolist() for a in s.draws(0, len(s))] == [tasks[k:20:3].tolist(), draws[k:20:3].tolist()]


# --- what the input reads

def test_the_mix_follows_the_rates_and_reads_every_example_once_an_epoch():
  mix = _seqio_mixture("flan_jax_test_stream_mix", [(fixture_tasks.TRAIN_TASK, 3.0), (fixture_tasks.EVAL_TASK, 1.0)])
  heldout = _examples(_config(fixture_tasks.EVAL_TASK, shuffle=False, num_epochs=1))
  train = _examples(_config(fixture_tasks.TRAIN_TASK, shuffle=False, num_epochs=1))
  assert len(heldout) == 64 and len(train) == 2000
  heldout_set = set(heldout)
  first = _examples(_config(mix, seed=1), limit=2000)
  share = sum(ex in heldout_set for ex in first) / len(first)
  assert 0.2 < share < 0.3  # 1/4 by rate
  everything = _examples(_config(mix, seed=1, num_epochs=1))
  assert collections.Counter(everything) == collections.Counter(train + heldout)
  assert _examples(_config(mix, seed=1), limit=500) == first[:500]
  assert _examples(_config(mix, seed=2), limit=500) != first[:500]


def test_flan_examples_equal_the_seqio_task(flan_catalog):
  lengths = {"inputs": 48, "targets": 16}  # short enough that trimming (EOS kept last) happens
  got = _examples(_config(FLAN_TASK, lengths=lengths, seed=3, shuffle=False, num_epochs=1), limit=300)
  ds = seqio.TaskRegistry.get(FLAN_TASK).get_dataset(sequence_length=lengths, shuffle=False, num_epochs=1, seed=3)
  want = [(tuple(ex["inputs"].tolist()), tuple(ex["targets"].tolist())) for ex in ds.take(300).as_numpy_iterator()]
  assert got == want
  assert any(len(i) == 48 and i[-1] == 1 for i, _ in got)


def test_epochs_and_shards_cover_every_example_once(flan_catalog):
  lengths = {"inputs": 512, "targets": 128}
  whole = _examples(_config(FLAN_TASK, lengths=lengths, num_epochs=1))
  assert len(whole) == mixing.num_examples(FLAN_TASK)
  shards = [_examples(_config(FLAN_TASK, 3, lengths=lengths, num_epochs=1), _shard(k, 3, 3)) for k in range(3)]
  assert collections.Counter(sum(shards, [])) == collections.Counter(whole)
  assert len(set(shards[0]) & set(shards[1])) <= len(whole) - len(set(whole))  # only rows that repeat in the data
  two = _examples(_config(FLAN_TASK, lengths=lengths, num_epochs=2))
  assert collections.Counter(two) == collections.Counter(whole * 2)
  assert two[:len(whole)] != two[len(whole):]  # the second epoch is reshuffled


def test_a_task_smaller_than_the_shard_count_is_read_on_every_shard():
  mix = _seqio_mixture("flan_jax_test_with_small_task", [(fixture_tasks.EVAL_TASK, 1.0),
                                                         (fixture_tasks.TRAIN_TASK, 1.0)])
  heldout = set(_examples(_config(fixture_tasks.EVAL_TASK, num_epochs=1)))
  # 64 held-out rows over 100 shards: shard 80 still reads them, at their rate.
  got = _examples(_config(mix, 100), _shard(80, 100, 100), limit=40)
  assert len(got) == 40 and 0 < sum(ex in heldout for ex in got) < 40


def test_hosts_read_disjoint_shards():
  a = input_pipeline.host_iterator(CONFIG, UNPACKED, _shard(0, 2), workers=0)
  b = input_pipeline.host_iterator(CONFIG, UNPACKED, _shard(1, 2), workers=0)
  ba, bb = next(a), next(b)
  assert ba["encoder_input_tokens"].shape == (2, 16)  # 4 global rows over 2 processes
  rows_a = {tuple(r) for r in ba["encoder_input_tokens"]}
  rows_b = {tuple(r) for r in bb["encoder_input_tokens"]}
  assert not rows_a & rows_b


# --- state and restore

def test_restore_continues_exactly():
  reference = _take(input_pipeline.host_iterator(CONFIG, UNPACKED, _shard(), workers=0), 8)
  it = input_pipeline.host_iterator(CONFIG, UNPACKED, _shard(), workers=0)
  _take(it, 3)
  state = it.state()
  assert json.loads(json.dumps(state)) == state  # plain data: it goes into the checkpoint
  fresh = input_pipeline.host_iterator(CONFIG, UNPACKED, _shard(), workers=0)
  fresh.restore(state)
  assert_batches_equal(_take(fresh, 5), reference[3:])
  other = input_pipeline.host_iterator(
      input_pipeline.InputConfig(fixture_tasks.TRAIN_TASK, LENGTHS, batch_size=4, seed=8), UNPACKED, _shard(),
      workers=0)
  with pytest.raises(host_input.InputStateError, match="seed"):
    other.restore(state)
  old = {k: v for k, v in state.items() if k not in ("block", "row")}
  with pytest.raises(host_input.InputStateError, match="older flan_jax"):
    fresh.restore(dict(old, batches_consumed=3))


def test_restore_computes_one_block_inside_a_block_at_its_boundary_and_far_away(monkeypatch):
  layout = host_batches.InputLayout(pack=False, block_size=10)  # 10 rows a block: batches of 4 run across blocks
  reference = _take(input_pipeline.host_iterator(CONFIG, layout, _shard(), workers=0), 12)
  computed: list[int] = []
  real = blocks.PackedBlocks.__getitem__

  def spy(self, b: int):
    computed.append(b)
    return real(self, b)

  monkeypatch.setattr(blocks.PackedBlocks, "__getitem__", spy)
  for n, (block, row) in ((3, (1, 2)), (5, (2, 0)), (9, (3, 6))):  # 4n rows read: inside, at a boundary, inside
    it = input_pipeline.host_iterator(CONFIG, layout, _shard(), workers=0)
    _take(it, n)
    state = it.state()
    assert (state["block"], state["row"]) == (block, row), n
    fresh = input_pipeline.host_iterator(CONFIG, layout, _shard(), workers=0)
    fresh.restore(state)
    computed.clear()
    assert_batches_equal([next(fresh)], reference[n:n + 1])
    assert computed == [block] + ([block + 1] if row > 6 else [])  # the batch's own blocks only
    assert_batches_equal(_take(fresh, 12 - n - 1), reference[n + 1:])
  far = input_pipeline.host_iterator(CONFIG, layout, _shard(), workers=0)
  far.restore(dict(state, block=10**6, row=4))
  computed.clear()
  batch = next(far)
  assert computed == [10**6]
  rows = real(blocks.PackedBlocks(far.spec), 10**6)
  assert_batches_equal([batch], [{k: v[4:8] for k, v in rows.items()}])


def test_prefetcher_state_is_where_the_handed_out_batches_end():
  reference = _take(input_pipeline.host_iterator(CONFIG, UNPACKED, _shard(), workers=0), 2)
  it = input_pipeline.host_iterator(CONFIG, UNPACKED, _shard(), workers=0)
  pre = input_pipeline.DevicePrefetcher(it, lambda b: b, depth=3)
  try:
    first = next(pre)
    state = pre.state()
  finally:
    pre.close()
  assert (state["block"], state["row"]) == (0, 4)  # one batch of 4 rows handed out, however many were read ahead
  fresh = input_pipeline.host_iterator(CONFIG, UNPACKED, _shard(), workers=0)
  fresh.restore(state)
  assert_batches_equal([first, next(fresh)], reference)


# --- grain's worker processes

def _descendants(pid: int) -> set[int]:
  """Live processes under `pid`, from /proc."""
  parent = {}
  for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
    try:
      parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
      continue  # ended while listed
  found: set[int] = set()
  frontier = {pid}
  while frontier:
    frontier = {p for p, pp in parent.items() if pp in frontier} - found
    found |= frontier
  return found


def _workers(before: set[int]) -> set[int]:
  """grain's worker processes started since `before`: spawned Python processes (not the resource tracker)."""
  out = set()
  for pid in _descendants(os.getpid()) - before:
    try:
      if b"spawn_main" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes():
        out.add(pid)
    except OSError:
      continue
  return out


def _running(pid: int) -> bool:
  """Whether `pid` exists and has not ended (a zombie has ended)."""
  try:
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False


def _gone(pids: set[int], timeout: float = 60) -> bool:
  deadline = time.monotonic() + timeout
  while any(map(_running, pids)):
    if time.monotonic() > deadline:
      return False
    time.sleep(0.2)
  return True


def _with_states(it, n: int) -> tuple[list[dict[str, np.ndarray]], list[dict]]:
  batches, states = [], []
  for _ in range(n):
    batches.append(next(it))
    states.append(it.state())
  return batches, states


def test_workers_give_the_same_batches_without_tensorflow_restore_and_close(flan_catalog):
  """A mixture of a Flan task, a UL2R task and a seqio-only task: 2 grain workers give the batches this process
  gives, across blocks and after a restore, with no TensorFlow mapped into them; closing the prefetcher ends them."""
  name = "flan_jax_test_three_kinds"
  input_pipeline.register_mixture(name, [(FLAN_TASK, 1.0), ("ul2r_cot_gsm8k", 1.0), (fixture_tasks.TRAIN_TASK, 1.0)],
                                  "m")
  config = input_pipeline.InputConfig(name, {"inputs": 128, "targets": 32}, batch_size=4, seed=3)
  layout = host_batches.InputLayout(block_size=256)
  here, states = _with_states(input_pipeline.host_iterator(config, layout, _shard(), workers=0), 150)
  assert states[-1]["block"] >= 2  # the batches cross blocks
  before = _descendants(os.getpid())
  it = input_pipeline.host_iterator(config, layout, _shard(), workers=2)
  seen: set[int] = set()
  pre = None
  try:
    got, got_states = _with_states(it, 100)
    assert_batches_equal(got, here[:100])
    assert got_states == states[:100]
    workers = _workers(before)
    assert len(workers) >= 2
    for pid in workers:  # rendered without TensorFlow: no TF library is mapped into a worker
      assert "tensorflow" not in pathlib.Path(f"/proc/{pid}/maps").read_text(), pid
    seen |= workers
    it.restore(states[119])
    assert_batches_equal(_take(it, 30), here[120:150])
    seen |= _workers(before)
    pre = input_pipeline.DevicePrefetcher(it, lambda b: b, depth=1)
    next(pre)
  finally:
    if pre is not None:
      pre.close()  # ends the workers, so the prefetch thread blocked on them returns at once
    it.close()
  assert _gone(seen)


def test_a_finite_input_ends_after_the_same_batches_in_workers():
  config = _config(fixture_tasks.EVAL_TASK, 4, num_epochs=1, shuffle=False)
  here = list(input_pipeline.host_iterator(config, UNPACKED, _shard(), workers=0))
  it = input_pipeline.host_iterator(config, UNPACKED, _shard(), workers=2)
  try:
    assert_batches_equal(list(it), here)
    assert len(here) == 64 // 4 and next(it, None) is None
  finally:
    it.close()


def test_worker_errors_and_deaths_reach_the_reader(flan_catalog, tmp_path):
  config = _config(FLAN_TASK, 4, lengths={"inputs": 64, "targets": 16})
  it = input_pipeline.host_iterator(config, UNPACKED, _shard(), workers=2)
  # Workers that read another data dir: the error raised in a worker reaches the reader.
  broken = host_input.HostBatches(dataclasses.replace(it.spec, data_dir=str(tmp_path)), it.identity, workers=2)
  try:
    with pytest.raises(data_dir_lib.DataMissingError, match="flan-jax data download"):
      next(broken)
  finally:
    broken.close()
  before = _descendants(os.getpid())
  try:
    next(it)
    workers = _workers(before)
    assert workers
    os.kill(min(workers), signal.SIGKILL)
    with pytest.raises(RuntimeError, match="terminated unexpectedly"):
      for _ in range(100_000):
        next(it)
  finally:
    it.close()


# --- errors

def test_errors_name_the_binding():
  with pytest.raises(input_pipeline.InputConfigError, match="MIXTURE_OR_TASK_NAME='nope' is not a registered"):
    input_pipeline.check_mixture("nope")
  with pytest.raises(input_pipeline.InputConfigError, match=f"did you mean '{fixture_tasks.TRAIN_TASK}'"):
    input_pipeline.check_mixture(fixture_tasks.TRAIN_TASK[:-1] + "x")
  with pytest.raises(input_pipeline.InputConfigError, match="BATCH_SIZE=4 is not 3 input shards of 2 rows"):
    input_pipeline.host_iterator(CONFIG, UNPACKED, HostDataLayout(0, 3, 2, 0))
  with pytest.raises(input_pipeline.InputConfigError, match="train.mixture_components component='missing'"):
    input_pipeline.register_mixture("x_mix", [("missing", 1.0)], "train.mixture_components")
  input_pipeline.register_mixture("flan_jax_test_mix", [(fixture_tasks.TRAIN_TASK, 1.0)], "m")
  input_pipeline.register_mixture("flan_jax_test_mix", [(fixture_tasks.TRAIN_TASK, 1.0)], "m")  # same: fine
  with pytest.raises(input_pipeline.InputConfigError, match="already registered with other components"):
    input_pipeline.register_mixture("flan_jax_test_mix", [(fixture_tasks.EVAL_TASK, 1.0)], "m")


def test_rates_must_be_usable():
  mix = _seqio_mixture("flan_jax_test_zero_rates", [(fixture_tasks.TRAIN_TASK, 0.0)])
  with pytest.raises(input_pipeline.InputConfigError, match=f"MIXTURE_OR_TASK_NAME='{mix}'.*not all zero"):
    input_pipeline.host_iterator(_config(mix), UNPACKED, _shard(batch_size=1), workers=0)


def test_missing_data_fails_when_the_input_is_built_with_the_download_command(flan_catalog, tmp_path):
  previous = data_dir_lib.data_dir()
  data_dir_lib.set_data_dir(tmp_path)
  try:
    with pytest.raises(data_dir_lib.DataMissingError, match="flan-jax data download"):
      input_pipeline.input_spec(_config(FLAN_TASK), UNPACKED, _shard(batch_size=1))
  finally:
    data_dir_lib.set_data_dir(previous)


def _first_batch(name: str) -> dict[str, np.ndarray]:
  return next(input_pipeline.host_iterator(_config(name, lengths={"inputs": 64, "targets": 64}), UNPACKED,
                                           _shard(batch_size=1), workers=0))


def _empty_seqio_task() -> str:
  name = "flan_jax_test_empty"
  if name not in seqio.TaskRegistry.names():
    vocab = seqio.PassThroughVocabulary(size=fixture_tasks.VOCAB_SIZE, eos_id=1)
    empty = {k: tf.zeros([0, 3], tf.int32) for k in ("inputs", "targets")}
    seqio.TaskRegistry.add(name, source=seqio.FunctionDataSource(
        lambda split, shuffle_files: tf.data.Dataset.from_tensor_slices(empty), splits=("train",)),
        output_features={k: seqio.Feature(vocab) for k in empty})
  return name


def test_a_task_without_examples_fails_naming_it(flan_catalog, flan_data_dir, tmp_path):
  # A Flan task with fewer rows than its templates make a group of.
  (tmp_path / "flan/cot").mkdir(parents=True)
  shutil.copy(flan_data_dir / "flan/templates.json", tmp_path / "flan")
  (tmp_path / "flan/cot/qasc_train.tsv").write_text("".join(f"q{i}\t{i}\tbecause\n" for i in range(5)))
  previous = data_dir_lib.data_dir()
  data_dir_lib.set_data_dir(tmp_path)
  try:
    with pytest.raises(ValueError, match="task cot_qasc_template_0to10_zero_shot has no examples"):
      _first_batch("cot_qasc_template_0to10_zero_shot")
  finally:
    data_dir_lib.set_data_dir(previous)
  # A seqio-only task whose split is empty.
  with pytest.raises(ValueError, match=f"task {_empty_seqio_task()} has no examples in split 'train'"):
    input_pipeline.input_spec(_config(_empty_seqio_task()), UNPACKED, _shard(batch_size=1))
  # A UL2R task whose text has no document.
  (tmp_path / "blank.txt").write_text("\n\n")
  name = ul2r.register(ul2r.Ul2rTask("ul2r_test_no_documents", text_sources.TextFiles(str(tmp_path / "blank.txt"))))
  with pytest.raises(ValueError, match=name):
    _first_batch(name)

