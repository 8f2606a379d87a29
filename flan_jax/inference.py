"""Model-level inference: batched, jitted decoding and scoring for the encoder-decoder and decoder-only models.

Token level: `predict_batch(model, params, batch, config, rng)` and `score_batch(model, params, batch)`.
Text level: `Predictor` tokenizes, pads to a few bucketed shapes (so XLA compiles few programs), batches, and
offers `predict` (optionally with stop sequences, `flan_jax.stopping`), `score` and `rank_classification` (score
every option, take the best). Decoded text is SentencePiece's `DecodeIds` of the ids before EOS, whitespace
included (as seqio and HF decode).

Scoring convention: T5X scores a target with its EOS (`score_eos=True`, the default here); harnesses that score a
continuation without it (`score_eos=False`) give different totals and may rank options differently.

Batches use the seqio/T5X feature names. Decoder-only models are prefix LMs: the prompt is the inputs, the
decode continues it; scoring uses T5X's PrefixLM layout (inputs + targets in one row, loss on targets only).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flan_jax import decoding, stopping
from flan_jax.data.seqio_adapter import vocab as vocab_lib
from flan_jax.models import model as model_lib
from flan_jax.models import decoder_only, losses, t5

METHODS = ("greedy", "sample", "beam")


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
  method: str = "greedy"
  max_decode_length: int = 64
  num_decodes: int = 1  # samples per input, or beams (the best beam comes first)
  temperature: float = 1.0
  topk: int = 0
  topp: float = 0.0
  alpha: float = 0.6
  eos_id: int = vocab_lib.EOS_ID  # -1 never stops early (fixed-length benchmarks)

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"decode method must be one of {METHODS}, got {self.method!r}")
    if self.max_decode_length < 1 or self.num_decodes < 1:
      raise ValueError(f"max_decode_length and num_decodes must be >= 1, got {self}")


def unscanned(model: model_lib.BaseModel, params: dict) -> tuple[model_lib.BaseModel, dict]:
  """Decoding reorders cache rows along axis 0, so scanned layers (a leading layers axis) are unrolled first."""
  if not getattr(model.config, "scan_layers", False):
    return model, params
  config = dataclasses.replace(model.config, scan_layers=False)
  if isinstance(model, model_lib.EncoderDecoderModel):
    return model_lib.EncoderDecoderModel(config), t5.unscan_params(params, model.config)
  return model_lib.DecoderOnlyModel(config), decoder_only.unscan_params(params, model.config)


def _zero_cache(module, *args, **kwargs) -> Any:
  shapes = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])


def _run_decoder(config: DecodeConfig, ttl, cache, batch_size: int, rng, initial_ids=None, stop_tokens=None):
  common = dict(batch_size=batch_size, max_decode_len=config.max_decode_length, eos_id=config.eos_id,
                initial_ids=initial_ids, stop_tokens=stop_tokens)
  if config.method == "beam":
    return decoding.beam_search(ttl, cache, num_beams=config.num_decodes, alpha=config.alpha, **common)
  temperature = 0.0 if config.method == "greedy" else config.temperature
  return decoding.temperature_sample(ttl, cache, rng=rng, temperature=temperature, topk=config.topk,
                                     topp=config.topp, num_decodes=config.num_decodes, **common)


def _cross_attention_kv(store: dict[str, Any], record: bool):
  """A flax method interceptor for the key/value projections of the decoder's cross-attention.

  They depend only on the encoder output, yet a T5X-style decode step recomputes them for every token (for
  Flan-T5-small at 512 input tokens, ~25 GFLOP per step against <1 for the rest). Recording them once before the
  loop and replaying them inside it leaves the model's own code path otherwise untouched.
  """

  def interceptor(next_fun, args, kwargs, context):
    path = context.module.path
    if (context.method_name == "__call__" and len(path) >= 2 and path[-2] == "encoder_decoder_attention"
        and path[-1] in ("key", "value")):
      name = "/".join(path)
      if record:
        # Kept as [b, heads, d, length], the layout XLA:CPU's attention dots read (the barrier keeps XLA from
        # moving the transpose back): stored as projected, [b, length, heads, d], every step would write a
        # transposed copy of every layer's keys and values (~2.6 ms each at b8, 512 inputs: 42 ms a step).
        store[name] = jax.lax.optimization_barrier(jnp.transpose(next_fun(*args, **kwargs), (0, 2, 3, 1)))
      return jnp.transpose(store[name], (0, 3, 1, 2))
    return next_fun(*args, **kwargs)

  return interceptor


def _predict_enc_dec(model, params, batch, config: DecodeConfig, rng):
  module, enc = model.module, batch["encoder_input_tokens"]
  b, n, length = enc.shape[0], config.num_decodes, config.max_decode_length
  encoded = module.apply({"params": params}, enc, enable_dropout=False, method="encode")
  flat_encoded, flat_enc = jnp.repeat(encoded, n, axis=0), jnp.repeat(enc, n, axis=0)
  dummy = jnp.ones((b * n, length), jnp.int32)
  # Built for all b * n rows, so `decoding.expand_batch` leaves it alone (its batch leaves have b * n rows).
  cache = _zero_cache(module, flat_enc, dummy, dummy, enable_dropout=False, decode=True)

  def step(ids, cache):
    return module.apply({"params": params, "cache": cache}, flat_encoded, flat_enc, ids, ids,
                        enable_dropout=False, decode=True, max_decode_length=length, method="decode",
                        mutable=["cache"])

  cross_kv: dict[str, Any] = {}
  with nn.intercept_methods(_cross_attention_kv(cross_kv, record=True)):
    step(jnp.zeros((b * n, 1), jnp.int32), cache)  # only records the projections; its outputs are dropped
  if len(cross_kv) != 2 * model.config.num_decoder_layers:
    raise RuntimeError(f"found cross-attention projections {sorted(cross_kv)}; expected key and value of "
                       f"{model.config.num_decoder_layers} decoder layers (did the T5 module names change?)")

  def ttl(ids, cache):
    with nn.intercept_methods(_cross_attention_kv(cross_kv, record=False)):
      logits, state = step(ids, cache)
    return logits[:, 0], state["cache"]

  return _run_decoder(config, ttl, cache, b, rng, stop_tokens=batch.get("stop_tokens"))


def _predict_dec_only(model, params, batch, config: DecodeConfig, rng):
  """Prefix-LM continuation of `prompt_tokens` [b, P] (right-padded with 0).

  The prefill runs [BOS, p_1..p_m] with bidirectional attention over all of it, exactly as scoring does, and
  leaves each row's write index at m; the first decode step feeds p_m again at position m, recomputing the same
  key/value there and giving the first new token's logits.
  """
  module, prompt = model.module, batch["prompt_tokens"]
  b, n = prompt.shape[0], config.num_decodes
  lengths = jnp.sum(prompt != 0, axis=1).astype(jnp.int32)
  total = prompt.shape[1] + 1 + config.max_decode_length
  tokens = jnp.zeros((b, total), jnp.int32).at[:, 1:1 + prompt.shape[1]].set(prompt)
  causal = (jnp.arange(total)[None, :] <= lengths[:, None]).astype(jnp.int32)
  flat = lambda x: jnp.repeat(x, n, axis=0)
  _, state = module.apply({"params": params}, flat(tokens), flat(jnp.maximum(tokens, 1)),
                          decoder_causal_attention=flat(causal), enable_dropout=False, prefill=True,
                          prefill_lengths=flat(lengths), mutable=["cache"])
  cache = state["cache"]  # the prefill leaves zeros past each row's prompt (layers.py's cache contract)
  last = jnp.take_along_axis(tokens, lengths[:, None], axis=1)[:, 0]

  def ttl(ids, cache):
    logits, state = module.apply({"params": params, "cache": cache}, ids, ids, enable_dropout=False, decode=True,
                                 max_decode_length=total, mutable=["cache"])
    return logits[:, 0], state["cache"]

  return _run_decoder(config, ttl, cache, b, rng, initial_ids=last, stop_tokens=batch.get("stop_tokens"))


@functools.partial(jax.jit, static_argnums=(0, 3))
def _predict_jit(model, params, batch, config, rng):
  if isinstance(model, model_lib.EncoderDecoderModel):
    return _predict_enc_dec(model, params, batch, config, rng)
  return _predict_dec_only(model, params, batch, config, rng)


def predict_batch(model: model_lib.BaseModel, params: dict, batch: dict, config: DecodeConfig,
                  rng: jax.Array | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Decodes a batch: `encoder_input_tokens` (encoder-decoder) or `prompt_tokens` (decoder-only), [b, len], and
  optionally `stop_tokens` [b, S, K] (each row's stop sequences, see `decoding.stop_hit`).

  Returns tokens [b, num_decodes, max_decode_length] and scores [b, num_decodes] (summed log-probs; for beam
  search the length-normalised beam scores).
  """
  if config.method == "sample" and rng is None:
    raise ValueError("sampling needs an rng")
  rng = jax.random.PRNGKey(0) if rng is None else rng
  tokens, scores = _predict_jit(model, params, {k: jnp.asarray(v) for k, v in batch.items()}, config, rng)
  return np.asarray(tokens), np.asarray(scores)


@functools.partial(jax.jit, static_argnums=0)
def _score_jit(model, params, batch):
  return model.score_batch(params, batch)


def score_batch(model: model_lib.BaseModel, params: dict, batch: dict) -> np.ndarray:
  """[b] summed log-likelihood of the targets (weighted by `decoder_loss_weights`)."""
  return np.asarray(_score_jit(model, params, {k: jnp.asarray(v) for k, v in batch.items()}))


@functools.partial(jax.jit, static_argnums=0)
def _score_options_jit(model, params, encoder_tokens, option_of, decoder_input, decoder_target):
  """[rows] summed log-likelihood of each option row given its prompt (row `option_of[r]` of `encoder_tokens`);
  every prompt is encoded once, however many options it has."""
  module, variables = model.module, {"params": params}
  encoded = module.apply(variables, encoder_tokens, enable_dropout=False, method=module.encode)
  logits = module.apply(variables, encoded[option_of], encoder_tokens[option_of], decoder_input, decoder_target,
                        enable_dropout=False, method=module.decode)
  token_ll = -losses.sparse_cross_entropy_with_logits(logits, decoder_target, 0.0)[0]
  return jnp.sum(token_ll * (decoder_target > 0).astype(token_ll.dtype), axis=-1)


def _bucket(length: int, minimum: int = 16) -> int:
  """Pads a length to the next power of two or 1.5x one (..., 512, 768, 1024, ...): a run compiles few shapes and
  pads at most a third (MMLU's 5-shot prompts, ~600 tokens, take 768 rather than 1024)."""
  power = 1 << max(0, int(length) - 1).bit_length()
  return max(minimum, power * 3 // 4 if power >= 4 and length <= power * 3 // 4 else power)


def _pad_rows(rows: Sequence[Sequence[int]], length: int, batch_size: int) -> np.ndarray:
  out = np.zeros((batch_size, length), np.int32)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row
  return out


class Predictor:
  """Text-level predict / score / rank classification with a model, its params and the T5 vocabulary."""

  def __init__(self, model: model_lib.BaseModel, params: dict, *, batch_size: int = 8,
               max_input_length: int = 2048, vocabulary=None):
    self.model, self.params = unscanned(model, params)
    self.batch_size = batch_size
    self.max_input_length = max_input_length
    self.vocab = vocabulary or vocab_lib.get_vocabulary()
    self.processor = stopping.sentencepiece_of(self.vocab)
    self.encoder_decoder = isinstance(self.model, model_lib.EncoderDecoderModel)
    self.truncated = 0

  @functools.cached_property
  def stop_tokenizer(self) -> stopping.StopTokenizer:
    return stopping.StopTokenizer(self.processor)

  def _encode_input(self, text: str) -> list[int]:
    ids = list(self.vocab.encode(text))
    if self.encoder_decoder:
      ids.append(vocab_lib.EOS_ID)
    if len(ids) > self.max_input_length:
      # Few-shot prompts keep their end (the question being asked); the count is reported to the user.
      self.truncated += 1
      print(f"warning: input of {len(ids)} tokens truncated to its last {self.max_input_length}: "
            f"{text[:60]!r}...", file=sys.stderr)
      ids = ids[-self.max_input_length:]
    return ids

  def _batches(self, n: int):
    for start in range(0, n, self.batch_size):
      yield start, min(n, start + self.batch_size)

  def predict_scored(self, inputs: Sequence[str], config: DecodeConfig, rng: jax.Array | None = None,
                     stop_sequences: Sequence[Sequence[str]] | None = None) -> list[list[tuple[list[int], float]]]:
    """Per input, `num_decodes` (ids cut at EOS, the decode's score): a row ending at one of its input's
    `stop_sequences` keeps the stop's tokens; the score is the summed log-prob of the generated tokens, EOS
    included (beam search: its length-normalised score)."""
    if stop_sequences is not None and len(stop_sequences) != len(inputs):
      raise ValueError(f"{len(inputs)} inputs but {len(stop_sequences)} lists of stop sequences")
    encoded = [self._encode_input(t) for t in inputs]
    key = "encoder_input_tokens" if self.encoder_decoder else "prompt_tokens"
    out = []
    for start, end in self._batches(len(encoded)):
      rows = encoded[start:end]
      batch = {key: _pad_rows(rows, _bucket(max(len(r) for r in rows)), self.batch_size)}
      stops = self.stop_tokenizer.table(stop_sequences[start:end], self.batch_size) if stop_sequences else None
      if stops is not None:
        batch["stop_tokens"] = stops
      step_rng = None if rng is None else jax.random.fold_in(rng, start)
      tokens, scores = predict_batch(self.model, self.params, batch, config, step_rng)
      for i in range(end - start):
        out.append([(decoding.strip_after_eos(t, vocab_lib.EOS_ID), float(score))
                    for t, score in zip(tokens[i], scores[i])])
    return out

  def predict_ids(self, inputs: Sequence[str], config: DecodeConfig, rng: jax.Array | None = None,
                  stop_sequences: Sequence[Sequence[str]] | None = None) -> list[list[list[int]]]:
    """Per input, `num_decodes` decoded id lists (`predict_scored` without the scores)."""
    return [[ids for ids, _ in row] for row in self.predict_scored(inputs, config, rng, stop_sequences)]

  def decode(self, ids: Sequence[int]) -> str:
    """SentencePiece's DecodeIds of `ids` up to EOS, as seqio decodes: bare "▁" pieces are spaces, extra ids
    their pieces; ids past the vocabulary (the rows a model pads its embedding with) are the unknown piece."""
    ids = [int(i) for i in ids]
    ids = ids[:ids.index(vocab_lib.EOS_ID)] if vocab_lib.EOS_ID in ids else ids
    size, unk = self.processor.get_piece_size(), self.processor.unk_id()
    return self.processor.decode_ids([i if 0 <= i < size else unk for i in ids])

  def predict(self, inputs: Sequence[str], config: DecodeConfig, rng: jax.Array | None = None,
              stop_sequences: Sequence[Sequence[str]] | None = None) -> list[list[str]]:
    """Per input, `num_decodes` decoded strings, raw: a stop sequence that ended a row is still in its text
    (`stopping.cut` removes it)."""
    return [[self.decode(ids) for ids in row] for row in self.predict_ids(inputs, config, rng, stop_sequences)]

  def _score_batch_arrays(self, pairs: Sequence[tuple[list[int], list[int]]]) -> dict[str, np.ndarray]:
    if self.encoder_decoder:
      enc_len = _bucket(max(len(i) for i, _ in pairs))
      dec_len = _bucket(max(len(t) for _, t in pairs))
      targets = _pad_rows([t for _, t in pairs], dec_len, self.batch_size)
      inputs = np.zeros_like(targets)
      inputs[:, 1:] = targets[:, :-1]
      return {"encoder_input_tokens": _pad_rows([i for i, _ in pairs], enc_len, self.batch_size),
              "decoder_input_tokens": inputs, "decoder_target_tokens": targets,
              "decoder_loss_weights": (targets > 0).astype(np.int32)}
    length = _bucket(max(len(i) + len(t) for i, t in pairs))
    targets = _pad_rows([i + t for i, t in pairs], length, self.batch_size)
    inputs = np.zeros_like(targets)
    inputs[:, 1:] = targets[:, :-1]
    causal = np.zeros_like(targets)
    weights = np.zeros_like(targets)
    for r, (i, t) in enumerate(pairs):
      causal[r, :len(i) + 1] = 1  # T5X PrefixLM: the inputs, shifted right, plus BOS
      weights[r, len(i):len(i) + len(t)] = 1
    return {"decoder_input_tokens": inputs, "decoder_target_tokens": targets,
            "decoder_causal_attention": causal, "decoder_loss_weights": weights}

  def score(self, inputs: Sequence[str], targets: Sequence[str], score_eos: bool = True) -> list[float]:
    """Summed log-likelihood of each target given its input, the target's EOS included when `score_eos` (T5X)."""
    if len(inputs) != len(targets):
      raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
    eos = [vocab_lib.EOS_ID] if score_eos else []
    return self.score_ids(inputs, [list(self.vocab.encode(t)) + eos for t in targets])

  def _score_options(self, inputs: Sequence[str], targets: Sequence[Sequence[Sequence[int]]]) -> list[float]:
    """Every option's score, flattened in input order, `batch_size` inputs (each encoded once) per call."""
    out: list[float] = []
    for start, end in self._batches(len(inputs)):
      arrays = _option_rows([self._encode_input(t) for t in inputs[start:end]], targets[start:end], self.batch_size)
      scores = _score_options_jit(self.model, self.params, *(jnp.asarray(arrays[k]) for k in (
          "encoder_tokens", "option_of", "decoder_input", "decoder_target")))
      out.extend(float(s) for s in np.asarray(scores)[:sum(len(t) for t in targets[start:end])])
    return out

  def score_ids(self, inputs: Sequence[str], target_ids: Sequence[Sequence[int]]) -> list[float]:
    """Summed log-likelihood of each target, given as token ids (scored as they are, EOS only where present)."""
    pairs = [(self._encode_input(i), list(t)) for i, t in zip(inputs, target_ids)]
    out: list[float] = []
    for start, end in self._batches(len(pairs)):
      scores = score_batch(self.model, self.params, self._score_batch_arrays(pairs[start:end]))
      out.extend(float(s) for s in scores[:end - start])
    return out

  def rank_classification(self, inputs: Sequence[str], options: Sequence[Sequence[str]], score_eos: bool = True
                          ) -> tuple[list[int], list[list[float]]]:
    """Scores every (input, option) pair as `score` does; returns each input's best option index and all scores.
    An encoder-decoder encodes each input once and scores all its options against that encoder output."""
    eos = [vocab_lib.EOS_ID] if score_eos else []
    targets = [[list(self.vocab.encode(o)) + eos for o in opts] for opts in options]
    if self.encoder_decoder:
      flat = self._score_options(inputs, targets)
    else:
      flat = self.score_ids([inp for inp, opts in zip(inputs, targets) for _ in opts],
                            [t for opts in targets for t in opts])
    best, scores, pos = [], [], 0
    for opts in options:
      row = flat[pos:pos + len(opts)]
      pos += len(opts)
      scores.append(row)
      best.append(int(np.argmax(row)))
    return best, scores


def _option_rows(prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[Sequence[int]]],
                 batch_size: int) -> dict[str, np.ndarray]:
  """The arrays of `_score_options_jit` for a batch of prompts and their option target ids (padded to buckets)."""
  rows = [(p, t) for p, opts in enumerate(targets) for t in opts]
  num_rows = _bucket(len(rows), minimum=batch_size)
  # Options are a few tokens: padding them to 16 would cost 8x the decoder and vocabulary work of "A" + EOS.
  target = _pad_rows([t for _, t in rows], _bucket(max(len(t) for _, t in rows), minimum=2), num_rows)
  decoder_input = np.zeros_like(target)
  decoder_input[:, 1:] = target[:, :-1]
  option_of = np.zeros([num_rows], np.int32)
  option_of[:len(rows)] = [p for p, _ in rows]
  return {"encoder_tokens": _pad_rows(prompts, _bucket(max(len(p) for p in prompts)), batch_size),
          "option_of": option_of, "decoder_input": decoder_input, "decoder_target": target}


def seqio_model_fns(model: model_lib.BaseModel, params: dict, config: DecodeConfig, batch_size: int = 8):
  """`(predict_fn, score_fn)` for `seqio.Evaluator.evaluate`, over its enumerated, feature-converted datasets.

  Each dataset yields `(index, features)` with unbatched model features (`encoder_input_tokens` /
  `decoder_target_tokens` ..., or the decoder-only ones); predictions are id lists cut at EOS (the best decode),
  scores the summed target log-likelihood.
  """
  model, params = unscanned(model, params)
  encoder_decoder = isinstance(model, model_lib.EncoderDecoderModel)

  def batches(dataset):
    rows = []
    for index, features in dataset.as_numpy_iterator():
      rows.append((int(index), features))
      if len(rows) == batch_size:
        yield rows
        rows = []
    if rows:
      yield rows

  def stack(rows, key):
    out = np.zeros((batch_size,) + rows[0][1][key].shape, np.int32)
    for i, (_, f) in enumerate(rows):
      out[i] = f[key]
    return out

  def predict_fn(dataset, model_feature_shapes=None):
    del model_feature_shapes
    out = []
    for rows in batches(dataset):
      if encoder_decoder:
        batch = {"encoder_input_tokens": stack(rows, "encoder_input_tokens")}
      else:
        # The prompt is the inputs part of the prefix-LM row: target tokens under decoder_causal_attention,
        # which marks the inputs plus one position.
        targets, causal = stack(rows, "decoder_target_tokens"), stack(rows, "decoder_causal_attention")
        lengths = np.maximum(causal.sum(axis=1) - 1, 0)
        batch = {"prompt_tokens": targets * (np.arange(targets.shape[1])[None, :] < lengths[:, None])}
      tokens, _ = predict_batch(model, params, batch, config)
      out += [(index, decoding.strip_after_eos(tokens[i, 0], config.eos_id)) for i, (index, _) in enumerate(rows)]
    return out

  def score_fn(dataset, model_feature_shapes=None):
    del model_feature_shapes
    out = []
    for rows in batches(dataset):
      keys = [k for k in rows[0][1] if k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
                                            "decoder_loss_weights", "decoder_causal_attention")]
      scores = score_batch(model, params, {k: stack(rows, k) for k in keys})
      out += [(index, float(scores[i])) for i, (index, _) in enumerate(rows)]
    return out

  return predict_fn, score_fn


def load_checkpoint(directory: str | os.PathLike, step: int | None = None
                    ) -> tuple[model_lib.BaseModel, dict, int]:
  """Rebuilds the model from `model.json` and restores params (the newest intact step by default), checked
  against the step's manifest (`flan_jax.checkpoints.loader`): (model, params, step)."""
  from flan_jax.checkpoints import loader
  return loader.load_model(directory, step)
