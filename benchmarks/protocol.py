"""The protocol every speed benchmark in this directory follows, so that its figures can be compared.

1. The 1-minute load average is printed at the start and at the end; a run that starts above 0.3 per core (0.6 on
   2 cores) is marked NOT COMPARABLE: run it through `../shared/tools/quiet`, which waits for a quiet machine.
2. Both sides get one intra-op thread per core: torch through `torch.set_num_threads`, XLA:CPU through
   $PJRT_NPROC (the size of its intra-op thread pool) and `--xla_cpu_multi_thread_eigen=true` in $XLA_FLAGS, both
   set before jax is imported unless the user set them. The thread counts in force are printed.
3. The sides run alternately, A B A B ..., for at least 3 rounds after one warm-up call of each (the compile and
   first call, reported apart). Every round's figure is printed, then each side's median and the median and
   spread (min-max) of the per-round ratios A/B: one pair of runs is never the result.
4. Sides that use different runtimes (XLA and PyTorch) run in processes of their own (`Isolated`): in one process
   each runtime's idle thread pool competes with the other's work (torch's train step fell from 530 to 250
   tokens/s after XLA's first call in the same process). The idle side's process waits on a pipe meanwhile.
5. Every process keeps the host memory it frees, as flan-jax's entry points set it (`flan_jax.host_memory`); the
   line after the thread counts says whether it does ($FLAN_JAX_HOST_MALLOC=default leaves glibc's defaults).

A script calls `use_cores` before importing jax, `header` before its first measurement, `interleaved` and `summary`
per comparison, and `footer` at the end.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import statistics
import sys
import time
import traceback
from typing import Any, Callable

from flan_jax import host_memory

LOAD_PER_CORE = 0.3  # above this 1-minute load average per core at start, figures are not comparable
_KEEPS_FREED_MEMORY = False  # set by `use_cores`
MIN_ROUNDS = 3


def cores() -> int:
  """The cores this process may run on (what `nproc` says)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_average() -> float:
  return os.getloadavg()[0]


def use_cores(n: int) -> None:
  """XLA:CPU gets an intra-op pool of `n` threads, used by its Eigen kernels too; keeps what the user set. The
  process keeps the memory it frees, as `flan-jax train` sets it (`host_memory.keep_freed_memory`; each side's
  process does, PyTorch's too; $FLAN_JAX_HOST_MALLOC=default leaves glibc's defaults).

  Call before jax is imported: the CPU client reads $PJRT_NPROC and $XLA_FLAGS when it starts.
  """
  if "jax" in sys.modules:
    raise RuntimeError("protocol.use_cores must run before jax is imported")
  os.environ.setdefault("PJRT_NPROC", str(n))
  os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
  global _KEEPS_FREED_MEMORY
  _KEEPS_FREED_MEMORY = host_memory.keep_freed_memory()


def torch_threads(n: int) -> int:
  """Sets torch's intra-op threads to `n`; returns the count in force."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(n)
  return torch.get_num_threads()


def xla_pool_threads(tasks: str = "/proc/self/task") -> int:
  """Threads of XLA:CPU's intra-op pool running in this process (they exist once jax's CPU backend has started)."""
  count = 0
  for tid in os.listdir(tasks):
    try:
      with open(f"{tasks}/{tid}/comm") as f:
        count += "XLAEigen" in f.read()
    except FileNotFoundError:
      continue  # the thread ended after the listing (other libraries' pools come and go)
  return count


def print_threads(torch_count: int | None) -> None:
  """Prints the thread counts in force; call after jax's backend has started (e.g. after `jax.devices()`)."""
  line = (f"threads: XLA intra-op pool {xla_pool_threads()} (PJRT_NPROC={os.environ.get('PJRT_NPROC')}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})")
  if torch_count is not None:
    line += f", torch {torch_count}"
  print(line)


def header(n: int) -> bool:
  """Prints the load average at start and whether the figures to come can be compared; returns that verdict."""
  load, limit = load_average(), LOAD_PER_CORE * n
  print(f"load average at start: {load:.2f} on {n} cores")
  comparable = load <= limit
  if not comparable:
    print(f"NOT COMPARABLE (load {load:.2f} above {limit:.1f} on {n} cores; run through ../shared/tools/quiet)")
  return comparable


def start(with_torch: bool) -> bool:
  """What every script does first: the load verdict (returned), torch's threads when it runs torch, XLA's backend
  started and both thread counts printed."""
  import jax  # pylint: disable=import-outside-toplevel  (imported after `use_cores` by the caller already)
  n = cores()
  comparable = header(n)
  torch_count = torch_threads(n) if with_torch else None
  jax.devices()  # starts XLA's thread pool, so that it can be counted
  print_threads(torch_count)
  print("host memory: " + ("freed memory kept for reuse (flan_jax.host_memory)" if _KEEPS_FREED_MEMORY else
                           "glibc's defaults"))
  return comparable


def footer(comparable: bool) -> float:
  """Prints the load average at end (this run's own threads count in it) and repeats a NOT COMPARABLE verdict."""
  load = load_average()
  print(f"load average at end: {load:.2f}")
  if not comparable:
    print("NOT COMPARABLE: the load at start was above the threshold (see the first lines)")
  return load


def rate(work: Callable[[], object], amount: float) -> Callable[[], float]:
  """A measure function: runs `work` once and returns `amount` (tokens, prompts, FLOPs ...) per second of it."""

  def measure() -> float:
    start = time.perf_counter()
    work()
    return amount / (time.perf_counter() - start)

  return measure


def interleaved(sides: dict[str, Callable[[], float]], rounds: int, unit: str) -> dict[str, list[float]]:
  """Calls each side's measure function once to warm up, then `rounds` times alternately (A B A B ...).

  Prints the warm-up seconds and every round's figures; returns each side's figures per round.
  """
  if rounds < MIN_ROUNDS:
    raise ValueError(f"rounds={rounds}: at least {MIN_ROUNDS} rounds, one pair of runs is not a result")
  warmup = {}
  for name, measure in sides.items():
    start = time.perf_counter()
    measure()
    warmup[name] = time.perf_counter() - start
  print("warm-up (compile + first call, excluded): " + ", ".join(f"{k} {s:.2f}s" for k, s in warmup.items()))
  figures: dict[str, list[float]] = {name: [] for name in sides}
  for index in range(rounds):
    for name, measure in sides.items():
      figures[name].append(measure())
    print(f"round {index + 1}: " + ", ".join(f"{k} {v[-1]:.2f} {unit}" for k, v in figures.items()))
  return figures


@dataclasses.dataclass(frozen=True)
class Summary:
  median_a: float
  median_b: float
  ratios: list[float]  # a / b, round by round
  ratio_median: float
  ratio_min: float
  ratio_max: float


def summary(figures: dict[str, list[float]], a: str, b: str, unit: str) -> Summary:
  """Prints the median of sides `a` and `b` and the median and spread of their per-round ratios a/b."""
  ratios = [x / y for x, y in zip(figures[a], figures[b])]
  result = Summary(statistics.median(figures[a]), statistics.median(figures[b]), ratios,
                   statistics.median(ratios), min(ratios), max(ratios))
  print(f"median: {a} {result.median_a:.2f} {unit}, {b} {result.median_b:.2f} {unit}; ratio {a}/{b} per round "
        + " ".join(f"{r:.2f}" for r in ratios)
        + f", median {result.ratio_median:.2f}x (spread {result.ratio_min:.2f}-{result.ratio_max:.2f}x)")
  return result


def _serve(factory: Callable[..., tuple[Callable[[], float], Any]], args: tuple, conn) -> None:
  try:
    measure, info = factory(*args)
    conn.send(("ready", info))
    while conn.recv():
      conn.send(("figure", measure()))
  except BaseException:  # noqa: BLE001 - the parent raises it, with this traceback
    conn.send(("error", traceback.format_exc()))


class Isolated:
  """A measure function whose side lives in a spawned process: `factory(*args)` (a module-level function of the
  script, which the child imports) builds the side there and returns (measure function, info); `info` is sent back
  once, as `self.info`. Calling the object runs one measurement there and returns its figure."""

  def __init__(self, factory: Callable[..., tuple[Callable[[], float], Any]], *args):
    ctx = multiprocessing.get_context("spawn")
    self._conn, child = ctx.Pipe()
    self._process = ctx.Process(target=_serve, args=(factory, args, child), daemon=True)
    self._process.start()
    self.cpu: list[tuple[float, float]] = []
    self.info = self._reply("ready")

  def _reply(self, want: str) -> Any:
    while not self._conn.poll(1.0):
      if not self._process.is_alive():  # died before it could say why (e.g. unpickling the factory)
        raise RuntimeError(f"benchmark side {self._process.name} exited with {self._process.exitcode}")
    kind, value = self._conn.recv()
    if kind == "error":
      raise RuntimeError(f"benchmark side {self._process.name} failed:\n{value}")
    assert kind == want, kind
    return value

  def __call__(self) -> float:
    before = self._cpu_seconds()
    self._conn.send(True)
    figure = self._reply("figure")
    self.cpu.append(tuple(b - a for a, b in zip(before, self._cpu_seconds())))
    return figure

  def _cpu_seconds(self) -> tuple[float, float]:
    """(user, system) CPU seconds of the side's process so far, all its threads."""
    with open(f"/proc/{self._process.pid}/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick

  def cpu_line(self, name: str) -> str:
    """The user and system CPU seconds its measurements took, per call (system time is the kernel's: page faults
    of fresh allocations show there)."""
    return f"{name} CPU per call (user/system s): " + " ".join(f"{u:.1f}/{s:.1f}" for u, s in self.cpu)

  def close(self) -> None:
    self._conn.send(False)
    self._process.join(timeout=60)
