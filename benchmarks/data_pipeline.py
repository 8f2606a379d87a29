"""Render + tokenize + pack a whole Flan mixture (default: the CoT submix) from the data dir, streaming.

Every task of the mixture whose files are in the data dir is read once, in source order, through its seqio pipeline
(render -> tokenize -> EOS), and packed with the FFD packer block by block, so memory stays flat however many tasks
the mixture holds. Prints examples/s, tokens/s, peak RSS (and RSS as the run goes), packed rows vs the bound and
seqio's greedy count, and where the time goes: render (the task's source alone), tokenize (SentencePiece on the
rendered strings), pack. Tasks whose files are absent (esnli, qed) are listed and skipped.

Engines: `train` is the training path (`seqio.get_dataset` of the mixture's present tasks, shuffled, with our
`EncDecFeatureConverter(pack="ffd")`, batched; figures per example are per packed segment). `seqio` reads each task's
seqio pipeline in source order (tf.data: the source's from_generator, then seqio's EOS map), 256 examples per crossing
into numpy; `python` renders with the same Python renderer (`registry.render`), encodes with
SentencePiece in batches and runs tasks in `--workers` processes, which is what the tf.data path costs on top.

  python benchmarks/data_pipeline.py [--mixture cot_submix] [--engine train|seqio|python] [--lengths 2048/512] [-n MAX]
"""
from __future__ import annotations

import argparse
import array
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


def rss_mb(field: str = "VmRSS") -> float:
  """Resident memory now (VmRSS), or its private part (RssAnon: without the mapped TF/XLA libraries)."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024
  raise KeyError(field)


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
  return resource.getrusage(who).ru_maxrss / 1024


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


def _python_task_examples(task_name: str) -> list[tuple[np.ndarray, np.ndarray]]:
  """Renders and tokenizes one Flan task in Python (a worker process): (inputs, targets) ids with EOS."""
  import seqio  # pylint: disable=import-outside-toplevel
  from flan_jax.data import registry, vocab  # pylint: disable=import-outside-toplevel
  source = registry.flan_source(seqio.TaskRegistry.get(task_name))
  sp = vocab.get_vocabulary().tokenizer
  out = []
  chunk: list[dict] = []

  def flush():
    ids = sp.encode([ex["inputs"] for ex in chunk] + [ex["targets"] for ex in chunk])
    for i in range(len(chunk)):
      out.append((np.array(ids[i] + [vocab.EOS_ID], np.int32), np.array(ids[len(chunk) + i] + [vocab.EOS_ID],
                                                                      np.int32)))
    chunk.clear()

  for ex in registry.render(source.dataset, source.variant, source.task):
    chunk.append(ex)
    if len(chunk) == 512:
      flush()
  if chunk:
    flush()
  return out


def python_examples(tasks, workers: int):
  """Each task's examples in task order, rendered and tokenized by `workers` forked processes."""
  import multiprocessing  # pylint: disable=import-outside-toplevel
  from flan_jax.data import vocab  # pylint: disable=import-outside-toplevel
  vocab.get_vocabulary().tokenizer  # load the model before forking, so workers never touch TF file APIs
  with multiprocessing.get_context("fork").Pool(workers) as pool:
    for examples in pool.imap(_python_task_examples, [t.name for t in tasks]):
      for inputs, targets in examples:
        yield {"inputs": inputs, "targets": targets}


class Meter:
  """Counts the examples and tokens streamed through it, and samples RSS as the run goes."""

  def __init__(self, limit: int | None):
    self.examples = 0
    self.tokens = 0
    self.sums = {"inputs": 0, "targets": 0}
    self.sizes = array.array("i")  # (inputs, targets) lengths, flat: 8 bytes an example
    self.limit = limit
    self.rss_trace: list[tuple[int, float]] = []

  def stream(self, examples, lengths):
    for ex in examples:
      if self.limit is not None and self.examples >= self.limit:
        return
      li, lt = len(ex["inputs"]), len(ex["targets"])
      self.examples += 1
      self.tokens += li + lt
      self.sizes.extend((li, lt))
      self.sums["inputs"] += min(li, lengths["inputs"])
      self.sums["targets"] += min(lt, lengths["targets"])
      if self.examples % 50000 == 0:
        self.rss_trace.append((self.examples, rss_mb("RssAnon")))
      yield {"inputs": ex["inputs"], "targets": ex["targets"]}


READ_BATCH = 256  # examples per tf.data -> numpy crossing: the benchmark's own per-example cost stays small


def seqio_examples(tasks):
  """Each task's seqio examples, read `READ_BATCH` at a time (one ragged batch, two numpy arrays)."""
  for task in tasks:
    ds = task.get_dataset(sequence_length=None, split="train", shuffle=False, num_epochs=1)
    ds = ds.map(lambda ex: {"inputs": ex["inputs"], "targets": ex["targets"]}).ragged_batch(READ_BATCH)
    for batch in ds:
      cols = {k: (np.asarray(batch[k].flat_values), np.asarray(batch[k].row_splits)) for k in ("inputs", "targets")}
      for i in range(len(cols["inputs"][1]) - 1):
        yield {k: v[s[i]:s[i + 1]] for k, (v, s) in cols.items()}


def train_batches(mixture: str, lengths, seed: int, block_size: int, batch_size: int, autotune: bool = True,
                  default_optimizations: bool = True):
  """The training path: the mixture's tasks (those present) through seqio.get_dataset, shuffled, with our
  encoder-decoder feature converter packing by FFD, batched as the trainer batches; numpy batches."""
  import seqio  # pylint: disable=import-outside-toplevel
  from flan_jax.data import feature_converters, mixing  # pylint: disable=import-outside-toplevel
  name = mixing.register_available(mixture) if mixture in seqio.MixtureRegistry.names() else mixture
  ds = seqio.get_dataset(mixture_or_task_name=name, task_feature_lengths=dict(lengths), dataset_split="train",
                         shuffle=True, num_epochs=1, seed=seed,
                         feature_converter=feature_converters.EncDecFeatureConverter(pack="ffd",
                                                                                    block_size=block_size))
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  options = tf.data.Options()
  options.deterministic = True  # as the trainer's input pipeline
  # On 2 cores tf.data's autotuner and graph rewrites cost more CPU than they save (measured: --autotune off).
  options.autotune.enabled = autotune
  options.experimental_optimization.apply_default_optimizations = default_optimizations
  return ds.with_options(options).batch(batch_size).as_numpy_iterator()


def run_train(args, lengths) -> None:
  """Examples (segments), tokens (non-padding) and rows of the packed training batches, with rates per CPU-s."""
  examples = tokens = rows = 0
  trace: list[tuple[int, float, float]] = []
  start, cpu_start = time.perf_counter(), time.process_time()
  for batch in train_batches(args.mixture, lengths, args.seed, args.block_size, args.batch_size,
                             args.autotune == "on", args.default_optimizations == "on"):
    seg = batch["encoder_segment_ids"]
    examples += int(seg.max(axis=1).sum())
    tokens += int((seg > 0).sum() + (batch["decoder_segment_ids"] > 0).sum())
    rows += len(seg)
    if len(trace) < examples // 20000:
      trace.append((examples, rss_mb(), rss_mb("RssAnon")))
    if args.n is not None and examples >= args.n:
      break
  wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  print(f"engine train ({args.mixture} available, shuffled, EncDecFeatureConverter pack=ffd at {args.lengths}, "
        f"batch {args.batch_size}, autotune {args.autotune}, default optimizations {args.default_optimizations}): {examples:,} examples in {rows:,} rows, {tokens:,} tokens")
  print(f"wall {wall:.1f} s: {examples / wall:,.0f} examples/s, {tokens / wall:,.0f} tokens/s; CPU {cpu:.1f} s: "
        f"{examples / cpu:,.0f} examples per CPU-second, {tokens / cpu:,.0f} tokens per CPU-second "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
  print(f"peak RSS {peak_rss_mb():,.0f} MB, RSS/RssAnon now {rss_mb():,.0f}/{rss_mb('RssAnon'):,.0f} MB; "
        f"by examples read (RSS/RssAnon): " + ", ".join(f"{n:,}: {r:,.0f}/{a:,.0f}" for n, r, a in trace))


def breakdown(tasks, sample: int) -> dict[str, float]:
  """CPU seconds per example of: rendering in Python (`registry.render`), the same rendering read through the task
  source's tf.data `from_generator`, and SentencePiece on the rendered strings (batched)."""
  from flan_jax.data import registry, vocab  # pylint: disable=import-outside-toplevel
  sp = vocab.get_vocabulary().tokenizer
  texts: list[str] = []
  start = time.process_time()
  for task in tasks:
    source = registry.flan_source(task)
    for ex in registry.render(source.dataset, source.variant, source.task):
      texts += [ex["inputs"], ex["targets"]]
      if len(texts) >= 2 * sample:
        break
    if len(texts) >= 2 * sample:
      break
  n = len(texts) // 2
  render = (time.process_time() - start) / n
  start, read = time.process_time(), 0
  for task in tasks:
    for _ in task.source.get_dataset(split="train", shuffle=False).as_numpy_iterator():
      read += 1
      if read >= n:
        break
    if read >= n:
      break
  from_generator = (time.process_time() - start) / read
  start = time.process_time()
  sp.encode(texts)
  tokenize = (time.process_time() - start) / n
  return {"render": render, "from_generator": from_generator, "tokenize": tokenize}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mixture", default="cot_submix")
  parser.add_argument("--module", default="tasks")
  parser.add_argument("--data_dir")
  parser.add_argument("--lengths", default="2048/512")
  parser.add_argument("--block_size", type=int, default=packing.DEFAULT_BLOCK_SIZE)
  parser.add_argument("--engine", choices=("seqio", "python", "train"), default="seqio",
                      help="train: the training path (mixture -> shuffle -> feature converter, packed batches)")
  parser.add_argument("--batch_size", type=int, default=64, help="rows per batch for --engine train")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--autotune", choices=("on", "off"), default="on", help="tf.data autotune (--engine train)")
  parser.add_argument("--default_optimizations", choices=("on", "off"), default="on",
                      help="tf.data's default graph rewrites (--engine train)")
  parser.add_argument("--workers", type=int, default=2, help="processes for --engine python")
  parser.add_argument("-n", type=int, default=None,
                      help="stop after this many examples (python engine: CPU then counts tasks rendered past it)")
  parser.add_argument("--breakdown_sample", type=int, default=5000,
                      help="examples rendered again alone to split render / tokenize time (0: skip)")
  args = parser.parse_args(argv)
  if args.data_dir:
    data_dir_lib.set_data_dir(args.data_dir)
  lengths = stats_lib.parse_lengths(args.lengths)
  importlib.import_module(args.module)
  rss_imports, anon_imports = rss_mb(), rss_mb("RssAnon")
  if args.engine == "train":
    print(f"after imports: RSS {rss_imports:,.0f} MB, of which private (RssAnon) {anon_imports:,.0f} MB")
    run_train(args, lengths)
    return 0
  tasks = leaf_tasks(args.mixture)
  present = [t for t in tasks if available(t)]
  missing = sorted(t.name for t in tasks if t not in present)
  print(f"{args.mixture}: {len(tasks)} tasks, {len(present)} with their files in {data_dir_lib.data_dir()}"
        + (f"; skipped (not in the data dir): {len(missing)}, e.g. {', '.join(missing[:4])}" if missing else ""))
  rss_start, anon_start = rss_mb(), rss_mb("RssAnon")
  meter = Meter(args.n)
  examples = seqio_examples(present) if args.engine == "seqio" else python_examples(present, args.workers)
  packer = packing.PackedIterator(meter.stream(examples, lengths), lengths, block_size=args.block_size)
  rows = 0
  start = time.perf_counter()
  cpu_start = time.process_time()
  for _ in packer:
    rows += 1
  examples.close()  # with -n: stop (and reap) the workers now, so their CPU time is counted below
  wall = time.perf_counter() - start
  cpu = time.process_time() - cpu_start
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  cpu_workers = children.ru_utime + children.ru_stime  # the pool's workers, reaped when it closed
  sizes = np.array(meter.sizes, np.int64).reshape(-1, 2)
  cap = list(lengths.values())
  start = time.perf_counter()
  ffd_only = packing.ffd_row_count(np.minimum(sizes, cap), cap, args.block_size)
  pack_s = time.perf_counter() - start
  greedy = packing.greedy_row_count(sizes, cap)
  bound = packing.lower_bound_rows(meter.sums, lengths)
  halves = packing.over_half_row(sizes, cap)
  assert ffd_only == rows, (ffd_only, rows)
  print(f"engine {args.engine}: examples {meter.examples:,} in {wall:.1f} s: {meter.examples / wall:,.0f} examples/s, "
        f"{meter.tokens / wall:,.0f} tokens/s (inputs + targets); main-process CPU {cpu:.1f} s "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
  cpu_total = cpu + cpu_workers
  # The python engine spreads over its workers; the seqio engine's Python generator holds the GIL (~1 core).
  cores = min(os.cpu_count() or 1, args.workers) if args.engine == "python" else 1
  print(f"CPU time {cpu_total:.1f} s (main {cpu:.1f} + workers {cpu_workers:.1f}): "
        f"{meter.examples / cpu_total:,.0f} examples per CPU-second, i.e. about "
        f"{meter.examples / cpu_total * cores:,.0f} examples/s on {cores} idle core(s) (the wall figure above "
        f"shares the machine with everything else running)")
  children = f", worker processes peak {peak_rss_mb(resource.RUSAGE_CHILDREN):,.0f} MB each" \
      if args.engine == "python" else ""
  print(f"peak RSS {peak_rss_mb():,.0f} MB (after imports {rss_start:,.0f} MB, of which private {anon_start:,.0f} MB)"
        f"{children}; private RSS by examples read: " +
        ", ".join(f"{n:,}: {mb:,.0f} MB" for n, mb in meter.rss_trace + [(meter.examples, rss_mb('RssAnon'))]))
  print(f"packed rows at {args.lengths}: ffd {rows:,} ({rows / bound - 1:+.2%} vs bound {bound:,}), "
        f"seqio greedy {greedy:,} ({greedy / bound - 1:+.2%}); "
        f"fill inputs {meter.sums['inputs'] / (rows * cap[0]):.1%}, targets {meter.sums['targets'] / (rows * cap[1]):.1%}; "
        f"{halves:,} examples exceed half a row (each needs a row of its own: rows >= {max(bound, halves):,})")
  print(f"time per example: whole pipeline {1e6 * wall / max(meter.examples, 1):.0f} us, "
        f"of which FFD assignment {1e6 * pack_s / max(meter.examples, 1):.1f} us")
  if args.breakdown_sample:
    parts = breakdown(present, args.breakdown_sample)
    print(f"CPU per example on the first {args.breakdown_sample:,} examples: render in Python "
          f"{1e6 * parts['render']:.0f} us; the same read through the source's tf.data from_generator "
          f"{1e6 * parts['from_generator']:.0f} us; SentencePiece, batched {1e6 * parts['tokenize']:.0f} us")
  return 0


if __name__ == "__main__":
  sys.exit(main())
