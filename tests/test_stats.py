"""Data stats: rate shares, length percentiles, packing against the bound, and seqio's greedy count checked on seqio."""
from __future__ import annotations

import numpy as np
import pytest
import seqio
import tensorflow as tf

from flan_jax.data import stats as stats_lib
from flan_jax.data.pipeline import packing


def _examples(n: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  for i in range(n):
    yield {"inputs": rng.integers(2, 99, int(rng.integers(1, 30))).tolist(),
           "targets": rng.integers(2, 99, int(rng.integers(1, 12))).tolist(),
           "_task_name": "a" if i % 4 else "b"}


def test_greedy_count_equals_the_rows_seqio_packs():
  rng = np.random.default_rng(1)
  sizes = np.stack([rng.integers(1, 30, 300), rng.integers(1, 12, 300)], axis=1)
  ds = tf.data.Dataset.from_tensor_slices(sizes).map(
      lambda s: {"inputs": tf.ones([s[0]], tf.int32) + 1, "targets": tf.ones([s[1]], tf.int32) + 1})
  lengths = {"inputs": 32, "targets": 12}
  rows = sum(1 for _ in seqio.EncDecFeatureConverter(pack=True)(ds, lengths))
  assert packing.greedy_row_count(sizes, [32, 12]) == rows


def test_summarize_counts_lengths_tasks_and_packing():
  examples = list(_examples(400))
  s = stats_lib.summarize("m", {"a": 0.75, "b": 0.25}, examples, {"inputs": 24, "targets": 8}, block_size=128)
  assert s.examples == 400 and s.examples_per_task == {"a": 300, "b": 100}
  ins = np.array([len(e["inputs"]) for e in examples])
  assert s.percentiles["inputs"][50] == int(np.percentile(ins, 50)) and s.percentiles["inputs"][100] == ins.max()
  assert s.truncated["inputs"] == int((ins > 24).sum()) > 0
  # Sums and bound count the trimmed tokens.
  greedy, ffd = s.packing
  assert (greedy.packer, ffd.packer) == ("greedy", "ffd")
  assert greedy.bound == ffd.bound == packing.lower_bound_rows(
      {"inputs": int(np.minimum(ins, 24).sum()),
       "targets": int(sum(min(len(e["targets"]), 8) for e in examples))}, {"inputs": 24, "targets": 8})
  assert ffd.bound <= ffd.rows <= greedy.rows
  assert 0 < ffd.fill["targets"] <= 1 and ffd.fill["targets"] >= greedy.fill["targets"]
  text = stats_lib.format_stats(s)
  for needle in ("m: 400 examples", "75.00%", f"greedy  {greedy.rows:8,} rows vs bound {greedy.bound:,}",
                 "skipped rows: 0"):
    assert needle in text
  d = stats_lib.to_json(s)
  assert d["percentiles"]["targets"]["p100"] == s.percentiles["targets"][100]
  assert d["packing"][1]["overhead"] == pytest.approx(ffd.rows / ffd.bound - 1)


def test_skipped_rows_and_dropped_queries_are_shown():
  s = stats_lib.summarize("t", {"t": 1.0}, _examples(5), {"inputs": 8, "targets": 8},
                          skipped_rows={"flan/cot/x_train.tsv": 2}, dropped_queries={"t_five_shot": 3})
  text = stats_lib.format_stats(s)
  assert "skipped rows: 2\n  flan/cot/x_train.tsv: 2" in text
  assert "few-shot queries dropped for lack of exemplars: 3" in text
  assert "left out by FLAN's own filters" not in text  # shown only when there are any
  s.filtered_rows = {"gigaword": 4, "qrecc": 1}
  text = stats_lib.format_stats(s)
  assert "rows left out by FLAN's own filters: 5\n  gigaword: 4\n  qrecc: 1" in text
  assert stats_lib.to_json(s)["filtered_rows"] == {"gigaword": 4, "qrecc": 1}


def test_rate_shares_of_a_mixture():
  vocab = seqio.PassThroughVocabulary(size=10)
  fn = lambda split, shuffle_files, seed=None: tf.data.Dataset.from_tensors({"targets": [1]})
  for name in ("stats_t1", "stats_t2"):
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(name, source=seqio.FunctionDataSource(fn, splits=["train"]),
                           output_features={"targets": seqio.Feature(vocab)})
  seqio.MixtureRegistry.remove("stats_mix")
  seqio.MixtureRegistry.add("stats_mix", [("stats_t1", 1), ("stats_t2", 3)])
  try:
    assert stats_lib.rate_shares(seqio.get_mixture_or_task("stats_mix")) == {"stats_t1": 0.25, "stats_t2": 0.75}
    assert stats_lib.rate_shares(seqio.get_mixture_or_task("stats_t1")) == {"stats_t1": 1.0}
  finally:
    seqio.MixtureRegistry.remove("stats_mix")
    for name in ("stats_t1", "stats_t2"):
      seqio.TaskRegistry.remove(name)


@pytest.mark.parametrize("spec, want", [("2048/512", {"inputs": 2048, "targets": 512}),
                                        ("inputs=64,targets=16", {"inputs": 64, "targets": 16})])
def test_parse_lengths(spec, want):
  assert stats_lib.parse_lengths(spec) == want


@pytest.mark.parametrize("spec", ["2048", "a/b", "2048/0", "inputs=x"])
def test_bad_lengths_are_named(spec):
  with pytest.raises(ValueError, match=f"--lengths '{spec}'"):
    stats_lib.parse_lengths(spec)


def test_examples_over_half_a_row_bound_the_rows_too():
  # Inputs of 40 in rows of 64: no two share a row, whatever the token sums say.
  examples = [{"inputs": [5] * 40, "targets": [5]} for _ in range(10)]
  s = stats_lib.summarize("big", {"big": 1.0}, examples, {"inputs": 64, "targets": 16})
  assert s.over_half_row == 10 and s.packing[0].bound == 7
  assert all(p.rows >= 10 for p in s.packing)
  assert "10 examples exceed half a row" in stats_lib.format_stats(s)
