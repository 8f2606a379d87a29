"""`flan-jax eval open-ended` end to end on tiny random checkpoints: outputs, rating set, key, then the report."""
from __future__ import annotations

import json

import jax
import pytest

from eval_fixtures import write_tiny_checkpoint
from flan_jax import cli, inference
from flan_jax import eval as eval_main
from flan_jax.evaluation import open_ended, ratings, side_by_side
from rating_fixtures import model_of_response

PROMPTS = [{"inputs": "Write a short poem about the sea.", "category": "creative"},
           {"inputs": "Give me three tips for a job interview.", "category": "advice", "id": "tips"},
           {"inputs": "Explain why the sky is blue.", "category": "explanation"},
           {"inputs": "Tell a joke about a cat.", "category": "creative"},
           {"inputs": "How do I boil an egg?", "category": "advice"}]
DECODE = ["--max_decode_length", "5", "--batch_size", "2", "--max_input_length", "64"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  out = []
  for seed in (0, 1):
    directory = tmp_path_factory.mktemp(f"tiny_{seed}")
    model, params = write_tiny_checkpoint(directory, seed=seed)
    out.append((directory, model, params))
  return out


@pytest.fixture
def prompts_file(tmp_path):
  path = tmp_path / "prompts.jsonl"
  path.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
  return path


def _rows(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def _expected(model, params, config, rng=None):
  predictor = inference.Predictor(model, params, batch_size=2, max_input_length=64)
  inputs = [p["inputs"] for p in PROMPTS]
  return [row[0] for start in range(0, len(inputs), 2)
          for row in predictor.predict(inputs[start:start + 2], config,
                                       None if rng is None else jax.random.fold_in(rng, start))]


def test_two_checkpoints_side_by_side_then_report(checkpoints, prompts_file, tmp_path, capsys):
  (dir_a, model_a, params_a), (dir_b, model_b, params_b) = checkpoints
  out = tmp_path / "run"
  rc = eval_main.main(["open-ended", "--checkpoint", str(dir_a), "--baseline", str(dir_b), "--prompts",
                       str(prompts_file), "--output_dir", str(out), "--seed", "4", *DECODE])
  assert rc == 0
  err = capsys.readouterr().err
  assert "model A outputs 5/5" in err and "model B outputs 5/5" in err
  rows = _rows(out / side_by_side.OUTPUTS)
  config = inference.DecodeConfig("greedy", 5)
  assert [r["output_a"] for r in rows] == _expected(model_a, params_a, config)
  assert [r["output_b"] for r in rows] == _expected(model_b, params_b, config)
  assert [r["output_a"] for r in rows] != [r["output_b"] for r in rows]
  assert [r["id"] for r in rows] == ["1", "tips", "3", "4", "5"]
  assert [r["category"] for r in rows] == [p["category"] for p in PROMPTS]
  assert rows[0]["model_a"] == f"{dir_a} (step 0)" and rows[0]["model_b"] == f"{dir_b} (step 0)"
  generation = json.loads((out / side_by_side.GENERATION).read_text())
  assert generation["method"] == "greedy" and generation["max_decode_length"] == 5 and generation["seed"] == 4
  key = json.loads((out / side_by_side.KEY).read_text())
  sides = model_of_response(out)
  assert {i: s["response_1"] for i, s in key["items"].items()} == {i: s["1"] for i, s in sides.items()}
  assert key["items"] == {i: {"response_1": s, "response_2": "b" if s == "a" else "a"}
                          for i, s in side_by_side.assign_sides([r["id"] for r in rows], 4).items()}

  # One rater prefers A everywhere but on "tips"; the report through `flan-jax eval open-ended --report`.
  for item in side_by_side.load_rating_set(out):
    prefer_a = item["id"] != "tips"
    choice = "1" if (sides[item["id"]]["1"] == "a") == prefer_a else "2"
    ratings.append(out / side_by_side.RATINGS, {"item": item["id"], "rater": "ann", "choice": choice,
                                                "comment": "", "time": ratings.now()})
  assert cli.main(["eval", "open-ended", "--report", str(out), "--resamples", "200"]) == 0
  printed = capsys.readouterr().out
  assert printed.splitlines()[1].split()[:3] == ["overall", "5", "5"]
  results = json.loads((out / "results.json").read_text())
  assert results["overall"]["win"]["rate"] == pytest.approx(80.0)
  assert results["overall"]["loss"]["rate"] == pytest.approx(20.0)
  assert results["categories"]["advice"]["win"]["rate"] == pytest.approx(50.0)
  assert results["options"]["resamples"] == 200 and results["models"]["a"] == rows[0]["model_a"]
  assert "| overall | 5 | 5 | 80.0 [" in (out / "results.md").read_text()


def test_checkpoint_against_stored_outputs_with_sampling(checkpoints, prompts_file, tmp_path):
  (dir_a, model_a, params_a), _ = checkpoints
  stored = tmp_path / "baseline.jsonl"
  # In another order, with extra fields and an extra row, as `flan-jax infer` output might be.
  stored.write_text("".join(json.dumps({"inputs": p["inputs"], "output": f"stored {k}", "score": -1.0}) + "\n"
                            for k, p in reversed(list(enumerate(PROMPTS + [{"inputs": "unused"}])))))
  sample = ["--method", "sample", "--temperature", "0.9", "--topk", "20", "--seed", "7"]
  for name in ("run1", "run2"):
    assert open_ended.main(["--checkpoint", str(dir_a), "--baseline_outputs", str(stored), "--prompts",
                            str(prompts_file), "--output_dir", str(tmp_path / name), *sample, *DECODE]) == 0
  rows = _rows(tmp_path / "run1" / side_by_side.OUTPUTS)
  assert rows == _rows(tmp_path / "run2" / side_by_side.OUTPUTS)  # seeded
  assert [r["output_b"] for r in rows] == [f"stored {k}" for k in range(len(PROMPTS))]
  assert rows[0]["model_b"] == f"{stored} (stored outputs)"
  config = inference.DecodeConfig("sample", 5, temperature=0.9, topk=20)
  assert [r["output_a"] for r in rows] == _expected(model_a, params_a, config, jax.random.PRNGKey(7))
  greedy = _expected(model_a, params_a, inference.DecodeConfig("greedy", 5))
  assert [r["output_a"] for r in rows] != greedy


def test_bad_input_fails_before_any_model_runs(prompts_file, tmp_path, capsys):
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"inputs": "fine"}\n{"category": "no inputs"}\n')
  args = ["--checkpoint", str(tmp_path / "no_such_ckpt"), "--baseline", str(tmp_path / "nor_this"),
          "--output_dir", str(tmp_path / "out")]
  assert open_ended.main(args + ["--prompts", str(bad)]) == 2
  assert f"{bad}:2: needs a non-empty string field \"inputs\"" in capsys.readouterr().err
  stored = tmp_path / "stored.jsonl"
  stored.write_text('{"inputs": "Write a short poem about the sea.", "output": "x"}\n')
  assert open_ended.main(["--checkpoint", str(tmp_path / "no_such_ckpt"), "--baseline_outputs", str(stored),
                          "--prompts", str(prompts_file), "--output_dir", str(tmp_path / "out")]) == 2
  assert "no output for 4 prompt(s)" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "c", "--prompts", "p", "--output_dir", "o"], "missing --baseline or --baseline_outputs"),
    (["--checkpoint", "c", "--baseline", "b", "--baseline_outputs", "f"], "not allowed with argument"),
    (["--report", "d", "--checkpoint", "c"], "--report reads a rated dir; it takes no --checkpoint"),
    (["--report", "d", "--resamples", "0"], "--resamples must be >= 1"),
    (["--checkpoint", "c", "--baseline", "b", "--prompts", "p", "--output_dir", "o", "--method", "beam"],
     "invalid choice: 'beam'"),
])
def test_bad_flags(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    open_ended.main(argv)
  assert e.value.code == 2 and message in capsys.readouterr().err


def test_report_of_a_dir_without_ratings_fails_clearly(tmp_path, capsys):
  assert open_ended.main(["--report", str(tmp_path)]) == 2
  assert "rating_set.jsonl: missing" in capsys.readouterr().err
