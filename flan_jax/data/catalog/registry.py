"""Declaring a Flan dataset once and registering it as a task in every FLAN variant.

A `FlanDataset` says where rows come from (a generator of feature dicts), which templates.json key formats
them, and the `_task_name` / `_task_source` it carries. `flan_variants` / `niv2_variants` list the variants
FLAN registers (zero-shot with and without options, few-shot template_0/1/2, mix and 0to10), and
`register_variants` adds one `FlanTask` per variant to `TASKS` and tells the catalog's mirrors (`MIRRORS`: seqio's
registries once `seqio_tasks` is imported, as `import tasks` does unless $FLAN_JAX_SEQIO is 0). Rendering
(`flan_render`) is plain Python: this module imports neither seqio nor TensorFlow, so a process that only renders (a
grain worker of the training input) stays small.

Muffin / T0-SF / Dialog reuse this: build a `FlanDataset` whose `rows` yields the fields the templates
read (for multiple-choice tasks: `options` list + `answer`, with `has_options=True`).
"""
from __future__ import annotations

import collections
import dataclasses
import os
import random
from typing import Any, Callable, Iterator, Mapping, Sequence

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.rendering import fewshot
from flan_jax.data.rendering import templates as tpl

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

def with_options(features: dict, dataset: FlanDataset, random_options: bool, rng_key: str,
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


# --------------------------------------------------------------------------------------------------
# The catalog of registered Flan tasks.

SEQIO_ENV = "FLAN_JAX_SEQIO"


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
    from flan_jax.data.files import readers  # pylint: disable=import-outside-toplevel
    table = readers.load_json_cached(data_dir_lib.data_file("flan/num_cases.json", source="flan"))
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
