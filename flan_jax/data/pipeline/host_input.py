"""A host's training batches from grain, with a state of two numbers: restoring it costs the same at any position.

The blocks (`blocks.PackedBlocks`, a random-access source) are computed by grain's worker processes (`mp_prefetch`:
worker w computes blocks w, w + W, ...; the main process reads them back in order), or in this process with
`workers=0`; either way the rows are the same. Here the rows are cut into batches of the host's rows, a batch
running on into the next block where one ends (a last partial batch of a finite input is dropped, as
`drop_remainder`). The state after a batch is (the block the next row comes from, the rows of it already
batched), plus what identifies the input; restoring starts grain at that block and skips those rows, so a resumed
run sees the batches an uninterrupted run would, at the cost of computing one block whatever the position.
"""
from __future__ import annotations

import sys
from typing import Any, Iterator, Mapping

import grain
from absl import flags
import numpy as np

from flan_jax.data.files import row_store
from flan_jax.data.pipeline import blocks as blocks_lib
from flan_jax.data.pipeline import host_batches


class InputStateError(ValueError):
  """A saved input state that does not belong to this input."""


def _grain_blocks(spec: blocks_lib.InputSpec, start: int, workers: int) -> Iterator[dict[str, np.ndarray]]:
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # grain reads its absl flags; their defaults, unless the entry point parsed them
  ds = grain.MapDataset.source(blocks_lib.PackedBlocks(spec))[start:]
  # One block at a time per process: a block is thousands of examples already, and threads would share one GIL.
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
  if workers:
    # The init function carries only the dirs: grain unpickles it before calling it, and unpickling the tasks
    # (done after it) must find $FLAN_JAX_SEQIO=0 already set, or `import tasks` would load seqio and TensorFlow.
    data_dir, tfds_data_dir = spec.data_dir, spec.tfds_data_dir
    it_ds = it_ds.mp_prefetch(grain.multiprocessing.MultiprocessingOptions(num_workers=workers),
                              worker_init_fn=lambda index, count: blocks_lib.init_worker(data_dir, tfds_data_dir))
  return iter(it_ds)


class HostBatches:
  """This host's batches of `spec.layout.batch_size` rows (see the module doc)."""

  def __init__(self, spec: blocks_lib.InputSpec, identity: Mapping[str, Any], workers: int = 2,
               shared_rows: row_store.SharedRows | None = None):
    self.spec = spec
    self._shared_rows = shared_rows  # the file `spec.shared_rows` names lives as long as this input
    self.identity = dict(identity)
    self.workers = workers
    self.feature_lengths = host_batches.feature_lengths(spec.layout)
    self._it: Iterator[dict[str, np.ndarray]] | None = None
    self._seek(0, 0)

  def _seek(self, block: int, row: int) -> None:
    self.close()
    self._block, self._row = block, row
    self._rows: dict[str, np.ndarray] | None = None  # the current block's rows, once read

  def __iter__(self) -> HostBatches:
    return self

  def _next_block(self) -> bool:
    if self._it is None:  # started at the first read, so a restore right after construction starts grain once
      self._it = _grain_blocks(self.spec, self._block, self.workers)
    elif self._rows is not None:
      self._block, self._row = self._block + 1, 0
    self._rows = next(self._it, None)
    return self._rows is not None

  def __next__(self) -> dict[str, np.ndarray]:
    want = self.spec.layout.batch_size
    parts: list[dict[str, np.ndarray]] = []
    block, row = self._block, self._row
    while want:
      if self._rows is None or self._row == len(self._rows["decoder_target_tokens"]):
        if not self._next_block():
          self._block, self._row = block, row  # a partial last batch is not consumed
          raise StopIteration
        continue
      take = min(want, len(self._rows["decoder_target_tokens"]) - self._row)
      parts.append({k: v[self._row:self._row + take] for k, v in self._rows.items()})
      self._row += take
      want -= take
    return {k: np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in parts[0]}

  def state(self) -> dict[str, Any]:
    """Where the next batch starts, and what identifies this input."""
    block, row = self._block, self._row
    if self._rows is not None and row == len(self._rows["decoder_target_tokens"]):
      block, row = block + 1, 0
    return dict(self.identity, block=block, row=row)

  def restore(self, state: Mapping[str, Any]) -> None:
    mismatched = {k: (state.get(k), v) for k, v in self.identity.items()
                  if k != "num_shards" and state.get(k) != v}
    if mismatched:
      raise InputStateError(
          f"the checkpoint's dataset state does not match this run's input: {mismatched} (saved, now)")
    if "block" not in state:
      raise InputStateError(f"the checkpoint's dataset state {dict(state)} is not a grain input state (block, "
                            "row): it was written by an older flan_jax; resume it with that version")
    if state.get("num_shards") != self.identity.get("num_shards"):
      print(f"warning: resuming with {self.identity.get('num_shards')} input shards where the checkpoint had "
            f"{state.get('num_shards')}; per-host shards differ, so the batch stream differs", file=sys.stderr)
    self._seek(int(state["block"]), int(state["row"]))

  def close(self) -> None:
    """Ends grain's worker processes, if running."""
    if self._it is not None and hasattr(self._it, "close"):
      self._it.close()
    self._it = None
