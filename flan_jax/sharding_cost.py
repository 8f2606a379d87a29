"""What a sharded training step costs, read off the compiled program: its collectives against an analytic minimum
for the mesh, and its per-device memory against `flan-jax plan`'s estimate. Nothing is run, only compiled.

The step is the trainer's own (`Trainer`, built as `flan_jax.train` builds it: same `Partitioner`, logical-axis
rules, Adafactor and jitted step with its in/out shardings), lowered on abstract inputs for each mesh of `MESH_NAMES`.
Collectives are counted from the compiled HLO text (each instruction once, as written: one inside a loop body
would run once per iteration, so the step is built without microbatches). Bytes are result bytes per device,
and "moved" bytes what one device sends under the ring algorithm (`ring_bytes`), the same model for the compiled
program and the minimum, so their ratio compares like with like.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flan_jax import optimizers, partitioning, plan
from flan_jax import trainer as trainer_lib
from flan_jax.data.pipeline import host_batches

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
# Bits per element of the HLO element types a collective can carry.
_BITS = {"pred": 8, "s4": 4, "u4": 4, "s8": 8, "u8": 8, "s16": 16, "u16": 16, "s32": 32, "u32": 32, "s64": 64,
         "u64": 64, "f8e4m3fn": 8, "f8e5m2": 8, "f8e4m3b11fnuz": 8, "f8e4m3fnuz": 8, "f8e5m2fnuz": 8, "bf16": 16,
         "f16": 16, "f32": 32, "f64": 64, "c64": 64, "c128": 128, "token": 0, "opaque": 0}
# `%name = SHAPE opcode(`: the shape may be a tuple; comments such as /*index=5*/ are removed first.
_INSTRUCTION = re.compile(
    r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s(" + "|".join(KINDS) + r")(-start|-done)?\((.*)$")
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\]")


# ------------------------------------------------------------------------------------------- HLO collectives
@dataclasses.dataclass(frozen=True)
class Collective:
  """One collective instruction: `result_bytes` on one device, over groups of `group_size` devices."""
  kind: str
  result_bytes: int
  group_size: int

  @property
  def moved_bytes(self) -> float:
    return ring_bytes(self.kind, self.result_bytes, self.group_size)


def ring_bytes(kind: str, result_bytes: float, group_size: int) -> float:
  """Bytes one device sends for a collective with this result, by the ring algorithm (bandwidth-optimal): an
  all-reduce is a reduce-scatter then an all-gather, each moving (n-1)/n of the full array; a reduce-scatter's
  result is one of n pieces of its input."""
  n = group_size
  if n <= 1:
    return 0.0
  factor = {"all-reduce": 2 * (n - 1) / n, "all-gather": (n - 1) / n, "reduce-scatter": n - 1,
            "all-to-all": (n - 1) / n, "collective-permute": 1.0}[kind]
  return factor * result_bytes


def shape_bytes(shape: str) -> int:
  """Bytes of an HLO shape, `f32[16,64]{1,0}` or a tuple of them; tokens and opaque types count zero."""
  total = 0
  for dtype, dims in _ARRAY.findall(shape):
    if dtype not in _BITS:
      raise ValueError(f"HLO element type {dtype!r} in {shape!r} is not one a collective is known to carry")
    elements = math.prod(int(d) for d in dims.split(",") if d)
    total += (elements * _BITS[dtype] + 7) // 8
  return total


def group_size(attributes: str, num_devices: int) -> int:
  """Devices per replica group, from the three spellings XLA prints: explicit `{{0,1},{2,3}}`, iota
  `[2,4]<=[8]` (groups x size) and mesh axes `mesh['axis_0'=2,'axis_1'=4] {'axis_1'}`. No groups: all devices."""
  mesh = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", attributes)
  if mesh:
    sizes = {k: int(v) for k, v in re.findall(r"'([^']+)'=(\d+)", mesh.group(1))}
    return math.prod(sizes[a] for a in re.findall(r"'([^']+)'", mesh.group(2)))
  iota = re.search(r"replica_groups=\[([\d,]+)\]<=", attributes)
  if iota:
    return int(iota.group(1).split(",")[-1])
  explicit = re.search(r"replica_groups=\{\{([\d,]*)\}", attributes)
  if explicit:
    return len(explicit.group(1).split(","))
  return num_devices


def parse_collectives(hlo_text: str, num_devices: int) -> list[Collective]:
  """Every collective in a compiled module's text. An async pair (`-start` / `-done`) is one collective: its
  bytes are the `-done` result (the finished array; a start's tuple also holds the operands) and its groups
  the start's."""
  starts: dict[str, int] = {}
  found = []
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.match(re.sub(r"/\*.*?\*/", "", line))
    if not m:
      continue
    name, shape, kind, phase, rest = m.groups()
    if phase == "-start":
      starts[name] = group_size(rest, num_devices)
    elif phase == "-done":
      operand = re.search(r"%([\w.\-]+)", rest).group(1)
      found.append(Collective(kind, shape_bytes(shape), starts[operand]))
    else:
      found.append(Collective(kind, shape_bytes(shape), group_size(rest, num_devices)))
  return found


@dataclasses.dataclass(frozen=True)
class Totals:
  count: int
  result_bytes: int
  moved_bytes: float


def totals_by_kind(collectives: Sequence[Collective]) -> dict[str, Totals]:
  out = {}
  for kind in KINDS:
    some = [c for c in collectives if c.kind == kind]
    if some:
      out[kind] = Totals(len(some), sum(c.result_bytes for c in some), sum(c.moved_bytes for c in some))
  return out


# ------------------------------------------------------------------------------------------- the training step
@dataclasses.dataclass(frozen=True)
class Setup:
  """A run to analyse: the model, Adafactor and schedule as the gin config binds them for `flan-jax train`."""
  model: Any
  adafactor: optimizers.AdafactorConfig
  schedule: optimizers.Schedule
  batch_size: int
  lengths: Mapping[str, int]
  packing: bool | str


# name: (gin files, bindings that complete the config for a compile-only run). The tiny run's lengths make the
# activations, not its 32128 x 64 embedding tables, decide the peak, as they do in real runs.
MODELS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "small": (("runs/flan_t5_small_flan2022.gin",), ()),
    "tiny": (("models/flan_t5_tiny.gin", "runs/finetune.gin"),
             ("TASK_FEATURE_LENGTHS = {'inputs': 512, 'targets': 128}", "BATCH_SIZE = 16", "TRAIN_STEPS = 1",
              "DROPOUT_RATE = 0.0")),
}


def load_setup(name: str, batch_size: int | None = None, lengths: Mapping[str, int] | None = None,
               bindings: Sequence[str] = ()) -> Setup:
  """The run `MODELS[name]` describes; `batch_size`, `lengths` and gin `bindings` ('NAME = VALUE') override it."""
  if name not in MODELS:
    raise ValueError(f"model {name!r} is not one of {sorted(MODELS)}")
  files, defaults = MODELS[name]
  overrides = list(defaults)
  if batch_size is not None:
    overrides.append(f"BATCH_SIZE = {batch_size}")
  if lengths is not None:
    overrides.append(f"TASK_FEATURE_LENGTHS = {dict(lengths)!r}")
  plan.load_gin(list(files), [*overrides, *bindings])
  m = plan.gin_macro
  schedule = optimizers.make_schedule(m("LEARNING_RATE_SCHEDULE"), m("LEARNING_RATE"), m("WARMUP_STEPS"),
                                      m("TRAIN_STEPS"))
  return Setup(model=m("MODEL"), adafactor=plan.gin_value("@optimizers.AdafactorConfig()"), schedule=schedule,
               batch_size=int(m("BATCH_SIZE")), lengths=dict(m("TASK_FEATURE_LENGTHS")), packing=m("PACKING"))


@dataclasses.dataclass(frozen=True)
class MeshCase:
  name: str
  partitioner: partitioning.PartitionerConfig
  description: str


MESH_NAMES = ("dp", "fsdp", "mp")


def mesh_case(name: str, model_parallel: int = 4) -> MeshCase:
  """The partitioner settings (the gin macros `flan-jax train` reads) of one of `MESH_NAMES`."""
  cases = {
      "dp": MeshCase("dp", partitioning.PartitionerConfig(num_partitions=1),
                     "data parallel: NUM_PARTITIONS=1, parameters replicated"),
      "fsdp": MeshCase("fsdp", partitioning.PartitionerConfig(num_partitions=1, parameter_partitioning_dims=2),
                       "FSDP: PARAMETER_PARTITIONING_DIMS=2, parameters' embed dim (and their slots) over 'data'"),
      "mp": MeshCase("mp", partitioning.PartitionerConfig(num_partitions=model_parallel),
                     f"model parallel: NUM_PARTITIONS={model_parallel}, heads, mlp and vocab over 'model'"),
  }
  if name not in cases:
    raise ValueError(f"mesh {name!r} is not one of {', '.join(MESH_NAMES)}")
  return cases[name]


def build_trainer(setup: Setup, case: MeshCase) -> trainer_lib.Trainer:
  """The trainer `flan_jax.train.train` builds for this run and mesh (one microbatch: see the module doc)."""
  part = partitioning.Partitioner(case.partitioner)
  layout = host_batches.BatchConfig("encoder_decoder", setup.packing, setup.lengths, setup.batch_size)
  batch_shapes = {k: (setup.batch_size, n) for k, n in host_batches.feature_lengths(layout).items()}
  optimizer = optimizers.Adafactor(setup.adafactor, setup.schedule)
  return trainer_lib.Trainer(setup.model, optimizer, part, batch_shapes, trainer_lib.TrainerConfig(),
                             batch_dtypes={k: np.int32 for k in batch_shapes})


def compile_step(trainer: trainer_lib.Trainer) -> jax.stages.Compiled:
  """The trainer's jitted train step, lowered on abstract sharded state and batch (as `Trainer.step_flops` lowers
  it) in the trainer's scope (mesh and activation rules, as `Trainer.train_step` calls it), and compiled."""
  batch = {k: jax.ShapeDtypeStruct(s, trainer.batch_dtypes[k], sharding=trainer.batch_sharding)
           for k, s in trainer.batch_shapes.items()}
  with trainer.scope():
    lowered = trainer._train_step.lower(  # pylint: disable=protected-access
        trainer.abstract_state_with_shardings(), batch, trainer.dropout_key)
  return lowered.compile()


# ------------------------------------------------------------------------------------------- analytic minimum
@dataclasses.dataclass(frozen=True)
class Term:
  """`count` collectives the step cannot do without, each with `result_bytes` per device over `group_size`."""
  kind: str
  count: int
  result_bytes: int
  group_size: int
  why: str

  @property
  def moved_bytes(self) -> float:
    return self.count * ring_bytes(self.kind, self.result_bytes, self.group_size)


def _parameter_bytes(trainer: trainer_lib.Trainer) -> tuple[int, int]:
  """(bytes on one device of the parameters split over 'data', of the others), as the trainer shards them."""
  split = other = 0
  params, shardings = trainer.abstract_state.params, trainer.state_shardings.params
  for p, s in zip(jax.tree.leaves(params), jax.tree.leaves(shardings)):
    nbytes = math.prod(s.shard_shape(p.shape)) * jnp.dtype(p.dtype).itemsize
    axes = {a for entry in s.spec if entry is not None for a in ((entry,) if isinstance(entry, str) else entry)}
    if partitioning.DATA in axes:
      split += nbytes
    else:
      other += nbytes
  return split, other


def minimum_terms(trainer: trainer_lib.Trainer, setup: Setup) -> list[Term]:
  """The least communication one step of this model needs on the trainer's mesh (ring algorithm):

  * gradients (float32, as the parameters) are summed over 'data': an all-reduce of the parameters each device
    holds whole along 'data', a reduce-scatter of those split over 'data' (FSDP);
  * parameters split over 'data' are all-gathered (as stored, float32) once, before their first use: without
    remat the gathered copy can stay for the backward pass; with remat it is gathered again there;
  * with model parallelism, Megatron-style activation all-reduces over 'model' of [local batch, length, emb]
    in the activation dtype (`_model_parallel_terms`).
  Per-token [batch, length] scalars (softmax statistics, metrics) are left out: they are 1/emb_dim of the rest.
  """
  mesh = dict(trainer.partitioner.mesh.shape)
  data, model = mesh[partitioning.DATA], mesh[partitioning.MODEL]
  split, whole = _parameter_bytes(trainer)
  terms = []
  if whole:
    terms.append(Term("all-reduce", 1, whole, data, "float32 gradients of the parameters whole along 'data'"))
  if split:
    gathers = 1 if setup.model.config.remat_policy == "none" else 2
    terms.append(Term("all-gather", gathers, split * data, data,
                      f"float32 parameters split over 'data', gathered {'once, kept' if gathers == 1 else 'twice'}"))
    terms.append(Term("reduce-scatter", 1, split, data, "float32 gradients of the parameters split over 'data'"))
  if model > 1:
    terms.extend(_model_parallel_terms(setup, data, model))
  return [t for t in terms if t.group_size > 1]


def _model_parallel_terms(setup: Setup, data: int, model: int) -> list[Term]:
  """Activation all-reduces over 'model' when heads, mlp and vocab are split (Megatron): each row-parallel
  product (attention `out`, MLP `wo`, a vocab-split embedding lookup) sums partial results forward, and each
  column-parallel one (q/k/v, `wi`, the LM head) sums its input gradient backward.
    encoder, length S: forward 2 per layer + the embedding; backward 2 per layer + the encoder output's gradient
      from every cross-attention k/v (summed locally over the decoder layers first: one all-reduce);
    decoder, length T: forward 3 per layer (self-attention, cross-attention, MLP) + the embedding; backward
      3 per layer (self-attention q/k/v, cross-attention q, MLP) + the LM head's input gradient."""
  cfg = setup.model.config
  rows = setup.batch_size // data
  itemsize = jnp.dtype(cfg.dtype).itemsize
  S, T, E = setup.lengths["inputs"], setup.lengths["targets"], cfg.emb_dim
  # Megatron needs whole heads per device; otherwise XLA also gathers part of q, k, v (`plan.heads_per_device`).
  caveat = "" if cfg.num_heads % model == 0 else f"; needs heads split, {cfg.num_heads} do not over {model}"
  return [
      Term("all-reduce", 4 * cfg.num_encoder_layers + 2, rows * S * E * itemsize, model,
           f"encoder [{rows},{S},{E}] {cfg.dtype}: 4 per layer + 2{caveat}"),
      Term("all-reduce", 6 * cfg.num_decoder_layers + 2, rows * T * E * itemsize, model,
           f"decoder [{rows},{T},{E}] {cfg.dtype}: 6 per layer + 2{caveat}"),
  ]


# ------------------------------------------------------------------------------------------- memory
@dataclasses.dataclass(frozen=True)
class Memory:
  """XLA's buffer assignment for one device: arguments (state and batch), outputs, the outputs that reuse a
  donated argument's buffer, and temporaries."""
  arguments: int
  outputs: int
  aliased: int
  temp: int

  @property
  def total(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temp


def compiled_memory(compiled: jax.stages.Compiled) -> Memory:
  stats = compiled.memory_analysis()
  return Memory(stats.argument_size_in_bytes, stats.output_size_in_bytes, stats.alias_size_in_bytes,
                stats.temp_size_in_bytes)


# ------------------------------------------------------------------------------------------- per mesh
MEMORY_TOLERANCE = 0.10     # |plan - compiled| / compiled above which the figures are a MISMATCH
COLLECTIVE_TOLERANCE = 1.5  # compiled / minimum moved bytes above which the excess needs a reason
# What Flan-T5 small (batch 64 x 2048/512, float32, no dropout) compiles to beyond these, every byte accounted for:
# * all meshes: each layer's relative-position bias gradient is all-reduced over 'data' as [heads, q, k] (96 MiB
#   per encoder layer) before it shrinks to the [heads, 32] table, and the shared token embedding's gradient once
#   per use: DP moves 4.0x the gradient all-reduce (1172 MiB summed for 294 MiB of gradients).
# * fsdp: 4.5x, of which the bias gradients are 2.8x; the rest is parameters gathered again for the backward pass
#   and weight gradients all-reduced whole (XLA:CPU forms no reduce-scatter). Before the trainer put its rules in
#   flax's scope (`Trainer.scope`) the models' activation annotations were no-ops and XLA contracted over the
#   data-split embed dim on the whole global batch: 140x the minimum and twice the memory.
# * mp: the input gradients of q, k and v (and of wi_0, wi_1, and every decoder layer's cross-attention k, v for
#   the encoder output) are all-reduced one by one instead of summed first: 2.1x with model=2; with model=4 the
#   6 heads do not split, XLA gathers half of q, k, v (`plan.heads_per_device`): 2.2x.
# Memory (plan vs compiled, same run): DP -8%, FSDP with annotations -6%, MP -14%; the gap is the RMSNorm
# broadcasts XLA:CPU keeps (`norm_broadcast_bytes`): with them +0.3%, +2.9%, -0.2%.


@dataclasses.dataclass(frozen=True)
class MeshReport:
  case: MeshCase
  mesh: dict[str, int]
  collectives: list[Collective]
  minimum: list[Term]
  memory: Memory
  estimate: plan.Plan

  @property
  def moved_ratio(self) -> float:
    minimum = sum(t.moved_bytes for t in self.minimum)
    return sum(c.moved_bytes for c in self.collectives) / minimum if minimum else math.inf

  @property
  def memory_difference(self) -> float:
    """(plan - compiled) / compiled, of the total per device."""
    return (self.estimate.total - self.memory.total) / self.memory.total


def analyze(setup: Setup, case: MeshCase) -> MeshReport:
  trainer = build_trainer(setup, case)
  compiled = compile_step(trainer)
  mesh = {str(k): int(v) for k, v in trainer.partitioner.mesh.shape.items()}
  estimate = plan.estimate(setup.model, setup.adafactor, setup.batch_size, setup.lengths, mesh,
                           case.partitioner.parameter_partitioning_dims)
  return MeshReport(case, mesh, parse_collectives(compiled.as_text(), trainer.partitioner.mesh.size),
                    minimum_terms(trainer, setup), compiled_memory(compiled), estimate)


def cpu_caveats(setup: Setup) -> list[str]:
  """What makes XLA:CPU's buffers and collectives differ from an accelerator's for this run (read off its buffer
  assignment and HLO for Flan-T5 small)."""
  cfg, notes = setup.model.config, []
  if jnp.dtype(cfg.dtype) != jnp.float32:
    notes.append(f"{cfg.dtype} activations: XLA:CPU runs {cfg.dtype} dots in float32, keeps their saved operands "
                 "(attention probabilities included) in float32 and all-reduces their float32 partial sums: up to "
                 "2x an accelerator's activations and model-parallel all-reduces; "
                 "--gin.ACTIVATION_DTYPE=\"'float32'\" compares like with like")
  if cfg.dropout_rate > 0:
    notes.append(f"dropout {cfg.dropout_rate}: XLA:CPU writes out each attention layer's broadcast keep mask and "
                 "dropped-out probabilities ([batch, heads, q, k] each, next to the probabilities), which an "
                 "accelerator can fuse into the dots (not checked here); --gin.DROPOUT_RATE=0.0 leaves them out")
  notes.append("XLA:CPU also writes out the broadcasts inside every RMSNorm (1/rms and the scale over [len, emb], "
               "float32) and keeps them for the backward pass; the plan, counting what an accelerator keeps, leaves "
               "them out: the memory table adds them on a line of their own")
  return notes


def norm_broadcast_bytes(setup: Setup, rows: int) -> int:
  """What XLA:CPU keeps of the RMSNorm broadcasts for `rows` sequences on one device: two float32 [len, emb] per
  norm (2 per encoder layer and the final one; 3 per decoder layer and the final one)."""
  cfg = setup.model.config
  norms = ((2 * cfg.num_encoder_layers + 1) * setup.lengths["inputs"]
           + (3 * cfg.num_decoder_layers + 1) * setup.lengths["targets"])
  return 2 * 4 * rows * norms * cfg.emb_dim


def _mib(n: float) -> str:
  return f"{n / 2**20:12.2f}"


def _percent(planned: float, compiled: float) -> str:
  return f"{100 * (planned - compiled) / compiled:+6.1f}%"


_ROW = "   {:40} {:>5} {:>12} {:>12}"


def format_report(r: MeshReport, setup: Setup) -> str:
  lengths = ", ".join(f"{k} {v}" for k, v in setup.lengths.items())
  return "\n".join([f"== {r.case.name}: {r.case.description}",
                    f"   mesh {', '.join(f'{k}={v}' for k, v in r.mesh.items())}; batch {setup.batch_size} "
                    f"({lengths}), {r.estimate.local_batch} rows per device",
                    *_collective_lines(r), *_memory_lines(r, setup)])


def _collective_lines(r: MeshReport) -> list[str]:
  lines = [_ROW.format("collectives in the compiled step", "count", "MiB/device", "moved MiB")]
  for kind, t in totals_by_kind(r.collectives).items():
    lines.append(_ROW.format(kind, t.count, _mib(t.result_bytes), _mib(t.moved_bytes)))
  lines.append(_ROW.format("total", len(r.collectives), "", _mib(sum(c.moved_bytes for c in r.collectives))))
  lines.append(_ROW.format("analytic minimum", "count", "MiB/device", "moved MiB"))
  for t in r.minimum:
    lines.append(_ROW.format(f"{t.kind} over {t.group_size}", t.count, _mib(t.result_bytes), _mib(t.moved_bytes))
                 + f"  {t.why}")
  verdict = f"ABOVE {COLLECTIVE_TOLERANCE}x" if r.moved_ratio > COLLECTIVE_TOLERANCE else "ok"
  lines.append(_ROW.format("total", sum(t.count for t in r.minimum), "", _mib(sum(t.moved_bytes for t in r.minimum)))
               + f"  compiled/minimum {r.moved_ratio:.2f} {verdict}")
  return lines


def _memory_lines(r: MeshReport, setup: Setup) -> list[str]:
  e, m = r.estimate, r.memory
  lines = [_ROW.format("memory per device", "", "compiled MiB", "plan MiB") + "  plan vs compiled"]
  for label, compiled, planned, what in [
      ("state + batch (compiled arguments)", m.arguments, e.params + e.optimizer, "params + optimizer"),
      ("temporaries + outputs - aliased", m.temp + m.outputs - m.aliased, e.gradients + e.activations,
       "gradients + activations"),
      ("total", m.total, e.total, "total")]:
    lines.append(_ROW.format(label, "", _mib(compiled), _mib(planned)) + f"  {_percent(planned, compiled)} "
                 f"(plan: {what})")
  verdict = "MISMATCH" if abs(r.memory_difference) > MEMORY_TOLERANCE else "ok"
  lines[-1] += f" {verdict} (tolerance {100 * MEMORY_TOLERANCE:.0f}%)"
  with_norms = e.total + norm_broadcast_bytes(setup, e.local_batch)
  lines.append(_ROW.format("plan + XLA:CPU's RMSNorm broadcasts", "", _mib(m.total), _mib(with_norms))
               + f"  {_percent(with_norms, m.total)}")
  return lines
