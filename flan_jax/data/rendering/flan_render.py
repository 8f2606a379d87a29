"""Example i of a Flan task variant, rendered by a pure function of (task, variant, seed, i).

A task's rows are read once per process (`rows_of`) and kept compactly, or mapped from a file the input's parent
process wrote (`share_rows`), so any example can be rendered on its own. Its example stream is epoch after epoch of
`num_examples()` examples; example g is position p of epoch g // n:
- positions are source order grouped by the variant's templates: row p gets template p % T, and a trailing partial
  group is dropped, as FLAN's batch-apply-template does;
- with `shuffle`, epoch e visits the positions in a permutation seeded by (seed, task, e); without, in source order
  (so a zero-shot variant read in order renders as FLAN does);
- a few-shot query at position p draws its `num_shots` exemplar positions (never p itself) from a generator seeded
  by (seed, task, e, p), each with a template drawn by the same generator (upstream templates its shuffled
  exemplar stream round-robin, which draws a row's template in effect), and FLAN's same-template filter and 1,920-token
  pruning then pick the shots. A query left with no exemplar renders to None (FLAN drops it; counted in
  `registry.dropped_queries`).

`render` reads a shard of one epoch in order (seqio sources, `flan-jax data show`, tests); the training input reads
single examples (`pipeline.sources`). This module imports neither seqio nor TensorFlow.
"""
from __future__ import annotations

import collections
import gc
import random
import threading
import zlib
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from flan_jax import host_memory
from flan_jax.data.catalog import registry
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import row_store
from flan_jax.data.files import tfds_source
from flan_jax.data.rendering import fewshot
from flan_jax.data.rendering import templates as tpl

ROWS_BUDGET = 1 << 30  # bytes of rows (pickled, `row_store.RowStore`) kept per process; least recently used go first
TOKEN_COUNT_MEMO = 200_000  # (row, template) token counts kept per task
Dirs = tuple[str, str]


class _RowsCache:
  """Each dataset's rows, parsed once into a compact store and kept while the budget allows (re-read when evicted:
  same rows); rows mapped from a shared file (`use_shared_rows`) are kept outside the budget (their pages are
  shared)."""

  def __init__(self, budget: int):
    self.budget = budget
    self._rows: collections.OrderedDict[tuple, row_store.RowStore] = collections.OrderedDict()
    self._shared: dict[tuple, row_store.RowStore] = {}
    self._held = 0
    self._lock = threading.Lock()

  def get(self, dataset: registry.FlanDataset, dirs: Dirs, keep: bool = True) -> row_store.RowStore:
    # Other data dirs hold other rows; a dataset registered anew (new row readers) may read others too.
    key = (dirs, dataset)
    with self._lock:
      if key in self._shared:
        return self._shared[key]
      if key in self._rows:
        self._rows.move_to_end(key)
        return self._rows[key]
    dataset.check_available()  # fails here, naming the download command
    rows = row_store.RowStore.of(dataset.rows())
    if not keep:
      return rows
    with self._lock:
      self._rows[key] = rows
      self._held += rows.nbytes
      while self._held > self.budget and len(self._rows) > 1:
        _, evicted = self._rows.popitem(last=False)
        self._held -= evicted.nbytes
    return rows

  def share(self, dataset: registry.FlanDataset, dirs: Dirs, rows: row_store.RowStore) -> None:
    with self._lock:
      self._shared[(dirs, dataset)] = rows

  def clear(self) -> None:
    with self._lock:
      self._rows.clear()
      self._shared.clear()
      self._held = 0


_rows_cache = _RowsCache(ROWS_BUDGET)


def release_rows() -> None:
  """Drops the rows this process holds (read again when next asked), and hands the memory they took back to the
  system: glibc keeps freed heap pages otherwise, and rows are parsed into many small objects."""
  _rows_cache.clear()
  gc.collect()
  host_memory.trim()


def share_rows(datasets: Iterable[registry.FlanDataset]) -> row_store.SharedRows:
  """Writes the rows of `datasets` to a file that other processes map (`use_shared_rows`); rows read here for it are
  not kept."""
  dirs = data_dirs()
  return row_store.SharedRows.write(_rows_cache.get(d, dirs, keep=False) for d in datasets)


def use_shared_rows(ref: row_store.SharedRowsRef, datasets: Sequence[registry.FlanDataset], dirs: Dirs) -> None:
  """Reads the rows of `datasets` (as given to `share_rows`, in order) from the shared file, never from the data."""
  stores = row_store.SharedRows.open(ref)
  if len(stores) != len(datasets):
    raise ValueError(f"{ref.path}: {len(stores)} datasets' rows, expected {len(datasets)}")
  for dataset, rows in zip(datasets, stores):
    _rows_cache.share(dataset, dirs, rows)


def data_dirs() -> Dirs:
  """The data dir and the TFDS data dir in force (resolving them costs more than a cached lookup of rows)."""
  return str(data_dir_lib.data_dir()), str(tfds_source.tfds_data_dir())


def rows_of(dataset: registry.FlanDataset, dirs: Dirs | None = None) -> row_store.RowStore:
  """(row id, features) of every row the dataset's reader keeps, in source order, from `dirs` (default: those in
  force)."""
  return _rows_cache.get(dataset, dirs or data_dirs())


class EpochOrder:
  """The position epoch e visits i-th: a permutation seeded by (seed, task, e), kept for the epoch in use, or the
  identity without shuffle. Every task kind (Flan, token, seqio) orders its epochs by it."""

  def __init__(self, task: str, seed: int | str, shuffle: bool, n: int):
    self._words = [zlib.crc32(str(seed).encode()), zlib.crc32(task.encode())]
    self._shuffle, self._n = shuffle, n
    self._order: tuple[int, np.ndarray] | None = None

  def __call__(self, epoch: int, i: int) -> int:
    if not self._shuffle:
      return i
    if self._order is None or self._order[0] != epoch:
      order = np.random.default_rng(self._words + [epoch]).permutation(self._n)
      self._order = (epoch, order.astype(np.int32) if self._n < 2**31 else order)
    return int(self._order[1][i])


class FlanExamples:
  """Random access to one task variant's examples (see the module doc)."""

  def __init__(self, dataset: registry.FlanDataset, variant: registry.Variant, task: str, seed: int = 0,
               shuffle: bool = False):
    self.dataset, self.variant, self.task, self.seed, self.shuffle = dataset, variant, task, seed, shuffle
    self._templates = tpl.load_templates()
    self._constants = dict(dataset.constants()) if dataset.constants else {}
    self._meta = {"_task_name": dataset.task_name, "_task_source": dataset.task_source,
                  "_template_type": variant.template_type}
    self._token_counts: dict = {}
    self._dirs = data_dirs()  # the dirs at construction: examples read the same rows however often asked
    rows = self._rows()
    t = len(variant.patterns)
    self.n = len(rows) // t * t
    self._order = EpochOrder(task, seed, shuffle, self.n)

  @classmethod
  def of(cls, task: registry.FlanTask, seed: int = 0, shuffle: bool = False) -> FlanExamples:
    return cls(task.dataset, task.variant, task.name, seed, shuffle)

  def num_examples(self) -> int:
    """Examples per epoch (before few-shot queries without exemplars are dropped)."""
    return self.n

  def position(self, epoch: int, i: int) -> int:
    """The source position epoch `epoch` visits `i`-th."""
    return self._order(epoch, i)

  def example(self, g: int) -> dict[str, Any] | None:
    """Example `g` of the task's stream: {"inputs", "targets", "_template_idx", "_task_name", ...}, or None for a
    few-shot query FLAN drops."""
    if not self.n:
      raise ValueError(f"task {self.task} has no examples ({len(self._rows())} rows, "
                       f"{len(self.variant.patterns)} templates a group)")
    epoch, i = divmod(g, self.n)
    p = self.position(epoch, i)
    idx = p % len(self.variant.patterns)
    row_id, features = self._rows()[p]
    features = self._features(features, f"{self.seed}:{self.task}:{p}")
    inputs = tpl.fill(self.variant.patterns[idx][0], features)
    targets = tpl.fill(self.variant.patterns[idx][1], features)
    cfg = self.variant.few_shot
    if cfg is not None:
      query = inputs + cfg.x_y_delimiter
      kept = fewshot.select(query, idx, self.exemplars(epoch, p, idx), cfg,
                            query_key=None if self.variant.random_options else (row_id, idx),
                            cache=self._counts())
      if not kept:
        registry.dropped_queries.add(self.task)
        return None
      inputs, targets = fewshot.assemble(query, targets, kept, features, cfg)
    return {"inputs": inputs, "targets": targets, "_template_idx": idx, **self._meta}

  def exemplars(self, epoch: int, p: int, query_template: int) -> list[fewshot.Exemplar]:
    """The candidate exemplars of the query at position `p` of `epoch`, in draw order; with the same-template
    filter only those of `query_template` are rendered."""
    cfg = self.variant.few_shot
    # random.Random.sample draws k of n in O(k); numpy's choice without replacement permutes all n.
    rng = random.Random(f"exemplars:{self.seed}:{self.task}:{epoch}:{p}")
    others = self.n - 1
    drawn = rng.sample(range(others), min(others, cfg.num_shots))
    # Fewer other rows than shots: they repeat, as in upstream's exemplar stream, which cycles the split.
    drawn += [rng.randrange(others) for _ in range(cfg.num_shots - len(drawn))] if others else []
    t = len(self.variant.patterns)
    rows = self._rows()
    out = []
    for q in drawn:
      q += q >= p  # skip the query's own row
      # Upstream templates its shuffled exemplar stream round-robin, so a row's template is in effect drawn too.
      idx = rng.randrange(t)
      if cfg.prune_by_template and idx != query_template:
        continue
      row_id, features = rows[q]
      f = self._features(features, f"ex:{self.seed}:{epoch}:{q}")
      inputs, targets = self.variant.patterns[idx]
      # Random options make the text depend on the draw, so such exemplars are not cached by row.
      key = None if self.variant.random_options else (row_id, idx)
      out.append(fewshot.Exemplar(tpl.fill(inputs, f) + cfg.x_y_delimiter, tpl.fill(targets, f), idx, key))
    return out

  def _rows(self) -> row_store.RowStore:
    return rows_of(self.dataset, self._dirs)

  def _features(self, features: dict, options_key: str) -> dict:
    if self._constants:
      features = {**self._constants, **features}
    return registry.with_options(features, self.dataset, self.variant.random_options, options_key, self._templates)

  def _counts(self) -> dict:
    if len(self._token_counts) > TOKEN_COUNT_MEMO:
      self._token_counts.clear()
    return self._token_counts


def render(dataset: registry.FlanDataset, variant: registry.Variant, task: str, seed: int = 0, shard_index: int = 0,
           num_shards: int = 1, shuffle: bool = False, epoch: int = 0) -> Iterator[dict[str, Any]]:
  """One epoch of a task variant's examples: positions k, k + n, ... of the epoch's order for shard k of n (before
  few-shot dropping, so shards stay disjoint and covering); see the module doc for the order."""
  examples = FlanExamples(dataset, variant, task, seed, shuffle)
  for i in range(shard_index, examples.num_examples(), num_shards):
    ex = examples.example(epoch * examples.num_examples() + i)
    if ex is not None:
      yield ex
