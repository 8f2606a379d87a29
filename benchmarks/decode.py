"""Greedy decoding speed: flan_jax (one jitted while_loop with a KV cache) vs Hugging Face `generate` (PyTorch CPU).

Flan-T5-small shapes (random weights), batch 8, 512-token inputs, exactly 128 new tokens (EOS disabled on both
sides), in one run on the same machine. Prints new tokens per second for each and the ratio.

  python benchmarks/decode.py [--batch 8] [--input_len 512] [--new_tokens 128] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np


def bench_jax(args, input_ids: np.ndarray) -> float:
  from flan_jax import inference
  from flan_jax.models import model as model_lib
  from flan_jax.models.t5 import T5Config

  model = model_lib.EncoderDecoderModel(T5Config(dtype=args.dtype))  # the defaults are Flan-T5-small's
  shapes = {k: (1, 8) for k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  params = model.init_variables(jax.random.PRNGKey(0), shapes)
  config = inference.DecodeConfig("greedy", args.new_tokens, eos_id=-1)
  batch = {"encoder_input_tokens": input_ids}
  start = time.perf_counter()
  tokens, _ = inference.predict_batch(model, params, batch, config)
  print(f"flan_jax: first call (compile + run) {time.perf_counter() - start:.1f}s")
  assert tokens.shape == (args.batch, 1, args.new_tokens)
  best = float("inf")
  for _ in range(args.repeats):
    start = time.perf_counter()
    inference.predict_batch(model, params, batch, config)
    best = min(best, time.perf_counter() - start)
  return args.batch * args.new_tokens / best


def bench_hf(args, input_ids: np.ndarray) -> float:
  import torch
  import transformers

  config = transformers.T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=1024, num_layers=8,
                                 num_decoder_layers=8, num_heads=6, feed_forward_proj="gated-gelu",
                                 tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
                                 eos_token_id=1)
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(config).eval()
  ids = torch.as_tensor(input_ids, dtype=torch.long)
  kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False, num_beams=1)
  with torch.inference_mode():
    model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    best = float("inf")
    for _ in range(args.repeats):
      start = time.perf_counter()
      out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
      best = min(best, time.perf_counter() - start)
  assert out.shape[1] - 1 == args.new_tokens, out.shape
  return args.batch * args.new_tokens / best


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--input_len", type=int, default=512)
  parser.add_argument("--new_tokens", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--skip_hf", action="store_true")
  args = parser.parse_args()
  rng = np.random.RandomState(0)
  input_ids = rng.randint(2, 32000, size=(args.batch, args.input_len)).astype(np.int32)
  input_ids[:, -1] = 1  # EOS ends every input
  print(f"devices: {jax.devices()}; batch {args.batch}, {args.input_len}-token inputs, {args.new_tokens} new "
        f"tokens, Flan-T5-small shapes")
  ours = bench_jax(args, input_ids)
  print(f"flan_jax greedy: {ours:.1f} new tokens/s")
  if not args.skip_hf:
    hf = bench_hf(args, input_ids)
    print(f"HF generate (PyTorch CPU): {hf:.1f} new tokens/s")
    print(f"speedup: {ours / hf:.2f}x")


if __name__ == "__main__":
  main()
