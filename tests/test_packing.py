"""FFD packing: row layout, the row bound on hand-built streams, determinism, exact resume, and seqio's greedy count."""
from __future__ import annotations

import numpy as np
import pytest

from flan_jax.data.pipeline import packing
from tests.batch_checks import assert_batches_equal

LENGTHS = {"inputs": 256, "targets": 64}


def _stream(n: int, seed: int, in_scale: float = 6.0, tgt_scale: float = 6.0) -> list[dict[str, np.ndarray]]:
  """Inputs fill ~25% and targets most of a row, the Flan CoT shape (long rationales in the targets)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    li = int(min(LENGTHS["inputs"], 1 + rng.exponential(in_scale)))
    lt = int(min(LENGTHS["targets"], 1 + rng.exponential(tgt_scale)))
    out.append({"inputs": rng.integers(2, 1000, li).astype(np.int32),
                "targets": rng.integers(2, 1000, lt).astype(np.int32)})
  return out


def _segments(rows: dict[str, np.ndarray], key: str) -> list[tuple[int, ...]]:
  """Every example's tokens of `key`, read back from packed rows through segment ids and positions."""
  out = []
  for r in range(len(rows[key])):
    seg = rows[f"{key}_segment_ids"][r]
    for s in range(1, int(seg.max()) + 1):
      mask = seg == s
      np.testing.assert_array_equal(rows[f"{key}_positions"][r][mask], np.arange(mask.sum()))
      out.append(tuple(rows[key][r][mask].tolist()))
  return out


def test_pack_block_keeps_every_example_once_within_lengths():
  examples = _stream(300, seed=1)
  rows = packing.pack_block(examples, LENGTHS)
  for k, length in LENGTHS.items():
    assert rows[k].shape[1] == length and rows[k].dtype == np.int32
    # Padding has segment id 0 and token 0; every non-padding position belongs to a segment.
    np.testing.assert_array_equal(rows[k] != 0, rows[f"{k}_segment_ids"] != 0)
  # The i-th segment of a row is the same example in inputs and targets.
  pairs = sorted(zip(_segments(rows, "inputs"), _segments(rows, "targets")))
  expected = sorted((tuple(e["inputs"].tolist()), tuple(e["targets"].tolist())) for e in examples)
  assert pairs == expected


def test_rows_keep_stream_order_inside_and_across_rows():
  examples = [{"inputs": np.full(3, i + 2, np.int32), "targets": np.full(2, i + 2, np.int32)} for i in range(40)]
  rows = packing.pack_block(examples, {"inputs": 16, "targets": 8})
  firsts = [int(r[0]) for r in rows["inputs"]]
  assert firsts == sorted(firsts) and firsts[0] == 2
  for r in rows["inputs"]:
    ids = [t for t in r.tolist() if t]
    assert ids == sorted(ids)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ffd_within_two_percent_of_bound_where_greedy_is_not(seed):
  examples = _stream(4000, seed=seed)
  sizes = np.array([[len(e["inputs"]), len(e["targets"])] for e in examples])
  bound = packing.lower_bound_rows({"inputs": sizes[:, 0].sum(), "targets": sizes[:, 1].sum()}, LENGTHS)
  ffd = packing.ffd_row_count(sizes, list(LENGTHS.values()), block_size=2048)
  greedy = packing.greedy_row_count(sizes, list(LENGTHS.values()))
  assert bound <= ffd <= 1.02 * bound
  assert greedy > 1.05 * bound
  rows = packing.pack_block(examples[:2048], LENGTHS)
  assert len(rows["inputs"]) == packing.ffd_row_count(sizes[:2048], list(LENGTHS.values()), block_size=2048)


def _mixed_sizes(n: int, seed: int) -> np.ndarray:
  """Like a mixed zero-/few-shot stream: a few long inputs with short targets (few-shot), short inputs with long
  targets (zero-shot CoT), and small examples of both."""
  rng = np.random.default_rng(seed)
  few = np.stack([rng.integers(600, 1000, n), rng.integers(4, 30, n)], axis=1)
  zero = np.stack([rng.integers(60, 200, n), rng.integers(80, 220, n)], axis=1)
  small = np.stack([rng.integers(10, 300, n), rng.integers(4, 60, n)], axis=1)
  draw = rng.random([n, 1])
  return np.where(draw < 0.1, few, np.where(draw < 0.3, zero, small))


@pytest.mark.parametrize("seed", [0, 1])
def test_fill_packs_mixed_streams_where_ffd_leaves_rows_half_used(seed):
  sizes, cap = _mixed_sizes(3000, seed), [2048, 512]
  bound = packing.lower_bound_rows({"inputs": sizes[:, 0].sum(), "targets": sizes[:, 1].sum()},
                                   {"inputs": 2048, "targets": 512})
  ffd = packing.ffd_assign(sizes, cap).max() + 1
  row_of = packing.fill_assign(sizes, cap)
  assert ffd > 1.08 * bound
  assert row_of.max() + 1 <= 1.03 * bound
  for x, length in enumerate(cap):  # every row within its lengths, every example in exactly one row
    assert np.bincount(row_of, sizes[:, x]).max() <= length
  first_of_row = np.full(row_of.max() + 1, len(row_of))
  np.minimum.at(first_of_row, row_of, np.arange(len(row_of)))
  assert np.all(np.diff(first_of_row) > 0)  # rows in stream order
  np.testing.assert_array_equal(packing.fit_assign(sizes, cap), row_of)  # the packer keeps the tighter one


def test_ffd_reaches_the_bound_on_a_perfectly_packable_stream():
  # Sizes that divide each other and sum to 16 per group: FFD is optimal on such (divisible) sizes.
  sizes = np.array([[1, t] for t in [8, 4, 2, 1, 1] * 50])
  rng = np.random.default_rng(0)
  rng.shuffle(sizes)
  assert packing.ffd_row_count(sizes, [64, 16], block_size=1000) == 50


def test_two_dimensional_fit_respects_the_inputs_too():
  # Targets alone would fit 8 per row; inputs allow only 2.
  sizes = np.array([[30, 2]] * 8)
  assert packing.ffd_row_count(sizes, [64, 16]) == 4
  assert packing.lower_bound_rows({"inputs": 240, "targets": 16}, {"inputs": 64, "targets": 16}) == 4


def test_packing_is_deterministic():
  examples = _stream(500, seed=3)
  a = packing.pack_block(examples, LENGTHS)
  assert_batches_equal([packing.pack_block([dict(e) for e in examples], LENGTHS)], [a])


def test_greedy_count_is_next_fit_with_a_flush_per_batch():
  # Next fit: [10,6] fits, 4 does not (20 > 16) -> new row; a batch of max(lengths)=16 examples flushes the row.
  assert packing.greedy_row_count(np.array([[1, 10], [1, 6], [1, 4], [1, 12]]), [16, 16]) == 2
  assert packing.greedy_row_count(np.array([[1, 1]] * 17), [16, 16]) == 2
  # Oversized examples are trimmed first, as seqio does.
  assert packing.greedy_row_count(np.array([[1, 40], [1, 1]]), [16, 16]) == 2


def test_bad_lengths_and_oversized_examples_are_named():
  with pytest.raises(ValueError, match=r"\{'inputs': 0, 'targets': 4\}"):
    packing.check_lengths({"inputs": 0, "targets": 4})
  with pytest.raises(ValueError, match=r"exceeds the row lengths \[4, 4\]"):
    packing.ffd_assign(np.array([[5, 1]]), [4, 4])


def test_over_half_row_counts_examples_that_cannot_share():
  sizes = np.array([[33, 1], [32, 1], [1, 9], [100, 100]])
  assert packing.over_half_row(sizes, [64, 16]) == 3  # the last one counts once it is trimmed to the row
