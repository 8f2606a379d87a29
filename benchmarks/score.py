"""MMLU-style rank classification: flan_jax (each prompt encoded once, its options scored against that encoder
output) vs Hugging Face forward passes over every (prompt, option) pair, on the same model.

The model is Flan-T5-small shaped with random weights, exported by `flan-jax convert`'s writer so both sides hold the
same parameters. The prompts are MMLU direct (5-shot) from the data dir, A/B/C/D options, EOS scored. It follows
benchmarks/protocol.py: the load average at start and end, one thread per core on both sides, each side in a process
of its own, one warm-up call of each side (the compiles), then --rounds rounds of flan_jax and HF alternately, each
printing prompts per second, then the medians and the median and spread of the per-round ratios flan_jax/HF. It
checks that both sides' scores agree.

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


def build_flan_jax():
  from flan_jax.models import model as model_lib
  from flan_jax.models.t5 import T5Config
  model = model_lib.EncoderDecoderModel(T5Config())  # the defaults are Flan-T5-small's
  shapes = {k: (1, 8) for k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  return model, model.init_variables(jax.random.PRNGKey(0), shapes)


def flan_jax_side(prompts: list[str], options: list[list[str]], batch: int):
  """Rank classification in this process: prompts/s per call, and the scores (the first call's)."""
  from flan_jax import inference
  model, params = build_flan_jax()
  predictor = inference.Predictor(model, params, batch_size=batch, max_input_length=2048)
  scores = predictor.rank_classification(prompts, options)[1]
  return protocol.rate(lambda: predictor.rank_classification(prompts, options), len(prompts)), scores


def hf_side(directory: str, prompts: list[str], options: list[list[str]], batch: int):
  """The same weights (exported by flan_jax's writer to `directory`) scored pair by pair through HF."""
  import torch
  import transformers
  from flan_jax.data.seqio_adapter import vocab as vocab_lib
  protocol.torch_threads(protocol.cores())
  torch.set_grad_enabled(False)
  hf = HfScorer(transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval(), vocab_lib.get_vocabulary(),
                batch)
  scores = hf.scores(prompts, options)
  return protocol.rate(lambda: hf.scores(prompts, options), len(prompts)), scores


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

  from flan_jax.checkpoints import convert
  prompts, options = prompts_and_options(args.prompts)
  print(f"{len(prompts)} MMLU prompts x 4 options; each side in its own process")
  with tempfile.TemporaryDirectory() as directory:
    convert.write_hf(directory, *build_flan_jax())
    sides = {"flan_jax": protocol.Isolated(flan_jax_side, prompts, options, args.batch),
             "hf": protocol.Isolated(hf_side, directory, prompts, options, args.batch)}
    figures = protocol.interleaved(sides, args.rounds, "prompts/s")
    for side in sides.values():
      side.close()
  protocol.summary(figures, "flan_jax", "hf", "prompts/s")
  diff = float(np.max(np.abs(np.asarray(sides["flan_jax"].info) - np.asarray(sides["hf"].info))))
  print(f"max |score difference| {diff:.2e}")
  protocol.footer(comparable)


if __name__ == "__main__":
  main()
