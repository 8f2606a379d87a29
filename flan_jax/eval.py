"""`flan-jax eval`: run the paper's evaluation suites on a checkpoint, or print their exact prompts.

  flan-jax eval --checkpoint DIR --suite mmlu_direct,mmlu_cot,bbh_direct,bbh_cot,mgsm_cot,tydiqa_direct
                [--limit N] [--output_dir OUT] [--self_consistency K] [--tfds_data_dir D] [--score_eos true|false]
  flan-jax eval prompts --suite S [-n N]
  flan-jax eval open-ended --checkpoint A (--baseline B | --baseline_outputs FILE) --prompts FILE --output_dir OUT
  flan-jax eval open-ended --report OUT      (side-by-side rating; see `flan-jax eval open-ended --help`)

Writes OUT/results.json, OUT/results.md (per task, per benchmark, normalized average) and OUT/predictions.jsonl
(per example the cut output, the raw output, the stop sequence that cut it, the answer, the metrics);
OUT defaults to DIR/eval_step<step>.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.evaluation.suites import SUITES, get_suites


def _prompts_main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="flan-jax eval prompts", description="print exact prompts and targets")
  parser.add_argument("--suite", required=True, help=f"comma-separated, from {sorted(SUITES)}")
  parser.add_argument("-n", type=int, default=None, help="first N examples of every task (default: all)")
  parser.add_argument("--tfds_data_dir", default=None)
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args(argv)
  if args.data_dir:
    data_dir_lib.set_data_dir(args.data_dir)
  try:
    suites = get_suites(args.suite)
  except ValueError as e:
    parser.error(str(e))
  for suite in suites:
    for ex in suite.examples(args.n, tfds_data_dir=args.tfds_data_dir):
      row = {"suite": suite.name, "task": ex.task, "index": ex.index, "prompt": ex.prompt, "target": ex.target}
      if ex.options:
        row["options"] = list(ex.options)
      if ex.golds:
        row["golds"] = list(ex.golds)
      if ex.stop_sequences:
        row["stop_sequences"] = list(ex.stop_sequences)
      print(json.dumps(row, ensure_ascii=False))
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="flan-jax eval", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="checkpoint dir (model.json + Orbax steps)")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument("--suite", required=True, help=f"comma-separated, from {sorted(SUITES)}")
  parser.add_argument("--limit", type=int, default=None, help="first N test examples of every task")
  parser.add_argument("--output_dir", default=None)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--max_input_length", type=int, default=2048)
  parser.add_argument("--max_decode_length", type=int, default=None, help="override every suite's own")
  parser.add_argument("--self_consistency", type=int, default=1, help="CoT: K samples, majority vote")
  parser.add_argument("--temperature", type=float, default=0.7, help="for self-consistency samples")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--score_eos", choices=("true", "false"), default="true",
                      help="rank classification scores each option's EOS too (T5X, default) or not (harnesses "
                           "that score bare continuations)")
  parser.add_argument("--tfds_data_dir", default=None, help="TFDS dir holding tydi_qa/goldp (read-only)")
  parser.add_argument("--data_dir", default=None, help="the Flan data dir (default: $FLAN_JAX_DATA_DIR)")
  return parser


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] == "prompts":
    return _prompts_main(argv[1:])
  if argv and argv[0] == "open-ended":
    from flan_jax.evaluation import open_ended
    return open_ended.main(argv[1:])
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.data_dir:
    data_dir_lib.set_data_dir(args.data_dir)
  try:
    suites = [s.name for s in get_suites(args.suite)]
  except ValueError as e:
    parser.error(str(e))
  if args.self_consistency < 1:
    parser.error("--self_consistency must be >= 1")
  from flan_jax import inference
  from flan_jax.evaluation import report
  from flan_jax.evaluation.runner import EvalOptions, evaluate, write_outputs

  start = time.time()
  from flan_jax.checkpoints.loader import CheckpointError
  try:
    model, params, step = inference.load_checkpoint(args.checkpoint, args.step)
  except CheckpointError as e:
    print(f"flan-jax eval: {e}", file=sys.stderr)
    return 1
  predictor = inference.Predictor(model, params, batch_size=args.batch_size,
                                  max_input_length=args.max_input_length)
  options = EvalOptions(limit=args.limit, max_decode_length=args.max_decode_length,
                        self_consistency=args.self_consistency, temperature=args.temperature, seed=args.seed,
                        tfds_data_dir=args.tfds_data_dir, score_eos=args.score_eos == "true")
  results, records = evaluate(predictor, suites, options)
  results["checkpoint"] = {"dir": os.path.abspath(args.checkpoint), "step": step}
  results["options"] = {"limit": args.limit, "self_consistency": args.self_consistency,
                        "max_decode_length": args.max_decode_length, "score_eos": options.score_eos}
  results["seconds"] = time.time() - start
  output_dir = args.output_dir or os.path.join(args.checkpoint, f"eval_step{step}")
  write_outputs(output_dir, results, records)
  summary = results["summary"]
  print(report.console_table(results["suites"], summary))
  print(f"wrote {output_dir}/results.json, results.md, predictions.jsonl ({len(records)} predictions, "
        f"{summary['truncated_inputs']} truncated inputs); normalized average: {summary['normalized_average']}",
        file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
