"""Decoding algorithms against toy `tokens_to_logits` functions whose answers can be computed by brute force."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax import decoding

VOCAB, EOS, LENGTH = 4, 1, 4


def make_toy(seed: int, batch: int, vocab: int = VOCAB, length: int = LENGTH):
  """A toy LM: logits depend on the step, the previous token, the row and a per-row running state in the cache.

  The running state (sum of consumed tokens mod 3) makes beam reordering of the cache observable.
  """
  rng = np.random.RandomState(seed)
  table = jnp.asarray(rng.randn(length + 1, vocab, vocab) * 2.0, jnp.float32)
  state_bias = jnp.asarray(rng.randn(3, vocab) * 2.0, jnp.float32)
  row_bias = jnp.asarray(rng.randn(batch, vocab), jnp.float32)

  def logits_fn(step, prev, state, row):
    return table[step, prev] + state_bias[state % 3] + row_bias[row]

  def make_ttl(times: int):
    rows = jnp.repeat(jnp.arange(batch), times)

    def ttl(ids, cache):
      step, state = cache["index"], cache["state"] + ids[:, 0]
      logits = logits_fn(step, ids[:, 0], state, rows)
      return logits, {"index": step + 1, "state": state}

    return ttl

  cache = {"index": jnp.int32(0), "state": jnp.zeros((batch,), jnp.int32)}
  return logits_fn, make_ttl, cache


def seq_logprob(logits_fn, row, tokens):
  """Sum of log-probs of `tokens` after BOS, unrolled without any cache."""
  prev, state, total = 0, 0, 0.0
  for step, tok in enumerate(tokens):
    state += prev
    lp = jax.nn.log_softmax(logits_fn(step, prev, state, row))
    total += float(lp[tok])
    prev = tok
  return total


def all_hypotheses(vocab, length):
  """Every output: ends at its first EOS, or runs to `length` tokens without EOS."""
  for n in range(1, length + 1):
    for seq in itertools.product(range(vocab), repeat=n):
      if EOS in seq[:-1]:
        continue
      if seq[-1] == EOS or n == length:
        yield list(seq)


def test_greedy_equals_argmax_unrolled():
  batch = 3
  logits_fn, make_ttl, cache = make_toy(0, batch)
  tokens, lp = jax.jit(lambda c: decoding.greedy_decode(
      make_ttl(1), c, batch_size=batch, max_decode_len=LENGTH, eos_id=EOS))(cache)
  for row in range(batch):
    prev, state, want = 0, 0, []
    for step in range(LENGTH):
      state += prev
      prev = int(jnp.argmax(logits_fn(step, prev, state, row)))
      want.append(prev)
      if prev == EOS:
        break
    got = np.asarray(tokens[row, 0]).tolist()
    assert got[:len(want)] == want and all(t == 0 for t in got[len(want):])
    assert lp[row, 0] == pytest.approx(seq_logprob(logits_fn, row, want), abs=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_search_with_enough_beams_is_exhaustive(alpha):
  batch, beams = 2, 48
  logits_fn, make_ttl, cache = make_toy(1, batch)
  tokens, scores = decoding.beam_search(make_ttl(beams), cache, batch_size=batch, max_decode_len=LENGTH,
                                        eos_id=EOS, num_beams=beams, alpha=alpha)
  for row in range(batch):
    ranked = sorted(
        ((seq_logprob(logits_fn, row, h) / float(decoding.length_penalty(len(h), alpha)), h)
         for h in all_hypotheses(VOCAB, LENGTH)), reverse=True)
    for j in range(5):
      want_score, want = ranked[j]
      got = np.asarray(tokens[row, j]).tolist()
      assert got[:len(want)] == want and all(t == 0 for t in got[len(want):]), (alpha, row, j)
      assert float(scores[row, j]) == pytest.approx(want_score, abs=1e-4)


def test_beam_search_one_beam_is_greedy():
  batch = 3
  _, make_ttl, cache = make_toy(2, batch)
  greedy, _ = decoding.greedy_decode(make_ttl(1), cache, batch_size=batch, max_decode_len=LENGTH, eos_id=EOS)
  beam, _ = decoding.beam_search(make_ttl(1), cache, batch_size=batch, max_decode_len=LENGTH, eos_id=EOS,
                                 num_beams=1)
  np.testing.assert_array_equal(greedy, beam)


def test_topk1_and_tiny_topp_sample_greedily():
  batch = 3
  _, make_ttl, cache = make_toy(3, batch)
  greedy, _ = decoding.greedy_decode(make_ttl(1), cache, batch_size=batch, max_decode_len=LENGTH, eos_id=EOS)
  for kwargs in ({"topk": 1}, {"topp": 1e-6}):
    sampled, _ = decoding.temperature_sample(make_ttl(4), cache, batch_size=batch, max_decode_len=LENGTH,
                                             eos_id=EOS, rng=jax.random.PRNGKey(5), temperature=3.0,
                                             num_decodes=4, **kwargs)
    for d in range(4):
      np.testing.assert_array_equal(sampled[:, d], greedy[:, 0])


def test_sampling_follows_the_filtered_distribution():
  vocab, n = 6, 4000
  logits = jnp.asarray([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])

  def ttl(ids, cache):
    return jnp.broadcast_to(logits, (ids.shape[0], vocab)), cache

  def first_tokens(**kw):
    toks, _ = decoding.temperature_sample(ttl, {}, batch_size=1, max_decode_len=1, eos_id=EOS,
                                          rng=jax.random.PRNGKey(0), num_decodes=n, **kw)
    return np.bincount(np.asarray(toks[0, :, 0]), minlength=vocab) / n

  probs = np.asarray(jax.nn.softmax(logits[0] / 0.7))
  np.testing.assert_allclose(first_tokens(temperature=0.7), probs, atol=0.03)
  top3 = np.asarray(jax.nn.softmax(logits[0, :3]))
  np.testing.assert_allclose(first_tokens(topk=3)[:3], top3, atol=0.03)
  assert first_tokens(topk=3)[3:].sum() == 0
  # Nucleus 0.8: p = .53, .20, .12, .07 ... -> the first three reach 0.8 mass, so exactly those stay.
  p = np.asarray(jax.nn.softmax(logits[0]))
  keep = np.cumsum(p) - p < 0.8
  freq = first_tokens(topp=0.8)
  assert freq[~keep].sum() == 0
  np.testing.assert_allclose(freq[keep], p[keep] / p[keep].sum(), atol=0.03)


def test_sampling_stops_at_eos_and_pads_after():
  vocab = 5

  def ttl(ids, cache):
    # EOS gets all the mass from step 2 on.
    logits = jnp.where(cache >= 1, jnp.asarray([-50.0, 50.0, 0, 0, 0]), jnp.asarray([-50.0, -50.0, 1, 1, 1]))
    return jnp.broadcast_to(logits, (ids.shape[0], vocab)), cache + 1

  toks, _ = decoding.temperature_sample(ttl, jnp.int32(0), batch_size=2, max_decode_len=6, eos_id=EOS,
                                        rng=jax.random.PRNGKey(1), num_decodes=3)
  arr = np.asarray(toks)
  assert (arr[:, :, 1] == EOS).all() and (arr[:, :, 2:] == 0).all() and (arr[:, :, 0] >= 2).all()


def test_initial_ids_start_each_row():
  """A prefilled decoder-only model starts each row from its own last prompt token."""
  batch = 2
  logits_fn, make_ttl, cache = make_toy(4, batch)
  start = jnp.asarray([3, 2])
  toks, lp = decoding.greedy_decode(make_ttl(1), cache, batch_size=batch, max_decode_len=LENGTH, eos_id=EOS,
                                    initial_ids=start)
  beams, _ = decoding.beam_search(make_ttl(1), cache, batch_size=batch, max_decode_len=LENGTH, eos_id=EOS,
                                  num_beams=1, initial_ids=start)
  np.testing.assert_array_equal(toks, beams)
  for row in range(batch):
    prev, state, want, total = int(start[row]), 0, [], 0.0
    for step in range(LENGTH):
      state += prev
      step_lp = jax.nn.log_softmax(logits_fn(step, prev, state, row))
      prev = int(jnp.argmax(step_lp))
      total += float(step_lp[prev])
      want.append(prev)
      if prev == EOS:
        break
    assert np.asarray(toks[row, 0]).tolist()[:len(want)] == want
    assert float(lp[row, 0]) == pytest.approx(total, abs=1e-4)


def test_bad_arguments_are_rejected():
  _, make_ttl, cache = make_toy(0, 1)
  with pytest.raises(ValueError, match="rng"):
    decoding.temperature_sample(make_ttl(1), cache, batch_size=1, max_decode_len=2, eos_id=EOS)
  with pytest.raises(ValueError, match="alpha"):
    decoding.beam_search(make_ttl(1), cache, batch_size=1, max_decode_len=2, eos_id=EOS, num_beams=1, alpha=-1)
  with pytest.raises(ValueError, match="initial_ids"):
    decoding.greedy_decode(make_ttl(1), cache, batch_size=1, max_decode_len=2, eos_id=EOS,
                           initial_ids=jnp.ones((2,), jnp.int32))
