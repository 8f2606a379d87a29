"""The unit every benchmark produces: one prompt to run and what a correct answer is."""
from __future__ import annotations

import csv
import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class EvalExample:
  task: str                          # "<benchmark>/<subject|task|language>", the unit scores are reported for
  index: int                         # position in the task's test file
  prompt: str                        # the exact model input
  target: str                        # the gold answer, in the form extraction yields
  options: tuple[str, ...] = ()      # rank-classification targets (MMLU direct), empty for generation
  golds: tuple[str, ...] = ()        # every acceptable answer (TyDiQA); empty means (target,)
  source_text: str = ""              # the test item's own text, without exemplars (for contamination checks)
  stop_sequences: tuple[str, ...] = ()  # where a generated answer ends (the next exemplar's start), few-shot only


class EvalDataError(ValueError):
  """A benchmark file is not in the expected shape; the message names the file and line."""


def read_csv_rows(path: str | os.PathLike, num_fields: int) -> list[tuple[int, list[str]]]:
  """(line number, fields) of every CSV row, each required to have `num_fields` fields."""
  rows = []
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.reader(f)
    start = 1
    for fields in reader:
      if len(fields) != num_fields:
        raise EvalDataError(f"{path}:{start}: expected {num_fields} CSV fields, got {len(fields)}")
      rows.append((start, fields))
      start = reader.line_num + 1
  return rows


def read_tsv_rows(path: str | os.PathLike, num_fields: int) -> list[tuple[int, list[str]]]:
  """(line number, fields) of every tab-separated line (no quoting), each with `num_fields` fields."""
  rows = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      fields = line.rstrip("\n").split("\t")
      if len(fields) != num_fields:
        raise EvalDataError(f"{path}:{lineno}: expected {num_fields} tab-separated fields, got {len(fields)}")
      rows.append((lineno, fields))
  return rows
