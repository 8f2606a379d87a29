"""T0-SF: the 193 P3 subtasks that are neither in Flan 2021 nor score-eval variants, in every FLAN variant.

The subtasks and their FLAN template keys come from flan/t0_tasks.json (`T0_TRAIN_TASK_METADATA`: `in_flan`,
`task_type` in t0_question_answer / t0_multiple_choice / t0_multiple_choice_separated_options, target
`seq_len`). Task names are upstream's: `t0_task_adaptation:<subtask><variant suffix>`; rows carry
`_task_name` = the subtask and `_task_source` = "P3".

Two routes to the rows, both ending in the same preprocessing (`preprocess`):
- "p3" (default): TFDS `huggingface:bigscience__p3/<subtask>`, read-only from the TFDS data dir. Presence is a
  file-system check, so a missing subtask fails at once with the command that prepares it; the Hub is never
  queried.
- "promptsource": the raw dataset rows in `<raw_dir>/<dataset>[/<subset>]/train.jsonl` (one JSON object a
  line, the Hugging Face dataset's features), rendered with the subtask's promptsource template
  (flan_jax/data/files/promptsource.py) into P3's `inputs_pretokenized` / `targets_pretokenized` /
  `answer_choices`.

FLAN's preprocessing: the prompt with newlines turned into spaces and stripped, the target with newlines
removed and stripped; for multiple choice, the answer choices cleaned the same way and the target must be
one of them (a row where it is not is malformed: warned and counted). Only the separated-options type
formats an `options_` list, so only it gets the non-deterministic options variant.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any, Callable, Iterator

from flan_jax.data.catalog import registry
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import promptsource, readers, tfds_source
from flan_jax.data.rendering import templates as tpl
from tasks import muffin_preprocessors as mp

T0_JSON = "flan/t0_tasks.json"
TASK_SOURCE = "P3"
MIXTURE_KEY = "T0"
P3_TFDS = "huggingface:bigscience__p3"
QA = "t0_question_answer"
MC = "t0_multiple_choice"
MC_SEPARATED = "t0_multiple_choice_separated_options"
TASK_TYPES = (QA, MC, MC_SEPARATED)
ROUTES = ("p3", "promptsource")


@dataclasses.dataclass(frozen=True)
class T0Subtask:
  key: str  # "t0_task_adaptation:<subtask>": the registry base name
  subtask: str
  task_type: str
  max_target_len: int

  @property
  def multiple_choice(self) -> bool:
    return self.task_type != QA

  @property
  def has_options(self) -> bool:
    return self.task_type == MC_SEPARATED

  @property
  def tfds(self) -> tfds_source.TfdsSpec:
    return tfds_source.TfdsSpec(f"{P3_TFDS}/{self.subtask}", None, "train")

  @property
  def postprocess(self) -> Callable | None:
    if self.multiple_choice:
      return None
    return mp.take_first_word if self.max_target_len == 1 else mp.take_first_line


def _metadata() -> tuple[str, dict[str, Any], pathlib.Path]:
  path = data_dir_lib.data_file(T0_JSON, source="flan")
  raw = readers.load_json_cached(path)
  try:
    return raw["T0_TASK_PREFIX"], raw["T0_TRAIN_TASK_METADATA"], path
  except KeyError as e:
    raise readers.DataFormatError(f"{path}:1: missing top-level key {e.args[0]!r}") from None


def all_p3_subtasks() -> dict[str, dict[str, Any]]:
  """Every P3 training subtask FLAN lists (660), by key, with its metadata."""
  return dict(_metadata()[1])


def subtasks() -> list[T0Subtask]:
  """The T0-SF subtasks (193), in t0_tasks.json order."""
  prefix, meta, path = _metadata()
  out = []
  for key, info in meta.items():
    if not key.startswith(prefix):
      raise readers.DataFormatError(f"{path}: T0_TRAIN_TASK_METADATA key {key!r} lacks prefix {prefix!r}")
    subtask = key[len(prefix):]
    if "_score_eval" in subtask or info.get("in_flan"):
      continue
    ttype = info.get("task_type")
    if ttype not in TASK_TYPES:
      raise readers.DataFormatError(f"{path}: {key}: task_type {ttype!r} is not one of {TASK_TYPES}")
    try:
      max_len = int(info["seq_len"]["max"])
    except (KeyError, TypeError, ValueError):
      raise readers.DataFormatError(f"{path}: {key}: needs seq_len.max") from None
    out.append(T0Subtask(key, subtask, ttype, max_len))
  return out


# --------------------------------------------------------------------------------------------------
# Preprocessing.

def _clean(s: str, newline: str) -> str:
  return tpl.tf_strip(s.replace("\n", newline))


def preprocess(ex: dict[str, Any], multiple_choice: bool) -> dict[str, Any]:
  """P3 features -> the fields FLAN's T0 templates read (`question`, `answer`, and `options`)."""
  out: dict[str, Any] = {"question": _clean(mp.text(mp.field(ex, "inputs_pretokenized")), " "),
                         "answer": _clean(mp.text(mp.field(ex, "targets_pretokenized")), "")}
  if multiple_choice:
    options = [_clean(c, "") for c in mp.texts(mp.field(ex, "answer_choices"))]
    if out["answer"] not in options:
      raise mp.MalformedRow(f"target {out['answer']!r} is not among the answer choices {options}")
    out["options"] = options
  return out


def _preprocessed(st: T0Subtask, where: str, rows: Iterator[tuple[int, Any]]):
  for idx, ex in rows:
    try:
      yield idx, preprocess(ex, st.multiple_choice)
    except mp.MalformedRow as e:
      readers.record_skip(where, idx, f"{st.subtask}: {e}")


def _p3_rows(st: T0Subtask):
  return _preprocessed(st, f"tfds:{st.tfds.full_name}[train]", tfds_source.read(st.tfds))


def p3_dataset(st: T0Subtask) -> registry.FlanDataset:
  return registry.FlanDataset(
      name=st.key, pattern_key=st.task_type, task_name=st.subtask, task_source=TASK_SOURCE,
      rows=functools.partial(_p3_rows, st), num_rows=functools.partial(tfds_source.num_examples, st.tfds),
      check_available=functools.partial(tfds_source.check, st.tfds), has_options=st.has_options)


# ---- the promptsource route

def raw_path(raw_dir: pathlib.Path, template: promptsource.Template) -> pathlib.Path:
  d = pathlib.Path(raw_dir) / template.dataset
  return (d / template.subset if template.subset else d) / "train.jsonl"


def _raw_check(st: T0Subtask, raw_dir: pathlib.Path) -> pathlib.Path:
  path = raw_path(raw_dir, promptsource.find_template(st.subtask))
  if not path.is_file():
    raise data_dir_lib.DataMissingError(
        f"T0 subtask {st.subtask}: raw rows {path} are absent; write the Hugging Face dataset's train split "
        f"there as JSON lines (one row's features per line), or use the P3 route (TFDS {P3_TFDS})")
  return path


def read_jsonl(path: pathlib.Path) -> Iterator[tuple[int, dict[str, Any]]]:
  """(line number, row) of a JSON-lines file; lines that are not a JSON object are warned and counted."""
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        readers.record_skip(path, lineno, f"not JSON: {e.msg}")
        continue
      if not isinstance(row, dict):
        readers.record_skip(path, lineno, "not a JSON object")
        continue
      yield lineno, row


def rendered_rows(st: T0Subtask, raw_dir: pathlib.Path) -> Iterator[tuple[int, dict[str, Any]]]:
  """(line, P3 features) of the raw rows rendered with the subtask's promptsource template; rows the
  template leaves without a prompt or target are left out, as P3 does (counted as filtered)."""
  template = promptsource.find_template(st.subtask)
  path = _raw_check(st, raw_dir)
  for lineno, row in read_jsonl(path):
    try:
      p3 = promptsource.p3_row(template, row, seed=lineno)
    except promptsource.PromptsourceError as e:
      readers.record_skip(path, lineno, str(e))
      continue
    if p3 is None:
      registry.filtered_rows.add(st.subtask)
      continue
    yield lineno, p3


def _promptsource_rows(st: T0Subtask, raw_dir: pathlib.Path):
  path = _raw_check(st, raw_dir)
  return _preprocessed(st, str(path), rendered_rows(st, raw_dir))


def _promptsource_count(st: T0Subtask, raw_dir: pathlib.Path) -> int:
  return readers.count_lines(_raw_check(st, raw_dir))


def promptsource_dataset(st: T0Subtask, raw_dir: pathlib.Path | str) -> registry.FlanDataset:
  raw_dir = pathlib.Path(raw_dir)
  return registry.FlanDataset(
      name=st.key, pattern_key=st.task_type, task_name=st.subtask, task_source=TASK_SOURCE,
      rows=functools.partial(_promptsource_rows, st, raw_dir),
      num_rows=functools.partial(_promptsource_count, st, raw_dir),
      check_available=functools.partial(_raw_check, st, raw_dir), has_options=st.has_options)


# --------------------------------------------------------------------------------------------------
# Registration.

def base_names() -> list[str]:
  return [st.key for st in subtasks()]


def register(templates: tpl.Templates | None = None, route: str = "p3",
             raw_dir: str | pathlib.Path | None = None) -> list[str]:
  """Registers every T0-SF subtask in every FLAN variant from the chosen route; returns the task names."""
  if route not in ROUTES:
    raise ValueError(f"T0 route {route!r}: expected one of {ROUTES}")
  if route == "promptsource" and raw_dir is None:
    raise ValueError("the promptsource route of T0 needs raw_dir (where <dataset>/<subset>/train.jsonl live)")
  t = templates or tpl.load_templates()
  names = []
  for st in subtasks():
    ds = p3_dataset(st) if route == "p3" else promptsource_dataset(st, raw_dir)
    # Variants per subtask: the mix few-shot separator is chosen per task name.
    names += registry.register_variants(ds, registry.flan_variants(st.task_type, st.has_options, st.key, t),
                                        postprocess_fn=st.postprocess, metric_fns=[mp.accuracy])
  return names
