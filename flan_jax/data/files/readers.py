"""Readers for the raw Flan inputs in the data dir: CoT TSVs, JSON files, NIv2 task files and split lists.

Every reader streams (no whole-file materialisation except JSON, which cannot be streamed) and is strict:
a TSV row with the wrong number of columns is skipped with a warning naming file:line on stderr and counted
(`skipped_rows()`), invalid JSON raises `DataFormatError` naming the file and line.
"""
from __future__ import annotations

import collections
import functools
import json
import os
import pathlib
import sys
import threading
import weakref
from typing import Any, Iterator

from flan_jax.data.files import data_dir as data_dir_lib

COT_COLUMNS = ("question", "answer", "chain_of_thought")
NIV2_TASKS_JSON = "flan/niv2_tasks.json"
NIV2_SPLITS_DIR = "niv2/splits/default"
NIV2_TASKS_DIR = "niv2/tasks"


class DataFormatError(ValueError):
  """A data file is malformed; the message names the file and line."""


_skip_lock = threading.Lock()
_skipped: collections.Counter[str] = collections.Counter()


def record_skip(path: os.PathLike | str, line: int, reason: str) -> None:
  """Warns on stderr that `path:line` was skipped, and counts it against the file."""
  print(f"warning: {path}:{line}: skipped row: {reason}", file=sys.stderr, flush=True)
  with _skip_lock:
    _skipped[str(path)] += 1


def skipped_rows() -> dict[str, int]:
  """Skipped-row counts per file path since the process started (or `reset_skipped_rows`)."""
  with _skip_lock:
    return dict(_skipped)


def reset_skipped_rows() -> None:
  with _skip_lock:
    _skipped.clear()


def unescape_newlines(text: str) -> str:
  r"""The CoT TSVs write newlines inside fields as the two characters `\n`."""
  return text.replace("\\n", "\n")


def read_cot_tsv(path: pathlib.Path) -> Iterator[tuple[int, dict[str, str]]]:
  r"""Yields (line number, {question, answer, chain_of_thought}) for each well-formed row.

  Like FLAN's `simple_cot_tsv`: `\n` escapes are turned into newlines in the question and the
  rationale, the answer is kept verbatim.
  """
  with open(path, "rb") as f:
    for line_no, raw in enumerate(f, start=1):
      line = raw.decode("utf-8").rstrip("\n")
      if line.endswith("\r"):
        line = line[:-1]
      cols = line.split("\t")
      if len(cols) != len(COT_COLUMNS):
        record_skip(path, line_no, f"expected {len(COT_COLUMNS)} tab-separated columns "
                    f"{COT_COLUMNS}, found {len(cols)}")
        continue
      yield line_no, {
          "question": unescape_newlines(cols[0]),
          "answer": cols[1],
          "chain_of_thought": unescape_newlines(cols[2]),
      }


@functools.lru_cache(maxsize=None)
def _count_lines_cached(path: str, size: int, mtime_ns: int) -> int:
  del size, mtime_ns  # part of the cache key only
  n = 0
  last = b"\n"
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      n += chunk.count(b"\n")
      last = chunk[-1:]
  return n + (last != b"\n")


def count_lines(path: pathlib.Path) -> int:
  """Number of lines (a last line without newline counts), cached per file version."""
  st = os.stat(path)
  return _count_lines_cached(str(path), st.st_size, st.st_mtime_ns)


def count_valid_cot_rows(path: pathlib.Path) -> int:
  """Rows `read_cot_tsv` yields, counted without building anything (tab counts only)."""
  st = os.stat(path)
  return _count_valid_cached(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _count_valid_cached(path: str, size: int, mtime_ns: int) -> int:
  del size, mtime_ns
  want = len(COT_COLUMNS) - 1
  with open(path, "rb") as f:
    return sum(1 for raw in f if raw.count(b"\t") == want)


def load_json(path: pathlib.Path) -> Any:
  """Parses a JSON file; a syntax error names the file, line and column."""
  with open(path, "rb") as f:
    text = f.read().decode("utf-8")
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise DataFormatError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None


@functools.lru_cache(maxsize=8)
def _load_json_cached(path: str, size: int, mtime_ns: int) -> Any:
  del size, mtime_ns
  return load_json(pathlib.Path(path))


def load_json_cached(path: pathlib.Path) -> Any:
  """`load_json`, cached per file version (the metadata files are read by many tasks)."""
  st = os.stat(path)
  return _load_json_cached(str(path), st.st_size, st.st_mtime_ns)


def niv2_metadata() -> dict[str, dict[str, Any]]:
  """`NATINST_META_DATA` from flan/niv2_tasks.json, keyed by task name without `.json`."""
  path = data_dir_lib.data_file(NIV2_TASKS_JSON, source="flan")
  st = os.stat(path)
  return _niv2_metadata_cached(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _niv2_metadata_cached(path: str, size: int, mtime_ns: int) -> dict[str, dict[str, Any]]:
  data = _load_json_cached(path, size, mtime_ns)
  try:
    meta = data["NATINST_META_DATA"]
  except (KeyError, TypeError):
    raise DataFormatError(f"{path}:1: expected an object with key NATINST_META_DATA") from None
  return {name.removesuffix(".json"): info for name, info in meta.items()}


def niv2_split(split: str) -> list[str]:
  """Task names of NIv2's default split `split` (train / test / excluded), one per line."""
  path = data_dir_lib.data_file(f"{NIV2_SPLITS_DIR}/{split}_tasks.txt", source="niv2")
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def niv2_task_path(task: str) -> pathlib.Path:
  return data_dir_lib.data_file(f"{NIV2_TASKS_DIR}/{task}.json", source="niv2")


def read_niv2_instances(task: str) -> tuple[str, Iterator[tuple[int, dict[str, str]]]]:
  """(definition, iterator of (instance index, {input, output})) from a raw NIv2 task file.

  An instance without an output list is skipped and counted (once per parse of the file); the first output is the
  target. Every reader of one file version shares one parse (`_niv2_parsed`).
  """
  parsed = _niv2_parsed(niv2_task_path(task))

  def gen():
    for i, inputs, output in parsed:
      yield i, {"input": inputs, "output": output}

  return parsed.definition, gen()


class _Niv2Instances(list):
  """A task file's usable instances as (index, input, first output), and its definition."""
  __slots__ = ("definition", "__weakref__")


# A mixture keeps every NIv2 task open at once, each in up to 8 variants plus their exemplar streams; parsed once
# per reader that would be ~10 copies of every file. Weak values: a parse lives while some reader holds it.
_niv2_parses: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_niv2_lock = threading.Lock()


def _niv2_parsed(path: pathlib.Path) -> _Niv2Instances:
  st = os.stat(path)
  key = (str(path), st.st_size, st.st_mtime_ns)
  with _niv2_lock:
    found = _niv2_parses.get(key)
  if found is not None:
    return found
  data = load_json(path)
  try:
    definition = data["Definition"]
    instances = data["Instances"]
  except (KeyError, TypeError):
    raise DataFormatError(f"{path}:1: a NIv2 task file needs 'Definition' and 'Instances'") from None
  parsed = _Niv2Instances()
  parsed.definition = (definition[0] if definition else "") if isinstance(definition, list) else definition
  for i, inst in enumerate(instances):
    outputs = inst.get("output") if isinstance(inst, dict) else None
    if not isinstance(outputs, list) or not outputs or not isinstance(inst.get("input"), str):
      record_skip(path, _instance_line(path, i), f"instance {i} has no input or no output")
      continue
    parsed.append((i, inst["input"], outputs[0]))
  with _niv2_lock:
    return _niv2_parses.setdefault(key, parsed)


def _instance_line(path: pathlib.Path, index: int) -> int:
  """Best-effort line of the `index`-th instance (upstream files put one `"id":` per instance)."""
  seen = -1
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, start=1):
      if '"id":' in line:
        seen += 1
        if seen == index:
          return line_no
  return 1
