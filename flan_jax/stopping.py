"""Stop sequences: where a generated answer ends, as token spellings for the decoding loop and as a text cut.

A few-shot prompt shows where an answer ends (the next exemplar's "\\n\\nQ:"). Decoding stops a row once its
generated ids end with a token spelling of one of its stops (`decoding.stop_hit`), as EOS stops it, so a batch
stops when every row has answered; the decoded text is then cut where the stop begins (`cut`), and callers keep
the raw text beside the cut one.

How a text stop tokenizes in context. T5's SentencePiece model splits at whitespace (no piece spans two words),
applies NFKC, and has no newline (it becomes a space), so:
  * every whitespace-separated word of the stop starts a word in the output: spelled `encode(word)` (the pieces
    the vocabulary gives, "▁Question" ":") or as a bare "▁" piece and the word's pieces without "▁";
  * a stop that does not start with whitespace may also begin inside a word: its first word then lacks the "▁".
Spellings holding the unknown piece (text the vocabulary cannot write, e.g. "问题：" in T5's) are dropped, and a
stop that is only whitespace has none ("\\n\\n" encodes to nothing in T5's vocabulary): such stops act only
through the text cut.

The text cut takes the earliest occurrence of any stop, as written or NFKC-normalised; a stop that starts with
whitespace also matches its remaining words at the start of the output or after whitespace (a vocabulary
without newlines writes "\\n\\nQ:" as " Q:"). The text before it is kept, trailing whitespace removed.
"""
from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from typing import Any, Sequence

import numpy as np
import sentencepiece
from sentencepiece import sentencepiece_model_pb2

from flan_jax.decoding import NO_TOKEN

Spelling = tuple[int, ...]


def sentencepiece_of(vocabulary: Any) -> sentencepiece.SentencePieceProcessor:
  """The SentencePiece processor of a seqio SentencePieceVocabulary (or the processor itself)."""
  if isinstance(vocabulary, sentencepiece.SentencePieceProcessor):
    return vocabulary
  processor = getattr(vocabulary, "tokenizer", None)
  if not isinstance(processor, sentencepiece.SentencePieceProcessor):
    raise TypeError(f"{type(vocabulary).__name__} is not a SentencePiece vocabulary (no .tokenizer processor)")
  return processor


class StopTokenizer:
  """Token spellings of text stop sequences under one SentencePiece model."""

  def __init__(self, processor: sentencepiece.SentencePieceProcessor):
    self.processor = processor
    proto = sentencepiece_model_pb2.ModelProto.FromString(processor.serialized_model_proto())
    proto.normalizer_spec.add_dummy_prefix = False  # encodes a word as it is spelled inside a longer word
    self.inner = sentencepiece.SentencePieceProcessor()
    self.inner.LoadFromSerializedProto(proto.SerializeToString())
    space = processor.piece_to_id("\u2581")
    self.space = None if space == processor.unk_id() else space
    self._cache: dict[str, tuple[Spelling, ...]] = {}

  def spellings(self, stop: str) -> tuple[Spelling, ...]:
    if stop not in self._cache:
      self._cache[stop] = self._spellings(stop)
    return self._cache[stop]

  def _spellings(self, stop: str) -> tuple[Spelling, ...]:
    options = []
    for i, word in enumerate(stop.split()):
      inner = tuple(self.inner.encode(word))
      forms = {tuple(self.processor.encode(word))}
      if self.space is not None:
        forms.add((self.space,) + inner)
      if i == 0 and not stop[0].isspace():
        forms.add(inner)
      options.append(sorted(forms))
    unk = self.processor.unk_id()
    spellings = {sum(combo, ()) for combo in itertools.product(*options)} if options else set()
    return tuple(sorted(s for s in spellings if s and unk not in s))

  def table(self, rows: Sequence[Sequence[str]], batch_size: int) -> np.ndarray | None:
    """int32[batch_size, S, K]: each row's spellings right-aligned, NO_TOKEN-padded; None when no row has one.

    S and K are rounded up to powers of two (at least 4) so that runs compile few shapes.
    """
    per_row = [sorted({s for stop in stops for s in self.spellings(stop)}) for stops in rows]
    if not any(per_row):
      return None
    num = _round_up(max(len(r) for r in per_row))
    length = _round_up(max(len(s) for r in per_row for s in r))
    table = np.full((batch_size, num, length), NO_TOKEN, np.int32)
    for b, spellings in enumerate(per_row):
      for j, spelling in enumerate(spellings):
        table[b, j, length - len(spelling):] = spelling
    return table


def _round_up(n: int, minimum: int = 4) -> int:
  return max(minimum, 1 << max(0, n - 1).bit_length())


@functools.lru_cache(maxsize=256)
def _word_pattern(stop: str) -> re.Pattern | None:
  words = stop.split()
  if not stop[:1].isspace() or not words:
    return None
  return re.compile(r"(?:^|(?<=\s))" + r"\s+".join(map(re.escape, words)))


def _find(text: str, stop: str) -> int | None:
  exact = text.find(stop)
  found = [exact] if exact >= 0 else []
  pattern = _word_pattern(stop)
  match = pattern.search(text) if pattern else None
  if match:
    found.append(match.start())
  return min(found, default=None)


def cut(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
  """(text before the earliest stop, trailing whitespace removed; the stop found) or (text, None)."""
  best: tuple[int, str] | None = None
  for stop in stops:
    for form in {stop, unicodedata.normalize("NFKC", stop)}:
      pos = _find(text, form) if form else None
      if pos is not None and (best is None or pos < best[0]):
        best = (pos, stop)
  if best is None:
    return text, None
  return text[:best[0]].rstrip(), best[1]
