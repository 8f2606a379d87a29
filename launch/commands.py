"""What both launchers share: accelerator slices, the entry-point command line, gin sweeps.

Everything here is plain data (dataclasses and lists of strings), so `--dry_run` can print the exact job
specs and commands without XManager or gcloud installed, and tests can check them.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import shlex
from typing import Iterable, Sequence

# Entry points a launch may run: all of them take the same `--gin_file` / `--gin.X=Y` / `--gin_search_paths`.
ENTRY_POINTS = {"train": "flan_jax.train", "eval": "flan_jax.eval", "infer": "flan_jax.infer"}

# `flan_jax/train.py`'s multi-host flags (passed to jax.distributed.initialize). On TPU none is needed: the
# runtime tells jax the coordinator and process ids. On SLURM, jax reads SLURM_* itself.
COORDINATOR_FLAG = "--coordinator_address"
NUM_PROCESSES_FLAG = "--num_processes"
PROCESS_ID_FLAG = "--process_id"

GiB = 1024**3


@dataclasses.dataclass(frozen=True)
class _TpuGeneration:
  """How one TPU generation names and lays out its slices.

  `counts_cores`: the number in `v4-32` counts TensorCores (v2-v5p) rather than chips (v5e, v6e).
  `cores_per_device`: 2 where two TensorCores form one jax device (megacore); `hbm_per_device` is that device's.
  """
  gcloud_prefix: str
  counts_cores: bool
  cores_per_chip: int
  cores_per_device: int
  chips_per_host: int
  single_host_max_chips: int
  hbm_per_device: int
  torus_dims: int
  runtime_version: str


TPU_GENERATIONS = {
    "v2": _TpuGeneration("v2", True, 2, 1, 4, 4, 8 * GiB, 2, "tpu-ubuntu2204-base"),
    "v3": _TpuGeneration("v3", True, 2, 1, 4, 4, 16 * GiB, 2, "tpu-ubuntu2204-base"),
    "v4": _TpuGeneration("v4", True, 2, 2, 4, 4, 32 * GiB, 3, "tpu-ubuntu2204-base"),
    "v5p": _TpuGeneration("v5p", True, 2, 2, 4, 4, 95 * GiB, 3, "v2-alpha-tpuv5"),
    "v5e": _TpuGeneration("v5litepod", False, 1, 1, 4, 8, 16 * GiB, 2, "v2-alpha-tpuv5-lite"),
    "v6e": _TpuGeneration("v6e", False, 1, 1, 4, 8, 32 * GiB, 2, "v2-alpha-tpuv6e"),
}
_TPU_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e"}

# Memory per GPU, for the plan's "fits" line.
GPU_HBM = {"a100": 40 * GiB, "a100-80gb": 80 * GiB, "h100": 80 * GiB, "h200": 141 * GiB, "l4": 24 * GiB,
           "v100": 16 * GiB, "t4": 16 * GiB}


@dataclasses.dataclass(frozen=True)
class Slice:
  """An accelerator slice: what jax will see (devices, processes) and what the cloud calls it."""
  kind: str                # "tpu" or "gpu"
  name: str                # canonical: "v4-32", "v5e-256", "a100"
  generation: str          # "v4", "v5e", ... or the GPU model
  chips: int
  devices: int             # jax.device_count() on the slice
  hosts: int               # processes (one per host)
  hbm_per_device: int      # bytes
  gcloud_accelerator_type: str = ""   # "v4-32", "v5litepod-256"
  topology: str = ""       # physical chip grid, "2x2x4"
  runtime_version: str = ""

  @property
  def devices_per_host(self) -> int:
    return self.devices // self.hosts

  def describe(self) -> str:
    extra = f", topology {self.topology}" if self.topology else ""
    return (f"{self.name}: {self.chips} chips, {self.devices} jax devices on {self.hosts} host(s)"
            f"{extra}, {self.hbm_per_device / GiB:g} GiB per device")


def _torus(chips: int, dims: int) -> str:
  """The chip grid gcloud uses for a power-of-two slice: 16 chips in 3-D -> 2x2x4, 8 in 2-D -> 2x4."""
  if chips & (chips - 1):
    raise ValueError(f"a TPU slice has a power-of-two chip count, got {chips}")
  shape = [1] * dims
  while math.prod(shape) < chips:
    shape[-1 - shape[::-1].index(min(shape))] *= 2
  shape.sort()
  ones = [d for d in shape if d == 1]
  return "x".join(str(d) for d in [d for d in shape if d != 1] + ones)


def parse_tpu(name: str) -> Slice:
  """Parses a Cloud TPU accelerator type: `v4-32`, `v5e-256` (= `v5litepod-256`), `v5p-128`, `v3-8`."""
  m = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name.strip().lower())
  if not m:
    raise ValueError(f"TPU topology {name!r} is not of the form v4-32 / v5e-256 / v5p-128")
  gen_name = _TPU_ALIASES.get(m.group(1), m.group(1))
  if gen_name not in TPU_GENERATIONS:
    raise ValueError(f"TPU generation {m.group(1)!r} in {name!r} is unknown (known: {sorted(TPU_GENERATIONS)})")
  gen = TPU_GENERATIONS[gen_name]
  count = int(m.group(2))
  if gen.counts_cores:
    if count % gen.cores_per_chip:
      raise ValueError(f"{name!r}: {gen_name} slices count TensorCores, {count} is not a whole number of chips")
    chips = count // gen.cores_per_chip
  else:
    chips = count
  if chips < 1:
    raise ValueError(f"{name!r}: a slice needs at least one chip")
  devices = chips * gen.cores_per_chip // gen.cores_per_device
  hosts = 1 if chips <= gen.single_host_max_chips else chips // gen.chips_per_host
  return Slice(
      kind="tpu", name=f"{gen_name}-{count}", generation=gen_name, chips=chips, devices=devices, hosts=hosts,
      hbm_per_device=gen.hbm_per_device, gcloud_accelerator_type=f"{gen.gcloud_prefix}-{count}",
      topology=_torus(chips, gen.torus_dims), runtime_version=gen.runtime_version)


def gpu_slice(model: str, hosts: int, gpus_per_host: int) -> Slice:
  model = model.lower()
  if model not in GPU_HBM:
    raise ValueError(f"GPU model {model!r} is unknown (known: {sorted(GPU_HBM)})")
  if hosts < 1 or gpus_per_host < 1:
    raise ValueError(f"GPU hosts ({hosts}) and GPUs per host ({gpus_per_host}) must be positive")
  n = hosts * gpus_per_host
  return Slice(kind="gpu", name=model, generation=model, chips=n, devices=n, hosts=hosts,
               hbm_per_device=GPU_HBM[model])


def parse_accelerator(spec: str, hosts: int = 1, gpus_per_host: int = 8) -> Slice:
  """`v4-32` / `v5e-256` (TPU), or `gpu:a100` / `gpu:h100` with hosts x gpus_per_host."""
  if spec.lower().startswith("gpu:"):
    return gpu_slice(spec.split(":", 1)[1], hosts, gpus_per_host)
  return parse_tpu(spec)


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
