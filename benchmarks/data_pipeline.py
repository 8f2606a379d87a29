"""Render + tokenize + pack a whole Flan mixture through the training input, and print what it costs.

  python benchmarks/data_pipeline.py [--mixture cot_submix] [--engine train|seqio] [--lengths 2048/512] [-n MAX]
  python benchmarks/data_pipeline.py --mixture flan2022_submix --mock [-n 100000]

`--engine train` (default) is what `flan-jax train` reads: the mixture's tasks whose data is present, one epoch
(`-n` stops earlier), sampled by rate, rendered and tokenized in Python (`flan_jax.data.streaming`), FFD-packed and
laid out as the encoder-decoder batches of `--batch_size` rows (`flan_jax.data.host_batches`). It runs with
$FLAN_JAX_SEQIO=0 unless that is set: tasks are registered in the plain catalog only, so the process never imports
seqio or TensorFlow and its memory is the pipeline's own (set FLAN_JAX_SEQIO=1 to measure it beside them, as in
the training process). `--engine seqio` reads the same through `seqio.get_dataset` with our tf.data feature
converter (pack='ffd'), the path a T5X user's code takes, for comparison. Examples are counted as packed segments.

`--mock` serves the TFDS-backed families (Muffin, T0-SF, Dialog) and the NIv2 tasks whose files the data dir lacks
from mock rows (`flan_jax.data.mock_sources`), so mixtures that need them (flan2022_submix) run offline; CoT and the
NIv2 task files that are there are read from the data dir.

Prints: time to import and register the tasks; examples/s and tokens/s (wall and per CPU-second); peak RSS and
private RSS (RssAnon) as the run goes, so growth with the mixture shows; packed rows against the lower bound
max(sum input tokens / input length, sum target tokens / target length) and against seqio's greedy packer on the
same examples.
"""
from __future__ import annotations

import argparse
import contextlib
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


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def mock_absent(enabled: bool, num_rows: int):
  """Mock rows for every TFDS dataset the Muffin, T0-SF and Dialog registries read, and mock task files for the
  NIv2 tasks the data dir lacks (when `enabled`); the tasks are registered again inside."""
  if not enabled:
    yield
    return
  from flan_jax.data import mock_sources, registry  # pylint: disable=import-outside-toplevel
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


def train_batches(mixture: str, lengths, seed: int, batch_size: int, engine: str, stream_sizes: list):
  """Packed encoder-decoder batches of one epoch of `mixture`'s present tasks, as numpy. The train engine appends
  the (inputs, targets) lengths of the examples, in stream order, to `stream_sizes`."""
  from flan_jax.data import availability, host_batches, streaming  # pylint: disable=import-outside-toplevel
  name = availability.resolve(mixture, only_available=True)  # absent tasks are left out, said in one line
  if engine == "train":

    def tapped(chunks):
      for chunk in chunks:
        stream_sizes.append(np.stack([chunk["inputs"][1], chunk["targets"][1]], axis=1))
        yield chunk

    examples = streaming.mixture_examples(name, streaming.StreamConfig(dict(lengths), seed=seed, num_epochs=1))
    # What `feature_converters.EncDecFeatureConverter(pack="ffd")` configures for `flan-jax train`.
    config = host_batches.BatchConfig("encoder_decoder", "ffd", dict(lengths), batch_size)
    return host_batches.batches(tapped(examples), config)
  import seqio  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from flan_jax.data import feature_converters  # pylint: disable=import-outside-toplevel
  converter = feature_converters.EncDecFeatureConverter(pack="ffd")
  ds = seqio.get_dataset(mixture_or_task_name=name, task_feature_lengths=dict(lengths), dataset_split="train",
                         shuffle=True, num_epochs=1, seed=seed, feature_converter=converter)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).batch(batch_size).as_numpy_iterator()


def segment_lengths(segment_ids: np.ndarray) -> np.ndarray:
  """Lengths of the packed examples of a batch, in row order then segment order."""
  width = int(segment_ids.max()) + 1
  keys = (np.arange(len(segment_ids))[:, None] * width + segment_ids)[segment_ids > 0]
  counts = np.bincount(keys, minlength=len(segment_ids) * width).reshape(len(segment_ids), width)[:, 1:]
  return counts[counts > 0]


def run(args, lengths) -> None:
  examples = tokens = rows = 0
  sizes: list[np.ndarray] = []  # per packed example, in row order
  stream_sizes: list[np.ndarray] = []  # per example, in stream order (train engine)
  trace: list[tuple[int, float, float]] = []
  start, cpu_start = time.perf_counter(), time.process_time()
  for batch in train_batches(args.mixture, lengths, args.seed, args.batch_size, args.engine, stream_sizes):
    enc, dec = batch["encoder_segment_ids"], batch["decoder_segment_ids"]
    sizes.append(np.stack([segment_lengths(enc), segment_lengths(dec)], axis=1))
    examples += len(sizes[-1])
    tokens += int((enc > 0).sum() + (dec > 0).sum())
    rows += len(enc)
    if len(trace) < examples // args.trace_every:
      trace.append((examples, rss_mb(), rss_mb("RssAnon")))
    if args.n is not None and examples >= args.n:
      break
  wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  print(f"engine {args.engine}: {examples:,} examples in {rows:,} rows of {args.lengths}, {tokens:,} tokens "
        f"(batches of {args.batch_size} rows)")
  print(f"wall {wall:.1f} s: {examples / wall:,.0f} examples/s, {tokens / wall:,.0f} tokens/s; CPU {cpu:.1f} s: "
        f"{examples / cpu:,.0f} examples per CPU-second (load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores)")
  print(f"TensorFlow imported in this process: {'yes' if 'tensorflow' in sys.modules else 'no'}")
  print(f"peak RSS {peak_rss_mb():,.0f} MB; RSS/RssAnon by examples read: "
        + ", ".join(f"{n:,}: {r:,.0f}/{a:,.0f}" for n, r, a in trace + [(examples, rss_mb(), rss_mb("RssAnon"))]))
  every = np.concatenate(sizes) if sizes else np.zeros([0, 2], np.int64)
  cap = list(lengths.values())
  bound = packing.lower_bound_rows({"inputs": int(every[:, 0].sum()), "targets": int(every[:, 1].sum())}, lengths)
  # seqio's greedy packer on the same examples, in stream order (the seqio engine only has them in row order, which
  # flatters greedy: neighbours there already fit together).
  order = "stream order" if stream_sizes else "row order"
  in_order = np.concatenate(stream_sizes)[:len(every)] if stream_sizes else every
  greedy = packing.greedy_row_count(in_order, cap)
  fill = [every[:, k].sum() / max(rows * cap[k], 1) for k in range(2)]
  print(f"packed rows: ffd {rows:,} ({rows / max(bound, 1) - 1:+.2%} vs bound {bound:,}; the last partial batch "
        f"is dropped), seqio greedy on the same examples in {order} {greedy:,} ({greedy / max(bound, 1) - 1:+.2%}); "
        f"fill inputs {fill[0]:.1%}, targets {fill[1]:.1%}")


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
  args = parser.parse_args(argv)
  if args.data_dir:
    data_dir_lib.set_data_dir(args.data_dir)
  lengths = stats_lib.parse_lengths(args.lengths)
  if args.engine == "train":
    os.environ.setdefault("FLAN_JAX_SEQIO", "0")
  from flan_jax.data import mixing, registry  # pylint: disable=import-outside-toplevel
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
  with mock_absent(args.mock, args.mock_rows):
    run(args, lengths)
  return 0


if __name__ == "__main__":
  sys.exit(main())
