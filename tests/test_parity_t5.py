"""T5 parity: our network on imported weights reproduces Hugging Face and T5X.

* HF: a random tiny Flan-T5-family model (gated-GELU, untied head) saved by transformers, imported with
  `flan_jax.checkpoints.hf`, gives the same logits (max |delta| <= 1e-4, fp32) on unpadded, padded and packed
  batches (each packed segment against HF run on that example alone), the same per-example log-likelihoods and the
  same greedy decodes; export -> HF -> import is exact.
* T5X: the fixture written by t5x itself, imported from both formats, reproduces t5x's logits (<= 1e-5), score,
  loss and greedy tokens.
"""
from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import hf_tiny
from flan_jax import decoding
from flan_jax.checkpoints import flatten, hf, t5x, unflatten
from flan_jax.models import t5
from flan_jax.models.model import EncoderDecoderModel

LOGITS_TOL = 1e-4
EOS = 1


def _examples() -> list[tuple[list[int], list[int]]]:
  rng = np.random.default_rng(7)
  out = []
  for enc_len, dec_len in ((5, 3), (9, 6), (3, 2), (7, 4), (4, 5)):
    inputs = list(rng.integers(2, hf_tiny.T5_VOCAB, enc_len - 1)) + [EOS]
    targets = list(rng.integers(2, hf_tiny.T5_VOCAB, dec_len - 1)) + [EOS]
    out.append(([int(t) for t in inputs], [int(t) for t in targets]))
  return out


EXAMPLES = _examples()


def _unpacked_batch(examples, enc_len=10, dec_len=7) -> dict[str, np.ndarray]:
  batch = {k: np.zeros((len(examples), enc_len if k == "encoder_input_tokens" else dec_len), np.int32)
           for k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  for row, (inputs, targets) in enumerate(examples):
    batch["encoder_input_tokens"][row, :len(inputs)] = inputs
    batch["decoder_target_tokens"][row, :len(targets)] = targets
    batch["decoder_input_tokens"][row, 1:len(targets)] = targets[:-1]
  batch["decoder_loss_weights"] = (batch["decoder_target_tokens"] > 0).astype(np.float32)
  return batch


def _packed_batch(rows: list[list[int]], enc_len=20, dec_len=14):
  """Packs EXAMPLES by index into rows; returns the batch and, per example, (row, enc slice, dec slice)."""
  names = ("encoder_input_tokens", "encoder_segment_ids", "encoder_positions", "decoder_input_tokens",
           "decoder_target_tokens", "decoder_segment_ids", "decoder_positions")
  batch = {k: np.zeros((len(rows), enc_len if k.startswith("encoder") else dec_len), np.int32) for k in names}
  where = {}
  for row, members in enumerate(rows):
    enc_at = dec_at = 0
    for segment, idx in enumerate(members, start=1):
      inputs, targets = EXAMPLES[idx]
      e, d = slice(enc_at, enc_at + len(inputs)), slice(dec_at, dec_at + len(targets))
      batch["encoder_input_tokens"][row, e] = inputs
      batch["encoder_segment_ids"][row, e] = segment
      batch["encoder_positions"][row, e] = np.arange(len(inputs))
      batch["decoder_target_tokens"][row, d] = targets
      batch["decoder_input_tokens"][row, d] = [0] + targets[:-1]
      batch["decoder_segment_ids"][row, d] = segment
      batch["decoder_positions"][row, d] = np.arange(len(targets))
      where[idx] = (row, e, d)
      enc_at, dec_at = e.stop, d.stop
  batch["decoder_loss_weights"] = (batch["decoder_target_tokens"] > 0).astype(np.float32)
  return batch, where


def _hf_alone(model, inputs, targets) -> np.ndarray:
  """HF logits [len(targets), vocab] for one example with no padding at all."""
  with torch.no_grad():
    out = model(input_ids=torch.tensor([inputs]), decoder_input_ids=torch.tensor([[0] + targets[:-1]]))
  return out.logits[0].numpy()


def _log_likelihood(logits: np.ndarray, targets: list[int]) -> float:
  logp = torch.log_softmax(torch.from_numpy(logits).double(), -1).numpy()
  return float(sum(logp[i, t] for i, t in enumerate(targets)))


@pytest.fixture(scope="session")
def hf_model():
  return hf_tiny.hf_t5()


@pytest.fixture(scope="session")
def hf_dir(hf_model, tmp_path_factory):
  path = tmp_path_factory.mktemp("hf_t5")
  hf_model.save_pretrained(path)
  return path


@pytest.fixture(scope="session")
def imported(hf_dir):
  return hf.load_t5(hf_dir)


@pytest.fixture(scope="session")
def ours(imported):
  config, params = imported
  model = EncoderDecoderModel(config)
  params = jax.tree.map(jnp.asarray, params)
  return model, params, jax.jit(model.compute_logits), jax.jit(model.score_batch)


def test_imported_config_is_the_flan_t5_family(imported):
  config, _ = imported
  assert config.mlp_activations == ("gelu", "linear") and not config.logits_via_embedding
  assert (config.emb_dim, config.num_heads, config.head_dim, config.mlp_dim) == (32, 4, 8, 48)
  assert (config.num_encoder_layers, config.num_decoder_layers, config.vocab_size) == (2, 3, hf_tiny.T5_VOCAB)


def test_unpacked_logits_and_log_likelihoods_match_hf(hf_model, ours):
  _, params, logits_fn, score_fn = ours
  batch = _unpacked_batch(EXAMPLES)
  logits = np.asarray(logits_fn(params, batch))
  scores = np.asarray(score_fn(params, batch))
  with torch.no_grad():  # HF on the same padded batch
    padded = hf_model(input_ids=torch.tensor(batch["encoder_input_tokens"]),
                      attention_mask=torch.tensor(batch["encoder_input_tokens"] > 0),
                      decoder_input_ids=torch.tensor(batch["decoder_input_tokens"])).logits.numpy()
  worst = 0.0
  for row, (inputs, targets) in enumerate(EXAMPLES):
    n = len(targets)
    alone = _hf_alone(hf_model, inputs, targets)
    worst = max(worst, np.abs(logits[row, :n] - alone).max(), np.abs(logits[row, :n] - padded[row, :n]).max())
    np.testing.assert_allclose(scores[row], _log_likelihood(alone, targets), rtol=1e-5, atol=1e-4)
  print(f"T5 unpacked logits max |delta| vs HF: {worst:.3g}")
  assert worst <= LOGITS_TOL
  assert np.abs(logits).max() > 1.0  # the random model is far from uniform, so the comparison has teeth


def test_packed_segments_match_hf_on_each_example_alone(hf_model, ours):
  _, params, logits_fn, score_fn = ours
  batch, where = _packed_batch([[0, 1], [2, 3, 4]])
  logits = np.asarray(logits_fn(params, batch))
  worst = 0.0
  for idx, (inputs, targets) in enumerate(EXAMPLES):
    row, _, d = where[idx]
    worst = max(worst, np.abs(logits[row, d] - _hf_alone(hf_model, inputs, targets)).max())
  print(f"T5 packed logits max |delta| vs HF: {worst:.3g}")
  assert worst <= LOGITS_TOL
  # Per-row scores of a packed batch are the sums of its examples' log-likelihoods.
  scores = np.asarray(score_fn(params, batch))
  expected = [sum(_log_likelihood(_hf_alone(hf_model, *EXAMPLES[i]), EXAMPLES[i][1]) for i in members)
              for members in ([0, 1], [2, 3, 4])]
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-4)


def _greedy(config, params, encoder_tokens: np.ndarray, max_len: int) -> np.ndarray:
  """Cached greedy decoding with flan_jax.decoding (the t5.py cache contract)."""
  return np.asarray(_greedy_jit(config, params, jnp.asarray(encoder_tokens), max_len)[:, 0])


@functools.partial(jax.jit, static_argnums=(0, 3))
def _greedy_jit(config, params, enc, max_len: int):
  module = t5.Transformer(config)
  dummy = jnp.ones((enc.shape[0], max_len), jnp.int32)
  cache = module.apply({"params": params}, enc, dummy, dummy, enable_dropout=False, decode=True,
                       mutable=["cache"])[1]["cache"]
  encoded = module.apply({"params": params}, enc, enable_dropout=False, method="encode")

  def tokens_to_logits(ids, cache):
    logits, new = module.apply({"params": params, "cache": cache}, encoded, enc, ids, ids, enable_dropout=False,
                               decode=True, max_decode_length=max_len, method="decode", mutable=["cache"])
    return logits[:, 0], new["cache"]

  return decoding.greedy_decode(tokens_to_logits, cache, batch_size=enc.shape[0], max_decode_len=max_len,
                                eos_id=EOS)[0]


def test_greedy_decodes_match_hf_generate(hf_model, imported):
  config, params = imported
  max_len = 10
  batch = _unpacked_batch(EXAMPLES)
  ours = _greedy(config, params, batch["encoder_input_tokens"], max_len)
  # use_cache=False: transformers 5.23 sizes T5's decoder cache by num_layers, which breaks when
  # num_decoder_layers differs (as here: 2 encoder, 3 decoder layers).
  with torch.no_grad():
    generated = hf_model.generate(input_ids=torch.tensor(batch["encoder_input_tokens"]),
                                  attention_mask=torch.tensor(batch["encoder_input_tokens"] > 0),
                                  do_sample=False, num_beams=1, max_new_tokens=max_len, min_new_tokens=0,
                                  use_cache=False).numpy()
  theirs = np.zeros_like(ours)
  theirs[:, :generated.shape[1] - 1] = generated[:, 1:]  # drop the decoder start token; HF pads after EOS with 0
  np.testing.assert_array_equal(ours, theirs)
  assert len({tuple(r) for r in ours}) == len(EXAMPLES)  # distinct inputs gave distinct decodes


def test_export_to_hf_and_back_is_exact(hf_model, imported, tmp_path):
  config, params = imported
  hf.save_t5(tmp_path, params, config)
  reloaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
  original = hf_tiny.state_dict_numpy(hf_model)
  exported = hf_tiny.state_dict_numpy(reloaded)
  assert set(exported) == set(original)
  for name, value in original.items():
    np.testing.assert_array_equal(exported[name], value, err_msg=name)
  assert not np.array_equal(exported["lm_head.weight"], exported["shared.weight"])
  config2, params2 = hf.load_t5(tmp_path)
  assert config2 == config
  flat, flat2 = flatten(params), flatten(params2)
  assert set(flat) == set(flat2)
  for name in flat:
    np.testing.assert_array_equal(flat2[name], flat[name], err_msg=name)


# ------------------------------------------------------------------------------------ the t5x-written fixture

FIXTURE_CONFIG = t5.T5Config(vocab_size=4096, emb_dim=64, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
                             head_dim=16, mlp_dim=128, mlp_activations=("gelu", "linear"), dropout_rate=0.0,
                             logits_via_embedding=False)


@pytest.fixture(scope="session")
def fixture_reference(t5x_tiny_fixture):
  ref = t5x_tiny_fixture / "reference"
  outputs = json.loads((ref / "outputs.json").read_text())
  batch = {k: np.asarray(v, np.float32 if k == "decoder_loss_weights" else np.int32)
           for k, v in outputs["eval_batch"].items()}
  return outputs, batch, np.load(ref / "logits.npy"), np.load(ref / "score_batch.npy"), \
      np.load(ref / "greedy_tokens.npy")


@pytest.fixture(scope="session")
def fixture_model():
  model = EncoderDecoderModel(FIXTURE_CONFIG, z_loss=1e-4)
  return model, jax.jit(model.compute_logits), jax.jit(model.score_batch), jax.jit(model.loss_fn)


@pytest.mark.parametrize("fmt", ["ckpt_legacy", "ckpt_orbax"])
def test_t5x_fixture_reproduces_logits_score_and_loss(fmt, t5x_tiny_fixture, fixture_reference, fixture_model):
  outputs, batch, ref_logits, ref_score, _ = fixture_reference
  model, logits_fn, score_fn, loss_fn = fixture_model
  expected = unflatten(hf.model_param_shapes(model.config))
  params = t5x.load_params(t5x_tiny_fixture / fmt, expected=expected)
  logits = np.asarray(logits_fn(params, batch))
  delta = np.abs(logits - ref_logits).max()
  print(f"T5X fixture ({fmt}) logits max |delta|: {delta:.3g}")
  assert delta <= 1e-5
  np.testing.assert_allclose(np.asarray(score_fn(params, batch)), ref_score, rtol=1e-6, atol=1e-5)
  loss, metrics = loss_fn(params, batch, None)
  np.testing.assert_allclose(float(loss), outputs["loss_fn"]["loss"], rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(float(metrics["z_loss"]), outputs["loss_fn"]["metrics"]["z_loss"], rtol=1e-5)


@pytest.mark.parametrize("fmt", ["ckpt_legacy", "ckpt_orbax"])
def test_t5x_fixture_reproduces_greedy_decodes(fmt, t5x_tiny_fixture, fixture_reference, fixture_model):
  outputs, batch, _, _, ref_greedy = fixture_reference
  params = t5x.load_params(t5x_tiny_fixture / fmt)
  max_len = ref_greedy.shape[-1]
  np.testing.assert_array_equal(_greedy(FIXTURE_CONFIG, params, batch["encoder_input_tokens"], max_len),
                                ref_greedy.reshape(1, max_len))
  # t5x's unrolled argmax over full, uncached forward passes (it does not stop at EOS).
  _, logits_fn, _, _ = fixture_model
  manual = outputs["manual_argmax_decode_no_eos_stop"]
  dec_in = np.zeros((1, len(manual)), np.int32)
  step_batch = {"encoder_input_tokens": batch["encoder_input_tokens"], "decoder_input_tokens": dec_in,
                "decoder_target_tokens": np.ones_like(dec_in)}
  for i in range(len(manual)):
    next_token = int(np.argmax(np.asarray(logits_fn(params, step_batch))[0, i]))
    assert next_token == manual[i], f"step {i}"
    if i + 1 < len(manual):
      dec_in[0, i + 1] = next_token
