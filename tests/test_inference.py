"""Model glue: cached decoding equals uncached unrolled argmax, scores equal forward-pass log-probs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax import inference
from flan_jax.models import model as model_lib
from flan_jax.models.decoder_only import DecoderOnlyConfig
from flan_jax.models.t5 import T5Config

LENGTH = 6
TINY_T5 = dict(vocab_size=32128, emb_dim=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=2, head_dim=8,
               mlp_dim=64)


@pytest.fixture(scope="session")
def tiny_t5():
  model = model_lib.EncoderDecoderModel(T5Config(**TINY_T5))
  shapes = {k: (1, 8) for k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")}
  params = model.init_variables(jax.random.PRNGKey(0), shapes)
  # Random init makes near-uniform logits; sharpen the head so argmax ties cannot make the test flaky.
  params["decoder"]["logits_dense"]["kernel"] = params["decoder"]["logits_dense"]["kernel"] * 30.0
  return model, params


@pytest.fixture(scope="session")
def tiny_decoder_only():
  config = DecoderOnlyConfig(vocab_size=32128, emb_dim=32, num_heads=2, num_layers=2, head_dim=8, mlp_dim=64)
  model = model_lib.DecoderOnlyModel(config)
  params = model.init_variables(jax.random.PRNGKey(1), {k: (1, 8) for k in ("decoder_input_tokens",
                                                                             "decoder_target_tokens")})
  params["decoder"]["logits_dense"]["kernel"] = params["decoder"]["logits_dense"]["kernel"] * 30.0
  return model, params


def _unrolled_enc_dec(model, params, enc_row):
  """Argmax decoding by running the full (uncached) forward pass on the growing prefix."""
  logits_fn = jax.jit(model.compute_logits)
  out = []
  for step in range(LENGTH):
    dec_in = np.zeros((1, LENGTH), np.int32)
    dec_in[0, 1:step + 1] = out
    batch = {"encoder_input_tokens": enc_row[None], "decoder_input_tokens": dec_in,
             "decoder_target_tokens": np.ones((1, LENGTH), np.int32)}
    tok = int(np.argmax(logits_fn(params, batch)[0, step]))
    out.append(tok)
    if tok == 1:
      break
  return out


def test_greedy_equals_unrolled_argmax_enc_dec(tiny_t5):
  model, params = tiny_t5
  enc = np.asarray([[37, 629, 19, 1627, 5, 1, 0, 0], [13959, 1566, 12, 2968, 10, 37, 1, 0]], np.int32)
  tokens, scores = inference.predict_batch(model, params, {"encoder_input_tokens": enc},
                                           inference.DecodeConfig(max_decode_length=LENGTH))
  for row in range(2):
    want = _unrolled_enc_dec(model, params, enc[row])
    got = tokens[row, 0].tolist()
    assert got[:len(want)] == want and all(t == 0 for t in got[len(want):])


def test_beam_one_and_samples(tiny_t5):
  model, params = tiny_t5
  enc = np.asarray([[37, 629, 19, 1, 0, 0, 0, 0], [13959, 1566, 12, 2968, 10, 37, 1, 0]], np.int32)
  greedy, _ = inference.predict_batch(model, params, {"encoder_input_tokens": enc},
                                      inference.DecodeConfig(max_decode_length=LENGTH))
  beams, beam_scores = inference.predict_batch(model, params, {"encoder_input_tokens": enc},
                                               inference.DecodeConfig("beam", LENGTH, num_decodes=3))
  assert beams.shape == (2, 3, LENGTH)
  assert np.all(np.diff(beam_scores, axis=1) <= 1e-6)  # best first
  samples, _ = inference.predict_batch(model, params, {"encoder_input_tokens": enc},
                                       inference.DecodeConfig("sample", LENGTH, num_decodes=4, topk=1),
                                       jax.random.PRNGKey(3))
  for d in range(4):
    np.testing.assert_array_equal(samples[:, d], greedy[:, 0])


def test_scores_equal_summed_token_log_probs(tiny_t5):
  model, params = tiny_t5
  predictor = inference.Predictor(model, params, batch_size=4)
  inputs = ["translate English to German: The house is wonderful.", "Q: 2+2?\nA:", "hello"]
  targets = ["Das Haus ist wunderbar.", "4", "a much longer target with several pieces"]
  got = predictor.score(inputs, targets)
  vocab = predictor.vocab
  for inp, tgt, score in zip(inputs, targets, got):
    enc = np.asarray([list(vocab.encode(inp)) + [1]], np.int32)
    tgt_ids = list(vocab.encode(tgt)) + [1]
    dec_in = np.asarray([[0] + tgt_ids[:-1]], np.int32)
    logits = model.compute_logits(params, {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
                                           "decoder_target_tokens": np.asarray([tgt_ids], np.int32)})
    logp = jax.nn.log_softmax(logits[0].astype(jnp.float32), axis=-1)
    want = float(sum(logp[i, t] for i, t in enumerate(tgt_ids)))
    assert score == pytest.approx(want, rel=1e-4, abs=1e-3)
  best, scores = predictor.rank_classification(inputs[:2], [["A", "B", "C"], ["4", "5"]])
  for b, row in zip(best, scores):
    assert row[b] == max(row)
  assert scores[1] == pytest.approx(predictor.score([inputs[1]] * 2, ["4", "5"]), abs=1e-4)


def test_decoder_only_greedy_equals_unrolled_and_scores_match(tiny_decoder_only):
  model, params = tiny_decoder_only
  prompt = np.asarray([[37, 629, 19, 1627, 5], [13959, 1566, 12, 0, 0]], np.int32)
  tokens, gen_scores = inference.predict_batch(model, params, {"prompt_tokens": prompt},
                                               inference.DecodeConfig(max_decode_length=LENGTH))
  logits_fn = jax.jit(model.compute_logits)
  total = 16
  for row in range(2):
    p = [t for t in prompt[row].tolist() if t]
    out = []
    for _ in range(LENGTH):
      seq = p + out
      dec_in = np.zeros((1, total), np.int32)
      dec_in[0, 1:len(seq) + 1] = seq
      causal = np.zeros((1, total), np.int32)
      causal[0, :len(p) + 1] = 1
      batch = {"decoder_input_tokens": dec_in, "decoder_target_tokens": np.ones((1, total), np.int32),
               "decoder_causal_attention": causal}
      out.append(int(np.argmax(logits_fn(params, batch)[0, len(seq)])))
      if out[-1] == 1:
        break
    assert tokens[row, 0].tolist()[:len(out)] == out
  # The decode's own log-prob of its output equals the prefix-LM score of that output.
  predictor = inference.Predictor(model, params, batch_size=2)
  pairs = [([t for t in prompt[r].tolist() if t], [t for t in tokens[r, 0].tolist() if t]) for r in range(2)]
  scores = inference.score_batch(model, params, predictor._score_batch_arrays(pairs))
  np.testing.assert_allclose(scores, gen_scores[:, 0], rtol=1e-4, atol=1e-3)


def test_seqio_model_fns(tiny_t5):
  import tensorflow as tf

  model, params = tiny_t5
  enc = np.asarray([[37, 629, 19, 1, 0, 0, 0, 0], [13959, 1566, 12, 2968, 10, 37, 1, 0],
                    [5, 6, 7, 1, 0, 0, 0, 0]], np.int32)
  tgt = np.asarray([[8, 9, 1, 0], [10, 1, 0, 0], [11, 12, 13, 1]], np.int32)
  dec_in = np.concatenate([np.zeros((3, 1), np.int32), tgt[:, :-1]], axis=1)
  ds = tf.data.Dataset.from_tensor_slices({"encoder_input_tokens": enc, "decoder_target_tokens": tgt,
                                           "decoder_input_tokens": dec_in,
                                           "decoder_loss_weights": (tgt > 0).astype(np.int32)}).enumerate()
  predict_fn, score_fn = inference.seqio_model_fns(model, params, inference.DecodeConfig(max_decode_length=LENGTH),
                                                   batch_size=2)
  preds = predict_fn(ds)
  greedy, _ = inference.predict_batch(model, params, {"encoder_input_tokens": enc},
                                      inference.DecodeConfig(max_decode_length=LENGTH))
  assert [i for i, _ in preds] == [0, 1, 2]
  for i, ids in preds:
    assert ids == inference.decoding.strip_after_eos(greedy[i, 0], 1)
  scores = score_fn(ds)
  want = inference.score_batch(model, params, {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
                                               "decoder_target_tokens": tgt,
                                               "decoder_loss_weights": (tgt > 0).astype(np.int32)})
  np.testing.assert_allclose([s for _, s in scores], want, rtol=1e-5, atol=1e-4)


def test_scores_without_eos(tiny_t5):
  """score_eos=False scores the bare continuation: the T5X total minus the EOS token's log-prob."""
  model, params = tiny_t5
  predictor = inference.Predictor(model, params, batch_size=4)
  inputs, targets = ["Q: 2+2?\nA:", "hello"], ["4", "a longer target"]
  with_eos, without = predictor.score(inputs, targets), predictor.score(inputs, targets, score_eos=False)
  for inp, tgt, total, bare in zip(inputs, targets, with_eos, without):
    ids = list(predictor.vocab.encode(tgt)) + [1]
    batch = {"encoder_input_tokens": np.asarray([list(predictor.vocab.encode(inp)) + [1]], np.int32),
             "decoder_input_tokens": np.asarray([[0] + ids[:-1]], np.int32),
             "decoder_target_tokens": np.asarray([ids], np.int32)}
    logp = jax.nn.log_softmax(model.compute_logits(params, batch)[0].astype(jnp.float32), axis=-1)
    assert bare == pytest.approx(float(sum(logp[i, t] for i, t in enumerate(ids[:-1]))), rel=1e-4, abs=1e-3)
    assert total - bare == pytest.approx(float(logp[len(ids) - 1, 1]), rel=1e-4, abs=1e-3)
  _, scores = predictor.rank_classification(inputs[:1], [["4", "5"]], score_eos=False)
  assert scores[0] == pytest.approx(predictor.score(inputs[:1] * 2, ["4", "5"], score_eos=False), abs=1e-4)


class _GivenSpellings(inference.stopping.StopTokenizer):
  """The real table builder over spellings chosen by the test (the spelling of text is test_stopping's part)."""

  def __init__(self, processor, spellings):
    super().__init__(processor)
    self.given = spellings

  def spellings(self, stop):
    return self.given[stop]


def test_predict_stops_each_row_at_its_stop_sequences(tiny_t5):
  model, params = tiny_t5
  predictor = inference.Predictor(model, params, batch_size=4)
  prompts = ["translate English to German: The house is wonderful.", "Q: 2+2?\nA:", "hello"]
  config = inference.DecodeConfig(max_decode_length=LENGTH, eos_id=-1)
  free = predictor.predict_ids(prompts, config)
  # Row 0 stops at the pair its free decode writes at 2-3, row 1 at its token 1 (or an earlier repeat of it).
  spellings = {"pair": (tuple(free[0][0][2:4]),), "one": ((free[1][0][1],),), "never": ((32099, 32098),)}
  predictor.stop_tokenizer = _GivenSpellings(predictor.processor, spellings)
  stopped = predictor.predict_ids(prompts, config, stop_sequences=[("pair",), ("one", "never"), ("never",)])
  for row, stops in enumerate([spellings["pair"], spellings["one"], spellings["never"]]):
    want = free[row][0]
    end = next((i + 1 for i in range(len(want)) if any(tuple(want[i + 1 - len(s):i + 1]) == s for s in stops
                                                      if i + 1 >= len(s))), len(want))
    assert stopped[row][0] == want[:end], row
  assert len(stopped[0][0]) <= 4 and len(stopped[1][0]) <= 2 and stopped[2][0] == free[2][0]
  texts = predictor.predict(prompts, config, stop_sequences=[("pair",), ("one", "never"), ("never",)])
  assert [t[0] for t in texts] == [predictor.decode(s[0]) for s in stopped]


def test_decode_is_sentencepiece_decode_ids(tiny_t5):
  """Whitespace exactly as SentencePiece (and seqio) write it: runs of bare "▁" pieces, extra ids, EOS, ids past
  the vocabulary."""
  model, params = tiny_t5
  predictor = inference.Predictor(model, params, batch_size=1)
  sp, vocab = predictor.processor, predictor.vocab
  the, house, bare = sp.piece_to_id("▁The"), sp.piece_to_id("▁house"), sp.piece_to_id("▁")
  cases = {
      (the, bare, bare, bare, house): "The    house",
      (the, bare): "The ",
      (the, bare, bare): "The  ",
      (bare, bare, bare): "",
      (bare, bare, the): "The",
      (the, 32099, bare, bare, house): "The <extra_id_0>   house",
      (32099, bare, 32098): "<extra_id_0>  <extra_id_1>",
      (the, bare, 1, house): "The ",
      (the, 32110, house): "The ⁇  house",
  }
  for ids, want in cases.items():
    assert predictor.decode(ids) == want == vocab.decode(list(ids)), ids
    if max(ids) < sp.get_piece_size() and 1 not in ids:
      assert predictor.decode(ids) == sp.decode_ids(list(ids))


def test_decode_with_byte_fallback_pieces(tiny_t5, tmp_path):
  import io

  import seqio
  import sentencepiece

  model_file = io.BytesIO()
  words = "the house is wonderful and the garden is green today we walk to the river".split()
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter([" ".join(words[i:] + words[:i]) for i in range(len(words))] * 20),
      model_writer=model_file, vocab_size=300, byte_fallback=True, hard_vocab_limit=False, model_type="unigram")
  (tmp_path / "bytes.model").write_bytes(model_file.getvalue())
  model, params = tiny_t5
  predictor = inference.Predictor(model, params, batch_size=1,
                                  vocabulary=seqio.SentencePieceVocabulary(str(tmp_path / "bytes.model"), 0))
  sp = predictor.processor
  text = "the Ünïcödé house ✓  is green"
  ids = sp.encode(text)
  assert any(sp.is_byte(i) for i in ids)
  assert predictor.decode(ids) == sp.decode_ids(ids) == "the Ünïcödé house ✓ is green"
  e2 = sp.piece_to_id("<0xE2>")
  assert predictor.decode(ids[:2] + [e2, sp.piece_to_id("▁")]) == sp.decode_ids(ids[:2] + [e2, sp.piece_to_id("▁")])


@pytest.mark.parametrize("score_eos", [True, False])
def test_rank_classification_encodes_once_and_scores_as_pairs_do(tiny_t5, score_eos):
  """Options scored against one encoder output per prompt equal each (prompt, option) pair scored whole, across
  batches of prompts with different numbers of options."""
  model, params = tiny_t5
  predictor = inference.Predictor(model, params, batch_size=2)
  inputs = ["Q: 2+2?\nA:", "Which is a fruit?", "Pick one: red, blue.", "Is the sky green?"]
  options = [["4", "5", "22"], ["apple"], ["red", "blue", "both of them", "neither"], ["yes", "no"]]
  best, scores = predictor.rank_classification(inputs, options, score_eos)
  for inp, opts, row, b in zip(inputs, options, scores, best):
    assert row == pytest.approx(predictor.score([inp] * len(opts), opts, score_eos), abs=1e-4)
    assert b == int(np.argmax(row))
