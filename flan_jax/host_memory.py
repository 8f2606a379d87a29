"""Host memory that XLA:CPU frees is kept for its next step instead of handed back to the kernel.

An XLA:CPU step allocates its temporaries afresh and frees them when it ends: ~3.5 GB for a Flan-T5-small train step
at batch 8 x (512 + 128). glibc gives such blocks back (large ones are mmap'ed and unmapped; per-thread arenas shrink
when their top is free), so every step faults them all in again: ~860,000 page faults and 1.4-1.6 s of system time a
step on the 2-core VM, up to 5-10 s where freed pages are reclaimed by the hypervisor between steps. With one arena,
no mmap for large blocks and no trimming, a step reuses the previous step's pages: no faults, no system time, and the
step ~15% faster there (`benchmarks/train_throughput.py` measures it against PyTorch under the same setting).

The cost is that the process keeps its peak heap: memory it frees stays its own. That suits a trainer, whose steps
reach the same peak again and again; it is what an accelerator runtime's memory pool does. `flan-jax train`, `eval`
and `infer` call `keep_freed_memory()` before JAX starts; a notebook can call it first thing. Set
$FLAN_JAX_HOST_MALLOC=default to leave glibc's defaults. It does nothing where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import os

ENV_VAR = "FLAN_JAX_HOST_MALLOC"
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def keep_freed_memory() -> bool:
  """Sets glibc to keep freed memory for reuse (see the module doc); returns whether it did. Call before the
  threads that allocate start (before JAX runs): a thread keeps the arena it first allocated from."""
  if os.environ.get(ENV_VAR, "keep") == "default":
    return False
  libc = ctypes.CDLL(None)
  if not hasattr(libc, "gnu_get_libc_version"):
    return False
  # One arena: per-thread arenas would each keep a peak of their own. mallopt returns 1 on success.
  return all(libc.mallopt(param, value) == 1
             for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
