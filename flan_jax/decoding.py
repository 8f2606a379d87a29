"""Decoding algorithms over a cached `tokens_to_logits` function: greedy, temperature sampling, beam search.

Every algorithm runs as one `lax.while_loop`, so a whole decode is a single XLA computation with no host round
trip per token. The model is seen only through

    tokens_to_logits(ids: int32[N, 1], cache) -> (logits: float[N, V], cache)

which consumes the token at the current position and returns the next-token logits and the updated cache (the
model keeps its own position counter inside the cache, as T5X's flax 'cache' collection does). Position 0 holds
`initial_ids` (BOS = 0 by default; a prefilled decoder-only model passes each row's last prompt token, whose cache
index then differs per row); positions 1..max_decode_len hold the output.

Cache leaves whose leading dimension is the batch are expanded for several decodes / beams and reordered with
the beams; other leaves (e.g. a scalar `cache_index`) are shared by every row.

Stop sequences (`stop_tokens`, int32[batch, S, K], see `flan_jax.stopping`): a row also ends, as at EOS, once its
generated tokens (never the start token) end with one of its S token sequences, each right-aligned in K slots and
padded with NO_TOKEN. The stop tokens stay in the output; the text is cut on the host.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

NEG_INF = -1.0e7
PAD_ID = 0
NO_TOKEN = -1  # pads stop tables; no generated id equals it
TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
  """T5X/GNMT's beam-search length normaliser ((5 + length) / 6) ** alpha."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def expand_batch(tree: Any, batch_size: int, times: int) -> Any:
  """Repeats every leaf whose leading dim is `batch_size` `times` times, row by row ([b0,b0,b1,b1,...])."""
  if times == 1:
    return tree

  def expand(x):
    if getattr(x, "ndim", 0) >= 1 and x.shape[0] == batch_size:
      return jnp.repeat(x, times, axis=0)
    return x

  return jax.tree.map(expand, tree)


def _gather_beams(tree: Any, beam_idx: jax.Array, batch_size: int, num_beams: int) -> Any:
  """Reorders leaves with a leading [batch * beams] dim by `beam_idx` [batch, beams] (indices into beams)."""
  flat = (beam_idx + jnp.arange(batch_size)[:, None] * num_beams).reshape(-1)

  def gather(x):
    if getattr(x, "ndim", 0) >= 1 and x.shape[0] == batch_size * num_beams:
      return jnp.take(x, flat, axis=0)
    return x

  return jax.tree.map(gather, tree)


def _initial_buffer(initial_ids: jax.Array | None, rows: int, length: int) -> jax.Array:
  seqs = jnp.zeros((rows, length + 1), jnp.int32)
  if initial_ids is None:
    return seqs
  initial_ids = jnp.asarray(initial_ids, jnp.int32)
  if initial_ids.shape != (rows,):
    raise ValueError(f"initial_ids must have shape ({rows},), got {initial_ids.shape}")
  return seqs.at[:, 0].set(initial_ids)


def stop_hit(seqs: jax.Array, pos: jax.Array, stop_tokens: jax.Array) -> jax.Array:
  """bool[rows]: whether the tokens of `seqs` [rows, 1 + length] at positions 1..pos end with one of the row's
  stop sequences `stop_tokens` [rows, S, K] (right-aligned, NO_TOKEN-padded; an all-NO_TOKEN row never stops)."""
  k = stop_tokens.shape[-1]
  positions = pos - k + 1 + jnp.arange(k)
  window = jnp.take(seqs, jnp.clip(positions, 0, seqs.shape[1] - 1), axis=1)
  window = jnp.where(positions >= 1, window, NO_TOKEN - 1)  # before the output: matches nothing, not even padding
  padding = stop_tokens == NO_TOKEN
  matches = jnp.all((window[:, None, :] == stop_tokens) | padding, axis=-1) & ~jnp.all(padding, axis=-1)
  return jnp.any(matches, axis=-1)


def _filter_logits(logits: jax.Array, topk: int, topp: float) -> jax.Array:
  """Masks logits outside the top-k and outside the smallest nucleus with probability mass >= topp."""
  if topk:
    kth = jax.lax.top_k(logits, topk)[0][:, -1:]
    logits = jnp.where(logits < kth, NEG_INF, logits)
  if topp:
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # A token stays if the mass strictly before it is below topp, so the top token always stays.
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep = mass_before < topp
    cutoff = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < cutoff, NEG_INF, logits)
  return logits


def temperature_sample(
    tokens_to_logits: TokensToLogits,
    cache: Any,
    *,
    batch_size: int,
    max_decode_len: int,
    eos_id: int,
    rng: jax.Array | None = None,
    temperature: float = 1.0,
    topk: int = 0,
    topp: float = 0.0,
    num_decodes: int = 1,
    initial_ids: jax.Array | None = None,
    stop_tokens: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Samples `num_decodes` sequences per input; temperature 0 is greedy (argmax).

  `cache`, `initial_ids` and `stop_tokens` are for `batch_size` rows; `tokens_to_logits` must already see inputs
  expanded to batch_size * num_decodes rows in the order [b0 d0, b0 d1, ..., b1 d0, ...] (see `expand_batch`).
  Returns tokens int32[batch, num_decodes, max_decode_len] (EOS or stop kept, zeros after it) and the summed
  log-probability of the generated tokens under the model's unfiltered, untempered distribution.
  """
  if temperature < 0:
    raise ValueError(f"temperature must be >= 0, got {temperature}")
  if not 0.0 <= topp <= 1.0:
    raise ValueError(f"topp must be in [0, 1], got {topp}")
  if temperature > 0 and rng is None:
    raise ValueError("sampling with temperature > 0 needs an rng")
  rows = batch_size * num_decodes
  cache = expand_batch(cache, batch_size, num_decodes)
  if initial_ids is not None:
    initial_ids = jnp.repeat(jnp.asarray(initial_ids, jnp.int32), num_decodes, axis=0)
  if stop_tokens is not None:
    stop_tokens = jnp.repeat(jnp.asarray(stop_tokens, jnp.int32), num_decodes, axis=0)
  seqs = _initial_buffer(initial_ids, rows, max_decode_len)
  rng = jax.random.PRNGKey(0) if rng is None else rng

  def cond(state):
    i, _, _, finished, _, _ = state
    return (i < max_decode_len) & ~jnp.all(finished)

  def body(state):
    i, seqs, cache, finished, logprob, rng = state
    ids = jax.lax.dynamic_slice_in_dim(seqs, i, 1, axis=1)
    logits, cache = tokens_to_logits(ids, cache)
    logits = logits.astype(jnp.float32)
    rng, step_rng = jax.random.split(rng)
    if temperature == 0:
      sampled = jnp.argmax(logits, axis=-1)
    else:
      filtered = _filter_logits(logits / temperature, topk, topp)
      sampled = jax.random.categorical(step_rng, filtered, axis=-1)
    nxt = jnp.where(finished, PAD_ID, sampled.astype(jnp.int32))
    token_lp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), nxt[:, None], axis=-1)[:, 0]
    logprob = logprob + jnp.where(finished, 0.0, token_lp)
    finished = finished | (nxt == eos_id)
    seqs = jax.lax.dynamic_update_slice_in_dim(seqs, nxt[:, None], i + 1, axis=1)
    if stop_tokens is not None:
      finished = finished | stop_hit(seqs, i + 1, stop_tokens)
    return i + 1, seqs, cache, finished, logprob, rng

  init = (jnp.int32(0), seqs, cache, jnp.zeros((rows,), bool), jnp.zeros((rows,), jnp.float32), rng)
  _, seqs, _, _, logprob, _ = jax.lax.while_loop(cond, body, init)
  return (seqs[:, 1:].reshape(batch_size, num_decodes, max_decode_len),
          logprob.reshape(batch_size, num_decodes))


greedy_decode = functools.partial(temperature_sample, temperature=0.0)


def beam_search(
    tokens_to_logits: TokensToLogits,
    cache: Any,
    *,
    batch_size: int,
    max_decode_len: int,
    eos_id: int,
    num_beams: int,
    alpha: float = 0.6,
    initial_ids: jax.Array | None = None,
    stop_tokens: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Beam search with T5X's length penalty; returns the `num_beams` best sequences, best first.

  A hypothesis ends at EOS, at one of its input's stop sequences (`stop_tokens` [batch, S, K]) or at
  max_decode_len (then it is kept unterminated). Its score is its summed log-prob divided by
  length_penalty(number of generated tokens, EOS included). `tokens_to_logits` must see inputs
  expanded to batch_size * num_beams rows, beam-major within each example (see `expand_batch`).
  Returns tokens int32[batch, num_beams, max_decode_len] and scores float32[batch, num_beams].
  """
  if alpha < 0:
    raise ValueError(f"alpha must be >= 0 (the early-stopping bound relies on it), got {alpha}")
  b, k, length = batch_size, num_beams, max_decode_len
  cache = expand_batch(cache, b, k)
  start = _initial_buffer(initial_ids, b, length)
  if stop_tokens is not None:
    stop_tokens = jnp.asarray(stop_tokens, jnp.int32)
  best_possible_lp = length_penalty(length, alpha)

  def cond(state):
    i, _, alive_lp, _, fin_scores, fin_flags, _ = state
    best_possible = jnp.max(alive_lp, axis=1) / best_possible_lp
    worst_finished = jnp.min(jnp.where(fin_flags, fin_scores, NEG_INF), axis=1)
    done = jnp.all(fin_flags, axis=1) & (best_possible <= worst_finished)
    return (i < length) & ~jnp.all(done)

  def body(state):
    i, alive, alive_lp, fin_seqs, fin_scores, fin_flags, cache = state
    ids = jax.lax.dynamic_slice_in_dim(alive, i, 1, axis=2).reshape(b * k, 1)
    logits, cache = tokens_to_logits(ids, cache)
    vocab = logits.shape[-1]
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(b, k, vocab)
    cand = (alive_lp[:, :, None] + log_probs).reshape(b, k * vocab)
    top_lp, top_idx = jax.lax.top_k(cand, 2 * k)
    top_beam, top_tok = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
    top_seqs = jnp.take_along_axis(alive, top_beam[:, :, None], axis=1)
    top_seqs = jax.lax.dynamic_update_slice_in_dim(top_seqs, top_tok[:, :, None], i + 1, axis=2)

    # Candidates ending in EOS or a stop sequence (or hitting the length limit) compete with the finished set.
    stopped = top_tok == eos_id
    if stop_tokens is not None:
      hit = stop_hit(top_seqs.reshape(b * 2 * k, -1), i + 1, jnp.repeat(stop_tokens, 2 * k, axis=0))
      stopped = stopped | hit.reshape(b, 2 * k)
    ends = (stopped | (i + 1 == length)) & (top_lp > NEG_INF / 2)
    new_scores = jnp.where(ends, top_lp / length_penalty(i + 1, alpha), NEG_INF)
    fin_scores, keep = jax.lax.top_k(jnp.concatenate([fin_scores, new_scores], axis=1), k)
    fin_flags = jnp.take_along_axis(jnp.concatenate([fin_flags, ends], axis=1), keep, axis=1)
    fin_seqs = jnp.take_along_axis(jnp.concatenate([fin_seqs, top_seqs], axis=1), keep[:, :, None], axis=1)

    # The rest stay alive; the cache follows the beams they extend.
    alive_lp, keep = jax.lax.top_k(jnp.where(stopped, NEG_INF, top_lp), k)
    alive = jnp.take_along_axis(top_seqs, keep[:, :, None], axis=1)
    cache = _gather_beams(cache, jnp.take_along_axis(top_beam, keep, axis=1), b, k)
    return i + 1, alive, alive_lp, fin_seqs, fin_scores, fin_flags, cache

  alive_lp = jnp.tile(jnp.asarray([0.0] + [NEG_INF] * (k - 1), jnp.float32), (b, 1))
  init = (jnp.int32(0), jnp.repeat(start[:, None, :], k, axis=1), alive_lp,
          jnp.zeros((b, k, length + 1), jnp.int32), jnp.full((b, k), NEG_INF, jnp.float32),
          jnp.zeros((b, k), bool), cache)
  _, _, _, fin_seqs, fin_scores, _, _ = jax.lax.while_loop(cond, body, init)
  return fin_seqs[:, :, 1:], fin_scores


def strip_after_eos(tokens: np.ndarray, eos_id: int) -> list[int]:
  """Host-side: a decoded row up to (not including) its first EOS; a row without EOS ran to the length limit or
  ended at a stop sequence (the padding after that is dropped)."""
  row = np.asarray(tokens).tolist()
  if eos_id in row:
    return row[:row.index(eos_id)]
  while row and row[-1] == PAD_ID:
    row.pop()
  return row
