"""Runs suites with a `Predictor`: prompts -> outputs -> answers -> metrics -> results.json, table, predictions.

Generation stops at each example's stop sequences, in the decoding loop and again on the text (`stopping.cut`);
a prediction record keeps the cut `output` (what the answer is extracted from), the `raw_output` as decoded and
the `stop` that cut it (null when none did).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Sequence

import jax

from flan_jax import progress, stopping
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
  score_eos: bool = True                 # rank classification scores each option's EOS too (T5X's convention)


def run_suite(suite: Suite, predictor: Predictor, options: EvalOptions
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
  """(aggregated results, one prediction record per example)."""
  examples = suite.examples(options.limit, tfds_data_dir=options.tfds_data_dir)
  records = []
  if suite.rank:
    best, scores = [], []
    for chunk in _chunks(examples, predictor.batch_size, suite.name):
      b, s = predictor.rank_classification([e.prompt for e in chunk], [e.options for e in chunk], options.score_eos)
      best += b
      scores += s
    for ex, b, row in zip(examples, best, scores):
      answer = ex.options[b]
      records.append(_record(suite, ex, answer, answer, {"option_scores": row}))
    return {**report.aggregate(suite.name, records), "score_eos": options.score_eos}, records
  length = options.max_decode_length or suite.max_decode_length
  k = options.self_consistency if suite.cot else 1
  if k > 1:
    config = DecodeConfig("sample", length, num_decodes=k, temperature=options.temperature)
    rng = jax.random.PRNGKey(options.seed)
  else:
    config, rng = DecodeConfig("greedy", length), None
  outputs = []
  for number, chunk in enumerate(_chunks(examples, predictor.batch_size, suite.name)):
    chunk_rng = None if rng is None else jax.random.fold_in(rng, number)
    outputs += predictor.predict([e.prompt for e in chunk], config, chunk_rng, [e.stop_sequences for e in chunk])
  for ex, raws in zip(examples, outputs):
    outs, stops = zip(*(stopping.cut(r, ex.stop_sequences) for r in raws))
    extracted = [suite.extract(o, ex) for o in outs]
    answer = answers.majority_vote(extracted) if k > 1 else extracted[0]
    extra = {"raw_output": raws[0], "stop": stops[0]}
    if k > 1:
      extra.update(samples=list(outs), raw_samples=raws, sample_answers=extracted)
    records.append(_record(suite, ex, outs[0], answer, extra))
  result = report.aggregate(suite.name, records)
  result["stop_sequences"] = sorted({s for ex in examples for s in ex.stop_sequences})
  result["stopped"] = sum(r["stop"] is not None for r in records)
  return result, records


def _chunks(examples: list, batch_size: int, what: str, batches_per_chunk: int = 4):
  """The examples in chunks of a few batches, with a progress line per chunk (a bar on a terminal)."""
  size = batch_size * batches_per_chunk
  bar = progress.Progress(len(examples), f"[eval] {what} examples")
  for start in range(0, len(examples), size):
    yield examples[start:start + size]
    bar.update(len(examples[start:start + size]))
  bar.close()


def _record(suite: Suite, ex, output: str, answer: str, extra: dict) -> dict[str, Any]:
  return {"suite": suite.name, "task": ex.task, "index": ex.index, "prompt": ex.prompt, "target": ex.target,
          "output": output, "answer": answer, "metrics": suite.score(answer, ex), **extra}


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
