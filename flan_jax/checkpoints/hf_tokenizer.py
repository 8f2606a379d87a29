"""The tokenizer files of an exported Hugging Face dir, and the vocabulary check on import.

Every flan_jax model reads the T5 SentencePiece vocabulary (`cc_all.32000` + 100 extra ids, `<pad>`=0, `</s>`=1,
`<unk>`=2). An export carries it as HF's T5 tokenizer expects it, so `AutoTokenizer.from_pretrained(dir)` gives the
ids the model was trained on: `spiece.model` (the data dir's vocabulary, unchanged), `tokenizer_config.json` and
`special_tokens_map.json`. Without them transformers falls back to a byte-level tokenizer of ~100 tokens and the
model generates nothing readable.

On import, a dir's own tokenizer (`spiece.model`, else `tokenizer.json`) must spell the same pieces as the data
dir's vocabulary at every id the model embeds: a model trained on another vocabulary would read our token ids as
different words, so it is refused.
"""
from __future__ import annotations

import json
import pathlib
import shutil
from typing import Sequence

SPIECE = "spiece.model"
TOKENIZER_JSON = "tokenizer.json"
EXTRA_IDS = 100
T5_VOCAB_SIZE = 32000 + EXTRA_IDS
SPECIAL_TOKENS = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def _extra_ids() -> list[str]:
  return [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]


def write(directory: str | pathlib.Path, max_length: int = 512) -> None:
  """Writes the tokenizer files of the data dir's vocabulary into an export dir."""
  from flan_jax.data.files import data_dir
  from flan_jax.data.rendering import tokenizer
  directory = pathlib.Path(directory)
  shutil.copyfile(data_dir.data_file(tokenizer.VOCAB_PATH, source="vocab"), directory / SPIECE)
  config = {"tokenizer_class": "T5Tokenizer", "extra_ids": EXTRA_IDS, "additional_special_tokens": _extra_ids(),
            "model_max_length": max_length, "legacy": True, **SPECIAL_TOKENS}
  (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
  (directory / "special_tokens_map.json").write_text(
      json.dumps({**SPECIAL_TOKENS, "additional_special_tokens": _extra_ids()}, indent=2))


def _pieces_of_spiece(path: pathlib.Path) -> list[str]:
  import sentencepiece  # pylint: disable=import-outside-toplevel
  sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
  return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def _pieces_of_tokenizer_json(path: pathlib.Path) -> list[str] | None:
  """The id-ordered pieces of a Unigram `tokenizer.json` (HF's conversion of a SentencePiece model), else None."""
  try:
    model = json.loads(path.read_text())["model"]
  except (ValueError, KeyError) as e:
    raise ValueError(f"{path}: not a tokenizer.json ({e})") from None
  vocab = model.get("vocab")
  if model.get("type") != "Unigram" or not isinstance(vocab, list):
    return None
  return [entry[0] for entry in vocab]


def check_vocabulary(directory: str | pathlib.Path, vocab_size: int) -> None:
  """Refuses an HF dir whose own tokenizer differs from the data dir's vocabulary (nothing to check without one)."""
  from flan_jax.data.rendering import tokenizer  # pylint: disable=import-outside-toplevel
  directory = pathlib.Path(directory)
  if (directory / SPIECE).exists():
    source, theirs = directory / SPIECE, _pieces_of_spiece(directory / SPIECE)
  elif (directory / TOKENIZER_JSON).exists():
    source, theirs = directory / TOKENIZER_JSON, _pieces_of_tokenizer_json(directory / TOKENIZER_JSON)
    if theirs is None:
      raise ValueError(f"{source}: not a SentencePiece (Unigram) tokenizer; flan_jax models read the T5 vocabulary")
  else:
    return
  sp = tokenizer.processor()
  ours = [sp.id_to_piece(i) for i in range(sp.get_piece_size() - EXTRA_IDS)]
  _compare(ours, theirs[:len(ours)], source, vocab_size)


def _compare(ours: Sequence[str], theirs: Sequence[str], source: pathlib.Path, vocab_size: int) -> None:
  if len(theirs) < len(ours):
    raise ValueError(f"{source}: {len(theirs)} pieces where the T5 vocabulary has {len(ours)}; this model was "
                     "trained on another vocabulary and flan_jax cannot feed it")
  for i, (a, b) in enumerate(zip(ours, theirs)):
    if a != b:
      raise ValueError(f"{source}: id {i} is {b!r} here but {a!r} in the data dir's T5 vocabulary; this model "
                       "was trained on another vocabulary and flan_jax cannot feed it")
  if vocab_size < len(ours) + EXTRA_IDS:
    raise ValueError(f"{source}: the model embeds {vocab_size} ids, fewer than the T5 vocabulary's "
                     f"{len(ours) + EXTRA_IDS}")
