"""What both launchers share: the entry-point command line, gin sweeps, data-dir environment, slices.

Everything here is plain data (dataclasses and lists of strings), so `--dry_run` can print the exact job
specs and commands without XManager or gcloud installed, and tests can check them.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shlex
from typing import Iterable, Sequence

from flan_jax import plan

# The jax every launched host installs, with the accelerator's extra (`jax[tpu]`, `jax[cuda12]`); setup.py pins it.
JAX_VERSION = "0.10.2"

# Entry points a launch may run: all of them take the same `--gin_file` / `--gin.X=Y` / `--gin_search_paths`.
ENTRY_POINTS = {"train": "flan_jax.train", "eval": "flan_jax.eval", "infer": "flan_jax.infer"}

# `flan_jax/train.py`'s multi-host flags (passed to jax.distributed.initialize). On TPU none is needed: the
# runtime tells jax the coordinator and process ids. Under SLURM the launcher fills them from SLURM_*.
COORDINATOR_FLAG = "--coordinator_address"
NUM_PROCESSES_FLAG = "--process_count"
PROCESS_ID_FLAG = "--process_index"

# Accelerator slices live with the memory plan (the library must not import launch/); re-exported here.
GiB = plan.GiB
Slice = plan.Slice
TPU_GENERATIONS = plan.TPU_GENERATIONS
GPU_HBM = plan.GPU_HBM
parse_tpu = plan.parse_tpu
gpu_slice = plan.gpu_slice
parse_accelerator = plan.parse_accelerator


def parse_gin_flag(flag: str) -> tuple[str, str]:
  """`--gin.LEARNING_RATE=1e-3` or `LEARNING_RATE=1e-3` -> ("LEARNING_RATE", "1e-3")."""
  body = flag[len("--gin."):] if flag.startswith("--gin.") else flag
  name, sep, value = body.partition("=")
  if not sep or not name or not re.fullmatch(r"[A-Za-z_][\w.]*(/[\w.]+)?", name):
    raise ValueError(f"gin binding {flag!r} is not of the form NAME=VALUE (e.g. LEARNING_RATE=1e-3)")
  return name, value


def gin_string(value: str) -> str:
  """A Python string as a gin literal, double-quoted so it nests in shell single quotes: gs://b/x -> "gs://b/x"."""
  return json.dumps(str(value))


@dataclasses.dataclass(frozen=True)
class EntryCommand:
  """`python -m flan_jax.train --gin_file=... --gin.X=Y ...`, the one command every launcher runs."""
  entry: str = "train"
  gin_files: tuple[str, ...] = ()
  gin_bindings: tuple[tuple[str, str], ...] = ()
  gin_search_paths: tuple[str, ...] = ()
  extra_flags: tuple[str, ...] = ()
  python: str = "python3"

  def __post_init__(self):
    if self.entry not in ENTRY_POINTS:
      raise ValueError(f"entry point {self.entry!r} is not one of {sorted(ENTRY_POINTS)}")
    if not self.gin_files:
      raise ValueError("a launch needs at least one --gin_file")

  def with_bindings(self, bindings: Iterable[tuple[str, str]]) -> "EntryCommand":
    """Later bindings win, as with repeated `--gin.X=Y` flags; the list keeps one entry per name."""
    merged = dict(self.gin_bindings)
    merged.update(bindings)
    return dataclasses.replace(self, gin_bindings=tuple(merged.items()))

  def with_flags(self, flags: Sequence[str]) -> "EntryCommand":
    return dataclasses.replace(self, extra_flags=self.extra_flags + tuple(flags))

  def args(self) -> list[str]:
    out = [f"--gin_file={f}" for f in self.gin_files]
    if self.gin_search_paths:
      out.append(f"--gin_search_paths={','.join(self.gin_search_paths)}")
    out += [f"--gin.{name}={value}" for name, value in self.gin_bindings]
    return out + list(self.extra_flags)

  def argv(self) -> list[str]:
    return [self.python, "-m", ENTRY_POINTS[self.entry]] + self.args()

  def shell(self, env: dict[str, str] | None = None) -> str:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    cmd = shlex.join(self.argv())
    return f"{prefix} {cmd}" if prefix else cmd


def sweep_units(sweep_flags: Sequence[str]) -> list[dict[str, str]]:
  """Work units from repeated `--sweep NAME=VALUE` flags: values of one name vary together as a list, and
  different names combine as a product (2 learning rates x 2 mixtures -> 4 units). No flag -> one unit."""
  by_name: dict[str, list[str]] = {}
  for flag in sweep_flags:
    name, value = parse_gin_flag(flag)
    values = by_name.setdefault(name, [])
    if value in values:
      raise ValueError(f"--sweep {flag!r} repeats a value already swept for {name}")
    values.append(value)
  names = list(by_name)
  return [dict(zip(names, combo)) for combo in itertools.product(*(by_name[n] for n in names))]


def unit_dir(base: str, index: int, n_units: int) -> str:
  """MODEL_DIR of a work unit: the base dir itself for a single run, `base/<index>` in a sweep."""
  base = base.rstrip("/")
  return base if n_units == 1 else f"{base}/{index}"


def data_env(flan_data_dir: str | None, tfds_data_dir: str | None) -> dict[str, str]:
  """The environment every process gets: where the Flan data and TFDS datasets live."""
  env = {}
  if flan_data_dir:
    env["FLAN_JAX_DATA_DIR"] = flan_data_dir
  if tfds_data_dir:
    env["TFDS_DATA_DIR"] = tfds_data_dir
  return env
