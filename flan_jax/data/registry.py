"""Declaring a Flan dataset once and registering it as a task in every FLAN variant.

A `FlanDataset` says where rows come from (a generator of feature dicts), which templates.json key formats
them, and the `_task_name` / `_task_source` it carries. `flan_variants` / `niv2_variants` list the variants
FLAN registers (zero-shot with and without options, few-shot template_0/1/2, mix and 0to10), and
`register_variants` adds one `FlanTask` per variant to `TASKS` and tells the catalog's mirrors (`MIRRORS`: seqio's
registries once `seqio_tasks` is imported, as `import tasks` does unless $FLAN_JAX_SEQIO is 0). Rendering (`render`) is plain Python: this module imports neither seqio nor TensorFlow, so a
process that only renders (the data benchmark, an input process) stays small. Sharding happens at the source,
before any rendering.

Muffin / T0-SF / Dialog reuse this: build a `FlanDataset` whose `rows` yields the fields the templates
read (for multiple-choice tasks: `options` list + `answer`, with `has_options=True`).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import os
import random
import threading
from typing import Any, Callable, Iterator, Mapping, Sequence

from flan_jax.data import data_dir as data_dir_lib
from flan_jax.data import fewshot
from flan_jax.data import templates as tpl

Rows = Iterator[tuple[int, dict[str, Any]]]
X_SHOT_CANDIDATES = 25


@dataclasses.dataclass(frozen=True)
class FlanDataset:
  """One source dataset of the Flan collection.

  rows: a fresh iterator of (line number or index, features) in source order; malformed rows are
    skipped (warned and counted) by the reader.
  num_rows: the number of rows `rows` yields, computed cheaply (no rendering).
  check_available: raises DataMissingError (with the download command) if the data is absent.
  constants: features added to every row (e.g. the NIv2 definition and positive example).
  """
  name: str
  pattern_key: str
  task_name: str
  task_source: str
  rows: Callable[[], Rows]
  num_rows: Callable[[], int]
  check_available: Callable[[], None]
  has_options: bool = False
  constants: Callable[[], Mapping[str, str]] | None = None


@dataclasses.dataclass(frozen=True)
class Variant:
  """How one registered task renders its dataset.

  patterns: applied round-robin over consecutive rows (groups of len(patterns), remainder dropped).
  few_shot: set for few-shot tasks; None for zero-shot and for the formatted bases of few-shot tasks.
  count_key: which `num_cases.json` column upstream reports for this variant.
  """
  suffix: str
  patterns: tuple[tuple[str, str], ...]
  template_type: str
  random_options: bool = False
  few_shot: fewshot.FewShotConfig | None = None
  count_key: str = "zero_shot"


def flan_variants(key: str, has_options: bool, task: str,
                  templates: tpl.Templates | None = None) -> list[Variant]:
  """FLAN's variants of a non-NIv2 task (23 for a task without options, 24 with)."""
  t = templates or tpl.load_templates()
  zs = tuple(t.zero_shot(key, options=True))
  out = [
      Variant("_template_0_zero_shot", zs[:1], tpl.ZS_OPT),
      Variant("_template_0to10_zero_shot", zs, tpl.ZS_OPT),
      Variant("_template_0to10_no_opt_zero_shot", tuple(t.zero_shot(key, options=False)), tpl.ZS_NOOPT),
  ]
  if has_options:
    out.append(Variant("_template_0to10_non_deter_opt_zero_shot", zs, tpl.ZS_OPT, random_options=True))
  for options, opt_name, ttype in ((True, "", tpl.FS_OPT), (False, "_no_opt", tpl.FS_NOOPT)):
    table = t.fewshot_patterns if options else t.fewshot_patterns_no_options
    if key not in table:
      continue
    pats = table[key]
    # template_0 is usually the plainest, so it gets the most shots.
    for i, shots, shot_name in ((0, 5, "five"), (1, 2, "two"), (2, 1, "one")):
      p = pats[i]
      base = Variant(f"_template_{i}{opt_name}", ((p.inputs, p.targets),), ttype, count_key="five_shot")
      cfg = fewshot.FewShotConfig(
          num_shots=shots, x_y_delimiter=p.x_y_delimiter, inputs_prefix=p.inputs_prefix,
          targets_prefix=p.targets_prefix, example_separator=p.example_separator,
          query_pattern=p.query_pattern)
      out += [base, dataclasses.replace(base, suffix=f"{base.suffix}_{shot_name}_shot", few_shot=cfg)]
    mix = tuple((p.combined_inputs_w_target_prefix, p.targets) for p in pats if p.in_template_mix)
    if mix:
      base = Variant(f"_template_mix{opt_name}", mix, ttype, count_key="five_shot")
      cfg = fewshot.FewShotConfig(
          num_shots=5, x_y_delimiter="", example_separator=fewshot.choose_mix_separator(
              f"{task}{base.suffix}_five_shot"),
          query_pattern=pats[1].query_pattern)  # upstream always takes template 1's suffix/pattern
      out += [base, dataclasses.replace(base, suffix=f"{base.suffix}_five_shot", few_shot=cfg)]
    every = tuple((p.combined_inputs_w_target_prefix, p.combined_targets_wo_target_prefix) for p in pats)
    base = Variant(f"_template_0to10{opt_name}", every, ttype, count_key="x_shot")
    out += [base, dataclasses.replace(base, suffix=f"{base.suffix}_x_shot", few_shot=_x_shot_config())]
  return out


def _x_shot_config(query_pattern: str = "{inputs}") -> fewshot.FewShotConfig:
  return fewshot.FewShotConfig(num_shots=X_SHOT_CANDIDATES, x_y_delimiter="", example_separator="",
                               query_pattern=query_pattern, prune_by_template=True,
                               strip_targets=True)


def niv2_variants(key: str = "natinst_v2", templates: tpl.Templates | None = None) -> list[Variant]:
  """FLAN's variants of a NIv2 task: zero-shot, the inline one-shot `mix_five_shot`, and x_shot."""
  t = templates or tpl.load_templates()
  zs = tuple(t.zero_shot(key, options=True))
  inline = tuple(t.inline(key))
  pats = t.few_shot(key, options=True)
  every = tuple((p.combined_inputs_w_target_prefix, p.combined_targets_wo_target_prefix) for p in pats)
  x_cfg = _x_shot_config(pats[0].query_pattern)  # upstream always takes template 0's pattern
  return [
      Variant("_template_0_zero_shot", zs[:1], tpl.ZS_OPT),
      Variant("_template_0to10_zero_shot", zs, tpl.ZS_OPT),
      Variant("_template_0to10_no_opt_zero_shot", tuple(t.zero_shot(key, options=False)), tpl.ZS_NOOPT),
      # Not five-shot: the definition plus one positive example inline; named to match the others.
      Variant("_template_mix_five_shot", inline, tpl.FS_OPT, count_key="five_shot"),
      Variant("_template_mix_no_opt_five_shot", inline, tpl.FS_NOOPT, count_key="five_shot"),
      Variant("_template_0to10", every, tpl.FS_OPT, count_key="x_shot"),
      Variant("_template_0to10_x_shot", every, tpl.FS_OPT, few_shot=x_cfg, count_key="x_shot"),
      Variant("_template_0to10_no_opt_x_shot", every, tpl.FS_NOOPT, few_shot=x_cfg,
              count_key="x_shot"),
  ]


# --------------------------------------------------------------------------------------------------
# Rendering.

def _with_options(features: dict, dataset: FlanDataset, random_options: bool, rng_key: str,
                  templates: tpl.Templates) -> dict:
  if not dataset.has_options:
    return features
  features = dict(features)
  if random_options:
    features["options_"], features["answer"] = tpl.format_options_random(
        features["options"], features["answer"], templates, random.Random(rng_key))
  else:
    features["options_"] = tpl.format_options(features["options"])
  return features


def _grouped(rows: Rows, n_templates: int) -> Iterator[tuple[int, int, int, dict]]:
  """(position, template index, row id, features): row i of each group of n gets template i; a
  trailing partial group is dropped, as FLAN's batch-apply-template does."""
  pos = 0
  while True:
    group = list(itertools.islice(rows, n_templates))
    if len(group) < n_templates:
      return
    for i, (row_id, features) in enumerate(group):
      yield pos, i, row_id, features
      pos += 1


class TaskCounter:
  """Rows or queries a task leaves out by FLAN's own policy, per task: not errors, so counted, not warned."""

  def __init__(self):
    self.counts: collections.Counter[str] = collections.Counter()

  def add(self, task: str) -> None:
    self.counts[task] += 1


# Few-shot queries left without any exemplar (FLAN drops them silently; we count).
dropped_queries = TaskCounter()
# Rows a task's own FLAN filter leaves out (gigaword rows with UNK, qrecc turns <= 6, P3 rows a promptsource
# template renders to nothing, ...), per dataset or subtask; reported by `flan-jax data show` / `stats`.
filtered_rows = TaskCounter()


def render(dataset: FlanDataset, variant: Variant, task: str, seed: int = 0, shard_index: int = 0,
           num_shards: int = 1, shuffle_buffer: int = 0, epoch: int = 0) -> Iterator[dict[str, Any]]:
  """The examples of one task variant, as strings, in source order; shard k of n takes the rows at
  positions k, k + n, ... (before few-shot filtering, so shards stay disjoint and covering).

  With `shuffle_buffer`, the shard's raw rows (not rendered examples: a fraction of the memory, and
  nothing is rendered to fill the buffer) pass a seeded shuffle buffer first, drawn anew each `epoch`;
  templates stay assigned by source position, and exemplar batches are drawn in the shuffled order.
  """
  templates = tpl.load_templates()
  dataset.check_available()
  constants = dict(dataset.constants()) if dataset.constants else {}
  meta = {"_task_name": dataset.task_name, "_task_source": dataset.task_source,
          "_template_type": variant.template_type}
  pats = variant.patterns
  cfg = variant.few_shot
  exemplar_seed = seed if epoch == 0 else f"{seed}.{epoch}"
  exemplar_batches = _exemplar_batches(dataset, variant, exemplar_seed, constants,
                                       templates) if cfg else None
  token_counts: dict = {}  # (row id, template) -> (tokens(x), tokens(y)), for this pass only
  stream = _grouped(dataset.rows(), len(pats))
  if shuffle_buffer:
    stream = fewshot.shuffle_buffer((r for r in stream if r[0] % num_shards == shard_index),
                                    shuffle_buffer, random.Random(f"rows:{seed}:{task}:{epoch}"))
  for pos, idx, row_id, features in stream:
    batch = next(exemplar_batches, None) if exemplar_batches is not None else None
    if not shuffle_buffer and pos % num_shards != shard_index:
      continue
    if constants:
      features = {**constants, **features}
    features = _with_options(features, dataset, variant.random_options, f"{seed}:{task}:{pos}",
                             templates)
    inputs = tpl.fill(pats[idx][0], features)
    targets = tpl.fill(pats[idx][1], features)
    if cfg is not None:
      if batch is None:
        raise ValueError(f"task {task}: the train split has fewer than {cfg.num_shots} rows for "
                         f"{cfg.num_shots}-shot exemplars")
      query = inputs + cfg.x_y_delimiter
      kept = fewshot.select(query, idx, [e() for e in batch if _same_or_any(e, idx, cfg)], cfg,
                            query_key=None if variant.random_options else (row_id, idx),
                            cache=token_counts)
      if not kept:
        dropped_queries.add(task)
        continue
      inputs, targets = fewshot.assemble(query, targets, kept, features, cfg)
    yield {"inputs": inputs, "targets": targets, "_template_idx": idx, **meta}


def _same_or_any(lazy_exemplar, idx: int, cfg: fewshot.FewShotConfig) -> bool:
  return not cfg.prune_by_template or lazy_exemplar.template_idx == idx


class _LazyExemplar:
  """An exemplar rendered only if the template filter keeps it (x_shot keeps ~1 in 10)."""
  __slots__ = ("template_idx", "_make")

  def __init__(self, template_idx: int, make: Callable[[], fewshot.Exemplar]):
    self.template_idx = template_idx
    self._make = make

  def __call__(self) -> fewshot.Exemplar:
    return self._make()


EXEMPLAR_CACHE_ROWS = 200_000


class _ExemplarRowCache:
  """Keeps the parsed rows of an exemplar stream after its first epoch, so later epochs (x_shot reads 25
  rows a query: ~25 epochs a pass) do not parse the file again. Streams reserve their rows from one
  budget of `max_rows` in all (released when the stream closes); a stream the budget cannot hold
  re-reads its file each epoch as before. The rows, hence the examples, are the same either way."""

  def __init__(self, max_rows: int):
    self.max_rows = max_rows
    self.reserved = 0
    self._lock = threading.Lock()

  def _reserve(self, n: int) -> bool:
    with self._lock:
      if self.reserved + n > self.max_rows:
        return False
      self.reserved += n
      return True

  def _release(self, n: int) -> None:
    with self._lock:
      self.reserved -= n

  @contextlib.contextmanager
  def reader(self, dataset: FlanDataset):
    """A callable giving each epoch's rows: the file's on the first epoch, the kept list afterwards."""
    kept: list | None = None
    held = 0

    def first_epoch():
      nonlocal kept, held
      collected: list = []
      for row in dataset.rows():
        if collected is not None:
          collected.append(row)
          if len(collected) > self.max_rows:
            collected = None  # too big to keep at all; stop collecting early
        yield row
      if collected is not None and self._reserve(len(collected)):
        kept, held = collected, len(collected)

    def rows() -> Rows:
      return iter(kept) if kept is not None else first_epoch()

    try:
      yield rows
    finally:
      self._release(held)


_exemplar_rows = _ExemplarRowCache(EXEMPLAR_CACHE_ROWS)


def _exemplar_batches(dataset: FlanDataset, variant: Variant, seed: int, constants: dict,
                      templates: tpl.Templates) -> Iterator[list[_LazyExemplar]]:
  """Batches of `num_shots` exemplars from the train rows, repeated and reshuffled every epoch
  (shuffle buffer of 1,000 as upstream), templated round-robin in shuffled order."""
  cfg = variant.few_shot
  pats = variant.patterns

  def epoch_stream():
    with _exemplar_rows.reader(dataset) as rows:
      for epoch in itertools.count():
        rng = random.Random(f"exemplars:{seed}:{dataset.name}:{epoch}")
        shuffled = fewshot.shuffle_buffer(rows(), fewshot.SHUFFLE_BUFFER_SIZE, rng)
        any_row = False
        for pos, idx, row_id, features in _grouped(shuffled, len(pats)):
          any_row = True
          yield _LazyExemplar(idx, _exemplar_maker(dataset, variant, features, idx, row_id, constants,
                                                   f"ex:{seed}:{epoch}:{pos}", templates))
        if not any_row:
          return

  return fewshot.batches(epoch_stream(), cfg.num_shots)


def _exemplar_maker(dataset, variant, features, idx, row_id, constants, rng_key, templates):
  def make() -> fewshot.Exemplar:
    f = {**constants, **features} if constants else features
    f = _with_options(f, dataset, variant.random_options, rng_key, templates)
    inputs, targets = variant.patterns[idx]
    # Random options make the text depend on the draw, so such exemplars are not cached by row.
    key = None if variant.random_options else (row_id, idx)
    return fewshot.Exemplar(tpl.fill(inputs, f) + variant.few_shot.x_y_delimiter,
                            tpl.fill(targets, f), idx, key)
  return make


# --------------------------------------------------------------------------------------------------
# The catalog of registered Flan tasks.

SEQIO_ENV = "FLAN_JAX_SEQIO"
SOURCE_SHUFFLE_BUFFER = 1000  # raw rows per task when shuffling (seqio's default, but of rows)
# Within a mixture the per-task buffers share a budget: a task buffers rows in proportion to its share
# of the mixture, between MIN_SHUFFLE_ROWS and SOURCE_SHUFFLE_BUFFER, so a mixture of n tasks buffers
# at most SHUFFLE_BUDGET_ROWS + n * MIN_SHUFFLE_ROWS rows (not n * 1,000: GBs for ~2,000 tasks).
SHUFFLE_BUDGET_ROWS = 100_000
MIN_SHUFFLE_ROWS = 32


def registers_with_seqio() -> bool:
  """False when $FLAN_JAX_SEQIO is 0: tasks and mixtures then go to the plain catalog only, and seqio (with
  TensorFlow, ~860 MB resident) is never imported by registration."""
  return os.environ.get(SEQIO_ENV, "1") != "0"


@dataclasses.dataclass(eq=False)
class FlanTask:
  """A registered Flan task: one dataset in one variant, scored by `metric_fns` on outputs passed through
  `postprocess_fn`."""
  name: str
  dataset: FlanDataset
  variant: Variant
  postprocess_fn: Callable | None = None
  metric_fns: tuple[Callable, ...] = ()

  def num_examples(self) -> int:
    """Examples this task yields (rows after round-robin grouping), from a cheap row count, or from
    FLAN's num_cases.json when the data file is absent (as upstream, input inversion reuses the base's
    numbers). Few-shot queries dropped for lack of exemplars are not subtracted (unknowable unbuilt).
    Memoized per data dir: mixture rates ask once per task and sub-mixture."""
    key = str(data_dir_lib.data_dir())
    memo = getattr(self, "_count_memo", None)
    if memo is not None and memo[0] == key:
      return memo[1]
    count = self._count()
    self._count_memo = (key, count)
    return count

  def _count(self) -> int:
    try:
      n = self.dataset.num_rows()
    except FileNotFoundError:
      return self._num_cases()
    t = len(self.variant.patterns)
    return n // t * t

  def _num_cases(self) -> int:
    from flan_jax.data import sources  # pylint: disable=import-outside-toplevel
    table = sources.load_json_cached(data_dir_lib.data_file("flan/num_cases.json", source="flan"))
    cases = table["T_NAME_TO_NUM_CASES"]
    for key in (self.dataset.name, self.dataset.name.replace("_input_inversion", "")):
      if key in cases:
        return int(cases[key][self.variant.count_key])
    self.dataset.check_available()  # raises the DataMissingError naming the download command
    raise KeyError(f"no row count for {self.dataset.name}")


TASKS: dict[str, FlanTask] = {}

# Registries that mirror the catalog (the seqio registries, for T5X users): each is told of every task and mixture
# added after it subscribed. `seqio_tasks` subscribes when imported; the catalog never imports it.
MIRRORS: list[Any] = []


def register_variants(dataset: FlanDataset, variants: Sequence[Variant], postprocess_fn: Callable | None = None,
                      metric_fns: Sequence[Callable] = ()) -> list[str]:
  """Registers `<dataset.name><variant.suffix>` for each variant (replacing earlier ones), each scored by
  `metric_fns` on outputs passed through `postprocess_fn`."""
  names = []
  for v in variants:
    task = FlanTask(dataset.name + v.suffix, dataset, v, postprocess_fn, tuple(metric_fns))
    TASKS[task.name] = task
    for mirror in MIRRORS:
      mirror.add_task(task)
    names.append(task.name)
  return names


def flan_source(task: Any) -> FlanTask:
  """The Flan task of a name or a seqio Task (or a clear error for other tasks)."""
  if isinstance(task, str):
    found = TASKS.get(task)
  else:  # a seqio Task: its source decides, so a Flan name re-registered as another task is not mistaken
    found = getattr(task.source, "flan_task", None)
  if not isinstance(found, FlanTask):
    raise TypeError(f"task {task if isinstance(task, str) else task.name} is not a Flan task")
  return found


def mix_separators() -> dict[str, str]:
  """The example separator chosen for each registered `_mix*_five_shot` few-shot task."""
  return {name: t.variant.few_shot.example_separator for name, t in TASKS.items()
          if t.variant.few_shot is not None and "_template_mix" in t.variant.suffix}


def shuffle_plan(shares: Mapping[str, float], budget: int | None = None) -> dict[str, int]:
  """Rows each task buffers when shuffling, from its share of the mixture (shares need not sum to 1);
  `budget` defaults to SHUFFLE_BUDGET_ROWS."""
  budget = SHUFFLE_BUDGET_ROWS if budget is None else budget
  total = sum(shares.values())
  if total <= 0:
    raise ValueError(f"shuffle plan: mixture rates sum to {total}")
  return {t: max(MIN_SHUFFLE_ROWS, min(SOURCE_SHUFFLE_BUFFER, round(budget * r / total)))
          for t, r in shares.items()}
