"""Plain text for UL2R: documents from local files, from a prepared TFDS dataset, or from a registered task's rows.

Every source yields its documents' text in a fixed order, leaving out empty ones; bad input stops the read with an
error naming its place (`path:line`, a TFDS record, a task row). Sources are plain data (they pickle into the input
process) and read nothing until iterated, so registering one never needs its data.

- `TextFiles`: files matching a glob (sorted). unit 'line': each non-empty line is a document; 'paragraph':
  documents are separated by one or more blank lines, their lines joined by newlines; 'jsonl': one JSON object a
  line, the document is its `field`. A line that is not UTF-8, not JSON, or lacks the field stops the read with an
  error naming file:line.
- `TfdsText`: a string feature of a TFDS dataset prepared in the TFDS data dir (`tfds_source`: read-only, never
  downloaded), e.g. C4's `text`; the split is the stream's.
- `TaskFields`: fields of the source rows of a registered Flan task (`registry.TASKS`), joined by newlines, e.g.
  the CoT rows' `question` and `chain_of_thought`; the task is looked up when first read (or by `resolve`).
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import pathlib
from typing import Iterator, Protocol

from flan_jax.data.catalog import registry
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import tfds_source
from flan_jax.data.files.readers import DataFormatError

UNITS = ("line", "paragraph", "jsonl")


class TextSource(Protocol):
  def documents(self, split: str) -> Iterator[str]: ...

  def check_available(self) -> None: ...

  def resolve(self) -> TextSource: ...


def _only_train(split: str, what: str) -> None:
  if split != "train":
    raise ValueError(f"{what} has no split {split!r}; it has ['train']")


@dataclasses.dataclass(frozen=True)
class TextFiles:
  """Documents from local files (see the module doc); `pattern` may use `~` and `$VARS`, relative to the working
  dir."""
  pattern: str
  unit: str = "line"
  field: str = "text"

  def __post_init__(self):
    if self.unit not in UNITS:
      raise ValueError(f"TextFiles {self.pattern!r}: unit={self.unit!r}; choose one of {UNITS}")

  def paths(self) -> list[pathlib.Path]:
    pattern = os.path.expanduser(os.path.expandvars(self.pattern))
    return [pathlib.Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(p)]

  def check_available(self) -> None:
    if not self.paths():
      raise data_dir_lib.DataMissingError(f"TextFiles {self.pattern!r} matches no file (from "
                                          f"{pathlib.Path.cwd()})")

  def resolve(self) -> TextFiles:
    return self

  def documents(self, split: str) -> Iterator[str]:
    _only_train(split, f"TextFiles {self.pattern!r}")
    self.check_available()
    for path in self.paths():
      yield from _file_documents(path, self.unit, self.field)


def _lines(path: pathlib.Path) -> Iterator[tuple[int, str]]:
  with open(path, "rb") as f:
    for line_no, raw in enumerate(f, start=1):
      try:
        yield line_no, raw.decode("utf-8").rstrip("\r\n")
      except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}:{line_no}: not UTF-8 ({e.reason} at byte {e.start})") from None


def _file_documents(path: pathlib.Path, unit: str, field: str) -> Iterator[str]:
  if unit == "paragraph":
    yield from _paragraphs(path)
    return
  for line_no, line in _lines(path):
    if not line.strip():
      continue
    text = line if unit == "line" else _jsonl_field(path, line_no, line, field)
    if text.strip():
      yield text


def _jsonl_field(path: pathlib.Path, line_no: int, line: str, field: str) -> str:
  try:
    record = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataFormatError(f"{path}:{line_no}: not a JSON line ({e.msg} at column {e.colno})") from None
  if not isinstance(record, dict) or field not in record:
    has = sorted(record) if isinstance(record, dict) else type(record).__name__
    raise DataFormatError(f"{path}:{line_no}: no field {field!r} (has {has})")
  if not isinstance(record[field], str):
    raise DataFormatError(f"{path}:{line_no}: field {field!r} is {type(record[field]).__name__}, not text")
  return record[field]


def _paragraphs(path: pathlib.Path) -> Iterator[str]:
  held: list[str] = []
  for _, line in _lines(path):
    if line.strip():
      held.append(line)
    elif held:
      yield "\n".join(held)
      held = []
  if held:
    yield "\n".join(held)


@dataclasses.dataclass(frozen=True)
class TfdsText:
  """A string feature of a prepared TFDS dataset (default: C4 English as T5 reads it)."""
  name: str = "c4/en"
  version: str | None = "3.0.1"
  feature: str = "text"

  def spec(self, split: str = "train") -> tfds_source.TfdsSpec:
    return tfds_source.TfdsSpec(self.name, self.version, split)

  def check_available(self) -> None:
    tfds_source.check(self.spec())

  def resolve(self) -> TfdsText:
    return self

  def documents(self, split: str) -> Iterator[str]:
    spec = self.spec(split)
    for index, example in tfds_source.read(spec):
      if self.feature not in example:
        raise DataFormatError(f"TFDS {spec.full_name} [{split}] record {index}: no feature {self.feature!r} (has "
                              f"{sorted(example)})")
      value = example[self.feature]
      text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
      if text.strip():
        yield text


@dataclasses.dataclass(frozen=True)
class TaskFields:
  """Fields of a registered Flan task's source rows (the features its templates read), joined by newlines."""
  task: str
  fields: tuple[str, ...]
  dataset: registry.FlanDataset | None = None  # set by `resolve`

  def __post_init__(self):
    object.__setattr__(self, "fields", tuple(self.fields))  # gin gives lists
    if not self.fields:
      raise ValueError(f"TaskFields {self.task!r}: name at least one field")

  def resolve(self) -> TaskFields:
    if self.dataset is not None:
      return self
    if self.task not in registry.TASKS:
      raise ValueError(f"TaskFields: {self.task!r} is not a registered Flan task (is its module imported, e.g. "
                       "MIXTURE_OR_TASK_MODULE = 'tasks'?)")
    return dataclasses.replace(self, dataset=registry.TASKS[self.task].dataset)

  def check_available(self) -> None:
    self.resolve().dataset.check_available()

  def documents(self, split: str) -> Iterator[str]:
    _only_train(split, f"TaskFields {self.task!r}")
    dataset = self.resolve().dataset
    dataset.check_available()
    for row_id, row in dataset.rows():
      missing = [f for f in self.fields if f not in row]
      if missing:
        raise DataFormatError(f"task {self.task} row {row_id}: no field(s) {missing} (has {sorted(row)})")
      text = "\n".join(str(row[f]) for f in self.fields if str(row[f]).strip())
      if text:
        yield text
