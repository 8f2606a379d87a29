"""Runs suites with a `Predictor`: prompts -> outputs -> answers -> metrics -> results.json, table, predictions."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Sequence

import jax

from flan_jax.evaluation import answers, report
from flan_jax.evaluation.suites import Suite, get_suites
from flan_jax.inference import DecodeConfig, Predictor


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  limit: int | None = None               # first N test examples of every task
  max_decode_length: int | None = None   # overrides each suite's own
  self_consistency: int = 1              # k > 1: k samples per CoT prompt, majority vote over answers
  temperature: float = 0.7               # for self-consistency samples
  seed: int = 0
  tfds_data_dir: str | None = None


def run_suite(suite: Suite, predictor: Predictor, options: EvalOptions
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """(aggregated results, one prediction record per example)."""
  examples = suite.examples(options.limit, tfds_data_dir=options.tfds_data_dir)
  records = []
  if suite.rank:
    best, scores = predictor.rank_classification([e.prompt for e in examples], [e.options for e in examples])
    for ex, b, row in zip(examples, best, scores):
      answer = ex.options[b]
      records.append(_record(suite, ex, answer, answer, {"option_scores": row}))
    return report.aggregate(suite.name, records), records
  length = options.max_decode_length or suite.max_decode_length
  k = options.self_consistency if suite.cot else 1
  if k > 1:
    config = DecodeConfig("sample", length, num_decodes=k, temperature=options.temperature)
    rng = jax.random.PRNGKey(options.seed)
  else:
    config, rng = DecodeConfig("greedy", length), None
  outputs = predictor.predict([e.prompt for e in examples], config, rng)
  for ex, outs in zip(examples, outputs):
    extracted = [suite.extract(o) for o in outs]
    answer = answers.majority_vote(extracted) if k > 1 else extracted[0]
    extra = {"samples": outs, "sample_answers": extracted} if k > 1 else {}
    records.append(_record(suite, ex, outs[0], answer, extra))
  return report.aggregate(suite.name, records), records


def _record(suite: Suite, ex, output: str, answer: str, extra: dict) -> dict[str, Any]:
  return {"suite": suite.name, "task": ex.task, "index": ex.index, "target": ex.target, "output": output,
          "answer": answer, "metrics": suite.score(answer, ex), **extra}


def evaluate(predictor: Predictor, suites: str | Sequence[str], options: EvalOptions
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """Runs every suite; returns ({"suites": ..., "summary": ...}, all prediction records)."""
  results, records = {}, []
  for suite in get_suites(list(suites) if not isinstance(suites, str) else suites):
    start = time.time()
    results[suite.name], recs = run_suite(suite, predictor, options)
    results[suite.name]["seconds"] = time.time() - start
    print(f"[eval] {suite.name}: {results[suite.name]['score']:.2f} ({len(recs)} examples, "
          f"{results[suite.name]['seconds']:.1f}s)", file=sys.stderr)
    records += recs
  summary = report.summarize(results)
  summary["truncated_inputs"] = predictor.truncated
  return {"suites": results, "summary": summary}, records


def write_outputs(output_dir: str | os.PathLike, results: dict[str, Any], records: list[dict[str, Any]]) -> None:
  os.makedirs(output_dir, exist_ok=True)
  with open(os.path.join(output_dir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2, ensure_ascii=False)
  with open(os.path.join(output_dir, "results.md"), "w", encoding="utf-8") as f:
    f.write(report.markdown(results["suites"], results["summary"]))
  with open(os.path.join(output_dir, "predictions.jsonl"), "w", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r, ensure_ascii=False) + "\n")
