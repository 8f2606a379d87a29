"""Prompts and stored outputs files, the balanced random sides, and the run dir's files agreeing with each other."""
from __future__ import annotations

import json

import pytest

from flan_jax.evaluation import side_by_side
from flan_jax.evaluation.side_by_side import Prompt, RunFileError
from rating_fixtures import model_of_response, write_rating_dir


def _write(path, lines):
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


def test_read_prompts_with_and_without_ids_and_categories(tmp_path):
  path = _write(tmp_path / "p.jsonl", [json.dumps({"inputs": "Write a poem.", "category": "creative"}), "",
                                       json.dumps({"inputs": "Plan a trip.", "id": "trip"}),
                                       json.dumps({"inputs": "Why is the sky blue?", "id": 7})])
  assert side_by_side.read_prompts(path) == [Prompt("1", "Write a poem.", "creative"),
                                             Prompt("trip", "Plan a trip.", None),
                                             Prompt("7", "Why is the sky blue?", None)]
  assert [p.id for p in side_by_side.read_prompts(path, limit=2)] == ["1", "trip"]


@pytest.mark.parametrize("lines, message", [
    (['{"inputs": "a"}', '{"inputs": "b"'], "p.jsonl:2: not JSON"),
    (['{"inputs": "a"}', '{"input": "b"}'], "p.jsonl:2: needs a non-empty string field \"inputs\""),
    (['{"inputs": "  "}'], "p.jsonl:1: needs a non-empty string field"),
    (['["a"]'], "p.jsonl:1: expected a JSON object, got list"),
    (['{"inputs": "a", "category": 3}'], "p.jsonl:1: \"category\" must be a non-empty string"),
    (['{"inputs": "a", "targets": "x"}'], "p.jsonl:1: unknown field(s) ['targets']"),
    (['{"inputs": "a", "id": "x"}', '', '{"inputs": "b", "id": "x"}'], "p.jsonl:3: id 'x' already used on line 1"),
    (['{"inputs": "a"}', '{"inputs": "b", "id": "1"}'], "p.jsonl:2: id '1' already used on line 1"),
    ([''], "p.jsonl: no prompts"),
])
def test_bad_prompts_files_fail_naming_file_and_line(tmp_path, lines, message):
  path = _write(tmp_path / "p.jsonl", lines)
  with pytest.raises(RunFileError) as e:
    side_by_side.read_prompts(path)
  assert message in str(e.value) and str(path) in str(e.value)


def test_prompts_file_not_in_utf8(tmp_path):
  path = tmp_path / "p.jsonl"
  path.write_bytes('{"inputs": "a"}\n{"inputs": "café"}\n'.encode("latin-1"))
  with pytest.raises(RunFileError, match="p.jsonl:2: not UTF-8"):
    side_by_side.read_prompts(path)


def test_missing_prompts_file(tmp_path):
  with pytest.raises(RunFileError, match="nope.jsonl: No such file"):
    side_by_side.read_prompts(tmp_path / "nope.jsonl")


def test_stored_outputs_are_matched_by_inputs(tmp_path):
  prompts = [Prompt("1", "first"), Prompt("2", "second")]
  path = _write(tmp_path / "b.jsonl", [json.dumps({"inputs": "other", "output": "x"}),
                                       json.dumps({"inputs": "second", "output": "two", "score": -1.5}),
                                       json.dumps({"inputs": "first", "output": "one"})])
  assert side_by_side.read_stored_outputs(path, prompts) == ["one", "two"]
  _write(path, [json.dumps({"inputs": "first", "output": "one"})])
  with pytest.raises(RunFileError, match=r"b.jsonl: no output for 1 prompt\(s\) \(ids \['2'\]\)"):
    side_by_side.read_stored_outputs(path, prompts)
  _write(path, [json.dumps({"inputs": "first", "output": "one"}), json.dumps({"inputs": "first", "output": "uno"})])
  with pytest.raises(RunFileError, match="b.jsonl:2: a different output for the inputs of line 1"):
    side_by_side.read_stored_outputs(path, prompts)
  _write(path, [json.dumps({"inputs": "first"})])
  with pytest.raises(RunFileError, match="b.jsonl:1: needs string fields"):
    side_by_side.read_stored_outputs(path, prompts)


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_sides_are_balanced(n):
  ids = [f"i{k}" for k in range(n)]
  sides = side_by_side.assign_sides(ids, seed=3)
  assert list(sides) == ids
  first_a = sum(s == "a" for s in sides.values())
  assert first_a - (n - first_a) in (0, 1)


def test_sides_are_random_and_seeded():
  ids = [f"i{k}" for k in range(40)]
  by_seed = [tuple(side_by_side.assign_sides(ids, seed).values()) for seed in range(5)]
  assert by_seed[0] == tuple(side_by_side.assign_sides(ids, 0).values())
  assert len(set(by_seed)) == 5
  half = ("a",) * 20 + ("b",) * 20
  assert half not in by_seed and half[::-1] not in by_seed
  # Not simply alternating either: some run of two equal sides in a row.
  assert all(any(s[k] == s[k + 1] for k in range(39)) for s in by_seed)


def test_run_files_agree(tmp_path):
  prompts = write_rating_dir(tmp_path, n=9)
  rating_set = side_by_side.load_rating_set(tmp_path)
  key = side_by_side.load_key(tmp_path, [r["id"] for r in rating_set])
  assert [r["id"] for r in rating_set] == [p.id for p in prompts]
  assert [r["prompt"] for r in rating_set] == [p.inputs for p in prompts]
  assert [r.get("category") for r in rating_set] == [p.category for p in prompts]
  from_texts = model_of_response(tmp_path)
  assert {i: {"1": s["response_1"], "2": s["response_2"]} for i, s in key["items"].items()} == from_texts
  assert key["models"] == {"a": "model-A", "b": "model-B"}
  # Raters see neither the models nor which output is whose.
  text = (tmp_path / side_by_side.RATING_SET).read_text()
  assert "model-A" not in text and "output_a" not in text
  assert set(json.loads(text.splitlines()[0])) == {"id", "prompt", "category", "response_1", "response_2"}
  outputs = [json.loads(l) for l in (tmp_path / side_by_side.OUTPUTS).read_text().splitlines()]
  assert {o["model_a"] for o in outputs} == {"model-A"} and {o["model_b"] for o in outputs} == {"model-B"}
  assert json.loads((tmp_path / side_by_side.GENERATION).read_text())["seed"] == 0


def test_prompts_without_category_have_none_in_the_files(tmp_path):
  write_rating_dir(tmp_path, n=3, categories=False)
  assert all("category" not in r for r in side_by_side.load_rating_set(tmp_path))


def test_a_rated_dir_is_not_overwritten(tmp_path):
  write_rating_dir(tmp_path, n=3)
  (tmp_path / side_by_side.RATINGS).write_text("")
  with pytest.raises(RunFileError, match="holds ratings of an earlier rating set"):
    write_rating_dir(tmp_path, n=3)


def test_damaged_run_files_fail_clearly(tmp_path):
  write_rating_dir(tmp_path, n=3)
  ids = [r["id"] for r in side_by_side.load_rating_set(tmp_path)]
  with pytest.raises(RunFileError, match="key.json: its items do not match"):
    side_by_side.load_key(tmp_path, ids + ["extra"])
  path = tmp_path / side_by_side.RATING_SET
  lines = path.read_text().splitlines()
  path.write_text("\n".join(lines + [lines[0]]) + "\n")
  with pytest.raises(RunFileError, match=r"rating_set.jsonl:4: id 'p0' appears twice"):
    side_by_side.load_rating_set(tmp_path)
  path.unlink()
  with pytest.raises(RunFileError, match="rating_set.jsonl: missing"):
    side_by_side.load_rating_set(tmp_path)
