"""Render + tokenize + pack a whole Flan mixture through the training input, and print what it costs.

  python benchmarks/data_pipeline.py [--mixture cot_submix] [--engine train|seqio] [--lengths 2048/512] [-n MAX]
  python benchmarks/data_pipeline.py --mixture flan2022_submix --mock [-n 100000]

`--engine train` (default) is what `flan-jax train` reads on one host: the mixture's tasks whose data is present, one
epoch (`-n` stops earlier), mixed by rate, rendered, tokenized and FFD-packed into encoder-decoder batches of
`--batch_size` rows by `--workers` grain processes (`flan_jax.data.pipeline`). It runs with $FLAN_JAX_SEQIO=0 unless
that is set: tasks are registered in the plain catalog only, so no process imports seqio or TensorFlow (set
FLAN_JAX_SEQIO=1 to measure beside them, as in a training process that also holds seqio). `--engine seqio` reads the
same through `seqio.get_dataset` with our tf.data feature converter (pack='ffd'), the path a T5X user's code takes,
for comparison. Examples are counted as packed segments.

`--mock` serves the TFDS-backed families (Muffin, T0-SF, Dialog) and the NIv2 tasks whose files the data dir lacks
from mock rows (`flan_jax.data.files.mock_sources`), so mixtures that need them (flan2022_submix) run offline; CoT
and the NIv2 task files that are there are read from the data dir.

Prints: the load average at start (NOT COMPARABLE above 0.6) and end; time to import and register the tasks;
examples/s and tokens/s (wall and per CPU-second of all processes); RSS and PSS summed over the process and its
workers as the run goes; packed rows against the lower bound max(sum input tokens / input length, sum target tokens /
target length) and against seqio's greedy packer on the same examples; and what restoring the input state costs
after `--restore_batches` batches and 100x further along.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import resource
import sys
import tempfile
import time

STARTED = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Run as a script from anywhere: `tasks` (the registry module) lives at the repo root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from flan_jax.data import stats as stats_lib  # noqa: E402
from flan_jax.data.files import data_dir as data_dir_lib  # noqa: E402
from flan_jax.data.pipeline import packing  # noqa: E402


def rss_mb(field: str = "VmRSS") -> float:
  """Resident memory now (VmRSS), or its private part (RssAnon: without the mapped TF/XLA libraries)."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024
  raise KeyError(field)


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def mock_absent(enabled: bool, num_rows: int):
  """Mock rows for every TFDS dataset the Muffin, T0-SF and Dialog registries read, and mock task files for the
  NIv2 tasks the data dir lacks (when `enabled`); the tasks are registered again inside (grain's workers read the
  rows this process read, from the file it shares with them)."""
  if not enabled:
    yield
    return
  from flan_jax.data.catalog import registry  # pylint: disable=import-outside-toplevel
  from flan_jax.data.files import mock_sources  # pylint: disable=import-outside-toplevel
  import tasks  # pylint: disable=import-outside-toplevel
  from tasks import flan2022, niv2  # pylint: disable=import-outside-toplevel
  isolated = not registry.registers_with_seqio()  # keep TF (which mock_data needs) out of this process
  with tempfile.TemporaryDirectory() as tmp, \
      mock_sources.mock_tfds_sources(os.path.join(tmp, "tfds"), num_rows=num_rows, isolated=isolated,
                                     **flan2022.tfds_specs()), \
      mock_sources.mock_niv2_tasks(os.path.join(tmp, "data"), niv2.training_tasks(), num_rows=num_rows) as mocked:
    start = time.perf_counter()
    tasks.register_all()  # tasks bind their row counts when registered: again, now that the mock rows serve
    print(f"mock rows in place (TFDS datasets, and {len(mocked):,} NIv2 task files); registered again in "
          f"{time.perf_counter() - start:.1f} s; RSS now {rss_mb():,.0f} MB, of which private (RssAnon) "
          f"{rss_mb('RssAnon'):,.0f} MB (the mock rows are held in memory)", flush=True)
    yield


def input_config(mixture: str, lengths, seed: int, batch_size: int):
  from flan_jax.data.catalog import availability  # pylint: disable=import-outside-toplevel
  from flan_jax.data.pipeline import input_pipeline  # pylint: disable=import-outside-toplevel
  name = availability.resolve(mixture, only_available=True)  # absent tasks are left out, said in one line
  return input_pipeline.InputConfig(name, dict(lengths), batch_size, seed=seed, num_epochs=1)


def train_iterator(config, workers: int):
  """What `flan-jax train` reads on one host: one epoch of the present tasks through grain, FFD-packed
  encoder-decoder batches (`feature_converters.get_feature_converter(pack='ffd')`)."""
  from flan_jax import data_layout  # pylint: disable=import-outside-toplevel
  from flan_jax.data.pipeline import host_batches, input_pipeline  # pylint: disable=import-outside-toplevel
  shard = data_layout.HostDataLayout.even(0, 1, config.batch_size)
  return input_pipeline.host_iterator(config, host_batches.InputLayout(pack="ffd"), shard, workers=workers)


def seqio_batches(name: str, lengths, seed: int, batch_size: int):
  import seqio  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from flan_jax.data.seqio_adapter import feature_converters  # pylint: disable=import-outside-toplevel
  converter = feature_converters.EncDecFeatureConverter(pack="ffd")
  ds = seqio.get_dataset(mixture_or_task_name=name, task_feature_lengths=dict(lengths), dataset_split="train",
                         shuffle=True, num_epochs=1, seed=seed, feature_converter=converter)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).batch(batch_size).as_numpy_iterator()


def process_memory_mb() -> tuple[float, float]:
  """(RSS, PSS) summed over this process and its children (grain's workers): PSS splits shared pages between the
  processes that map them, so it does not count a shared library once per worker."""
  total_rss = total_pss = 0.0
  for pid in [os.getpid()] + children(os.getpid()):
    try:
      with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = {line.split(":")[0]: int(line.split()[1]) for line in f if line.split()[0].endswith(":")
                  and line.split()[1].isdigit()}
    except OSError:
      continue  # ended meanwhile
    total_rss += fields.get("Rss", 0) / 1024
    total_pss += fields.get("Pss", 0) / 1024
  return total_rss, total_pss


def children(pid: int) -> list[int]:
  out = []
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/stat") as f:
          if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
      except (OSError, IndexError, ValueError):
        continue
  return out


def segment_lengths(segment_ids: np.ndarray) -> np.ndarray:
  """Lengths of the packed examples of a batch, in row order then segment order."""
  width = int(segment_ids.max()) + 1
  keys = (np.arange(len(segment_ids))[:, None] * width + segment_ids)[segment_ids > 0]
  counts = np.bincount(keys, minlength=len(segment_ids) * width).reshape(len(segment_ids), width)[:, 1:]
  return counts[counts > 0]


def run(args, lengths) -> None:
  examples = tokens = rows = 0
  sizes: list[np.ndarray] = []  # per packed example, in row order
  trace: list[tuple[int, float, float]] = []
  peak = (0.0, 0.0)
  workers_cpu = 0.0
  config = input_config(args.mixture, lengths, args.seed, args.batch_size)
  start, cpu_start = time.perf_counter(), time.process_time()
  it = train_iterator(config, args.workers) if args.engine == "train" else seqio_batches(
      config.mixture_or_task_name, lengths, args.seed, args.batch_size)
  for batch in it:
    enc, dec = batch["encoder_segment_ids"], batch["decoder_segment_ids"]
    sizes.append(np.stack([segment_lengths(enc), segment_lengths(dec)], axis=1))
    examples += len(sizes[-1])
    tokens += int((enc > 0).sum() + (dec > 0).sum())
    rows += len(enc)
    if len(trace) < examples // args.trace_every:
      trace.append((examples, *process_memory_mb()))
      peak = max(peak, trace[-1][1:])
      workers_cpu = children_cpu_seconds()  # sampled while they run: they end with the input
    if args.n is not None and examples >= args.n:
      break
  wall = time.perf_counter() - start
  cpu = time.process_time() - cpu_start + max(workers_cpu, children_cpu_seconds())
  peak = max(peak, process_memory_mb())
  if args.engine == "train":
    it.close()
  print(f"engine {args.engine}: {examples:,} examples in {rows:,} rows of {args.lengths}, {tokens:,} tokens "
        f"(batches of {args.batch_size} rows{f', {args.workers} grain workers' if args.engine == 'train' else ''})")
  print(f"wall {wall:.1f} s: {examples / wall:,.0f} examples/s, {tokens / wall:,.0f} tokens/s; CPU {cpu:.1f} s "
        f"(this process and its workers): {examples / cpu:,.0f} examples per CPU-second")
  print(f"TensorFlow imported in this process: {'yes' if 'tensorflow' in sys.modules else 'no'}")
  print(f"memory summed over this process and its workers, peak RSS {peak[0]:,.0f} MB, PSS {peak[1]:,.0f} MB; "
        "RSS/PSS by examples read: " + ", ".join(f"{n:,}: {r:,.0f}/{q:,.0f}" for n, r, q in trace))
  every = np.concatenate(sizes) if sizes else np.zeros([0, 2], np.int64)
  bound = packing.lower_bound_rows({"inputs": int(every[:, 0].sum()), "targets": int(every[:, 1].sum())}, lengths)
  # seqio's greedy packer on the same examples in row order (which flatters greedy: neighbours there already fit).
  greedy = packing.greedy_row_count(every, list(lengths.values()))
  fill = [every[:, k].sum() / max(rows * cap, 1) for k, cap in enumerate(lengths.values())]
  print(f"packed rows: ffd {rows:,} ({rows / max(bound, 1) - 1:+.2%} vs bound {bound:,}; the last partial batch "
        f"is dropped), seqio greedy on the same examples in row order {greedy:,} ({greedy / max(bound, 1) - 1:+.2%}); "
        f"fill inputs {fill[0]:.1%}, targets {fill[1]:.1%}")
  if args.engine == "train":
    restore_cost(config, args.workers, args.restore_batches)


def children_cpu_seconds() -> float:
  """CPU seconds of this process's running children (grain's workers) so far."""
  total = 0
  for pid in children(os.getpid()):
    try:
      with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
      total += int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, IndexError, ValueError):
      continue
  return total / os.sysconf("SC_CLK_TCK")


def restore_cost(config, workers: int, batches: int) -> None:
  """The input's state after `batches` batches, restored into a fresh iterator (the batch after it checked against
  the uninterrupted run's), then a state 100x further along: restoring costs one block either way. The input is
  endless here (a training run's), so a far position exists."""
  config = dataclasses.replace(config, num_epochs=None)
  it = train_iterator(config, workers)
  for _ in range(batches):
    next(it)
  state = it.state()
  want = next(it)
  it.close()
  far = dict(state, block=(state["block"] + 1) * 100)
  for label, s, check in (("near", state, want), ("100x further", far, None)):
    fresh = train_iterator(config, workers)
    t0 = time.perf_counter()
    fresh.restore(s)
    t1 = time.perf_counter()
    got = next(fresh)
    t2 = time.perf_counter()
    fresh.close()
    same = "" if check is None else (", the same batch as the uninterrupted run" if all(
        np.array_equal(got[k], check[k]) for k in check) else ", NOT THE SAME BATCH as the uninterrupted run")
    print(f"restore {label} (block {s['block']:,}, row {s['row']:,}): set_state {1e3 * (t1 - t0):.2f} ms, first "
          f"batch after it {t2 - t1:.2f} s{same}")
  fresh = train_iterator(config, workers)
  t0 = time.perf_counter()
  next(fresh)
  print(f"a fresh start's first batch: {time.perf_counter() - t0:.2f} s (one block computed in each case)")
  fresh.close()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mixture", default="cot_submix")
  parser.add_argument("--data_dir")
  parser.add_argument("--lengths", default="2048/512")
  parser.add_argument("--engine", choices=("train", "seqio"), default="train")
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--mock", action="store_true",
                      help="serve Muffin / T0-SF / Dialog and the NIv2 tasks absent from the data dir from mock rows")
  parser.add_argument("--mock_rows", type=int, default=200, help="mock rows per TFDS dataset or NIv2 task")
  parser.add_argument("--trace_every", type=int, default=20000, help="examples between RSS samples")
  parser.add_argument("-n", type=int, default=None, help="stop after this many examples (default: one epoch)")
  parser.add_argument("--workers", type=int, default=2, help="grain worker processes (train engine)")
  parser.add_argument("--restore_batches", type=int, default=100, help="batches read before the state is taken")
  args = parser.parse_args(argv)
  if args.data_dir:
    data_dir_lib.set_data_dir(args.data_dir)
  lengths = stats_lib.parse_lengths(args.lengths)
  if args.engine == "train":
    os.environ.setdefault("FLAN_JAX_SEQIO", "0")
  from flan_jax.data.catalog import mixing, registry  # pylint: disable=import-outside-toplevel
  if registry.registers_with_seqio():
    import seqio  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  imported = time.perf_counter()
  import tasks  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  registered = time.perf_counter()
  print(f"imports (flan_jax{', seqio, TF' if registry.registers_with_seqio() else ''}) {imported - STARTED:.1f} s; "
        f"`import tasks` registers {len(registry.TASKS):,} Flan tasks and {len(mixing.MIXTURES):,} mixtures "
        f"{'with seqio' if registry.registers_with_seqio() else 'in the plain catalog (FLAN_JAX_SEQIO=0)'} in "
        f"{registered - imported:.1f} s; RSS after {rss_mb():,.0f} MB, of which private (RssAnon) "
        f"{rss_mb('RssAnon'):,.0f} MB", flush=True)
  load = os.getloadavg()[0]
  print(f"load average at start {load:.2f} on {os.cpu_count()} cores"
        + ("  NOT COMPARABLE (above 0.6: run through ../shared/tools/quiet)" if load > 0.6 else ""), flush=True)
  with mock_absent(args.mock, args.mock_rows):
    run(args, lengths)
  print(f"load average at end {os.getloadavg()[0]:.2f}")
  return 0


if __name__ == "__main__":  # grain's workers start by spawn and import this file: nothing may run at import
  sys.exit(main())
