"""`flan-jax infer` on a tiny checkpoint: predict and score JSONL for --input."""
from __future__ import annotations

import json

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
  want = predictor.predict([text], inference.DecodeConfig(max_decode_length=5))[0][0]
  assert row == {"input": text, "prediction": want}
  assert infer.main(["--checkpoint", str(directory), "--input", text, "--target", target, "--mode", "score",
                     "--batch_size", "1", "--output", str(out)]) == 0
  row = json.loads(out.read_text())
  assert row["target"] == target and row["score"] == pytest.approx(predictor.score([text], [target])[0], abs=1e-5)
  assert row["score"] < 0


def test_bad_arguments(tiny_checkpoint):
  directory, _, _ = tiny_checkpoint
  with pytest.raises(SystemExit):
    infer.main(["--checkpoint", str(directory), "--input", "x", "--mode", "score"])
  with pytest.raises(SystemExit):
    infer.main(["--checkpoint", str(directory), "--input", "x", "--mixture", "m"])
  with pytest.raises(FileNotFoundError, match="model.json"):
    infer.main(["--checkpoint", str(directory / "missing"), "--input", "x"])


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
  assert [(r["input"], r["target"]) for r in rows] == list(zip(inputs[:2], targets[:2]))
  predictor = inference.Predictor(model, params, batch_size=1)
  want = predictor.score(inputs[:2], targets[:2])
  assert [r["score"] for r in rows] == pytest.approx(want, abs=1e-5)
