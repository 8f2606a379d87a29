"""The T5 SentencePiece vocabulary (cc_all.32000) with 100 sentinel ids, as Flan-T5 uses (32,100 ids)."""
from __future__ import annotations

import functools

import seqio

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.rendering.tokenizer import EOS_ID, EXTRA_IDS, PAD_ID, VOCAB_PATH  # noqa: F401  (re-exported)


class FlanVocabulary(seqio.SentencePieceVocabulary):
  """A SentencePiece vocabulary whose model file is found in the data dir when first used.

  Tasks are declared at import time, before `--data_dir` is parsed, so the path is resolved lazily.
  """

  def __init__(self, extra_ids: int = EXTRA_IDS):
    super().__init__(sentencepiece_model_file=VOCAB_PATH, extra_ids=extra_ids)

  @property
  def sentencepiece_model_file(self) -> str:
    return str(data_dir_lib.data_file(VOCAB_PATH, source="vocab"))

  def _model_context(self):
    # seqio reads `self._sentencepiece_model_file`; point it at the resolved path before loading.
    self._sentencepiece_model_file = self.sentencepiece_model_file
    return super()._model_context()


@functools.cache
def get_vocabulary() -> FlanVocabulary:
  return FlanVocabulary()


def output_features(add_eos: bool = True) -> dict[str, seqio.Feature]:
  """FLAN's DEFAULT_OUTPUT_FEATURES: T5 vocabulary, EOS on both, inputs not required."""
  vocab = get_vocabulary()
  return {
      "inputs": seqio.Feature(vocabulary=vocab, add_eos=add_eos, required=False),
      "targets": seqio.Feature(vocabulary=vocab, add_eos=add_eos),
  }
