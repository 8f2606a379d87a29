"""The paper's evaluation: MMLU, BBH, MGSM and TyDiQA suites in direct and CoT settings, the normalized average.

Periodic evaluation during training uses `make_evaluator`:

    evaluate = make_evaluator(suites="mmlu_direct,bbh_direct", limit=20, batch_size=8, output_dir=None)
    metrics = evaluate(model, params, step)   # -> {"eval/<suite>": score, ..., "eval/normalized_average": x}

`model` is a `flan_jax.models.model.EncoderDecoderModel` / `DecoderOnlyModel`, `params` its (unboxed) params,
`step` the training step (used to name `output_dir/step_<step>/` when an output dir is given). Scores are
percentages; the returned dict holds plain floats, ready for a metrics writer.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from flan_jax.evaluation.runner import EvalOptions, evaluate, write_outputs
from flan_jax.evaluation.suites import NORMALIZED_SUITES, SUITES

Evaluator = Callable[[Any, dict, int], dict[str, float]]


def make_evaluator(suites: str = ",".join(NORMALIZED_SUITES[:4]), *, limit: int | None = 20,
                   batch_size: int = 8, max_input_length: int = 2048, max_decode_length: int | None = None,
                   tfds_data_dir: str | None = None, output_dir: str | None = None) -> Evaluator:
  """An evaluator(model, params, step) -> flat metrics, for the trainer to call every N steps."""
  from flan_jax.inference import Predictor

  options = EvalOptions(limit=limit, max_decode_length=max_decode_length, tfds_data_dir=tfds_data_dir)

  def evaluator(model: Any, params: dict, step: int) -> dict[str, float]:
    predictor = Predictor(model, params, batch_size=batch_size, max_input_length=max_input_length)
    results, records = evaluate(predictor, suites, options)
    if output_dir:
      write_outputs(os.path.join(output_dir, f"step_{step}"), results, records)
    metrics = {f"eval/{name}": float(r["score"]) for name, r in results["suites"].items()}
    if results["summary"]["normalized_average"] is not None:
      metrics["eval/normalized_average"] = float(results["summary"]["normalized_average"])
    return metrics

  return evaluator


__all__ = ["EvalOptions", "Evaluator", "SUITES", "NORMALIZED_SUITES", "evaluate", "make_evaluator",
           "write_outputs"]
