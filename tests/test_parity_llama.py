"""LLaMA parity: our decoder-only model (LLaMA layout) on weights imported from a random HF `LlamaForCausalLM`.

Our model is a prefix LM; with `decoder_causal_attention` all zero it is a plain causal LM, which is what HF
computes, so every comparison uses causal inputs. Checked: logits (max |delta| <= 1e-4, fp32) on unpadded,
right-padded and packed batches (each packed segment against HF on that sequence alone), per-example
log-likelihoods, greedy decodes continuing a prompt, and an exact export -> HF -> import round trip. The model has
grouped-query attention (4 query heads, 2 key/value heads) and an untied head.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import hf_tiny
from flan_jax import decoding
from flan_jax.checkpoints import flatten, hf
from flan_jax.models import decoder_only
from flan_jax.models.model import DecoderOnlyModel

LOGITS_TOL = 1e-4
EOS = 1


def _sequences() -> list[list[int]]:
  rng = np.random.default_rng(11)
  return [[int(t) for t in rng.integers(2, hf_tiny.LLAMA_VOCAB, n - 1)] + [EOS] for n in (6, 11, 3, 8, 5)]


SEQUENCES = _sequences()


def _row(seq: list[int]) -> tuple[list[int], list[int]]:
  """(decoder_input_tokens, decoder_target_tokens): the targets shifted right behind BOS = 0."""
  return [0] + seq[:-1], seq


def _unpacked_batch(seqs, length=12) -> dict[str, np.ndarray]:
  batch = {k: np.zeros((len(seqs), length), np.int32) for k in
           ("decoder_input_tokens", "decoder_target_tokens", "decoder_causal_attention")}
  for r, seq in enumerate(seqs):
    inputs, targets = _row(seq)
    batch["decoder_input_tokens"][r, :len(seq)] = inputs
    batch["decoder_target_tokens"][r, :len(seq)] = targets
  batch["decoder_loss_weights"] = (batch["decoder_target_tokens"] > 0).astype(np.float32)
  return batch


def _packed_batch(rows: list[list[int]], length=20):
  names = ("decoder_input_tokens", "decoder_target_tokens", "decoder_segment_ids", "decoder_positions",
           "decoder_causal_attention")
  batch = {k: np.zeros((len(rows), length), np.int32) for k in names}
  where = {}
  for r, members in enumerate(rows):
    at = 0
    for segment, idx in enumerate(members, start=1):
      inputs, targets = _row(SEQUENCES[idx])
      span = slice(at, at + len(targets))
      batch["decoder_input_tokens"][r, span] = inputs
      batch["decoder_target_tokens"][r, span] = targets
      batch["decoder_segment_ids"][r, span] = segment
      batch["decoder_positions"][r, span] = np.arange(len(targets))
      where[idx] = (r, span)
      at = span.stop
  batch["decoder_loss_weights"] = (batch["decoder_target_tokens"] > 0).astype(np.float32)
  return batch, where


def _hf_alone(model, seq: list[int]) -> np.ndarray:
  with torch.no_grad():
    return model(input_ids=torch.tensor([_row(seq)[0]])).logits[0].numpy()


def _log_likelihood(logits: np.ndarray, targets: list[int]) -> float:
  logp = torch.log_softmax(torch.from_numpy(logits).double(), -1).numpy()
  return float(sum(logp[i, t] for i, t in enumerate(targets)))


@pytest.fixture(scope="session")
def hf_model():
  return hf_tiny.hf_llama()


@pytest.fixture(scope="session")
def imported(hf_model, tmp_path_factory):
  path = tmp_path_factory.mktemp("hf_llama")
  hf_model.save_pretrained(path)
  return hf.load_llama(path)


@pytest.fixture(scope="session")
def ours(imported):
  config, params = imported
  model = DecoderOnlyModel(config)
  return model, jax.tree.map(jnp.asarray, params), jax.jit(model.compute_logits), jax.jit(model.score_batch)


def test_imported_config_is_llama_style(imported):
  config, _ = imported
  assert (config.position_embedding, config.query_scale, config.mlp_activations) == (
      "rope", "runtime", ("silu", "linear"))
  assert (config.num_heads, config.num_kv_heads, config.head_dim, config.num_layers) == (4, 2, 8, 2)
  assert not config.logits_via_embedding and not config.parallel_block


def test_unpacked_logits_and_log_likelihoods_match_hf(hf_model, ours):
  _, params, logits_fn, score_fn = ours
  batch = _unpacked_batch(SEQUENCES)
  logits = np.asarray(logits_fn(params, batch))
  scores = np.asarray(score_fn(params, batch))
  with torch.no_grad():  # HF on the same right-padded batch
    padded = hf_model(input_ids=torch.tensor(batch["decoder_input_tokens"]),
                      attention_mask=torch.tensor(batch["decoder_target_tokens"] > 0)).logits.numpy()
  worst = 0.0
  for r, seq in enumerate(SEQUENCES):
    alone = _hf_alone(hf_model, seq)
    worst = max(worst, np.abs(logits[r, :len(seq)] - alone).max(),
                np.abs(logits[r, :len(seq)] - padded[r, :len(seq)]).max())
    np.testing.assert_allclose(scores[r], _log_likelihood(alone, seq), rtol=1e-5, atol=1e-4)
  print(f"LLaMA unpacked logits max |delta| vs HF: {worst:.3g}")
  assert worst <= LOGITS_TOL
  assert np.abs(logits).max() > 1.0


def test_packed_segments_match_hf_on_each_sequence_alone(hf_model, ours):
  _, params, logits_fn, score_fn = ours
  rows = [[0, 2, 4], [1, 3]]
  batch, where = _packed_batch(rows)
  logits = np.asarray(logits_fn(params, batch))
  worst = max(np.abs(logits[r, span] - _hf_alone(hf_model, SEQUENCES[i])).max() for i, (r, span) in where.items())
  print(f"LLaMA packed logits max |delta| vs HF: {worst:.3g}")
  assert worst <= LOGITS_TOL
  expected = [sum(_log_likelihood(_hf_alone(hf_model, SEQUENCES[i]), SEQUENCES[i]) for i in members)
              for members in rows]
  np.testing.assert_allclose(np.asarray(score_fn(params, batch)), expected, rtol=1e-5, atol=1e-4)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _greedy_jit(config, params, prompts, max_new: int):
  """Causal greedy continuation of equal-length prompts with the step-by-step cache: BOS, p_1..p_{m-1} are fed one
  at a time, then flan_jax.decoding starts from p_m (so every prompt token sees only its left context, as in HF)."""
  module = decoder_only.DecoderOnlyTransformer(config)
  rows, m = prompts.shape
  total = m + 1 + max_new
  dummy = jnp.ones((rows, total), jnp.int32)
  cache = module.apply({"params": params}, dummy, dummy, enable_dropout=False, decode=True,
                       mutable=["cache"])[1]["cache"]

  def tokens_to_logits(ids, cache):
    logits, new = module.apply({"params": params, "cache": cache}, ids, ids, enable_dropout=False, decode=True,
                               max_decode_length=total, mutable=["cache"])
    return logits[:, 0], new["cache"]

  fed = jnp.concatenate([jnp.zeros((rows, 1), jnp.int32), prompts[:, :-1]], axis=1)
  for i in range(m):
    _, cache = tokens_to_logits(fed[:, i:i + 1], cache)
  return decoding.greedy_decode(tokens_to_logits, cache, batch_size=rows, max_decode_len=max_new, eos_id=EOS,
                                initial_ids=prompts[:, -1])[0][:, 0]


def test_greedy_decodes_match_hf_generate(hf_model, imported):
  config, params = imported
  prompt_len, max_new = 3, 9
  prompts = np.array([seq[:prompt_len] for seq in SEQUENCES if len(seq) > prompt_len], np.int32)
  ours = np.asarray(_greedy_jit(config, params, jnp.asarray(prompts), max_new))
  with torch.no_grad():
    # attention_mask given: BOS shares id 0 with padding, which generate would otherwise mask out.
    inputs = torch.tensor(np.pad(prompts, ((0, 0), (1, 0))))
    generated = hf_model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=False,
                                  num_beams=1, max_new_tokens=max_new, min_new_tokens=0).numpy()
  theirs = np.zeros_like(ours)
  new = generated[:, prompt_len + 1:]  # drop BOS and the prompt; HF pads after EOS with pad id 0
  theirs[:, :new.shape[1]] = new
  np.testing.assert_array_equal(ours, theirs)
  assert len({tuple(r) for r in ours}) > 1


def test_export_to_hf_and_back_is_exact(hf_model, imported, tmp_path):
  config, params = imported
  hf.save_llama(tmp_path, params, config)
  reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
  original, exported = hf_tiny.state_dict_numpy(hf_model), hf_tiny.state_dict_numpy(reloaded)
  assert set(exported) == set(original)
  for name, value in original.items():
    np.testing.assert_array_equal(exported[name], value, err_msg=name)
  config2, params2 = hf.load_llama(tmp_path)
  assert config2 == config
  flat, flat2 = flatten(params), flatten(params2)
  assert set(flat) == set(flat2)
  for name in flat:
    np.testing.assert_array_equal(flat2[name], flat[name], err_msg=name)
  seq = SEQUENCES[1]
  np.testing.assert_array_equal(_hf_alone(reloaded, seq), _hf_alone(hf_model, seq))
