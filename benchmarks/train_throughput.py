"""Train-step throughput: our jitted Flan-T5-small step vs the same step in HF transformers (PyTorch, eager).

Batch 8 x (512 inputs + 128 targets), float32, Adafactor. It follows benchmarks/protocol.py: the load average at
start and end, one thread per core on both sides, each side in a process of its own, one warm-up call of each side,
then --rounds rounds of jax and torch alternately (--steps train steps per side per round), each printing
tokens/s, then the medians and the median and spread of the per-round ratios jax/torch. A float32 2048x2048 GEMM of
each framework is timed the same way in the same run. torch flushes denormals to zero (`torch.set_flush_denormal`),
as XLA:CPU does by default (`--xla_cpu_ftz`): without it its step slows from ~640 to ~300 tokens/s within five steps
as Adafactor's statistics go denormal ($TORCH_FLUSH_DENORMAL=0 shows that). Each side's user and system CPU seconds
per call are printed: system time is where fresh allocations' page faults show.

MFU is printed against two peaks, both from XLA's FLOP count of our step (the torch step does the same math):
- the GEMM peak: the median GEMM FLOP/s of the same framework, measured above;
- the FMA peak: cores x GHz x fp32 SIMD lanes x 2 FLOPs per FMA x FMA units per core, with the clock from lscpu's
  "CPU max MHz" (or /proc/cpuinfo's "cpu MHz" where lscpu gives no max), the lanes from the CPU flags (avx512f: 16,
  avx2 + fma: 8, otherwise 4) and 2 FMA units per core assumed; the line prints each factor.

XLA:CPU options come from $XLA_FLAGS: run it once per setting to compare, e.g.
  ../shared/tools/quiet -- python benchmarks/train_throughput.py [--rounds 4] [--steps 2]
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= ../shared/tools/quiet -- python benchmarks/train_throughput.py
"""
from __future__ import annotations

import argparse
import os
import subprocess
from typing import Callable

import numpy as np

import protocol

protocol.use_cores(protocol.cores())  # before jax is imported (here or by a library): XLA reads it when it starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers.optimization import Adafactor  # noqa: E402

from flan_jax import optimizers, partitioning, trainer as trainer_lib  # noqa: E402
from flan_jax.checkpoints import hf  # noqa: E402
from flan_jax.models.model import EncoderDecoderModel  # noqa: E402
from flan_jax.models.t5 import T5Config  # noqa: E402

FLUSH_DENORMALS = os.environ.get("TORCH_FLUSH_DENORMAL", "1") == "1"
FMA_UNITS_PER_CORE = 2  # recent x86 server cores; /proc/cpuinfo does not say


def make_batch(batch: int, inputs: int, targets: int, vocab: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  tgt = rng.integers(2, vocab, (batch, targets)).astype(np.int32)
  return {"encoder_input_tokens": rng.integers(2, vocab, (batch, inputs)).astype(np.int32),
          "decoder_input_tokens": np.concatenate([np.zeros((batch, 1), np.int32), tgt[:, :-1]], 1),
          "decoder_target_tokens": tgt, "decoder_loss_weights": np.ones((batch, targets), np.float32)}


def cpu_max_mhz() -> tuple[float, str]:
  """The clock the FMA peak assumes, and where it was read."""
  lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}).stdout
  for line in lscpu.splitlines():
    if line.startswith("CPU max MHz:"):
      return float(line.split(":")[1]), "lscpu CPU max MHz"
  with open("/proc/cpuinfo") as f:
    mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
  return max(mhz), "/proc/cpuinfo cpu MHz, lscpu gives no max"


def fp32_fma_lanes() -> tuple[int, str]:
  with open("/proc/cpuinfo") as f:
    flags = next(set(line.split(":")[1].split()) for line in f if line.startswith("flags"))
  if "avx512f" in flags:
    return 16, "avx512f"
  if {"avx2", "fma"} <= flags:
    return 8, "avx2 + fma"
  return 4, "no avx2/fma flags: SSE width"


def fma_peak_flops(cores: int) -> float:
  """cores x GHz x fp32 lanes x 2 FLOPs per FMA x FMA units per core; prints each factor."""
  mhz, clock_source = cpu_max_mhz()
  lanes, lanes_source = fp32_fma_lanes()
  peak = cores * mhz * 1e6 * lanes * 2 * FMA_UNITS_PER_CORE
  print(f"FMA peak: {cores} cores x {mhz / 1e3:.2f} GHz ({clock_source}) x {lanes} fp32 lanes ({lanes_source}) x 2 "
        f"FLOPs per FMA x {FMA_UNITS_PER_CORE} FMA units per core (assumed) = {peak / 1e9:.1f} GFLOP/s")
  return peak


def jax_gemm(n: int) -> tuple[Callable[[], float], None]:
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  return protocol.rate(lambda: f(a).block_until_ready(), 2 * n ** 3 / 1e9), None


def torch_gemm(n: int) -> tuple[Callable[[], float], None]:
  protocol.torch_threads(protocol.cores())
  a = torch.randn(n, n)
  return protocol.rate(lambda: a @ a, 2 * n ** 3 / 1e9), None


def jax_train_step(config: T5Config, batch: dict[str, np.ndarray], steps: int) -> tuple[Callable[[], float], float]:
  """Our partitioned train step on one device (its state carried from call to call) as tokens/s over `steps`
  steps, and XLA's FLOPs per step."""
  model = EncoderDecoderModel(config, z_loss=1e-4)
  part = partitioning.Partitioner(partitioning.PartitionerConfig(), jax.devices()[:1])
  opt = optimizers.Adafactor(optimizers.AdafactorConfig(), optimizers.constant_schedule(1e-3))
  tr = trainer_lib.Trainer(model, opt, part, {k: v.shape for k, v in batch.items()},
                           batch_dtypes={k: v.dtype for k, v in batch.items()})
  state = {"s": tr.init_state()}
  device_batch = tr.global_batch(batch)

  def step():
    state["s"], metrics = tr.train_step(state["s"], device_batch)
    jax.block_until_ready(metrics["loss"])

  return protocol.rate(repeat(step, steps), steps * batch_tokens(batch)), tr.step_flops() or float("nan")


def torch_train_step(config: T5Config, batch: dict[str, np.ndarray], steps: int) -> tuple[Callable[[], float], None]:
  protocol.torch_threads(protocol.cores())
  torch.set_flush_denormal(FLUSH_DENORMALS)
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(**hf.t5_config_to_hf(config)))
  model.train()
  opt = Adafactor(model.parameters(), lr=1e-3, relative_step=False, scale_parameter=True, warmup_init=False)
  inputs = torch.from_numpy(batch["encoder_input_tokens"]).long()
  decoder_inputs = torch.from_numpy(batch["decoder_input_tokens"]).long()
  labels = torch.from_numpy(batch["decoder_target_tokens"]).long()

  def step():
    opt.zero_grad(set_to_none=True)
    out = model(input_ids=inputs, decoder_input_ids=decoder_inputs, labels=labels)
    out.loss.backward()
    opt.step()

  return protocol.rate(repeat(step, steps), steps * batch_tokens(batch)), None


def batch_tokens(batch: dict[str, np.ndarray]) -> int:
  return batch["encoder_input_tokens"].size + batch["decoder_target_tokens"].size


def repeat(fn: Callable[[], None], times: int) -> Callable[[], None]:
  def run():
    for _ in range(times):
      fn()
  return run


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--steps", type=int, default=2, help="train steps per side per round")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--inputs", type=int, default=512)
  parser.add_argument("--targets", type=int, default=128)
  parser.add_argument("--gemm", type=int, default=2048, help="side of the square float32 GEMM timed for the peak")
  parser.add_argument("--alone", action="store_true",
                      help="run all rounds of one side, then all of the other (not the protocol's alternation: see "
                           "docs/training.md on what alternation costs XLA's fresh allocations in this VM)")
  args = parser.parse_args()

  comparable = protocol.start(with_torch=True)
  print(f"jax {jax.__version__}, torch {torch.__version__}; {jax.devices()}")
  fma_peak = fma_peak_flops(protocol.cores())
  config = T5Config(vocab_size=32128, emb_dim=512, num_heads=6, num_encoder_layers=8, num_decoder_layers=8,
                    head_dim=64, mlp_dim=1024, mlp_activations=("gelu", "linear"), dropout_rate=0.0)
  batch = make_batch(args.batch, args.inputs, args.targets, config.vocab_size)
  tokens = batch_tokens(batch)

  print(f"\nfloat32 {args.gemm}x{args.gemm} GEMM (each side in its own process):")
  sides = {"jax": protocol.Isolated(jax_gemm, args.gemm), "torch": protocol.Isolated(torch_gemm, args.gemm)}
  gemm = protocol.interleaved(sides, args.rounds, "GFLOP/s")
  for side in sides.values():
    side.close()
  gemm_peak = protocol.summary(gemm, "jax", "torch", "GFLOP/s")

  print(f"\ntrain step, batch {args.batch} x ({args.inputs} + {args.targets}), {args.steps} steps per side per round, "
        "each side in its own process:")
  sides = {"jax": protocol.Isolated(jax_train_step, config, batch, args.steps),
           "torch": protocol.Isolated(torch_train_step, config, batch, args.steps)}
  flops = sides["jax"].info
  if args.alone:  # each side's rounds back to back: what each reaches without the other's process between calls
    steps = {name: protocol.interleaved({name: side}, args.rounds, "tokens/s")[name] for name, side in sides.items()}
  else:
    steps = protocol.interleaved(sides, args.rounds, "tokens/s")
  for name, side in sides.items():
    print(side.cpu_line(name))
    side.close()
  result = protocol.summary(steps, "jax", "torch", "tokens/s")
  print(f"XLA FLOPs per step: {flops / 1e9:.0f} GFLOP")
  for name, tokens_per_s, framework_peak in (("jax", result.median_a, gemm_peak.median_a),
                                             ("torch", result.median_b, gemm_peak.median_b)):
    achieved = flops * tokens_per_s / tokens
    print(f"{name}: {tokens / tokens_per_s:.3f} s/step, {achieved / 1e9:.1f} GFLOP/s = MFU "
          f"{achieved / (framework_peak * 1e9):.2f} of the {name} GEMM peak ({framework_peak:.1f} GFLOP/s), "
          f"{achieved / fma_peak:.2f} of the FMA peak ({fma_peak / 1e9:.1f} GFLOP/s)")
  protocol.footer(comparable)


if __name__ == "__main__":
  main()
