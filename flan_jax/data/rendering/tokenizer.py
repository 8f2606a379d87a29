"""The T5 SentencePiece processor (cc_all.32000, 100 extra ids), built as seqio builds it but without seqio.

The rendering path (`flan_render`, `fewshot`, the grain workers) needs only token ids; importing seqio for them
would pull TensorFlow into every process that renders (~860 MB resident). The extra ids are added to the model as
user-defined pieces, `<extra_id_99>` first, exactly as `seqio.SentencePieceVocabulary` does, so a text that spells
one (`<extra_id_0>`) encodes to the same ids here and in seqio.
"""
from __future__ import annotations

import functools
import itertools
import re
import threading
from typing import Sequence

import numpy as np
import sentencepiece
from sentencepiece import sentencepiece_model_pb2

from flan_jax.data.files import data_dir as data_dir_lib

VOCAB_PATH = "vocab/cc_all.32000.sentencepiece.model"
EXTRA_IDS = 100
PAD_ID = 0
EOS_ID = 1

_load_lock = threading.Lock()  # loading from a serialized proto is not thread-safe in sentencepiece


def processor() -> sentencepiece.SentencePieceProcessor:
  """The processor of the data dir's vocabulary (resolved now, so `--data_dir` set before the first use counts)."""
  return _processor_in(str(data_dir_lib.data_dir()))


@functools.cache
def _processor_in(data_dir: str) -> sentencepiece.SentencePieceProcessor:
  del data_dir  # the key: `data_file` below resolves the same dir, and checks the file once per dir
  return _processor(str(data_dir_lib.data_file(VOCAB_PATH, source="vocab")))


@functools.cache
def _processor(path: str) -> sentencepiece.SentencePieceProcessor:
  with open(path, "rb") as f:
    model = sentencepiece_model_pb2.ModelProto.FromString(f.read())
  for i in reversed(range(EXTRA_IDS)):
    model.pieces.add(piece=f"\u2581<extra_id_{i}>", score=0.0,
                     type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
  sp = sentencepiece.SentencePieceProcessor()
  with _load_lock:
    sp.LoadFromSerializedProto(model.SerializeToString())
  return sp


# Characters Python's str.split() treats as whitespace and the T5 normalizer does not (and U+2034, whose NFKC form
# segments differently after a space): a text holding one is encoded whole. A sweep of every code point in
# `tests/test_tokenizer.py` keeps this list exact.
_UNSPLITTABLE = re.compile("[\x0b\x1c-\x1f\x85\u2034]")
MAX_MEMO_WORDS = 500_000
ENCODE_CHUNK = 256  # texts


class WordPieces:
  """Token ids of texts, as the processor gives them, from a memo of each word's pieces.

  The T5 model splits on whitespace before it segments (no piece holds an inner "▁") and its normalizer maps
  whitespace as str.split() does (but for `_UNSPLITTABLE`), so a text's ids are its words' ids concatenated. A
  corpus repeats its words, so most are looked up, not segmented: a block of Flan examples encodes ~2x faster, and
  re-counting few-shot exemplars costs a sum. The memo starts over when it would pass `max_words`, bounding memory
  rather than growing with the corpus.
  """

  def __init__(self, sp: sentencepiece.SentencePieceProcessor, max_words: int = MAX_MEMO_WORDS):
    self._sp = sp
    self._max_words = max_words
    self._lock = threading.Lock()  # several threads may render (seqio's tf.data, the device prefetcher's host)
    self._reset()

  def _reset(self) -> None:
    self._index: dict[str, int] = {}  # word -> its row in the tables below
    self._lengths: list[int] = []  # pieces per row (a list: `count` sums a few per call)
    # The same as arrays for `encode`, with each row's start in `_pieces`; grown by doubling.
    self._word_lengths = np.zeros([1024], np.int64)
    self._starts = np.zeros([1024], np.int64)
    self._pieces = np.zeros([4096], np.int32)
    self._num_pieces = 0

  def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ids of `texts` as one ragged array: (int32 values, int64 lengths), text i's ids after those of 0..i-1."""
    # In chunks: a block's words as str objects would take ~10x its ids' memory, and the heap keeps its peak.
    parts = [self._encode(texts[i:i + ENCODE_CHUNK]) for i in range(0, len(texts), ENCODE_CHUNK)]
    if not parts:
      return np.zeros([0], np.int32), np.zeros([0], np.int64)
    return np.concatenate([v for v, _ in parts]), np.concatenate([n for _, n in parts])

  def _encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    split = [None if _UNSPLITTABLE.search(t) else t.split() for t in texts]
    words = [w for ws in split if ws is not None for w in ws]
    with self._lock:
      self._learn(words)
      word_rows = np.fromiter(map(self._index.__getitem__, words), np.int64, len(words))
      starts, lengths, pieces = self._starts, self._word_lengths, self._pieces
    word_lengths = lengths[word_rows]
    ends = np.cumsum(word_lengths)
    # Each output id's place in `pieces`: its word's start plus its place within the word.
    within = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - word_lengths, word_lengths)
    values = pieces[np.repeat(starts[word_rows], word_lengths) + within]
    words_before = np.cumsum([0] + [len(ws) if ws is not None else 0 for ws in split])
    ids_before = np.concatenate([[0], ends])[words_before]
    text_lengths = np.diff(ids_before)
    whole = [k for k, ws in enumerate(split) if ws is None]
    if not whole:
      return values, text_lengths
    # Rare: texts encoded whole are spliced in at their places.
    encoded = self._sp.encode([texts[k] for k in whole], num_threads=1)
    parts = np.split(values, ids_before[1:-1])
    for k, ids in zip(whole, encoded):
      parts[k] = np.asarray(ids, np.int32)
      text_lengths[k] = len(ids)
    return np.concatenate(parts), text_lengths

  def count(self, texts: Sequence[str]) -> list[int]:
    """The number of ids of each text (no EOS)."""
    split = [None if _UNSPLITTABLE.search(t) else t.split() for t in texts]
    whole = [t for t, ws in zip(texts, split) if ws is None]
    whole_counts = iter([len(ids) for ids in self._sp.encode(whole, num_threads=1)] if whole else ())
    with self._lock:
      try:  # most calls know every word
        counts = self._count_known(split)
      except KeyError:
        self._learn([w for ws in split if ws is not None for w in ws])
        counts = self._count_known(split)
    return [next(whole_counts) if n is None else n for n in counts]

  def _count_known(self, split: list[list[str] | None]) -> list[int | None]:
    index, lengths = self._index.__getitem__, self._lengths.__getitem__
    return [None if ws is None else sum(map(lengths, map(index, ws))) for ws in split]

  def _learn(self, words: list[str]) -> None:
    """Segments the words not yet in the memo (called under the lock)."""
    new = set(words).difference(self._index)
    if not new:
      return
    if len(self._index) + len(new) > self._max_words:
      self._reset()
      new = set(words)
    new = list(new)
    encoded = self._sp.encode(new, num_threads=1)
    first, lengths = len(self._lengths), [len(ids) for ids in encoded]
    self._index.update(zip(new, range(first, first + len(new))))
    self._lengths += lengths
    rows = len(self._lengths)
    self._word_lengths = _fit(self._word_lengths, rows)
    self._starts = _fit(self._starts, rows)
    self._word_lengths[first:rows] = lengths
    self._starts[first:rows] = self._num_pieces + np.cumsum(lengths) - lengths
    flat = np.fromiter(itertools.chain.from_iterable(encoded), np.int32)
    self._pieces = _fit(self._pieces, self._num_pieces + len(flat))
    self._pieces[self._num_pieces:self._num_pieces + len(flat)] = flat
    self._num_pieces += len(flat)


def _fit(buffer: np.ndarray, size: int) -> np.ndarray:
  """`buffer`, or a copy at least twice as long once `size` outgrows it (an encode under way keeps the old one)."""
  if size <= len(buffer):
    return buffer
  grown = np.zeros([max(size, 2 * len(buffer))], buffer.dtype)
  grown[:len(buffer)] = buffer
  return grown


def word_pieces() -> WordPieces:
  """The memo of the data dir's processor (one per process and vocabulary)."""
  return _word_pieces(processor())


@functools.cache
def _word_pieces(sp: sentencepiece.SentencePieceProcessor) -> WordPieces:
  return WordPieces(sp)
