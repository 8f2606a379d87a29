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
