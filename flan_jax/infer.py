"""`flan-jax infer`: decode or score with a checkpoint, writing JSONL.

  flan-jax infer --checkpoint DIR (--input TEXT [--target TEXT] | --input_file FILE | --mixture NAME [--split S])
                 [--limit N] [--mode predict|score] [--method greedy|sample|beam] [--output_file FILE]

--input_file: JSONL with an `inputs` field and an optional `targets` field per line (`.jsonl` / `.json`), or plain
text with one prompt per line (any other name; blank lines are skipped). Inputs are decoded in batches of
--batch_size with a progress bar on stderr.
predict rows: {"inputs", "targets"?, "output", "outputs" (when --num_decodes > 1), "tokens" (the output's ids),
"score" (the decode's: the output's summed log-likelihood, EOS included; beam search's length-normalised score)};
score rows: {"inputs", "targets", "score"} with score = the summed log-likelihood of the target, its EOS included
unless --score_eos false (T5X scores it; harnesses that score bare continuations do not).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys

from flan_jax.data.files import data_dir as data_dir_lib


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="flan-jax infer", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--step", type=int, default=None)
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--mixture", help="a registered SeqIO task or mixture (inputs_pretokenized are used)")
  source.add_argument("--input", help="one input text")
  source.add_argument("--input_file", help="JSONL (fields inputs, targets) or plain text, one prompt per line")
  parser.add_argument("--target", help="with --input: the target text (needed for --mode score)")
  parser.add_argument("--split", default="validation")
  parser.add_argument("--limit", type=int, default=None, help="with --mixture or --input_file: first N examples")
  parser.add_argument("--module", action="append", default=None,
                      help="module(s) registering tasks (default: tasks)")
  parser.add_argument("--mode", choices=("predict", "score"), default="predict")
  parser.add_argument("--method", choices=("greedy", "sample", "beam"), default="greedy")
  parser.add_argument("--num_decodes", type=int, default=1)
  parser.add_argument("--temperature", type=float, default=1.0)
  parser.add_argument("--topk", type=int, default=0)
  parser.add_argument("--topp", type=float, default=0.0)
  parser.add_argument("--alpha", type=float, default=0.6, help="beam search length penalty exponent")
  parser.add_argument("--score_eos", choices=("true", "false"), default="true",
                      help="--mode score: include the target's EOS (T5X, default) or not")
  parser.add_argument("--max_decode_length", type=int, default=64)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--max_input_length", type=int, default=2048)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--output_file", "--output", dest="output", default="-", help="JSONL file (default: stdout)")
  parser.add_argument("--data_dir", default=None)
  return parser


def file_rows(path: str, limit: int | None = None) -> list[tuple[str, str | None]]:
  """(inputs, targets or None) per line of a JSONL or plain-text file; a bad line fails naming file:line."""
  jsonl = path.endswith((".jsonl", ".json"))
  rows: list[tuple[str, str | None]] = []
  try:
    f = open(path, encoding="utf-8")
  except OSError as e:
    raise ValueError(f"--input_file {path}: {e.strerror}") from None
  with f:
    for number, line in enumerate(f, 1):
      if limit is not None and len(rows) >= limit:
        break
      if not line.strip():
        continue
      if not jsonl:
        rows.append((line.rstrip("\n"), None))
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{number}: not JSON ({e.msg} at column {e.colno})") from None
      if not isinstance(record, dict) or not isinstance(record.get("inputs"), str):
        raise ValueError(f"{path}:{number}: needs a string field \"inputs\" (and optionally \"targets\")")
      target = record.get("targets")
      if target is not None and not isinstance(target, str):
        raise ValueError(f"{path}:{number}: \"targets\" must be a string, got {type(target).__name__}")
      rows.append((record["inputs"], target))
  return rows


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


def _results(predictor, rows: list[tuple[str, str | None]], mode: str, config, rng, score_eos: bool = True
             ) -> list[dict]:
  """The output rows of one batch of (inputs, targets)."""
  inputs = [i for i, _ in rows]
  if mode == "score":
    scores = predictor.score(inputs, [t for _, t in rows], score_eos)
    return [{"inputs": i, "targets": t, "score": s} for (i, t), s in zip(rows, scores)]
  results = []
  for (inp, tgt), decodes in zip(rows, predictor.predict_scored(inputs, config, rng)):
    best_ids, score = decodes[0]
    row = {"inputs": inp, **({"targets": tgt} if tgt is not None else {}), "output": predictor.decode(best_ids),
           "tokens": [int(t) for t in best_ids], "score": score}
    if len(decodes) > 1:
      row["outputs"] = [predictor.decode(ids) for ids, _ in decodes]
    results.append(row)
  return results


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

  from flan_jax import inference, progress

  try:
    if args.input is not None:
      rows = [(args.input, args.target)]
    elif args.input_file is not None:
      rows = file_rows(args.input_file, args.limit)
    else:
      rows = _mixture_rows(args.mixture, args.split, args.limit, args.module or ["tasks"])
  except ValueError as e:
    print(f"flan-jax infer: {e}", file=sys.stderr)
    return 2
  if args.mode == "score":
    missing = [n for n, (_, t) in enumerate(rows) if t is None]
    if missing:
      parser.error(f"--mode score: example(s) {missing[:5]} have no target")
  from flan_jax.checkpoints.loader import CheckpointError
  try:
    model, params, _ = inference.load_checkpoint(args.checkpoint, args.step)
  except CheckpointError as e:
    print(f"flan-jax infer: {e}", file=sys.stderr)
    return 1
  predictor = inference.Predictor(model, params, batch_size=args.batch_size, max_input_length=args.max_input_length)
  config = inference.DecodeConfig(args.method, args.max_decode_length, args.num_decodes, args.temperature,
                                  args.topk, args.topp, args.alpha)
  rng = jax.random.PRNGKey(args.seed) if args.method == "sample" else None
  bar = progress.Progress(len(rows), "examples")
  with contextlib.ExitStack() as stack:
    out = sys.stdout if args.output == "-" else stack.enter_context(open(args.output, "w", encoding="utf-8"))
    for start in range(0, len(rows), args.batch_size):
      chunk = rows[start:start + args.batch_size]
      chunk_rng = None if rng is None else jax.random.fold_in(rng, start)
      for row in _results(predictor, chunk, args.mode, config, chunk_rng, args.score_eos == "true"):
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
      out.flush()
      bar.update(len(chunk))
  bar.close()
  if predictor.truncated:
    print(f"flan-jax infer: {predictor.truncated} input(s) truncated to {args.max_input_length} tokens",
          file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
