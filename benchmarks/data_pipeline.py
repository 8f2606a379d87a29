"""Render + tokenize + pack a whole Flan mixture (default: the CoT submix) from the data dir, streaming.

Every task of the mixture whose files are in the data dir is read once, in source order, through its seqio pipeline
(render -> tokenize -> EOS), and packed with the FFD packer block by block, so memory stays flat however many tasks
the mixture holds. Prints examples/s, tokens/s, peak RSS (and RSS as the run goes), packed rows vs the bound and
seqio's greedy count, and where the time goes: render (the task's source alone), tokenize (SentencePiece on the
rendered strings), pack. Tasks whose files are absent (esnli, qed) are listed and skipped.

  python benchmarks/data_pipeline.py [--mixture cot_submix] [--module tasks] [--lengths 2048/512] [-n MAX]
"""
from __future__ import annotations

import argparse
import importlib
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Run as a script from anywhere: `tasks` (the registry module) lives at the repo root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from flan_jax.data import data_dir as data_dir_lib  # noqa: E402
from flan_jax.data import packing  # noqa: E402
from flan_jax.data import stats as stats_lib  # noqa: E402


def rss_mb() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def leaf_tasks(name: str):
  import seqio  # pylint: disable=import-outside-toplevel
  if name in seqio.MixtureRegistry.names():
    return list(seqio.MixtureRegistry.get(name).tasks)
  if name in seqio.TaskRegistry.names():
    return [seqio.TaskRegistry.get(name)]
  raise SystemExit(_unknown(name))


def _unknown(name: str) -> str:
  from flan_jax.data import cli  # pylint: disable=import-outside-toplevel
  try:
    cli.lookup(name)
  except cli.UnknownNameError as e:
    return f"data_pipeline: {e}"
  return f"data_pipeline: {name} is neither a task nor a mixture"


def available(task) -> bool:
  try:
    check = getattr(task.source, "dataset", None)
    if check is not None and hasattr(check, "check_available"):
      check.check_available()
    return True
  except FileNotFoundError:
    return False


class Meter:
  """Counts the examples and tokens streamed through it, and samples RSS as the run goes."""

  def __init__(self, limit: int | None):
    self.examples = 0
    self.tokens = 0
    self.sums = {"inputs": 0, "targets": 0}
    self.sizes: list[tuple[int, int]] = []
    self.limit = limit
    self.rss_trace: list[tuple[int, float]] = []

  def stream(self, tasks, lengths):
    for task in tasks:
      ds = task.get_dataset(sequence_length=None, split="train", shuffle=False, num_epochs=1)
      for ex in ds.as_numpy_iterator():
        if self.limit is not None and self.examples >= self.limit:
          return
        li, lt = len(ex["inputs"]), len(ex["targets"])
        self.examples += 1
        self.tokens += li + lt
        self.sizes.append((li, lt))
        self.sums["inputs"] += min(li, lengths["inputs"])
        self.sums["targets"] += min(lt, lengths["targets"])
        if self.examples % 50000 == 0:
          self.rss_trace.append((self.examples, rss_mb()))
        yield {"inputs": ex["inputs"], "targets": ex["targets"]}


def breakdown(tasks, sample: int) -> dict[str, float]:
  """Seconds per example for render alone (the task's source) and for SentencePiece on the rendered strings."""
  from flan_jax.data import vocab  # pylint: disable=import-outside-toplevel
  sp = vocab.get_vocabulary().tokenizer
  texts: list[str] = []
  start = time.perf_counter()
  for task in tasks:
    for ex in task.source.get_dataset(split="train", shuffle=False).as_numpy_iterator():
      texts += [ex["inputs"].decode(), ex["targets"].decode()]
      if len(texts) >= 2 * sample:
        break
    if len(texts) >= 2 * sample:
      break
  render = (time.perf_counter() - start) / (len(texts) // 2)
  start = time.perf_counter()
  sp.encode(texts)
  tokenize = (time.perf_counter() - start) / (len(texts) // 2)
  return {"render": render, "tokenize": tokenize}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mixture", default="cot_submix")
  parser.add_argument("--module", default="tasks")
  parser.add_argument("--data_dir")
  parser.add_argument("--lengths", default="2048/512")
  parser.add_argument("--block_size", type=int, default=packing.DEFAULT_BLOCK_SIZE)
  parser.add_argument("-n", type=int, default=None, help="stop after this many examples")
  parser.add_argument("--breakdown_sample", type=int, default=5000,
                      help="examples rendered again alone to split render / tokenize time (0: skip)")
  args = parser.parse_args(argv)
  if args.data_dir:
    data_dir_lib.set_data_dir(args.data_dir)
  lengths = stats_lib.parse_lengths(args.lengths)
  importlib.import_module(args.module)
  tasks = leaf_tasks(args.mixture)
  present = [t for t in tasks if available(t)]
  missing = sorted(t.name for t in tasks if t not in present)
  print(f"{args.mixture}: {len(tasks)} tasks, {len(present)} with their files in {data_dir_lib.data_dir()}"
        + (f"; skipped (not in the data dir): {len(missing)}, e.g. {', '.join(missing[:4])}" if missing else ""))
  rss_start = rss_mb()
  meter = Meter(args.n)
  packer = packing.PackedIterator(meter.stream(present, lengths), lengths, block_size=args.block_size)
  rows = 0
  start = time.perf_counter()
  for _ in packer:
    rows += 1
  wall = time.perf_counter() - start
  sizes = np.array(meter.sizes, np.int64).reshape(-1, 2)
  cap = list(lengths.values())
  start = time.perf_counter()
  ffd_only = packing.ffd_row_count(np.minimum(sizes, cap), cap, args.block_size)
  pack_s = time.perf_counter() - start
  greedy = packing.greedy_row_count(sizes, cap)
  bound = packing.lower_bound_rows(meter.sums, lengths)
  assert ffd_only == rows, (ffd_only, rows)
  print(f"examples {meter.examples:,} in {wall:.1f} s: {meter.examples / wall:,.0f} examples/s, "
        f"{meter.tokens / wall:,.0f} tokens/s (inputs + targets)")
  print(f"peak RSS {peak_rss_mb():,.0f} MB (after imports {rss_start:,.0f} MB); RSS by examples read: " +
        ", ".join(f"{n:,}: {mb:,.0f} MB" for n, mb in meter.rss_trace))
  print(f"packed rows at {args.lengths}: ffd {rows:,} ({rows / bound - 1:+.2%} vs bound {bound:,}), "
        f"seqio greedy {greedy:,} ({greedy / bound - 1:+.2%}); "
        f"fill inputs {meter.sums['inputs'] / (rows * cap[0]):.1%}, targets {meter.sums['targets'] / (rows * cap[1]):.1%}")
  print(f"time per example: whole pipeline {1e6 * wall / max(meter.examples, 1):.0f} us, "
        f"of which FFD assignment {1e6 * pack_s / max(meter.examples, 1):.1f} us")
  if args.breakdown_sample:
    parts = breakdown(present, args.breakdown_sample)
    print(f"  render alone (task source, Python) {1e6 * parts['render']:.0f} us/example; "
          f"SentencePiece alone {1e6 * parts['tokenize']:.0f} us/example "
          f"({1 / parts['tokenize']:,.0f} examples/s); the rest is seqio/tf.data plumbing")
  return 0


if __name__ == "__main__":
  sys.exit(main())
