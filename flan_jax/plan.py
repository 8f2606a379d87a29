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
import pathlib
import sys
from typing import Any, Mapping, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AbstractMesh, PartitionSpec

from flan_jax import optimizers, partitioning

GiB = 1024**3


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


def activation_elements(cfg: Any, inputs_len: int, targets_len: int, model_parallel: int) -> dict[str, int]:
  """Elements one sequence keeps for the backward pass, per T5 encoder-decoder layer kind and group.

  Per layer, with S the encoder and T the decoder length, E=emb_dim, D=head_dim, A=len(mlp_activations),
  and H, M the heads and mlp width on one device (split over 'model' when they divide):
    input:      the layer input, S*E (encoder) or T*E (decoder)
    projection: q, k, v and output projections and the MLP's wi (A of them) and wo outputs
    attention:  attention logits and probabilities (H*len*len each) and the context H*D per position
    elementwise: the RMSNorm outputs, the residual sum(s) and the gated MLP product
  The decoder's cross-attention projects the S encoder positions to keys and values in every layer.
  """
  E, D, A = cfg.emb_dim, cfg.head_dim, len(cfg.mlp_activations)
  H = cfg.num_heads // model_parallel if cfg.num_heads % model_parallel == 0 else cfg.num_heads
  M = cfg.mlp_dim // model_parallel if cfg.mlp_dim % model_parallel == 0 else cfg.mlp_dim
  S, T = inputs_len, targets_len
  enc = {
      "input": S * E,
      "projection": S * 3 * H * D + S * E + S * A * M + S * E,
      "attention": 2 * H * S * S + S * H * D,
      "elementwise": 2 * S * E + S * E + S * M,
  }
  dec = {
      "input": T * E,
      "projection": (T * 3 * H * D + T * E) + (T * H * D + 2 * S * H * D + T * E) + T * A * M + T * E,
      "attention": (2 * H * T * T + T * H * D) + (2 * H * T * S + T * H * D),
      "elementwise": 3 * T * E + 2 * T * E + T * M,
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
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_gin(gin_files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str] = ()) -> None:
  """Parses gin files and `X=Y` bindings the way the entry points do, with the repo root searched too."""
  gin.clear_config()
  for path in [*search_paths, str(REPO_ROOT), str(REPO_ROOT / "gin_configs")]:
    gin.add_config_file_search_path(path)
  gin.parse_config_files_and_bindings(list(gin_files), list(bindings), finalize_config=False)


@gin.configurable("flan_jax_plan_probe")
def _probe(value: Any = None) -> Any:
  return value


def gin_macro(name: str, default: Any = None) -> Any:
  """The value of macro `name` after `load_gin`; references (`@models.EncoderDecoderModel()`) are evaluated."""
  try:
    gin.query_parameter(f"%{name}")
  except ValueError:
    if default is None:
      raise ValueError(f"the gin config does not bind the macro {name}") from None
    return default
  gin.parse_config(f"flan_jax_plan_probe.value = %{name}")
  return _probe()


def parse_mesh(text: str) -> dict[str, int]:
  parts = dict(p.split("=", 1) for p in text.split(",") if "=" in p)
  if set(parts) != {"data", "model"}:
    raise ValueError(f"--mesh {text!r} must name both axes: data=N,model=M")
  return {k: int(v) for k, v in parts.items()}


def main(argv: Sequence[str] | None = None) -> int:
  from launch import commands  # pylint: disable=import-outside-toplevel
  argv = list(sys.argv[1:] if argv is None else argv)
  bindings = [a[len("--gin."):] for a in argv if a.startswith("--gin.")]
  p = argparse.ArgumentParser(prog="flan-jax plan", description=__doc__.split("\n\n")[0],
                              epilog="Any --gin.NAME=VALUE flag overrides the gin files, as in flan-jax train.")
  p.add_argument("--gin_file", action="append", default=[], required=True)
  p.add_argument("--gin_search_paths", default="")
  p.add_argument("--mesh", default=None, help="data=N,model=M (default: from --topology, else 1 device)")
  p.add_argument("--topology", default=None, help="a TPU slice (v4-32) or gpu:MODEL: its device count and memory")
  p.add_argument("--model_parallel", type=int, default=None,
                 help="with --topology: the 'model' axis size (default: the gin macro NUM_PARTITIONS, else 1)")
  p.add_argument("--batch_size", type=int, default=None, help="default: the gin macro BATCH_SIZE")
  p.add_argument("--num_microbatches", type=int, default=None, help="default: the macro NUM_MICROBATCHES, else 1")
  p.add_argument("--parameter_partitioning_dims", type=int, default=None, choices=(1, 2),
                 help="2 also splits parameters' embed dim over 'data' (default: macro PARAMETER_PARTITIONING_DIMS)")
  a = p.parse_args([x for x in argv if not x.startswith("--gin.")])
  try:
    load_gin(a.gin_file, bindings, [s for s in a.gin_search_paths.split(",") if s])
    model = gin_macro("MODEL")
    lengths = dict(gin_macro("TASK_FEATURE_LENGTHS"))
    batch_size = a.batch_size or int(gin_macro("BATCH_SIZE"))
    microbatches = a.num_microbatches or int(gin_macro("NUM_MICROBATCHES", 1))
    pdims = a.parameter_partitioning_dims or int(gin_macro("PARAMETER_PARTITIONING_DIMS", 1))
    sl = commands.parse_accelerator(a.topology) if a.topology else None
    if a.mesh:
      mesh = parse_mesh(a.mesh)
    else:
      devices = sl.devices if sl else 1
      mp = a.model_parallel or int(gin_macro("NUM_PARTITIONS", 1))
      if devices % mp:
        raise ValueError(f"model parallelism {mp} does not divide the {devices} devices of {a.topology}")
      mesh = {"data": devices // mp, "model": mp}
    if sl and mesh["data"] * mesh["model"] != sl.devices:
      raise ValueError(f"--mesh {mesh} has {mesh['data'] * mesh['model']} devices, {sl.name} has {sl.devices}")
    result = estimate(model, optimizers.AdafactorConfig(), batch_size, lengths, mesh, pdims, microbatches)
  except ValueError as e:
    print(f"flan-jax plan: {e}", file=sys.stderr)
    return 2
  if sl:
    print(sl.describe())
  print(result.report(sl.hbm_per_device if sl else None))
  return 0
