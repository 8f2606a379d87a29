"""The T5 SentencePiece processor (cc_all.32000, 100 extra ids), built as seqio builds it but without seqio.

The rendering path (`flan_render`, `fewshot`, the grain workers) needs only token ids; importing seqio for them would pull TensorFlow into
every process that renders (~860 MB resident). The extra ids are added to the model as user-defined pieces,
`<extra_id_99>` first, exactly as `seqio.SentencePieceVocabulary` does, so a text that spells one (`<extra_id_0>`)
encodes to the same ids here and in seqio.
"""
from __future__ import annotations

import functools
import threading

import sentencepiece
from sentencepiece import sentencepiece_model_pb2

from flan_jax.data import data_dir as data_dir_lib

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
