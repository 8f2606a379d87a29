"""`flan-jax infer`: decode or score with a checkpoint, writing JSONL.

  flan-jax infer --checkpoint DIR (--mixture NAME [--split S] [--limit N] | --input TEXT [--target TEXT])
                 [--mode predict|score] [--method greedy|sample|beam] [--output FILE]

predict rows: {"input", "target"?, "prediction", "predictions" (when --num_decodes > 1)};
score rows: {"input", "target", "score"} with score = the summed log-likelihood of the target (EOS included).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys

from flan_jax.data import data_dir as data_dir_lib


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="flan-jax infer", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--step", type=int, default=None)
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--mixture", help="a registered SeqIO task or mixture (inputs_pretokenized are used)")
  source.add_argument("--input", help="one input text")
  parser.add_argument("--target", help="with --input: the target text (needed for --mode score)")
  parser.add_argument("--split", default="validation")
  parser.add_argument("--limit", type=int, default=None, help="with --mixture: first N examples")
  parser.add_argument("--module", action="append", default=None,
                      help="module(s) registering tasks (default: tasks)")
  parser.add_argument("--mode", choices=("predict", "score"), default="predict")
  parser.add_argument("--method", choices=("greedy", "sample", "beam"), default="greedy")
  parser.add_argument("--num_decodes", type=int, default=1)
  parser.add_argument("--temperature", type=float, default=1.0)
  parser.add_argument("--topk", type=int, default=0)
  parser.add_argument("--topp", type=float, default=0.0)
  parser.add_argument("--alpha", type=float, default=0.6, help="beam search length penalty exponent")
  parser.add_argument("--max_decode_length", type=int, default=64)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--max_input_length", type=int, default=2048)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--output", default="-", help="JSONL file (default: stdout)")
  parser.add_argument("--data_dir", default=None)
  return parser


def _mixture_rows(name: str, split: str, limit: int | None, modules: list[str]) -> list[tuple[str, str | None]]:
  import seqio

  for module in modules:
    importlib.import_module(module)
  try:
    provider = seqio.get_mixture_or_task(name)
  except ValueError as e:
    raise SystemExit(f"flan-jax infer: --mixture {name!r}: {e}") from e
  ds = provider.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1)
  if limit is not None:
    ds = ds.take(limit)
  rows = []
  for ex in ds.as_numpy_iterator():
    target = ex.get("targets_pretokenized")
    rows.append((ex["inputs_pretokenized"].decode("utf-8"), None if target is None else target.decode("utf-8")))
  return rows


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  if args.data_dir:
    data_dir_lib.set_data_dir(args.data_dir)
  if args.target is not None and args.input is None:
    parser.error("--target goes with --input (a mixture brings its own targets)")
  if args.mode == "score" and args.input is not None and args.target is None:
    parser.error("--mode score needs --target")
  import jax

  from flan_jax import inference

  if args.input is not None:
    rows = [(args.input, args.target)]
  else:
    rows = _mixture_rows(args.mixture, args.split, args.limit, args.module or ["tasks"])
  model, params, _ = inference.load_checkpoint(args.checkpoint, args.step)
  predictor = inference.Predictor(model, params, batch_size=args.batch_size, max_input_length=args.max_input_length)
  inputs = [i for i, _ in rows]
  if args.mode == "score":
    missing = [n for n, (_, t) in enumerate(rows) if t is None]
    if missing:
      parser.error(f"--mode score: example(s) {missing[:5]} have no target")
    results = [{"score": s} for s in predictor.score(inputs, [t for _, t in rows])]
  else:
    config = inference.DecodeConfig(args.method, args.max_decode_length, args.num_decodes, args.temperature,
                                    args.topk, args.topp, args.alpha)
    rng = jax.random.PRNGKey(args.seed) if args.method == "sample" else None
    results = []
    for outs in predictor.predict(inputs, config, rng):
      results.append({"prediction": outs[0], **({"predictions": outs} if len(outs) > 1 else {})})
  with contextlib.ExitStack() as stack:
    out = sys.stdout if args.output == "-" else stack.enter_context(open(args.output, "w", encoding="utf-8"))
    for (inp, tgt), res in zip(rows, results):
      row = {"input": inp, **({"target": tgt} if tgt is not None else {}), **res}
      out.write(json.dumps(row, ensure_ascii=False) + "\n")
  if predictor.truncated:
    print(f"flan-jax infer: {predictor.truncated} input(s) truncated to {args.max_input_length} tokens",
          file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
