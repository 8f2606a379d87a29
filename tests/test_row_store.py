"""row_store: rows held pickled in one buffer, in memory or in a file other processes map."""
import gc
import multiprocessing
import os
import pathlib
import pickle

import numpy as np
import pytest

from flan_jax.data.files import row_store

ROWS = [(0, {"question": "Why?", "options": np.array([b"a", b"b"], dtype=object)}), (3, {"question": ""}),
        (7, {"question": "caf\u00e9 \U0001f600", "label": np.int64(2)})]


def _same(a, b) -> bool:
  return repr(a) == repr(b)  # numpy values inside rows compare by repr


def test_a_store_gives_back_each_row_as_given():
  store = row_store.RowStore.of(ROWS)
  assert len(store) == 3 and store.nbytes > 0
  assert all(_same(store[i], row) for i, row in enumerate(ROWS))
  assert _same(store[-1], ROWS[-1]) and _same(store[1:], ROWS[1:])
  with pytest.raises(IndexError):
    store[3]  # pylint: disable=pointless-statement
  store[0][1]["question"] = "changed"
  assert store[0][1]["question"] == "Why?"  # each read is a fresh copy
  assert len(row_store.RowStore.of([])) == 0
  assert _same(list(pickle.loads(pickle.dumps(store))), ROWS)  # stores travel to other processes


def _read_in_child(ref, queue):
  queue.put([[repr(row) for row in store] for store in row_store.SharedRows.open(ref)])


def test_shared_rows_are_read_back_in_another_process(tmp_path):
  stores = [row_store.RowStore.of(ROWS), row_store.RowStore.of([]), row_store.RowStore.of(ROWS[1:])]
  shared = row_store.SharedRows.write(iter(stores), tmp_dir=str(tmp_path))
  assert shared.ref.sizes == (3, 0, 2)
  here = row_store.SharedRows.open(shared.ref)
  assert [[repr(r) for r in s] for s in here] == [[repr(r) for r in s] for s in stores]
  assert isinstance(here[0]._data, np.memmap)  # pylint: disable=protected-access  (mapped, not read in)
  ctx = multiprocessing.get_context("spawn")
  queue = ctx.Queue()
  child = ctx.Process(target=_read_in_child, args=(shared.ref, queue))
  child.start()
  got = queue.get(timeout=60)
  child.join()
  assert got == [[repr(r) for r in s] for s in stores]


def test_the_file_goes_with_its_writer(tmp_path):
  shared = row_store.SharedRows.write([row_store.RowStore.of(ROWS)], tmp_dir=str(tmp_path))
  path = pathlib.Path(shared.ref.path)
  assert path.parent == tmp_path and path.name.startswith(f"flan_jax_rows_{os.getpid()}_")
  del shared
  gc.collect()
  assert not path.exists()
  shared = row_store.SharedRows.write([row_store.RowStore.of(ROWS)], tmp_dir=str(tmp_path))
  shared.close()
  assert not pathlib.Path(shared.ref.path).exists()


def test_a_killed_writers_file_is_removed_by_the_next_writer(tmp_path):
  ctx = multiprocessing.get_context("spawn")
  gone = ctx.Process(target=os.getpid)
  gone.start()
  gone.join()
  orphan = tmp_path / f"flan_jax_rows_{gone.pid}_x"  # as a writer killed with -9 leaves it
  live = tmp_path / f"flan_jax_rows_{os.getpid()}_y"
  other = tmp_path / "flan_jax_rows_notapid_z"
  for d in (orphan, live, other):
    d.mkdir()
  shared = row_store.SharedRows.write([row_store.RowStore.of(ROWS)], tmp_dir=str(tmp_path))
  assert not orphan.exists() and live.exists() and other.exists()
  shared.close()


def test_a_write_that_fails_leaves_nothing(tmp_path):
  def stores():
    yield row_store.RowStore.of(ROWS)
    raise RuntimeError("reading the second dataset failed")

  with pytest.raises(RuntimeError, match="second dataset"):
    row_store.SharedRows.write(stores(), tmp_dir=str(tmp_path))
  assert not list(tmp_path.iterdir())
