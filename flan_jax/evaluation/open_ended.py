"""`flan-jax eval open-ended`: two models' outputs on open-ended prompts, blinded for side-by-side rating, and the
report of the ratings.

  flan-jax eval open-ended --checkpoint A (--baseline B | --baseline_outputs FILE.jsonl) --prompts FILE.jsonl
                           --output_dir DIR [--step N] [--baseline_step N] [--max_decode_length L]
                           [--method greedy|sample] [--temperature T] [--topk K] [--topp P] [--seed S]
                           [--batch_size N] [--max_input_length L] [--limit N]
  flan-jax rate DIR                    (the rating page; ratings go to DIR/ratings.jsonl)
  flan-jax eval open-ended --report DIR [--resamples N] [--seed S]

Prompts: JSONL with `inputs` (required), optional `category` and `id` (default: the line number). Stored baseline
outputs: JSONL rows with `inputs` and `output` (what `flan-jax infer --input_file` writes), matched by inputs.
The run dir's files are described in `flan_jax/evaluation/side_by_side.py`; the report writes DIR/results.json
and DIR/results.md (win / tie / loss of A against B with bootstrap intervals, per category, rater agreement).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Sequence

from flan_jax.evaluation import preference, side_by_side

if TYPE_CHECKING:
  from flan_jax.inference import DecodeConfig


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="flan-jax eval open-ended", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--report", metavar="DIR", help="summarise the ratings of a rated run dir")
  parser.add_argument("--checkpoint", help="model A: checkpoint dir (model.json + Orbax steps)")
  parser.add_argument("--step", type=int, default=None, help="model A's step (default: latest)")
  baseline = parser.add_mutually_exclusive_group()
  baseline.add_argument("--baseline", help="model B: checkpoint dir")
  baseline.add_argument("--baseline_outputs", help="model B: stored outputs, JSONL with inputs and output")
  parser.add_argument("--baseline_step", type=int, default=None)
  parser.add_argument("--prompts", help="JSONL: inputs, optional category and id")
  parser.add_argument("--output_dir")
  parser.add_argument("--limit", type=int, default=None, help="first N prompts")
  parser.add_argument("--method", choices=("greedy", "sample"), default="greedy")
  parser.add_argument("--temperature", type=float, default=1.0, help="--method sample")
  parser.add_argument("--topk", type=int, default=0, help="--method sample: keep the K likeliest tokens (0: all)")
  parser.add_argument("--topp", type=float, default=0.0, help="--method sample: nucleus mass (0: off)")
  parser.add_argument("--max_decode_length", type=int, default=256)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--max_input_length", type=int, default=2048)
  parser.add_argument("--seed", type=int, default=0,
                      help="sampling, the sides of the rating set and (with --report) the bootstrap")
  parser.add_argument("--resamples", type=int, default=preference.ReportConfig.resamples,
                      help="--report: bootstrap resamples of the items")
  return parser


def generate(checkpoint: str, step: int | None, prompts: Sequence[side_by_side.Prompt], config: DecodeConfig,
             seed: int, batch_size: int, max_input_length: int, label: str) -> tuple[list[str], int, int]:
  """(one output per prompt, the step restored, inputs truncated) of a checkpoint, with a progress bar."""
  import jax

  from flan_jax import inference, progress

  model, params, step = inference.load_checkpoint(checkpoint, step)
  predictor = inference.Predictor(model, params, batch_size=batch_size, max_input_length=max_input_length)
  rng = jax.random.PRNGKey(seed) if config.method == "sample" else None
  bar = progress.Progress(len(prompts), f"model {label} outputs")
  outputs: list[str] = []
  for start in range(0, len(prompts), batch_size):
    chunk = [p.inputs for p in prompts[start:start + batch_size]]
    chunk_rng = None if rng is None else jax.random.fold_in(rng, start)
    outputs += [row[0] for row in predictor.predict(chunk, config, chunk_rng)]
    bar.update(len(chunk))
  bar.close()
  return outputs, step, predictor.truncated


def _generate_main(args: argparse.Namespace) -> int:
  from flan_jax import inference

  side_by_side.check_unrated(args.output_dir)
  prompts = side_by_side.read_prompts(args.prompts, args.limit)
  config = inference.DecodeConfig(args.method, args.max_decode_length, temperature=args.temperature,
                                  topk=args.topk, topp=args.topp)
  # Stored outputs are checked before any model runs, so a bad file fails in seconds.
  stored = side_by_side.read_stored_outputs(args.baseline_outputs, prompts) if args.baseline_outputs else None
  start = time.time()
  sizes = (args.batch_size, args.max_input_length)
  outputs_a, step_a, truncated = generate(args.checkpoint, args.step, prompts, config, args.seed, *sizes, "A")
  models = {"a": f"{os.path.abspath(args.checkpoint)} (step {step_a})"}
  if stored is None:
    outputs_b, step_b, truncated_b = generate(args.baseline, args.baseline_step, prompts, config, args.seed,
                                              *sizes, "B")
    models["b"] = f"{os.path.abspath(args.baseline)} (step {step_b})"
    truncated += truncated_b
  else:
    outputs_b = stored
    models["b"] = f"{os.path.abspath(args.baseline_outputs)} (stored outputs)"
  settings = {"prompts": os.path.abspath(args.prompts), "count": len(prompts), "method": config.method,
              "max_decode_length": config.max_decode_length, "temperature": config.temperature,
              "topk": config.topk, "topp": config.topp, "max_input_length": args.max_input_length,
              "truncated_inputs": truncated, "seconds": time.time() - start}
  side_by_side.write_run(args.output_dir, prompts, outputs_a, outputs_b, models, args.seed, settings)
  print(f"wrote {args.output_dir}/outputs.jsonl, rating_set.jsonl, key.json ({len(prompts)} prompts, "
        f"{truncated} truncated inputs); rate them with: flan-jax rate {args.output_dir}", file=sys.stderr)
  return 0


def _report_main(args: argparse.Namespace) -> int:
  results = preference.build(args.report, preference.ReportConfig(resamples=args.resamples, seed=args.seed))
  preference.write(args.report, results)
  print(preference.console_table(results))
  print(f"wrote {args.report}/results.json, results.md", file=sys.stderr)
  return 0


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  if args.report:
    generation_flags = ("checkpoint", "baseline", "baseline_outputs", "prompts", "output_dir")
    given = [f"--{f}" for f in generation_flags if getattr(args, f) is not None]
    if given:
      parser.error(f"--report reads a rated dir; it takes no {', '.join(given)}")
    if args.resamples < 1:
      parser.error("--resamples must be >= 1")
  else:
    missing = [f"--{f}" for f in ("checkpoint", "prompts", "output_dir") if getattr(args, f) is None]
    if not (args.baseline or args.baseline_outputs):
      missing.append("--baseline or --baseline_outputs")
    if missing:
      parser.error(f"missing {', '.join(missing)} (or --report DIR)")
    if args.max_decode_length < 1 or args.batch_size < 1:
      parser.error("--max_decode_length and --batch_size must be >= 1")
  errors: tuple[type[Exception], ...] = (side_by_side.RunFileError,)
  if not args.report:
    from flan_jax.checkpoints.loader import CheckpointError
    errors += (CheckpointError,)
  try:
    return _report_main(args) if args.report else _generate_main(args)
  except errors as e:
    print(f"flan-jax eval open-ended: {e}", file=sys.stderr)
    return 2
