"""Contamination check: n-gram overlap between a training mixture's inputs and a benchmark's test items.

`flan-jax data overlap MIXTURE --suite S [--ngram 13] [--limit N]`: words are lowercased runs of letters and
digits (Unicode-aware); a benchmark item is "contaminated" when any of its word n-grams occurs in any training
input (`inputs_pretokenized` of `seqio.get_mixture_or_task(MIXTURE).get_dataset(split=...)`). Only the test
item's own text is used (question and choices, BBH input, MGSM question, TyDiQA context and question), never
the few-shot exemplars every prompt shares. Items shorter than n words are compared whole.
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from typing import Any, Iterable, Sequence

from flan_jax.evaluation.examples import EvalExample

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
  return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
  toks = words(text)
  if len(toks) < n:
    return {tuple(toks)} if toks else set()
  return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def overlap(train_texts: Iterable[str], examples: Sequence[EvalExample], n: int = 13) -> dict[str, Any]:
  """Which benchmark items share an n-gram with any training text, per task and overall."""
  index: dict[tuple[str, ...], list[int]] = collections.defaultdict(list)
  short: dict[tuple[str, ...], list[int]] = collections.defaultdict(list)
  for i, ex in enumerate(examples):
    for gram in ngrams(ex.source_text, n):
      (index if len(gram) == n else short)[gram].append(i)
  hit: set[int] = set()
  train_hits, train_count = 0, 0
  for text in train_texts:
    train_count += 1
    grams = ngrams(text, n)
    found = {i for g in grams for i in index.get(g, ())}
    if short:
      toks = words(text)
      for gram, ids in short.items():
        if any(tuple(toks[j:j + len(gram)]) == gram for j in range(len(toks) - len(gram) + 1)):
          found.update(ids)
    if found:
      train_hits += 1
      hit |= found
  per_task: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
  for i, ex in enumerate(examples):
    per_task[ex.task][1] += 1
    per_task[ex.task][0] += i in hit
  return {
      "ngram": n,
      "train_examples": train_count,
      "train_examples_with_overlap": train_hits,
      "benchmark_examples": len(examples),
      "contaminated": len(hit),
      "contaminated_fraction": len(hit) / len(examples) if examples else 0.0,
      "tasks": {t: {"contaminated": c, "examples": m} for t, (c, m) in per_task.items()},
      "contaminated_examples": [{"task": examples[i].task, "index": examples[i].index} for i in sorted(hit)],
  }


def _train_texts(name: str, split: str, limit: int | None, only_available: bool = False) -> Iterable[str]:
  import seqio

  from flan_jax.data.catalog import availability
  from flan_jax.data.files import data_dir
  try:
    name = availability.resolve(name, only_available, "mixture")
  except data_dir.DataMissingError as e:
    raise SystemExit(f"flan-jax data overlap: {e}") from None
  except ValueError:
    pass  # not in the catalog: seqio's lookup below names it
  try:
    provider = seqio.get_mixture_or_task(name)
  except ValueError as e:
    raise SystemExit(f"flan-jax data overlap: {name!r} is not a registered task or mixture: {e}") from e
  if isinstance(provider, seqio.Mixture):  # a mixture keeps the pretokenized texts only when asked to
    ds = provider.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1, copy_pretokenized=True,
                              trim_output_features=False)
  else:
    ds = provider.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1)
  if limit is not None:
    ds = ds.take(limit)
  for ex in ds.as_numpy_iterator():
    if "inputs_pretokenized" not in ex:
      raise SystemExit(f"flan-jax data overlap: {name!r} examples have no inputs_pretokenized")
    yield ex["inputs_pretokenized"].decode("utf-8")


def run_overlap(args: argparse.Namespace) -> int:
  from flan_jax.evaluation.suites import get_suites

  try:
    suites = get_suites(args.suite)
  except ValueError as e:
    print(f"flan-jax data overlap: {e}", file=sys.stderr)
    return 2
  examples = [ex for s in suites for ex in s.examples(args.benchmark_limit, tfds_data_dir=args.tfds_data_dir)]
  # The same item appears in a suite's direct and CoT variants; count it once.
  unique = list({(ex.task, ex.index): ex for ex in examples}.values())
  result = overlap(_train_texts(args.mixture, args.split, args.limit, args.only_available), unique, args.ngram)
  result.update(mixture=args.mixture, split=args.split, suites=[s.name for s in suites])
  print(json.dumps(result, indent=2, ensure_ascii=False))
  print(f"{result['contaminated']} of {result['benchmark_examples']} benchmark items "
        f"({100 * result['contaminated_fraction']:.2f}%) share a {args.ngram}-gram with "
        f"{result['train_examples_with_overlap']} of {result['train_examples']} training inputs", file=sys.stderr)
  return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
  """Adds `overlap` to `flan-jax data`."""
  p = subparsers.add_parser("overlap", help="n-gram overlap between a training mixture and a benchmark",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("mixture", help="a registered SeqIO task or mixture")
  p.add_argument("--suite", required=True, help="evaluation suite(s), comma-separated (e.g. mmlu_direct)")
  p.add_argument("--ngram", type=int, default=13, help="n-gram length in words (default 13)")
  p.add_argument("--split", default="train")
  p.add_argument("--limit", type=int, default=None, help="training examples read (default: all)")
  p.add_argument("--only_available", action="store_true",
                 help="leave out the mixture's tasks whose data is absent, as ONLY_AVAILABLE_DATA does in training")
  p.add_argument("--benchmark_limit", type=int, default=None, help="test items per benchmark task")
  p.add_argument("--tfds_data_dir", default=None, help="for tydiqa_direct")
  p.add_argument("--data_dir", default=argparse.SUPPRESS, help="the Flan data dir")
  p.add_argument("--module", default=argparse.SUPPRESS, help="module registering tasks (default: tasks)")
  p.set_defaults(func=run_overlap, needs_registry=True)
