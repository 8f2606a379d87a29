"""Open-ended generation rated side by side: the prompts, both models' outputs, the blinded rating set and its key.

A run directory holds
  generation.json   the two models (A: the checkpoint under test, B: the baseline) and the decoding settings
  outputs.jsonl     per prompt: id, prompt, category (when given), output_a, output_b, model_a, model_b
  rating_set.jsonl  what raters see: id, prompt, category (when given), response_1, response_2
  key.json          per item which model each response is (only the report reads it)
`flan-jax rate DIR` appends the ratings (`ratings.jsonl`, see `ratings.py`); `flan-jax eval open-ended --report DIR`
reads them with the key (`preference.py`).

Sides are balanced and random: a seeded shuffle of as many "A first" as "B first" items (one more A when the
count is odd), so neither model sits on a side raters may favour.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
from typing import Any, Iterator, Sequence

GENERATION, OUTPUTS, RATING_SET, KEY, RATINGS = (
    "generation.json", "outputs.jsonl", "rating_set.jsonl", "key.json", "ratings.jsonl")
MODELS = ("a", "b")


class RunFileError(ValueError):
  """A prompts, outputs or run file that cannot be used; the message names the file (and line)."""


@dataclasses.dataclass(frozen=True)
class Prompt:
  id: str
  inputs: str
  category: str | None = None


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
  """(line number, object) per non-blank line; a line that is not a JSON object fails naming file:line."""
  try:
    f = open(path, "rb")
  except OSError as e:
    raise RunFileError(f"{path}: {e.strerror}") from None
  with f:
    for number, raw in enumerate(f, 1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise RunFileError(f"{path}:{number}: not UTF-8 ({e.reason} at byte {e.start})") from None
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise RunFileError(f"{path}:{number}: not JSON ({e.msg} at column {e.colno})") from None
      if not isinstance(record, dict):
        raise RunFileError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
      yield number, record


def _optional_text(record: dict, field: str, where: str) -> str | None:
  value = record.get(field)
  if value is None:
    return None
  if isinstance(value, int) and not isinstance(value, bool) and field == "id":
    return str(value)
  if not isinstance(value, str) or not value.strip():
    raise RunFileError(f"{where}: \"{field}\" must be a non-empty string, got {json.dumps(value)}")
  return value


def read_prompts(path: str | os.PathLike, limit: int | None = None) -> list[Prompt]:
  """Prompts of a JSONL file: `inputs` (required), optional `category` and `id` (default: the line number)."""
  prompts: list[Prompt] = []
  lines: dict[str, int] = {}
  for number, record in read_jsonl(path):
    if limit is not None and len(prompts) >= limit:
      break
    where = f"{path}:{number}"
    inputs = record.get("inputs")
    if not isinstance(inputs, str) or not inputs.strip():
      raise RunFileError(f"{where}: needs a non-empty string field \"inputs\" (optional: \"category\", \"id\")")
    unknown = sorted(set(record) - {"inputs", "category", "id"})
    if unknown:
      raise RunFileError(f"{where}: unknown field(s) {unknown}; a prompt has \"inputs\", \"category\", \"id\"")
    prompt_id = _optional_text(record, "id", where) or str(number)
    if prompt_id in lines:
      raise RunFileError(f"{where}: id {prompt_id!r} already used on line {lines[prompt_id]}")
    lines[prompt_id] = number
    prompts.append(Prompt(prompt_id, inputs, _optional_text(record, "category", where)))
  if not prompts:
    raise RunFileError(f"{path}: no prompts")
  return prompts


def read_stored_outputs(path: str | os.PathLike, prompts: Sequence[Prompt]) -> list[str]:
  """Each prompt's output from a JSONL file of `inputs` / `output` rows (e.g. `flan-jax infer` output), matched
  by the prompt text; rows for other prompts are ignored."""
  by_inputs: dict[str, tuple[str, int]] = {}
  for number, record in read_jsonl(path):
    inputs, output = record.get("inputs"), record.get("output")
    if not isinstance(inputs, str) or not isinstance(output, str):
      raise RunFileError(f"{path}:{number}: needs string fields \"inputs\" and \"output\"")
    if inputs in by_inputs and by_inputs[inputs][0] != output:
      raise RunFileError(f"{path}:{number}: a different output for the inputs of line {by_inputs[inputs][1]}")
    by_inputs[inputs] = (output, number)
  missing = [p.id for p in prompts if p.inputs not in by_inputs]
  if missing:
    raise RunFileError(f"{path}: no output for {len(missing)} prompt(s) (ids {missing[:5]}); rows are matched "
                       "to prompts by their \"inputs\" text")
  return [by_inputs[p.inputs][0] for p in prompts]


def assign_sides(ids: Sequence[str], seed: int) -> dict[str, str]:
  """Item id -> the model ("a" or "b") shown as Response 1: balanced, in a seeded random order."""
  first = ["a"] * ((len(ids) + 1) // 2) + ["b"] * (len(ids) // 2)
  random.Random(seed).shuffle(first)
  return dict(zip(ids, first))


def _write_text(path: pathlib.Path, text: str) -> None:
  """Write-then-rename, so a crash never leaves half a file behind."""
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text, encoding="utf-8")
  os.replace(tmp, path)


def _jsonl_text(rows: Sequence[dict]) -> str:
  return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def check_unrated(directory: str | os.PathLike) -> None:
  """A dir holding ratings keeps its rating set: new outputs would not match them."""
  path = pathlib.Path(directory) / RATINGS
  if path.exists():
    raise RunFileError(f"{path}: this dir holds ratings of an earlier rating set; choose a new --output_dir")


def write_run(directory: str | os.PathLike, prompts: Sequence[Prompt], outputs_a: Sequence[str],
              outputs_b: Sequence[str], models: dict[str, str], seed: int, settings: dict[str, Any]) -> None:
  """Writes generation.json, outputs.jsonl, rating_set.jsonl and key.json. `models`: {"a": name, "b": name}."""
  if not len(prompts) == len(outputs_a) == len(outputs_b):
    raise ValueError(f"{len(prompts)} prompts, {len(outputs_a)} outputs of A, {len(outputs_b)} of B")
  directory = pathlib.Path(directory)
  check_unrated(directory)
  directory.mkdir(parents=True, exist_ok=True)
  sides = assign_sides([p.id for p in prompts], seed)
  outputs, rating_set = [], []
  for p, a, b in zip(prompts, outputs_a, outputs_b):
    category = {"category": p.category} if p.category is not None else {}
    outputs.append({"id": p.id, "prompt": p.inputs, **category, "output_a": a, "output_b": b,
                    "model_a": models["a"], "model_b": models["b"]})
    first, second = (a, b) if sides[p.id] == "a" else (b, a)
    rating_set.append({"id": p.id, "prompt": p.inputs, **category, "response_1": first, "response_2": second})
  key = {"seed": seed, "models": models,
         "items": {i: {"response_1": s, "response_2": "b" if s == "a" else "a"} for i, s in sides.items()}}
  _write_text(directory / GENERATION, json.dumps({"models": models, "seed": seed, **settings}, indent=2,
                                                 ensure_ascii=False) + "\n")
  _write_text(directory / OUTPUTS, _jsonl_text(outputs))
  _write_text(directory / KEY, json.dumps(key, indent=2, ensure_ascii=False) + "\n")
  # Last: `flan-jax rate` only serves a dir whose rating set exists, so it never sees one without its key.
  _write_text(directory / RATING_SET, _jsonl_text(rating_set))


def load_rating_set(directory: str | os.PathLike) -> list[dict[str, Any]]:
  """The items raters see, in order; fails naming file:line on a malformed row."""
  path = pathlib.Path(directory) / RATING_SET
  if not path.exists():
    raise RunFileError(f"{path}: missing; `flan-jax eval open-ended ... --output_dir {directory}` writes it")
  items, seen = [], set()
  for number, row in read_jsonl(path):
    fields = ("id", "prompt", "response_1", "response_2")
    if not all(isinstance(row.get(f), str) for f in fields):
      raise RunFileError(f"{path}:{number}: needs string fields {list(fields)}")
    if not isinstance(row.get("category", ""), str):
      raise RunFileError(f"{path}:{number}: \"category\" must be a string")
    if row["id"] in seen:
      raise RunFileError(f"{path}:{number}: id {row['id']!r} appears twice")
    seen.add(row["id"])
    items.append(row)
  if not items:
    raise RunFileError(f"{path}: no items")
  return items


def load_key(directory: str | os.PathLike, item_ids: Sequence[str]) -> dict[str, Any]:
  """key.json, checked to cover exactly the rating set's items."""
  path = pathlib.Path(directory) / KEY
  try:
    key = json.loads(path.read_text(encoding="utf-8"))
  except OSError as e:
    raise RunFileError(f"{path}: {e.strerror}") from None
  except json.JSONDecodeError as e:
    raise RunFileError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
  items = key.get("items") if isinstance(key, dict) else None
  if not isinstance(items, dict) or set(items) != set(item_ids):
    raise RunFileError(f"{path}: its items do not match {RATING_SET} (was one of them rewritten?)")
  for item_id, sides in items.items():
    if (not isinstance(sides, dict) or set(sides) != {"response_1", "response_2"}
        or sorted(sides.values()) != list(MODELS)):
      raise RunFileError(f"{path}: item {item_id!r}: sides must map response_1/response_2 to \"a\" and \"b\"")
  return key

