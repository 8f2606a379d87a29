"""Every suite end to end on a tiny random checkpoint with --limit, through `flan-jax eval`."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from eval_fixtures import write_tiny_checkpoint
from flan_jax import eval as eval_main
from flan_jax import inference, stopping
from flan_jax.evaluation import make_evaluator, runner, suites, tydiqa


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
  directory = tmp_path_factory.mktemp("tiny_ckpt")
  model, params = write_tiny_checkpoint(directory)
  return directory, model, params


def test_all_suites_end_to_end(tiny_checkpoint, tmp_path, capsys):
  directory, _, _ = tiny_checkpoint
  out = tmp_path / "out"
  with tfds.testing.mock_data(num_examples=3, data_dir=str(tmp_path / "tfds")):
    rc = eval_main.main(["--checkpoint", str(directory), "--suite", ",".join(suites.SUITES), "--limit", "1",
                         "--max_decode_length", "4", "--max_input_length", "1024", "--batch_size", "8",
                         "--tfds_data_dir", str(tmp_path / "tfds"), "--output_dir", str(out)])
  assert rc == 0
  results = json.loads((out / "results.json").read_text())
  counts = {"mmlu_direct": 57, "mmlu_cot": 57, "bbh_direct": 27, "bbh_cot": 27, "mgsm_cot": 11,
            "mgsm_cot_en": 11, "tydiqa_direct": 8}
  for name, n in counts.items():
    r = results["suites"][name]
    assert r["count"] == n and len(r["tasks"]) == n and 0.0 <= r["score"] <= 100.0
  assert set(results["suites"]["mmlu_direct"]["categories"]) == {"STEM", "humanities", "social sciences", "other"}
  summary = results["summary"]
  assert summary["normalized_complete"] and summary["normalized_suites"] == list(suites.NORMALIZED_SUITES)
  want = np.mean([100 * (results["suites"][s]["score"] - results["suites"][s]["baseline"])
                  / (100 - results["suites"][s]["baseline"]) for s in suites.NORMALIZED_SUITES])
  assert summary["normalized_average"] == pytest.approx(want)
  assert results["checkpoint"]["step"] == 0 and results["options"]["score_eos"] is True
  assert results["suites"]["mmlu_direct"]["score_eos"] is True
  assert results["suites"]["bbh_cot"]["stop_sequences"] == ["\n\nQ:"]
  assert "\n\nFrage:" in results["suites"]["mgsm_cot"]["stop_sequences"]
  assert results["suites"]["mgsm_cot_en"]["stop_sequences"] == ["\n\nQuestion:"]
  preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
  assert len(preds) == sum(counts.values())
  stops = {(name, ex.task): ex.stop_sequences for name in counts if name not in ("mmlu_direct", "tydiqa_direct")
           for ex in suites.SUITES[name].examples(1)}
  for p in preds:
    if p["suite"] == "mmlu_direct":
      assert p["answer"] in "ABCD" and len(p["option_scores"]) == 4
      assert p["answer"] == "ABCD"[int(np.argmax(p["option_scores"]))]
    else:
      task_stops = stops.get((p["suite"], p["task"]), tydiqa.STOP_SEQUENCES)
      assert (p["output"], p["stop"]) == stopping.cut(p["raw_output"], task_stops)
    assert set(p["metrics"].values()) <= {0.0, 1.0} or p["suite"] == "tydiqa_direct"
  for name, r in results["suites"].items():
    assert r["no_answer"] == sum(p["answer"] == "" for p in preds if p["suite"] == name)
    assert r.get("stopped", 0) == sum(p.get("stop") is not None for p in preds if p["suite"] == name)
  table = (out / "results.md").read_text()
  assert "| **normalized average** |" in table and "| mgsm/zh |" in table and "| STEM |" in table
  captured = capsys.readouterr()
  assert "[eval] bbh_direct examples 27/27" in captured.err  # progress per suite
  printed = captured.out.splitlines()
  assert printed[0].split() == ["suite", "score", "normalized", "examples", "no", "answer"]
  bbh_row = next(line.split() for line in printed if line.startswith("bbh_direct "))
  assert bbh_row[1] == f"{results['suites']['bbh_direct']['score']:.1f}" and bbh_row[3] == "27"
  assert printed[-1].startswith("normalized average") and printed[-1].endswith(f"{summary['normalized_average']:.1f}")
  mmlu = suites.SUITES["mmlu_direct"].examples(1)
  first = next(p for p in preds if p["suite"] == "mmlu_direct")
  assert first["prompt"] == next(ex.prompt for ex in mmlu if ex.task == first["task"])


def test_self_consistency_votes_over_samples(tiny_checkpoint):
  _, model, params = tiny_checkpoint
  predictor = inference.Predictor(model, params, batch_size=8, max_input_length=1024)
  options = runner.EvalOptions(limit=1, max_decode_length=4, self_consistency=3)
  result, records = runner.run_suite(suites.SUITES["mgsm_cot"], predictor, options)
  assert result["count"] == 11
  for r in records:
    ex = next(e for e in suites.SUITES["mgsm_cot"].examples(1) if e.task == r["task"])
    assert len(r["samples"]) == 3 and r["sample_answers"] == [suites.SUITES["mgsm_cot"].extract(s, ex)
                                                              for s in r["samples"]]
    assert r["samples"] == [stopping.cut(raw, ex.stop_sequences)[0] for raw in r["raw_samples"]]
    assert r["answer"] == suites.answers.majority_vote(r["sample_answers"])


def test_evaluator_for_the_trainer(tiny_checkpoint, tmp_path):
  _, model, params = tiny_checkpoint
  evaluate = make_evaluator("bbh_direct", limit=1, max_decode_length=4, max_input_length=1024,
                            output_dir=str(tmp_path))
  metrics = evaluate(model, params, 7)
  assert set(metrics) == {"eval/bbh_direct", "eval/normalized_average"}
  assert all(isinstance(v, float) for v in metrics.values())
  assert (tmp_path / "step_7" / "results.json").exists()


def test_prompts_subcommand(capsys):
  assert eval_main.main(["prompts", "--suite", "bbh_cot,mgsm_cot", "-n", "2"]) == 0
  rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert len(rows) == 2 * 27 + 2 * 11
  assert rows[0]["task"] == "bbh/boolean_expressions" and rows[0]["prompt"].endswith(
      "\nA: Let's think step by step.")
  with pytest.raises(SystemExit):
    eval_main.main(["prompts", "--suite", "nope"])
