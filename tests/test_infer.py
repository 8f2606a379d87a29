"""`flan-jax infer` on a tiny checkpoint: predict and score JSONL for --input, --input_file and --mixture."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from eval_fixtures import write_tiny_checkpoint
from flan_jax import infer, inference


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
  directory = tmp_path_factory.mktemp("tiny_infer_ckpt")
  model, params = write_tiny_checkpoint(directory)
  return directory, model, params


def test_predict_and_score(tiny_checkpoint, tmp_path):
  directory, model, params = tiny_checkpoint
  predictor = inference.Predictor(model, params, batch_size=1)
  text, target = "Answer the question: what is 2 + 2?", "4"
  out = tmp_path / "pred.jsonl"
  assert infer.main(["--checkpoint", str(directory), "--input", text, "--max_decode_length", "5",
                     "--batch_size", "1", "--output", str(out)]) == 0
  row = json.loads(out.read_text())
  config = inference.DecodeConfig(max_decode_length=5)
  want = predictor.predict([text], config)[0][0]
  ids = predictor.predict_ids([text], config)[0][0]
  assert {k: row[k] for k in ("inputs", "output", "tokens")} == {"inputs": text, "output": want, "tokens": ids}
  ended = ids + [1] if len(ids) < 5 else ids
  assert row["score"] == pytest.approx(predictor.score_ids([text], [ended])[0], abs=1e-5)
  assert infer.main(["--checkpoint", str(directory), "--input", text, "--target", target, "--mode", "score",
                     "--batch_size", "1", "--output", str(out)]) == 0
  row = json.loads(out.read_text())
  assert row["targets"] == target and row["score"] == pytest.approx(predictor.score([text], [target])[0], abs=1e-5)
  assert row["score"] < 0


def test_bad_arguments(tiny_checkpoint, capsys):
  directory, _, _ = tiny_checkpoint
  with pytest.raises(SystemExit):
    infer.main(["--checkpoint", str(directory), "--input", "x", "--mode", "score"])
  with pytest.raises(SystemExit):
    infer.main(["--checkpoint", str(directory), "--input", "x", "--mixture", "m"])
  capsys.readouterr()
  assert infer.main(["--checkpoint", str(directory / "missing"), "--input", "x"]) == 1
  assert capsys.readouterr().err.startswith(f"flan-jax infer: {directory / 'missing'}")


def test_mixture_rows_from_a_registered_task(tiny_checkpoint, tmp_path):
  import seqio
  import tensorflow as tf

  directory, model, params = tiny_checkpoint
  name = "infer_test_tiny_task"
  inputs, targets = ["first input text", "second, longer input text here", "third"], ["a", "b", "c"]
  if name not in seqio.TaskRegistry.names():
    def dataset_fn(split, shuffle_files, seed=None):
      return tf.data.Dataset.from_tensor_slices({"inputs_pretokenized": inputs, "targets_pretokenized": targets})

    seqio.TaskRegistry.add(name, seqio.FunctionDataSource(dataset_fn, splits=["validation"]), output_features={})
  out = tmp_path / "scores.jsonl"
  assert infer.main(["--checkpoint", str(directory), "--mixture", name, "--module", "seqio", "--limit", "2",
                     "--mode", "score", "--batch_size", "1", "--output", str(out)]) == 0
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [(r["inputs"], r["targets"]) for r in rows] == list(zip(inputs[:2], targets[:2]))
  predictor = inference.Predictor(model, params, batch_size=1)
  want = predictor.score(inputs[:2], targets[:2])
  assert [r["score"] for r in rows] == pytest.approx(want, abs=1e-5)


def test_input_file_jsonl_and_text_in_batches(tiny_checkpoint, tmp_path, capsys):
  directory, model, params = tiny_checkpoint
  prompts = ["first prompt", "a second, longer prompt", "third", "fourth one"]
  jsonl = tmp_path / "in.jsonl"
  jsonl.write_text("\n".join(json.dumps({"inputs": p, "targets": "x"}) for p in prompts) + "\n\n")
  out = tmp_path / "out.jsonl"
  assert infer.main(["--checkpoint", str(directory), "--input_file", str(jsonl), "--mode", "score",
                     "--batch_size", "3", "--output_file", str(out)]) == 0
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  want = inference.Predictor(model, params, batch_size=3).score(prompts, ["x"] * 4)
  assert [r["inputs"] for r in rows] == prompts and [r["score"] for r in rows] == pytest.approx(want, abs=1e-5)
  assert "examples 4/4" in capsys.readouterr().err
  text = tmp_path / "in.txt"
  text.write_text("\n".join(prompts[:3]) + "\n")
  assert infer.main(["--checkpoint", str(directory), "--input_file", str(text), "--max_decode_length", "4",
                     "--batch_size", "2", "--output_file", str(out)]) == 0
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  decoded = inference.Predictor(model, params, batch_size=2).predict(prompts[:3],
                                                                    inference.DecodeConfig(max_decode_length=4))
  assert [(r["inputs"], r["output"]) for r in rows] == [(p, d[0]) for p, d in zip(prompts[:3], decoded)]


def test_input_file_errors_name_file_and_line(tmp_path):
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"inputs": "ok"}\n{"inputs": "unclosed"\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
    infer.file_rows(str(bad))
  bad.write_text('{"inputs": "ok"}\n\n{"prompt": "x"}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:3: needs a string field \"inputs\""):
    infer.file_rows(str(bad))
  bad.write_text('{"inputs": "ok", "targets": 3}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:1: \"targets\" must be a string"):
    infer.file_rows(str(bad))
  assert infer.file_rows(str(bad), limit=0) == []


def test_cli_reports_a_malformed_line(tiny_checkpoint, tmp_path):
  directory, _, _ = tiny_checkpoint
  bad = tmp_path / "prompts.jsonl"
  bad.write_text('{"inputs": "fine"}\n{"input": "typo"}\n')
  result = subprocess.run([sys.executable, "-m", "flan_jax.cli", "infer", "--checkpoint", str(directory),
                           "--input_file", str(bad)], capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      f'flan-jax infer: {bad}:2: needs a string field "inputs" (and optionally "targets")')


def test_score_eos_flag(tiny_checkpoint, tmp_path):
  directory, model, params = tiny_checkpoint
  predictor = inference.Predictor(model, params, batch_size=1)
  text, target, out = "Answer the question: what is 2 + 2?", "4", tmp_path / "score.jsonl"
  scores = {}
  for flag in ("true", "false"):
    assert infer.main(["--checkpoint", str(directory), "--input", text, "--target", target, "--mode", "score",
                       "--score_eos", flag, "--batch_size", "1", "--output", str(out)]) == 0
    scores[flag] = json.loads(out.read_text())["score"]
  assert scores["true"] == pytest.approx(predictor.score([text], [target])[0], abs=1e-5)
  assert scores["false"] == pytest.approx(predictor.score([text], [target], score_eos=False)[0], abs=1e-5)
  assert scores["false"] > scores["true"]   # the EOS token's log-prob is negative
  with pytest.raises(SystemExit):
    infer.main(["--checkpoint", str(directory), "--input", text, "--target", target, "--score_eos", "no"])
