"""How this process's C library (glibc) keeps or returns the memory it frees: the three settings flan_jax uses.

`keep_freed_memory`, for processes that run XLA steps. An XLA:CPU step allocates its temporaries afresh and frees
them when it ends: ~3.5 GB for a Flan-T5-small train step at batch 8 x (512 + 128). glibc gives such blocks back
(large ones are mmap'ed and unmapped; per-thread arenas shrink when their top is free), so every step faults them all
in again: ~860,000 page faults and 1.4-1.6 s of system time a step on the 2-core VM, up to 5-10 s where freed pages
are reclaimed by the hypervisor between steps. With one arena, no mmap for large blocks and no trimming, a step
reuses the previous step's pages: no faults, no system time, and the step ~15% faster there
(`benchmarks/train_throughput.py` measures it against PyTorch under the same setting). The cost is that the process
keeps its peak heap, as an accelerator runtime's memory pool does. `flan-jax train`, `eval` and `infer` call it
before JAX starts; a notebook can call it first thing. $FLAN_JAX_HOST_MALLOC=default leaves glibc's defaults.

`return_large_frees`, for the input's worker processes, which allocate and free a block's arrays (MBs each) every
block: glibc raises its mmap threshold as such chunks are freed, so later ones come from the heap, whose top rarely
shrinks (~50 MB more per worker on flan2022_submix). A fixed threshold sends them back when freed, for ~3% more CPU a
block (within the VM's noise).

`trim`, after a process drops many small objects at once (the rows it read for the input's workers): glibc keeps
freed heap pages otherwise.

Each does nothing where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import os

ENV_VAR = "FLAN_JAX_HOST_MALLOC"
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -3, -4, -8
WORKER_MMAP_THRESHOLD = 256 << 10


def _glibc() -> ctypes.CDLL | None:
  libc = ctypes.CDLL(None)  # this process's own symbols: glibc's where it runs on glibc
  return libc if hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_memory() -> bool:
  """Sets glibc to keep freed memory for reuse (see the module doc); returns whether it did. Call before the
  threads that allocate start (before JAX runs): a thread keeps the arena it first allocated from."""
  libc = _glibc()
  if os.environ.get(ENV_VAR, "keep") == "default" or libc is None:
    return False
  # One arena: per-thread arenas would each keep a peak of their own. mallopt returns 1 on success.
  return all(libc.mallopt(param, value) == 1
             for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))


def return_large_frees() -> None:
  """Blocks of `WORKER_MMAP_THRESHOLD` or more are mmap'ed, so they go back to the system when freed."""
  libc = _glibc()
  if libc is not None:
    libc.mallopt(_M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)


def trim() -> None:
  """Hands the heap's free pages back to the system now."""
  libc = _glibc()
  if libc is not None:
    libc.malloc_trim(0)
