"""Train-step throughput: our jitted Flan-T5-small step vs the same step in HF transformers (PyTorch, eager).

Batch 8 x (512 inputs + 128 targets), float32, Adafactor, one CPU process. Both run in this one process, one after
the other, and a float32 GEMM of each framework is timed in the same run, so the printed ratios hold even though
the machine's speed drifts. XLA:CPU options are taken from $XLA_FLAGS: run it once per setting to compare, e.g.
  python benchmarks/train_throughput.py
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/train_throughput.py
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def _timeit(fn, steps: int) -> float:
  """Median seconds per call after one warm-up call."""
  fn()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def _batch(batch: int, inputs: int, targets: int, vocab: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  tgt = rng.integers(2, vocab, (batch, targets)).astype(np.int32)
  return {"encoder_input_tokens": rng.integers(2, vocab, (batch, inputs)).astype(np.int32),
          "decoder_input_tokens": np.concatenate([np.zeros((batch, 1), np.int32), tgt[:, :-1]], 1),
          "decoder_target_tokens": tgt, "decoder_loss_weights": np.ones((batch, targets), np.float32)}


def jax_gemm_flops(n: int = 2048) -> float:
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  return 2 * n ** 3 / _timeit(lambda: f(a).block_until_ready(), 5)


def torch_gemm_flops(n: int = 2048) -> float:
  import torch
  a = torch.randn(n, n)
  return 2 * n ** 3 / _timeit(lambda: a @ a, 5)


def run_jax(config, batch: dict[str, np.ndarray], steps: int) -> tuple[float, float]:
  """(seconds per step, XLA FLOP count per step) for our partitioned train step on one device."""
  from flan_jax import optimizers, partitioning, trainer as trainer_lib
  from flan_jax.models.model import EncoderDecoderModel

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

  return _timeit(step, steps), tr.step_flops() or float("nan")


def run_torch(config, batch: dict[str, np.ndarray], steps: int) -> float:
  import torch
  import transformers
  from transformers.optimization import Adafactor

  from flan_jax.checkpoints import hf

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

  return _timeit(step, steps)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--inputs", type=int, default=512)
  parser.add_argument("--targets", type=int, default=128)
  parser.add_argument("--skip_torch", action="store_true")
  args = parser.parse_args()

  from flan_jax.models.t5 import T5Config
  config = T5Config(vocab_size=32128, emb_dim=512, num_heads=6, num_encoder_layers=8, num_decoder_layers=8,
                    head_dim=64, mlp_dim=1024, mlp_activations=("gelu", "linear"), dropout_rate=0.0)
  batch = _batch(args.batch, args.inputs, args.targets, config.vocab_size)
  tokens = args.batch * (args.inputs + args.targets)
  print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; jax {jax.__version__}; {os.cpu_count()} CPUs")

  jax_peak = jax_gemm_flops()
  jax_s, flops = run_jax(config, batch, args.steps)
  print(f"jax:   {jax_s:.3f} s/step  {tokens / jax_s:8.1f} tokens/s  {flops / 1e9:.0f} GFLOP/step (XLA)  "
        f"{flops / jax_s / 1e9:.1f} GFLOP/s = {flops / jax_s / jax_peak:.2f} of the jax GEMM peak "
        f"{jax_peak / 1e9:.1f} GFLOP/s (MFU)")
  if args.skip_torch:
    return
  torch_peak = torch_gemm_flops()
  torch_s = run_torch(config, batch, args.steps)
  print(f"torch: {torch_s:.3f} s/step  {tokens / torch_s:8.1f} tokens/s  "
        f"{flops / torch_s / 1e9:.1f} GFLOP/s = {flops / torch_s / torch_peak:.2f} of the torch GEMM peak "
        f"{torch_peak / 1e9:.1f} GFLOP/s")
  print(f"ratio jax/torch (tokens/s): {torch_s / jax_s:.2f}x")


if __name__ == "__main__":
  main()
