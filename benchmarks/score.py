"""MMLU-style rank classification: flan_jax (each prompt encoded once, its options scored against that encoder
output) vs Hugging Face forward passes over every (prompt, option) pair, on the same model.

The model is Flan-T5-small shaped with random weights, exported by `flan-jax convert`'s writer so both sides hold the
same parameters. The prompts are MMLU direct (5-shot) from the data dir, A/B/C/D options, EOS scored. It follows
benchmarks/protocol.py: the load average at start and end, one thread per core on both sides, one warm-up call of
each side (the compiles), then --rounds rounds of flan_jax and HF alternately, each printing prompts per second, then
the medians and the median and spread of the per-round ratios flan_jax/HF. It checks that the last round's scores
of both sides agree.

  ../shared/tools/quiet -- python benchmarks/score.py [--prompts 32] [--rounds 4] [--batch 8]
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np

import protocol

protocol.use_cores(protocol.cores())  # before jax is imported (here or by a library): XLA reads it when it starts

import jax  # noqa: E402


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
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--batch", type=int, default=8, help="prompts per flan_jax call; pairs per HF forward")
  args = parser.parse_args()
  comparable = protocol.start(with_torch=True)

  from flan_jax import inference
  prompts, options = prompts_and_options(args.prompts)
  with tempfile.TemporaryDirectory() as directory:
    model, params, hf_model = build_models(directory)
  predictor = inference.Predictor(model, params, batch_size=args.batch, max_input_length=2048)
  hf = HfScorer(hf_model, predictor.vocab, args.batch)
  print(f"{len(prompts)} MMLU prompts x 4 options")

  scores: dict[str, list[list[float]]] = {}  # each side's last scores, compared at the end

  def flan_jax_scores():
    scores["flan_jax"] = predictor.rank_classification(prompts, options)[1]

  def hf_scores():
    scores["hf"] = hf.scores(prompts, options)

  figures = protocol.interleaved({"flan_jax": protocol.rate(flan_jax_scores, len(prompts)),
                                  "hf": protocol.rate(hf_scores, len(prompts))}, args.rounds, "prompts/s")
  protocol.summary(figures, "flan_jax", "hf", "prompts/s")
  diff = float(np.max(np.abs(np.asarray(scores["flan_jax"]) - np.asarray(scores["hf"]))))
  print(f"max |score difference| {diff:.2e}")
  protocol.footer(comparable)


if __name__ == "__main__":
  main()
