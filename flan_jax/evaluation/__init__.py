"""The paper's evaluation: MMLU, BBH, MGSM and TyDiQA suites in direct and CoT settings, the normalized average.

Periodic evaluation during training uses `make_evaluator`:

    evaluate = make_evaluator(suites="mmlu_direct,bbh_direct", limit=20, batch_size=8, output_dir=None)
    metrics = evaluate(model, params, step)   # -> {"eval/<suite>": score, ..., "eval/normalized_average": x}

`model` is a `flan_jax.models.model.EncoderDecoderModel` / `DecoderOnlyModel`, `params` its (unboxed) params,
`step` the training step (used to name `output_dir/step_<step>/` when an output dir is given). Scores are
percentages; the returned dict holds plain floats, ready for a metrics writer.

The runner (and with it seqio, TensorFlow and JAX) is imported on first use, so the task registries can import
`flan_jax.evaluation.answers` for their postprocessors in a process that only renders data.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from flan_jax.evaluation.suites import NORMALIZED_SUITES, SUITES

_RUNNER_NAMES = ("EvalOptions", "evaluate", "write_outputs")

Evaluator = Callable[[Any, dict, int], dict[str, float]]


def make_evaluator(suites: str = ",".join(NORMALIZED_SUITES[:4]), *, limit: int | None = 20,
                   batch_size: int = 8, max_input_length: int = 2048, max_decode_length: int | None = None,
                   tfds_data_dir: str | None = None, output_dir: str | None = None) -> Evaluator:
  """An evaluator(model, params, step) -> flat metrics, for the trainer to call every N steps."""
  from flan_jax.evaluation.runner import EvalOptions, evaluate, write_outputs  # pylint: disable=import-outside-toplevel
  from flan_jax.inference import Predictor  # pylint: disable=import-outside-toplevel

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


def __getattr__(name: str) -> Any:
  if name in _RUNNER_NAMES:
    from flan_jax.evaluation import runner  # pylint: disable=import-outside-toplevel
    return getattr(runner, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EvalOptions", "Evaluator", "SUITES", "NORMALIZED_SUITES", "evaluate", "make_evaluator",
           "write_outputs"]
