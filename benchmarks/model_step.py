"""Forward and forward+backward time and achieved GFLOP/s of a model config on this machine.

  ../shared/tools/quiet -- python benchmarks/model_step.py       # Flan-T5 small, batch 8 x (512 inputs, 128 targets)
  ../shared/tools/quiet -- python benchmarks/model_step.py --gin_file=models/flan_t5_tiny.gin --batch 4 --repeats 5
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= ../shared/tools/quiet -- python benchmarks/model_step.py

FLOPs and bytes accessed are XLA's own counts for the compiled computation (`cost_analysis`), so the figures are
what the compiled program does, not analytic estimates; the analytic 2*N*tokens (forward) is printed alongside.
On a shared machine wall time drifts with the load: the process CPU seconds per call are printed too, and the
byte count (independent of the load) shows how much memory traffic a model change saves. As benchmarks/protocol.py
sets out, the load average is printed at start (NOT COMPARABLE above 0.3 per core) and end, and XLA gets one
intra-op thread per core unless $PJRT_NPROC says otherwise; each call is timed after a warm-up call, and the median
of --repeats (at least 3) is printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import protocol

protocol.use_cores(protocol.cores())  # before jax is imported: XLA reads it when it starts

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from flan_jax.models import model as model_lib  # noqa: E402
from flan_jax.models.t5 import T5Config  # noqa: E402

SMALL = T5Config(vocab_size=32128, emb_dim=512, num_heads=6, num_encoder_layers=8, num_decoder_layers=8,
                 head_dim=64, mlp_dim=1024)


def _model_from_gin(path: str):
  import gin
  from flan_jax import gin_utils
  gin_utils.register_configurables()
  probe = gin.external_configurable(lambda value=None: value, name="model_step_probe")
  gin.parse_config_files_and_bindings([path], [], finalize_config=False)
  gin.parse_config("model_step_probe.value = %MODEL")
  return probe()


def _batch(batch: int, inputs: int, targets: int, vocab: int) -> dict:
  rng = np.random.default_rng(0)
  tgt = rng.integers(2, vocab, (batch, targets)).astype(np.int32)
  return {
      "encoder_input_tokens": jnp.asarray(rng.integers(2, vocab, (batch, inputs)), jnp.int32),
      "decoder_target_tokens": jnp.asarray(tgt),
      "decoder_input_tokens": jnp.asarray(np.concatenate([np.zeros((batch, 1), np.int32), tgt[:, :-1]], 1)),
      "decoder_loss_weights": jnp.ones((batch, targets), jnp.float32),
  }


def _time(fn, args, repeats: int) -> tuple[float, float, float, float, float]:
  """(compile seconds, median seconds per call, median CPU seconds per call, XLA flops, XLA bytes accessed)."""
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  nbytes = float(cost.get("bytes accessed", float("nan"))) if cost else float("nan")
  jax.block_until_ready(compiled(*args))
  times, cpu = [], []
  for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
  return compile_s, float(np.median(times)), float(np.median(cpu)), flops, nbytes


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--gin_file", default=None, help="a gin model config (default: Flan-T5 small dims)")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--inputs", type=int, default=512)
  p.add_argument("--targets", type=int, default=128)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--dtype", default=None, help="activation dtype override, e.g. bfloat16")
  args = p.parse_args(argv)
  if args.repeats < protocol.MIN_ROUNDS:
    p.error(f"--repeats {args.repeats}: at least {protocol.MIN_ROUNDS}")
  comparable = protocol.start(with_torch=False)
  if args.gin_file:
    from flan_jax.gin_utils import REPO_GIN_DIR
    path = args.gin_file if os.path.exists(args.gin_file) else str(REPO_GIN_DIR / args.gin_file)
    model = _model_from_gin(path)
    if not isinstance(model, model_lib.EncoderDecoderModel):
      p.error(f"{args.gin_file}: this benchmark runs encoder-decoder models")
    cfg = model.config
  else:
    cfg = SMALL
  if args.dtype:
    import dataclasses
    cfg = dataclasses.replace(cfg, dtype=args.dtype)
  model = model_lib.EncoderDecoderModel(cfg)
  batch = _batch(args.batch, args.inputs, args.targets, cfg.vocab_size)
  shapes = {k: v.shape for k, v in batch.items()}
  params = model.init_variables(jax.random.PRNGKey(0), shapes)
  n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}")
  print(f"model: {n_params / 1e6:.1f}M params, dtype {cfg.dtype}; batch {args.batch} x ({args.inputs} inputs, "
        f"{args.targets} targets)")
  fwd = lambda p, b: model.loss_fn(p, b, None)[0]
  fwd_bwd = jax.value_and_grad(fwd)
  tokens = args.batch * (args.inputs + args.targets)
  for name, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
    compile_s, sec, cpu_s, flops, nbytes = _time(fn, (params, batch), args.repeats)
    print(f"{name:17s} {sec * 1e3:9.1f} ms  {flops / 1e9:9.1f} GFLOP  {flops / sec / 1e9:7.1f} GFLOP/s  "
          f"({tokens / sec:8.0f} tokens/s, compile {compile_s:.1f}s)  CPU {cpu_s:.2f} s/call  "
          f"{nbytes / 1e9:.2f} GB accessed")
  print(f"analytic forward ~2*N*tokens = {2 * n_params * tokens / 1e9:.1f} GFLOP (ignores attention, counts the "
        "embedding)")
  protocol.footer(comparable)
  return 0


if __name__ == "__main__":
  sys.exit(main())
