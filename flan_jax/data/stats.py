"""What a task or mixture holds: its tasks and rate shares, token-length percentiles, and how well it packs.

Streams the first `n` tokenized examples of the task or mixture (untrimmed, so truncation is visible) and keeps only
their lengths and task names. Packing is measured at the given lengths for seqio's greedy packer and our FFD packer
against the bound max over features of ceil(sum of tokens / row length); no packer can do better than the bound.
"""
from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from flan_jax.data.pipeline import packing

if TYPE_CHECKING:  # the rest of this module runs without TensorFlow
  import seqio

PERCENTILES = (50, 90, 95, 99, 100)
FEATURES = ("inputs", "targets")


@dataclasses.dataclass
class PackingStats:
  packer: str
  rows: int
  bound: int
  fill: dict[str, float]  # share of each feature's row positions holding tokens

  @property
  def overhead(self) -> float:
    """Rows beyond the bound, as a share of the bound."""
    return self.rows / self.bound - 1 if self.bound else 0.0


@dataclasses.dataclass
class DataStats:
  name: str
  rates: dict[str, float]  # task -> share of the mixture (1.0 for a task)
  examples: int
  examples_per_task: dict[str, int]
  percentiles: dict[str, dict[int, int]]  # feature -> percentile -> tokens
  token_sums: dict[str, int]
  truncated: dict[str, int]  # feature -> examples longer than the row length
  lengths: dict[str, int]
  packing: list[PackingStats]
  skipped_rows: dict[str, int]  # data file -> rows skipped by its reader (warned on stderr)
  dropped_queries: dict[str, int]  # task -> few-shot queries left with no exemplar
  filtered_rows: dict[str, int] = dataclasses.field(default_factory=dict)  # dataset -> rows FLAN's filter drops
  over_half_row: int = 0  # examples longer than half a row in some feature: rows >= this too
  left_out: list[str] = dataclasses.field(default_factory=list)  # mixture tasks whose data is not in the data dir


def rate_shares(task_or_mixture: seqio.Task | seqio.Mixture) -> dict[str, float]:
  """Each leaf task's share of the sampling rate (nested mixtures are flattened)."""
  import seqio  # pylint: disable=import-outside-toplevel,redefined-outer-name
  if isinstance(task_or_mixture, seqio.Task):
    return {task_or_mixture.name: 1.0}
  rates = {t.name: float(task_or_mixture.get_rate(t)) for t in task_or_mixture.tasks}
  total = sum(rates.values())
  return {k: v / total if total else 0.0 for k, v in rates.items()}


def packing_stats(sizes: np.ndarray, lengths: Mapping[str, int],
                  block_size: int = packing.DEFAULT_BLOCK_SIZE) -> list[PackingStats]:
  """Greedy (seqio) and FFD row counts for examples of `sizes` [n, features] (untrimmed) at `lengths`."""
  lengths = packing.check_lengths(lengths)
  cap = np.array(list(lengths.values()), np.int64)
  trimmed = np.minimum(np.asarray(sizes, np.int64).reshape(-1, len(cap)), cap)
  sums = dict(zip(lengths, trimmed.sum(axis=0).tolist()))
  bound = packing.lower_bound_rows(sums, lengths)
  out = []
  for name, rows in (("greedy", packing.greedy_row_count(trimmed, list(cap))),
                     ("ffd", packing.ffd_row_count(trimmed, list(cap), block_size))):
    fill = {k: sums[k] / (rows * lengths[k]) if rows else 0.0 for k in lengths}
    out.append(PackingStats(name, rows, bound, fill))
  return out


def summarize(name: str, rates: Mapping[str, float], examples: Iterable[Mapping[str, object]],
              lengths: Mapping[str, int], block_size: int = packing.DEFAULT_BLOCK_SIZE,
              skipped_rows: Mapping[str, int] | None = None,
              dropped_queries: Mapping[str, int] | None = None) -> DataStats:
  """Stats over tokenized examples (each with `inputs`, `targets` token ids and `_task_name` where mixed)."""
  lengths = packing.check_lengths(lengths)
  feats = [k for k in FEATURES if k in lengths]
  sizes: list[list[int]] = []
  per_task: collections.Counter[str] = collections.Counter()
  for ex in examples:
    sizes.append([len(ex[k]) for k in feats])
    task = ex.get("_task_name", name)
    per_task[task.decode() if isinstance(task, bytes) else str(task)] += 1
  arr = np.array(sizes, np.int64).reshape(-1, len(feats))
  percentiles = {k: {p: int(np.percentile(arr[:, i], p)) if len(arr) else 0 for p in PERCENTILES}
                 for i, k in enumerate(feats)}
  return DataStats(
      name=name, rates=dict(rates), examples=len(arr), examples_per_task=dict(per_task),
      percentiles=percentiles, token_sums={k: int(arr[:, i].sum()) for i, k in enumerate(feats)},
      truncated={k: int((arr[:, i] > lengths[k]).sum()) for i, k in enumerate(feats)},
      lengths={k: lengths[k] for k in feats},
      packing=packing_stats(arr, {k: lengths[k] for k in feats}, block_size) if len(arr) else [],
      over_half_row=packing.over_half_row(arr, [lengths[k] for k in feats]),
      skipped_rows=dict(skipped_rows or {}), dropped_queries=dict(dropped_queries or {}))


def format_stats(stats: DataStats) -> str:
  lines = [f"{stats.name}: {stats.examples} examples"]
  lines.append(f"tasks ({len(stats.rates)}), share of the mixing rate:")
  for task, share in sorted(stats.rates.items(), key=lambda kv: (-kv[1], kv[0])):
    lines.append(f"  {task:<64} {share:7.2%}")
  if stats.left_out:
    lines.append(f"tasks left out, their data is not in the data dir ({len(stats.left_out)}): " +
                 ", ".join(stats.left_out))
  lines.append("examples read per _task_name:")
  for task, got in sorted(stats.examples_per_task.items(), key=lambda kv: (-kv[1], kv[0])):
    lines.append(f"  {task:<64} {got:7,} {got / stats.examples:7.2%}")
  lines.append("token lengths (percentiles " + ", ".join(f"p{p}" for p in PERCENTILES[:-1]) + ", max):")
  for k, pct in stats.percentiles.items():
    lines.append(f"  {k:<8} " + " ".join(f"{v:6d}" for v in pct.values()) +
                 f"   sum {stats.token_sums[k]:,}, {stats.truncated[k]} longer than {stats.lengths[k]}")
  if stats.packing:
    at = "/".join(str(v) for v in stats.lengths.values())
    lines.append(f"packing at {at} (bound = max over features of sum of tokens / row length):")
    for p in stats.packing:
      fill = ", ".join(f"{k} {v:.1%} full" for k, v in p.fill.items())
      lines.append(f"  {p.packer:<7} {p.rows:8,} rows vs bound {p.bound:,} ({p.overhead:+.1%}; {fill})")
    lines.append(f"  {stats.over_half_row:,} examples exceed half a row, so no packer needs fewer than "
                 f"{stats.over_half_row:,} rows either")
  lines.append(left_out_lines(stats.skipped_rows, stats.dropped_queries, stats.filtered_rows))
  return "\n".join(lines)


def left_out_lines(skipped_rows: Mapping[str, int], dropped_queries: Mapping[str, int],
                   filtered_rows: Mapping[str, int]) -> str:
  """What the readers left out: malformed rows (always shown), few-shot queries without exemplars, and rows
  FLAN's own filters drop (these two when there are any)."""
  lines = [f"skipped rows: {sum(skipped_rows.values())}"]
  lines += [f"  {path}: {n}" for path, n in sorted(skipped_rows.items())]
  for title, counts in (("few-shot queries dropped for lack of exemplars", dropped_queries),
                        ("rows left out by FLAN's own filters", filtered_rows)):
    if counts:
      lines.append(f"{title}: {sum(counts.values())}")
      lines += [f"  {name}: {n}" for name, n in sorted(counts.items())]
  return "\n".join(lines)


def to_json(stats: DataStats) -> dict:
  d = dataclasses.asdict(stats)
  d["percentiles"] = {k: {f"p{p}": v for p, v in pct.items()} for k, pct in stats.percentiles.items()}
  for p, entry in zip(stats.packing, d["packing"]):
    entry["overhead"] = p.overhead
  return d


def parse_lengths(spec: str, keys: Sequence[str] = FEATURES) -> dict[str, int]:
  """'2048/512' or 'inputs=2048,targets=512' -> {'inputs': 2048, 'targets': 512}."""
  try:
    if "=" in spec:
      out = {k.strip(): int(v) for k, v in (part.split("=", 1) for part in spec.split(","))}
    else:
      values = [int(v) for v in spec.split("/")]
      if len(values) != len(keys):
        raise ValueError
      out = dict(zip(keys, values))
  except ValueError:
    raise ValueError(f"--lengths {spec!r}: give INPUTS/TARGETS (e.g. 2048/512) or inputs=2048,targets=512") from None
  return packing.check_lengths(out, what=f"--lengths {spec!r}")
