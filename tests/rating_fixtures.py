"""A side-by-side run dir without models: made-up prompts and outputs, written by `side_by_side.write_run`."""
from __future__ import annotations

import json
import pathlib

from flan_jax.evaluation import side_by_side

CATEGORIES = ("creative writing", "advice", "explanation")


def write_rating_dir(directory: pathlib.Path, n: int = 6, categories: bool = True, seed: int = 0
                     ) -> list[side_by_side.Prompt]:
  """n prompts (categories cycling through CATEGORIES when asked), distinct outputs for A and B."""
  prompts = [side_by_side.Prompt(f"p{i}", f"Prompt number {i}: write something about the number {i}.",
                                 CATEGORIES[i % len(CATEGORIES)] if categories else None) for i in range(n)]
  outputs_a = [f"{i} is the number after {i - 1}.\nIn binary it is written {i:b}; squared, it is {i * i}."
               for i in range(n)]
  outputs_b = [f"Here is something about {i}: it is {'even' if i % 2 == 0 else 'odd'}." for i in range(n)]
  side_by_side.write_run(directory, prompts, outputs_a, outputs_b, {"a": "model-A", "b": "model-B"}, seed,
                         {"method": "made up"})
  return prompts


def model_of_response(directory: pathlib.Path) -> dict[str, dict[str, str]]:
  """item -> {"1": model, "2": model}, worked out from the outputs' texts (not from key.json)."""
  outputs = {row["id"]: row for row in map(json.loads, (directory / side_by_side.OUTPUTS).read_text().splitlines())}
  out = {}
  for row in map(json.loads, (directory / side_by_side.RATING_SET).read_text().splitlines()):
    first_is_a = row["response_1"] == outputs[row["id"]]["output_a"]
    assert row["response_2"] == outputs[row["id"]]["output_b" if first_is_a else "output_a"]
    out[row["id"]] = {"1": "a" if first_is_a else "b", "2": "b" if first_is_a else "a"}
  return out
