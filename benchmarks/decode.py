"""Greedy decoding speed: flan_jax (one jitted while_loop with a KV cache) vs Hugging Face `generate` (PyTorch CPU),
and how much of the machine's memory bandwidth flan_jax's decoder weight reads reach.

Flan-T5-small shapes (random weights), 512-token inputs, exactly --new_tokens new tokens (EOS disabled on both
sides), at each batch size of --batches (8 and 1). It follows benchmarks/protocol.py: the load average at start and
end, one thread per core on both sides, each side in a process of its own, and per batch size one warm-up call of each
side, then --rounds rounds of flan_jax and HF alternately, each printing new tokens/s, then the medians and the median
and spread of the per-round ratios flan_jax/HF.

Memory bandwidth: numpy copying a 256 MiB array (one thread, best of 3), counted as bytes read + written per second.
A greedy step at small batch reads every weight it uses once, so flan_jax's weight bytes/s = decoder weight bytes
per step x steps/s is printed as a fraction of that bandwidth. Counted per step from the param tree: every parameter
under `decoder` (its layers, final norm, relative-position bias and the untied LM head `logits_dense`) except the
cross-attention key/value kernels (flan_jax projects the encoder output through them once per call, before the
loop), plus the `batch` rows of the shared token embedding that the step gathers. A second figure adds what the step
reads besides weights: those projected keys and values (batch x input_len x heads x head_dim x 2 x layers, in --dtype).
steps/s is new_tokens / the call's time, which includes the encoder pass, so the fractions are lower bounds.

  ../shared/tools/quiet -- python benchmarks/decode.py [--batches 8,1] [--input_len 512] [--new_tokens 128]
                                                       [--rounds 4] [--dtype float32]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

import protocol

protocol.use_cores(protocol.cores())  # before jax is imported (here or by a library): XLA reads it when it starts

import jax  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from flan_jax import inference  # noqa: E402
from flan_jax.models import model as model_lib  # noqa: E402
from flan_jax.models.t5 import T5Config  # noqa: E402


def input_ids(batch: int, length: int) -> np.ndarray:
  ids = np.random.RandomState(0).randint(2, 32000, size=(batch, length)).astype(np.int32)
  ids[:, -1] = 1  # EOS ends every input
  return ids


def build_flan_jax(dtype: str) -> tuple[model_lib.EncoderDecoderModel, dict]:
  model = model_lib.EncoderDecoderModel(T5Config(dtype=dtype))  # the defaults are Flan-T5-small's
  shapes = {k: (1, 8) for k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  return model, model.init_variables(jax.random.PRNGKey(0), shapes)


def build_hf() -> transformers.T5ForConditionalGeneration:
  config = transformers.T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=1024, num_layers=8,
                                 num_decoder_layers=8, num_heads=6, feed_forward_proj="gated-gelu",
                                 tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
                                 eos_token_id=1)
  torch.manual_seed(0)
  return transformers.T5ForConditionalGeneration(config).eval()


def decoder_bytes_per_step(params: dict, batch: int) -> int:
  """Weight bytes one greedy step reads (see the module docstring for what is counted)."""
  total = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params["decoder"])[0]:
    names = [key.key for key in path]
    if "encoder_decoder_attention" in names and names[-2] in ("key", "value"):
      continue
    total += leaf.size * leaf.dtype.itemsize
  embedding = params["token_embedder"]["embedding"]
  return total + batch * embedding.shape[1] * embedding.dtype.itemsize


def memcpy_bandwidth(mib: int = 256, repeats: int = 3) -> float:
  """Bytes read + written per second by one numpy copy of a `mib` MiB array, best of `repeats`."""
  src = np.ones(mib * 2**20 // 8)
  dst = np.empty_like(src)
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    np.copyto(dst, src)
    best = min(best, time.perf_counter() - start)
  return 2 * src.nbytes / best


def flan_jax_side(batch: int, input_len: int, new_tokens: int, dtype: str) -> tuple[Callable[[], float], dict]:
  """Greedy decoding in this process: new tokens/s per call, and the bytes one step reads."""
  model, params = build_flan_jax(dtype)
  ids = input_ids(batch, input_len)
  config = inference.DecodeConfig("greedy", new_tokens, eos_id=-1)

  def decode():
    tokens, _ = inference.predict_batch(model, params, {"encoder_input_tokens": ids}, config)
    assert tokens.shape == (batch, 1, new_tokens), tokens.shape

  cfg = model.config
  cross_kv = 2 * cfg.num_decoder_layers * batch * input_len * cfg.num_heads * cfg.head_dim * (
      jax.numpy.dtype(dtype).itemsize)
  return protocol.rate(decode, batch * new_tokens), {"weights": decoder_bytes_per_step(params, batch),
                                                      "cross_kv": cross_kv}


def hf_side(batch: int, input_len: int, new_tokens: int) -> tuple[Callable[[], float], None]:
  protocol.torch_threads(protocol.cores())
  hf_model = build_hf()
  ids = torch.as_tensor(input_ids(batch, input_len), dtype=torch.long)
  kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1)

  def generate():
    with torch.inference_mode():
      out = hf_model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    assert out.shape[1] - 1 == new_tokens, out.shape

  return protocol.rate(generate, batch * new_tokens), None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batches", default="8,1", help="comma-separated batch sizes, each compared in its own rounds")
  parser.add_argument("--input_len", type=int, default=512)
  parser.add_argument("--new_tokens", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--dtype", default="float32", help="flan_jax's activation dtype (HF runs float32)")
  args = parser.parse_args()
  batches = [int(b) for b in args.batches.split(",")]

  comparable = protocol.start(with_torch=True)
  print(f"devices: {jax.devices()}; {args.input_len}-token inputs, {args.new_tokens} new tokens, Flan-T5-small "
        f"shapes, batches {batches}; each side in its own process")
  bandwidth = memcpy_bandwidth()
  print(f"memcpy bandwidth (numpy, 256 MiB, one thread, best of 3): {bandwidth / 1e9:.2f} GB/s read + written")

  for batch in batches:
    print(f"\nbatch {batch}:")
    sides = {"flan_jax": protocol.Isolated(flan_jax_side, batch, args.input_len, args.new_tokens, args.dtype),
             "hf": protocol.Isolated(hf_side, batch, args.input_len, args.new_tokens)}
    figures = protocol.interleaved(sides, args.rounds, "new tokens/s")
    reads = sides["flan_jax"].info
    for side in sides.values():
      side.close()
    result = protocol.summary(figures, "flan_jax", "hf", "new tokens/s")
    steps_per_s = result.median_a / batch
    for what, size in (("weight reads", reads["weights"]),
                       ("weight + cross-attention key/value reads", reads["weights"] + reads["cross_kv"])):
      achieved = size * steps_per_s
      print(f"flan_jax {what}: {size / 1e6:.1f} MB/step x {steps_per_s:.1f} steps/s = {achieved / 1e9:.2f} GB/s = "
            f"{achieved / bandwidth:.2f} of the memcpy bandwidth")
  protocol.footer(comparable)


if __name__ == "__main__":
  main()
