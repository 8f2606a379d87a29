"""`flan-jax plan`: per-device memory of a training run, from shapes alone (nothing is allocated or compiled).

  flan-jax plan --gin_file=gin_configs/runs/flan_t5_xxl_flan2022.gin --mesh data=8,model=8
  flan-jax plan --gin_file=gin_configs/runs/flan_t5_xl_flan2022.gin --topology v4-32

Parameters and Adafactor slots come from `jax.eval_shape` of the model's init and the optimizer's init, each
leaf sharded by the logical-axis rules of `flan_jax.partitioning` over an abstract mesh of the requested
shape. Gradients take as much as the parameters (float32, same sharding). Activations are counted per layer
from the model config: the tensors kept for the backward pass of one microbatch on one device (see
`activation_elements`), which is where most of the memory of a long-sequence run goes.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import pathlib
import re
import sys
from typing import Any, Mapping, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AbstractMesh, PartitionSpec

from flan_jax import data_layout, optimizers, partitioning

GiB = 1024**3


# ------------------------------------------------------------------------------------------ accelerator slices
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


def _leaves(tree: Any, axes_tree: Any) -> list[tuple[tuple[int, ...], Any, Any]]:
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  axes = treedef.flatten_up_to(axes_tree)
  return [(tuple(x.shape), jnp.dtype(x.dtype), a) for x, a in zip(leaves, axes)]


def shard_shape(shape: Sequence[int], spec: PartitionSpec, mesh: AbstractMesh) -> tuple[int, ...]:
  """The shape one device holds: each dimension divided by the mesh axes its spec names."""
  out = list(shape)
  for dim, axes in enumerate(spec):
    if axes is None:
      continue
    for a in (axes,) if isinstance(axes, str) else axes:
      out[dim] //= mesh.shape[a]
  return tuple(out)


def tree_bytes_per_device(tree: Any, logical_axes: Any, rules, mesh: AbstractMesh) -> tuple[int, int]:
  """(bytes on one device, bytes in all) of a tree of ShapeDtypeStructs placed by logical axes."""
  per_device = total = 0
  for shape, dtype, axes in _leaves(tree, logical_axes):
    names = tuple(axes) if axes is not None else None
    spec = partitioning.logical_to_mesh_spec(names, rules, shape, mesh)
    total += math.prod(shape) * dtype.itemsize
    per_device += math.prod(shard_shape(shape, spec, mesh)) * dtype.itemsize
  return per_device, total


# Activations whose derivative autodiff takes from a saved intermediate (GELU's tanh, SiLU's sigmoid).
_SAVES_INTERMEDIATE = ("gelu", "silu", "swish")


def mlp_intermediates(activations: Sequence[str]) -> int:
  """[len, mlp] tensors the MLP keeps for its backward pass besides the wi outputs and the product fed to wo:
  each GELU or SiLU's intermediate, and in a gated MLP each non-linear branch's output (the other branch's
  gradient is the incoming gradient times it)."""
  gated = len(activations) > 1
  return sum((a in _SAVES_INTERMEDIATE) + (gated and a != "linear") for a in activations)


def heads_per_device(num_heads: int, head_dim: int, model_parallel: int) -> int:
  """Attention heads one device computes. The q/k/v kernels are split over 'model' along `joined_kv` (heads x
  head_dim) whenever that divides, even where the heads do not: XLA then splits the heads by the largest factor
  of the model axis that divides them and gathers the rest of the head_dim split (6 heads on model=4: 3 each)."""
  if (num_heads * head_dim) % model_parallel:
    return num_heads
  return num_heads // math.gcd(num_heads, model_parallel)


def activation_elements(cfg: Any, inputs_len: int, targets_len: int, model_parallel: int) -> dict[str, int]:
  """Elements one sequence keeps for the backward pass, per T5 encoder-decoder layer kind and group.

  Per layer, with S the encoder and T the decoder length, E=emb_dim, D=head_dim, A=len(mlp_activations),
  and H, M the heads (`heads_per_device`) and mlp width (split over 'model' when it divides) on one device:
    input:      the layer input, S*E (encoder) or T*E (decoder)
    projection: q, k, v and output projections and the MLP's wi (A of them) and wo outputs
    attention:  the attention probabilities (H*len*len) and the context H*D per position; not the logits:
                `layers._attention`'s backward rebuilds the logits' gradient from the probabilities alone
    elementwise: the RMSNorm outputs, the residual sum(s), the gated MLP product and the MLP's activation
                intermediates (`mlp_intermediates`)
  The decoder's cross-attention projects the S encoder positions to keys and values in every layer.
  (`benchmarks/sharding_cost.py` checks these counts against the buffers XLA keeps.)
  """
  E, D, A = cfg.emb_dim, cfg.head_dim, len(cfg.mlp_activations)
  X = mlp_intermediates(cfg.mlp_activations)
  H = heads_per_device(cfg.num_heads, cfg.head_dim, model_parallel)
  M = cfg.mlp_dim // model_parallel if cfg.mlp_dim % model_parallel == 0 else cfg.mlp_dim
  S, T = inputs_len, targets_len
  enc = {
      "input": S * E,
      "projection": S * 3 * H * D + S * E + S * A * M + S * E,
      "attention": H * S * S + S * H * D,
      "elementwise": 2 * S * E + S * E + S * M + X * S * M,
  }
  dec = {
      "input": T * E,
      "projection": (T * 3 * H * D + T * E) + (T * H * D + 2 * S * H * D + T * E) + T * A * M + T * E,
      "attention": (H * T * T + T * H * D) + (H * T * S + T * H * D),
      "elementwise": 3 * T * E + 2 * T * E + T * M + X * T * M,
  }
  return {f"encoder_{k}": v for k, v in enc.items()} | {f"decoder_{k}": v for k, v in dec.items()}


# Which groups each remat policy keeps for every layer; the rest is recomputed one layer at a time.
SAVED_GROUPS = {
    "none": ("input", "projection", "attention", "elementwise"),
    "dots": ("input", "projection", "attention"),
    "minimal": ("input", "projection"),
    "full": ("input",),
}


def activation_bytes(cfg: Any, inputs_len: int, targets_len: int, local_batch: int, model_parallel: int) -> int:
  """Bytes of activations held at the peak of the backward pass on one device (one microbatch)."""
  if cfg.remat_policy not in SAVED_GROUPS:
    raise ValueError(f"remat_policy {cfg.remat_policy!r} is not one of {sorted(SAVED_GROUPS)}")
  act = jnp.dtype(cfg.dtype).itemsize
  attn = 4 if cfg.float32_attention_logits else act
  per = activation_elements(cfg, inputs_len, targets_len, model_parallel)
  saved = SAVED_GROUPS[cfg.remat_policy]

  def layer_bytes(kind: str, groups: Sequence[str]) -> int:
    return sum(per[f"{kind}_{g}"] * (attn if g == "attention" else act) for g in groups)

  kept = (cfg.num_encoder_layers * layer_bytes("encoder", saved)
          + cfg.num_decoder_layers * layer_bytes("decoder", saved))
  recomputed = [g for g in SAVED_GROUPS["none"] if g not in saved]
  peak_layer = max(layer_bytes("encoder", recomputed), layer_bytes("decoder", recomputed))
  vocab = cfg.vocab_size // model_parallel if cfg.vocab_size % model_parallel == 0 else cfg.vocab_size
  # Embedding outputs and final norms of both stacks, then float32 logits and their log-softmax.
  outside = 2 * (inputs_len + targets_len) * cfg.emb_dim * act + 2 * targets_len * vocab * 4
  return local_batch * (kept + peak_layer + outside)


@dataclasses.dataclass(frozen=True)
class Plan:
  mesh: dict[str, int]
  batch_size: int
  num_microbatches: int
  lengths: dict[str, int]
  param_count: int
  params_total: int
  params: int
  optimizer: int
  gradients: int
  activations: int

  @property
  def local_batch(self) -> int:
    return self.batch_size // self.num_microbatches // self.mesh["data"]

  @property
  def total(self) -> int:
    return self.params + self.optimizer + self.gradients + self.activations

  def report(self, hbm: int | None = None) -> str:
    g = lambda b: f"{b / GiB:10.3f} GiB {b:>18,} B"  # noqa: E731
    mesh = ", ".join(f"{k}={v}" for k, v in self.mesh.items())
    lines = [
        f"mesh {mesh} ({math.prod(self.mesh.values())} devices); batch {self.batch_size} in "
        f"{self.num_microbatches} microbatch(es) -> {self.local_batch} sequence(s) per device; lengths "
        + ", ".join(f"{k} {v}" for k, v in self.lengths.items()),
        f"parameters: {self.param_count:,} ({self.params_total / GiB:.3f} GiB in all)",
        "per device:",
        f"  parameters       {g(self.params)}",
        f"  optimizer state  {g(self.optimizer)}",
        f"  gradients        {g(self.gradients)}",
        f"  activations      {g(self.activations)}",
        f"  total            {g(self.total)}",
    ]
    if hbm is not None:
      verdict = "fits" if self.total <= hbm else "does NOT fit"
      lines.append(f"  device memory    {g(hbm)}  -> {verdict} ({100 * self.total / hbm:.0f}%)")
    return "\n".join(lines)


def estimate(model: Any, optimizer_config: optimizers.AdafactorConfig, batch_size: int, lengths: Mapping[str, int],
             mesh_shape: Mapping[str, int], parameter_partitioning_dims: int = 1, num_microbatches: int = 1) -> Plan:
  """Per-device bytes of parameters, Adafactor state, gradients and activations for one training step."""
  data, model_parallel = int(mesh_shape["data"]), int(mesh_shape["model"])
  if batch_size % num_microbatches or (batch_size // num_microbatches) % data:
    raise ValueError(f"batch {batch_size} in {num_microbatches} microbatch(es) does not split over data={data}")
  mesh = AbstractMesh((data, model_parallel), (partitioning.DATA, partitioning.MODEL))
  rules = partitioning.standard_logical_axis_rules(1, parameter_partitioning_dims)
  inputs_len, targets_len = int(lengths["inputs"]), int(lengths["targets"])
  shapes = {"encoder_input_tokens": (1, inputs_len), "decoder_input_tokens": (1, targets_len),
            "decoder_target_tokens": (1, targets_len), "decoder_loss_weights": (1, targets_len)}
  params = model.param_shapes(shapes)
  axes = model.logical_axes(shapes)
  params_dev, params_total = tree_bytes_per_device(params, axes, rules, mesh)
  adafactor = optimizers.Adafactor(optimizer_config, optimizers.constant_schedule(0.0), param_logical_axes=axes)
  opt_state = jax.eval_shape(adafactor.init, params)
  opt_dev, _ = tree_bytes_per_device(opt_state, adafactor.state_logical_axes(params, axes), rules, mesh)
  grads = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, jnp.float32), params)
  grads_dev, _ = tree_bytes_per_device(grads, axes, rules, mesh)
  local_batch = batch_size // num_microbatches // data
  acts = activation_bytes(model.config, inputs_len, targets_len, local_batch, model_parallel)
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  return Plan(mesh={"data": data, "model": model_parallel}, batch_size=batch_size, num_microbatches=num_microbatches,
              lengths={"inputs": inputs_len, "targets": targets_len}, param_count=count, params_total=params_total,
              params=params_dev, optimizer=opt_dev, gradients=grads_dev, activations=acts)


# ------------------------------------------------------------------------------------------------ gin + CLI
_PROBE_NAME = "flan_jax_plan_probe"
_probe: Any = None


def _identity(value: Any = None) -> Any:
  return value


def gin_value(expression: str) -> Any:
  """Evaluates a gin expression (`%MODEL`, `@optimizers.AdafactorConfig()`) against the parsed config; works
  on a locked (finalized) config too, e.g. after `flan-jax train` ran in the same process."""
  global _probe
  with gin.unlock_config():
    if _probe is None:
      _probe = gin.external_configurable(_identity, name=_PROBE_NAME)
    gin.parse_config(f"{_PROBE_NAME}.value = {expression}")
  return _probe()


def gin_macro(name: str, default: Any = None) -> Any:
  """The value of macro `name`, references evaluated; `default` when the config does not bind it."""
  try:
    gin.query_parameter(f"%{name}")
  except ValueError:
    if default is None:
      raise ValueError(f"the gin config does not bind the macro {name}") from None
    return default
  return gin_value(f"%{name}")


_INCLUDE = re.compile(r"""^include\s+(['"])(.+)\1\s*$""")


def _resolve(path: str, search_paths: Sequence[str], where: str) -> pathlib.Path:
  for base in ["", *search_paths]:
    candidate = pathlib.Path(base, path) if base else pathlib.Path(path)
    if candidate.is_file():
      return candidate.resolve()
  raise ValueError(f"{where}: gin file {path!r} not found (searched the working directory and {list(search_paths)})")


def _expand(path: pathlib.Path, search_paths: Sequence[str], stack: tuple[pathlib.Path, ...] = ()) -> str:
  """The gin text of `path` with its `include` lines replaced by the included files, resolved here rather than by
  gin, whose package-resource lookup fails on a `runs/x.gin` path when a `runs/` directory sits on sys.path."""
  if path in stack:
    raise ValueError(f"{path}: gin include cycle through {[str(p) for p in stack]}")
  out = []
  for n, line in enumerate(path.read_text().splitlines(), 1):
    m = _INCLUDE.match(line.strip())
    if m:
      out.append(_expand(_resolve(m.group(2), search_paths, f"{path}:{n}"), search_paths, stack + (path,)))
    else:
      out.append(line)
  return "\n".join(out)


def load_gin(gin_files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str] = ()) -> None:
  """Parses gin as `flan-jax train` does (same configurables and search paths), but leaves the config open:
  a plan needs no MODEL_DIR or other run-time REQUIRED macros."""
  from flan_jax import gin_utils, train  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  gin.clear_config()
  gin_utils.register_configurables()
  paths = [*search_paths, os.getcwd(), str(gin_utils.REPO_GIN_DIR), str(gin_utils.REPO_GIN_DIR.parent)]
  for f in gin_files:
    resolved = _resolve(f, paths, "--gin_file")
    try:
      gin.parse_config(_expand(resolved, paths))
    except (ValueError, SyntaxError) as e:
      raise ValueError(f"gin file {f} (with its includes): {e}") from None
  for b in bindings:
    try:
      gin.parse_config(b)
    except (ValueError, SyntaxError) as e:
      raise ValueError(f"gin binding `{b}`: {e}") from None


def parse_mesh(text: str) -> dict[str, int]:
  parts = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
  if set(parts) != {"data", "model"}:
    raise ValueError(f"--mesh {text!r} must name both axes: data=N,model=M")
  return {k: int(v) for k, v in parts.items()}


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  from flan_jax import gin_utils  # pylint: disable=import-outside-toplevel
  bindings, rest = gin_utils.split_gin_flags(argv)
  p = argparse.ArgumentParser(prog="flan-jax plan", description=__doc__.split("\n\n")[0],
                              epilog="Any --gin.NAME=VALUE flag overrides the gin files, as in flan-jax train.")
  p.add_argument("--gin_file", action="append", default=[], required=True)
  p.add_argument("--gin_search_paths", default="")
  p.add_argument("--mesh", default=None, help="data=N,model=M (default: from --topology, else the local devices)")
  p.add_argument("--topology", default=None, help="a TPU slice (v4-32) or gpu:MODEL: its device count and memory")
  p.add_argument("--model_parallel", type=int, default=None,
                 help="with --topology: the 'model' axis size (default: the gin macro NUM_PARTITIONS, else 1)")
  p.add_argument("--batch_size", type=int, default=None, help="default: the gin macro BATCH_SIZE")
  p.add_argument("--num_microbatches", type=int, default=None, help="default: the macro NUM_MICROBATCHES, else 1")
  p.add_argument("--parameter_partitioning_dims", type=int, default=None, choices=(1, 2),
                 help="2 also splits parameters' embed dim over 'data' (default: macro PARAMETER_PARTITIONING_DIMS)")
  a = p.parse_args(rest)
  try:
    load_gin(a.gin_file, bindings, [s for s in a.gin_search_paths.split(",") if s])
    model = gin_macro("MODEL")
    lengths = dict(gin_macro("TASK_FEATURE_LENGTHS"))
    batch_size = a.batch_size or int(gin_macro("BATCH_SIZE"))
    microbatches = a.num_microbatches or int(gin_macro("NUM_MICROBATCHES", 1))
    pdims = a.parameter_partitioning_dims or int(gin_macro("PARAMETER_PARTITIONING_DIMS", 1))
    sl = parse_accelerator(a.topology) if a.topology else None
    if a.mesh:
      mesh = parse_mesh(a.mesh)
    else:
      devices = sl.devices if sl else jax.device_count()
      if not sl:
        print(f"planning for this machine's {devices} {jax.devices()[0].platform} device(s); --topology v4-32 "
              "(or gpu:h100, ...) plans for a slice you are not on")
      mp = a.model_parallel or int(gin_macro("NUM_PARTITIONS", 1))
      if devices % mp:
        raise ValueError(f"model parallelism {mp} does not divide the {devices} devices of {a.topology}")
      mesh = {"data": devices // mp, "model": mp}
    if sl and mesh["data"] * mesh["model"] != sl.devices:
      raise ValueError(f"--mesh {mesh} has {mesh['data'] * mesh['model']} devices, {sl.name} has {sl.devices}")
    adafactor = gin_value("@optimizers.AdafactorConfig()")
    result = estimate(model, adafactor, batch_size, lengths, mesh, pdims, microbatches)
  except ValueError as e:
    print(f"flan-jax plan: {e}", file=sys.stderr)
    return 2
  if sl:
    print(sl.describe())
  print(result.report(sl.hbm_per_device if sl else None))
  try:
    print(input_layout(mesh, sl.devices_per_host if sl else mesh["data"] * mesh["model"], batch_size))
  except data_layout.DataLayoutError as e:
    print(f"flan-jax plan: {e}", file=sys.stderr)
    return 2
  return 0


def input_layout(mesh: Mapping[str, int], devices_per_host: int, batch_size: int) -> str:
  """Which hosts read the same input rows, taking a host's devices as adjacent in the mesh (as
  `Partitioner` lays out devices in order where the platform gives no physical layout)."""
  shape = (mesh["data"], mesh["model"])
  processes = np.arange(math.prod(shape)).reshape(shape) // devices_per_host
  return data_layout.describe(data_layout.host_layouts(processes, ["data", "model"], ["data"], batch_size),
                              batch_size)
