"""MMLU-style rank classification: flan_jax (each prompt encoded once, its options scored against that encoder
output) vs Hugging Face forward passes over every (prompt, option) pair, on the same model.

The model is Flan-T5-small shaped with random weights, exported by `flan-jax convert`'s writer so both sides hold the
same parameters. The prompts are MMLU direct (5-shot) from the data dir, A/B/C/D options, EOS scored. The two sides
run alternately (A B A B ...) with the same thread count, and each round prints prompts per second. The script
reports medians and the per-round ratios, and checks that both sides give the same scores.

  ../shared/tools/quiet -- python benchmarks/score.py [--prompts 32] [--rounds 3] [--batch 8]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import numpy as np


def load_average() -> float:
  return os.getloadavg()[0]


def prompts_and_options(n: int) -> tuple[list[str], list[list[str]]]:
  from flan_jax.evaluation import suites
  examples = suites.SUITES["mmlu_direct"].examples(None)[:n]
  return [e.prompt for e in examples], [list(e.options) for e in examples]


def build_models(directory: str):
  """(our model, our params, the HF model) with the same weights."""
  import torch
  import transformers

  from flan_jax.checkpoints import convert
  from flan_jax.models import model as model_lib
  from flan_jax.models.t5 import T5Config

  model = model_lib.EncoderDecoderModel(T5Config())  # the defaults are Flan-T5-small's
  shapes = {k: (1, 8) for k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  params = model.init_variables(jax.random.PRNGKey(0), shapes)
  convert.write_hf(directory, model, params)
  hf_model = transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
  torch.set_grad_enabled(False)
  return model, params, hf_model


class HfScorer:
  """Harness-style scoring: one forward pass per (prompt, option) pair, `batch` pairs at a time."""

  def __init__(self, model, vocab, batch: int):
    self.model = model
    self.vocab = vocab  # the T5 vocabulary flan_jax reads: the same token ids on both sides
    self.batch = batch

  def scores(self, prompts: list[str], options: list[list[str]]) -> list[list[float]]:
    import torch
    pairs = [(list(self.vocab.encode(p)) + [1], list(self.vocab.encode(o)) + [1])
             for p, opts in zip(prompts, options) for o in opts]
    flat: list[float] = []
    for start in range(0, len(pairs), self.batch):
      chunk = pairs[start:start + self.batch]
      enc = torch.zeros((len(chunk), max(len(i) for i, _ in chunk)), dtype=torch.long)
      labels = torch.full((len(chunk), max(len(t) for _, t in chunk)), -100, dtype=torch.long)
      for r, (i, t) in enumerate(chunk):
        enc[r, :len(i)] = torch.as_tensor(i)
        labels[r, :len(t)] = torch.as_tensor(t)
      logits = self.model(input_ids=enc, attention_mask=(enc > 0).long(), labels=labels).logits
      logp = torch.log_softmax(logits.float(), dim=-1)
      mask = labels >= 0
      picked = torch.gather(logp, -1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
      flat += (picked * mask).sum(-1).tolist()
    out, pos = [], 0
    for opts in options:
      out.append(flat[pos:pos + len(opts)])
      pos += len(opts)
    return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--prompts", type=int, default=32)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--batch", type=int, default=8, help="prompts per flan_jax call; pairs per HF forward")
  args = parser.parse_args()
  import torch
  threads = os.cpu_count() or 1
  torch.set_num_threads(threads)
  start_load = load_average()
  print(f"load average at start: {start_load:.2f} on {threads} cores"
        + ("  NOT COMPARABLE (above 0.6)" if start_load > 0.6 else ""))

  from flan_jax import inference
  prompts, options = prompts_and_options(args.prompts)
  with tempfile.TemporaryDirectory() as directory:
    model, params, hf_model = build_models(directory)
  predictor = inference.Predictor(model, params, batch_size=args.batch, max_input_length=2048)
  hf = HfScorer(hf_model, predictor.vocab, args.batch)
  ours = predictor.rank_classification(prompts, options)[1]  # compiles every shape once
  theirs = hf.scores(prompts, options)
  diff = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))
  print(f"{len(prompts)} MMLU prompts x 4 options; max |score difference| {diff:.2e}")

  sides = {"flan_jax": lambda: predictor.rank_classification(prompts, options),
           "hf": lambda: hf.scores(prompts, options)}
  rates: dict[str, list[float]] = {name: [] for name in sides}
  for round_index in range(args.rounds):
    for name, run in sides.items():
      t = time.perf_counter()
      run()
      rates[name].append(len(prompts) / (time.perf_counter() - t))
    print(f"round {round_index + 1}: flan_jax {rates['flan_jax'][-1]:.2f} prompts/s, hf {rates['hf'][-1]:.2f} "
          f"prompts/s, ratio {rates['flan_jax'][-1] / rates['hf'][-1]:.2f}x")
  ratios = [a / b for a, b in zip(rates["flan_jax"], rates["hf"])]
  print(f"median: flan_jax {statistics.median(rates['flan_jax']):.2f} prompts/s, hf "
        f"{statistics.median(rates['hf']):.2f} prompts/s; ratio median {statistics.median(ratios):.2f}x "
        f"(spread {min(ratios):.2f}-{max(ratios):.2f}x)")
  print(f"load average at end: {load_average():.2f}")


if __name__ == "__main__":
  main()
