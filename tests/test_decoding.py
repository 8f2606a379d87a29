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


def test_stop_hit_sees_only_generated_tokens():
  # Row 0 generated [5, 6, 7] after start token 4; row 1 generated [6] so far.
  seqs = jnp.asarray([[4, 5, 6, 7], [5, 6, 0, 0]], jnp.int32)
  pad = decoding.NO_TOKEN

  def hit(pos, stops):
    return np.asarray(decoding.stop_hit(seqs, jnp.int32(pos), jnp.asarray(stops, jnp.int32))).tolist()

  assert hit(3, [[[pad, 6, 7]], [[pad, 6, 7]]]) == [True, False]
  assert hit(3, [[[5, 6, 7]], [[pad, pad, 6]]]) == [True, False]   # row 1's last token at pos 3 is 0
  assert hit(1, [[[pad, pad, 5]], [[pad, pad, 6]]]) == [True, True]
  # [5, 6] would need the start token 5 of row 1: the start token is never part of a stop.
  assert hit(1, [[[pad, 4, 5]], [[pad, 5, 6]]]) == [False, False]
  assert hit(2, [[[pad, pad, pad], [pad, 5, 6]], [[pad, pad, pad], [pad, pad, pad]]]) == [True, False]


def _stops(rows):
  """Right-aligned NO_TOKEN-padded [batch, S, K] table of per-row stop sequences."""
  num = max(len(r) for r in rows)
  k = max(len(s) for r in rows for s in r)
  table = np.full((len(rows), num, k), decoding.NO_TOKEN, np.int32)
  for b, row in enumerate(rows):
    for j, s in enumerate(row):
      table[b, j, k - len(s):] = s
  return jnp.asarray(table)


def _ends(seq, stops, eos=EOS):
  return seq[-1] == eos or any(len(seq) >= len(s) and list(seq[-len(s):]) == list(s) for s in stops)


def test_greedy_stops_at_each_rows_stop_sequences():
  batch, length = 3, 6
  logits_fn, make_ttl, cache = make_toy(5, batch, length=length)
  free, _ = decoding.greedy_decode(make_ttl(1), cache, batch_size=batch, max_decode_len=length, eos_id=-1)
  free = np.asarray(free[:, 0])
  # Each row stops at a pair of tokens its free-running decode writes at positions 2-3; row 2 has a stop it never
  # writes, so it runs to the limit.
  rows = [[tuple(free[0, 2:4])], [(free[1, 3],), tuple(free[1, 2:4])], [(VOCAB + 7,)]]
  tokens, lp = decoding.greedy_decode(make_ttl(1), cache, batch_size=batch, max_decode_len=length, eos_id=-1,
                                      stop_tokens=_stops(rows))
  for row in range(batch):
    want = []
    for tok in free[row]:
      want.append(int(tok))
      if _ends(want, rows[row], eos=None):
        break
    got = np.asarray(tokens[row, 0]).tolist()
    assert got[:len(want)] == want and all(t == 0 for t in got[len(want):]), row
    assert float(lp[row, 0]) == pytest.approx(seq_logprob(logits_fn, row, want), abs=1e-4)
    # Rows 0 and 1 stop early, and their free-running decodes go on with tokens that are not padding.
    assert (len(want) < length and free[row, len(want):].any()) == (row < 2), row


def test_samples_stop_at_their_first_stop_sequence():
  batch, length, n = 2, 8, 6
  _, make_ttl, cache = make_toy(6, batch, length=length)
  rows = [[(2,), (3, 3)], [(0, 2)]]
  tokens, _ = decoding.temperature_sample(make_ttl(n), cache, batch_size=batch, max_decode_len=length, eos_id=EOS,
                                          rng=jax.random.PRNGKey(2), temperature=1.5, num_decodes=n,
                                          stop_tokens=_stops(rows))
  stopped = 0
  for row in range(batch):
    for d in range(n):
      seq = np.asarray(tokens[row, d]).tolist()
      cut = next((i + 1 for i in range(length) if _ends(seq[:i + 1], rows[row])), length)
      assert all(t == 0 for t in seq[cut:]), (row, d, seq)
      stopped += cut < length
  assert stopped  # the toy model does write these stops, so some samples must end early


def all_hypotheses_with_stops(vocab, length, stops):
  """Every output: ends at its first EOS or stop, or runs to `length` tokens without one."""
  for n in range(1, length + 1):
    for seq in itertools.product(range(vocab), repeat=n):
      if any(_ends(seq[:i], stops) for i in range(1, n)):
        continue
      if _ends(seq, stops) or n == length:
        yield list(seq)


def test_beam_search_with_stops_is_exhaustive():
  batch, beams, alpha = 2, 48, 0.6
  rows = [[(2, 3)], [(3,), (0, 2)]]
  logits_fn, make_ttl, cache = make_toy(7, batch)
  tokens, scores = decoding.beam_search(make_ttl(beams), cache, batch_size=batch, max_decode_len=LENGTH,
                                        eos_id=EOS, num_beams=beams, alpha=alpha, stop_tokens=_stops(rows))
  for row in range(batch):
    ranked = sorted(
        ((seq_logprob(logits_fn, row, h) / float(decoding.length_penalty(len(h), alpha)), h)
         for h in all_hypotheses_with_stops(VOCAB, LENGTH, rows[row])), reverse=True)
    for j in range(5):
      want_score, want = ranked[j]
      got = np.asarray(tokens[row, j]).tolist()
      assert got[:len(want)] == want and all(t == 0 for t in got[len(want):]), (row, j)
      assert float(scores[row, j]) == pytest.approx(want_score, abs=1e-4)


def test_strip_after_eos_drops_the_padding_after_a_stop():
  assert decoding.strip_after_eos(np.asarray([5, 6, 1, 0]), EOS) == [5, 6]
  assert decoding.strip_after_eos(np.asarray([5, 6, 7, 0, 0]), EOS) == [5, 6, 7]
  assert decoding.strip_after_eos(np.asarray([5, 0, 7]), EOS) == [5, 0, 7]
