"""A dataset's rows held compactly, in memory or in a file that worker processes map and share.

As Python objects a row costs ~500 bytes over its text (a dict, str headers, a tuple); a mixture of thousands of
datasets held that way in every grain worker was most of the input's memory. A `RowStore` keeps each row pickled,
all rows in one byte buffer with offsets, and unpickles a row when it is read (a few µs). `SharedRows.write` puts
stores in one file; `SharedRows.open` maps it, so the pages are shared by every process that reads them and are
parsed from the data files once, by the process that wrote them.

The file lives in a directory of its own under the temp dir, named after the writing process; the writer removes it
when the `SharedRows` goes (or at exit), and a later writer removes those whose process is gone (killed).
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import pickle
import shutil
import tempfile
import weakref
from typing import Any, Iterable, Sequence

import numpy as np

_PREFIX = "flan_jax_rows_"


class RowStore(Sequence):
  """Rows by position: `store[i]` is row i as it was given, unpickled afresh (callers may change it freely)."""

  def __init__(self, data: np.ndarray, offsets: np.ndarray):
    self._data, self._offsets = data, offsets  # uint8 bytes; int64 [len + 1] boundaries into them
    # Read through memoryviews: a row costs its unpickling plus ~0.1 µs (numpy indexing would double it).
    self._bytes = memoryview(data).cast("B")
    self._bounds = memoryview(np.ascontiguousarray(offsets, np.int64)).cast("B").cast("q")

  def __reduce__(self):
    return RowStore, (np.asarray(self._data), np.asarray(self._offsets))

  @classmethod
  def of(cls, rows: Iterable[Any]) -> RowStore:
    pickled = [pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL) for row in rows]
    offsets = np.zeros(len(pickled) + 1, np.int64)
    np.cumsum([len(p) for p in pickled], out=offsets[1:])
    return cls(np.frombuffer(b"".join(pickled), np.uint8), offsets)

  def __len__(self) -> int:
    return len(self._offsets) - 1

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[k] for k in range(*i.indices(len(self)))]
    if i < 0:
      i += len(self)
    if not 0 <= i < len(self):
      raise IndexError(f"row {i} of {len(self)}")
    return pickle.loads(self._bytes[self._bounds[i]:self._bounds[i + 1]])

  @property
  def nbytes(self) -> int:
    return int(self._offsets[-1] - self._offsets[0])

  def raw(self) -> tuple[memoryview, np.ndarray]:
    """The rows' bytes and their boundaries in them (starting at 0)."""
    first = int(self._offsets[0])
    return memoryview(self._data)[first:int(self._offsets[-1])], np.asarray(self._offsets) - first


@dataclasses.dataclass(frozen=True)
class SharedRowsRef:
  """What a reader needs to open a shared rows file: its dir and the number of rows in each store, in order."""
  path: str
  sizes: tuple[int, ...]


class SharedRows:
  """Stores written to one file for other processes to map (see the module doc); `ref` pickles into them."""

  def __init__(self, ref: SharedRowsRef, owner: bool):
    self.ref = ref
    if owner:
      self._cleanup = weakref.finalize(self, shutil.rmtree, ref.path, True)

  @classmethod
  def write(cls, stores: Iterable[RowStore], tmp_dir: str | None = None) -> SharedRows:
    """Writes `stores` one after another (each may be dropped once written) to a new rows file."""
    base = pathlib.Path(tmp_dir or tempfile.gettempdir())
    _remove_orphans(base)
    path = pathlib.Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}_", dir=base))
    ends, sizes, start = [np.zeros(1, np.int64)], [], 0
    try:
      with open(path / "data.bin", "wb") as f:
        for store in stores:
          data, offsets = store.raw()
          f.write(data)
          ends.append(start + offsets[1:])
          sizes.append(len(store))
          start += len(data)
      np.save(path / "offsets.npy", np.concatenate(ends))
    except BaseException:
      shutil.rmtree(path, ignore_errors=True)
      raise
    return cls(SharedRowsRef(str(path), tuple(sizes)), owner=True)

  @staticmethod
  def open(ref: SharedRowsRef) -> list[RowStore]:
    path = pathlib.Path(ref.path)
    offsets = np.load(path / "offsets.npy", mmap_mode="r")
    size = int(offsets[-1])
    data = np.memmap(path / "data.bin", np.uint8, "r") if size else np.zeros(0, np.uint8)
    bounds = np.cumsum((0,) + ref.sizes)
    return [RowStore(data, offsets[a:b + 1]) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]

  def close(self) -> None:
    """Removes the file now (readers that mapped it keep their pages)."""
    self._cleanup()


def _remove_orphans(base: pathlib.Path) -> None:
  """Removes the rows dirs of writers that are gone (a killed trainer's)."""
  for entry in base.glob(f"{_PREFIX}*_*"):
    try:
      pid = int(entry.name[len(_PREFIX):].split("_", 1)[0])
      os.kill(pid, 0)
    except ValueError:
      continue
    except ProcessLookupError:
      shutil.rmtree(entry, ignore_errors=True)
    except PermissionError:
      continue  # another user's live process
