"""The seqio-free SentencePiece processor gives seqio's ids, extra ids included."""
from __future__ import annotations

import json

import numpy as np

from flan_jax.data.rendering import tokenizer
from flan_jax.data.seqio_adapter import vocab

TEXTS = ("Hello world", "translate English to German: The house is wonderful.", "Fill <extra_id_0> and <extra_id_99>.",
         "  spaces\tand\nnewlines  ", "Ünïcödé — ½ ｆｕｌｌｗｉｄｔｈ", "")


def test_ids_equal_seqio_vocabulary(flan_data_dir):
  sp = tokenizer.processor()
  seqio_vocab = vocab.get_vocabulary()
  assert sp.encode(list(TEXTS)) == [seqio_vocab.encode(t) for t in TEXTS]
  assert sp.encode("Hello world") == [8774, 296]
  assert sp.get_piece_size() == seqio_vocab.vocab_size == 32100
  # seqio numbers the extra ids from the end: <extra_id_0> is the last id.
  assert sp.encode("<extra_id_0>")[-1] == 32099 and sp.encode("<extra_id_99>")[-1] == 32000
  assert (sp.pad_id(), sp.eos_id()) == (tokenizer.PAD_ID, tokenizer.EOS_ID)


def test_processor_follows_the_data_dir(flan_data_dir, tmp_path, monkeypatch):
  from flan_jax.data.files import data_dir as data_dir_lib
  (tmp_path / "vocab").mkdir()
  (tmp_path / "vocab" / "cc_all.32000.sentencepiece.model").write_bytes(
      (flan_data_dir / tokenizer.VOCAB_PATH).read_bytes())
  monkeypatch.setattr(data_dir_lib, "_explicit", tmp_path)
  assert tokenizer.processor() is not tokenizer._processor(str(flan_data_dir / tokenizer.VOCAB_PATH))
  assert tokenizer.processor().encode("Hello world") == [8774, 296]


def _real_texts(flan_data_dir) -> list[str]:
  """CoT rows, NIv2 instances and MGSM's questions in its ten languages (Bengali, Japanese, Thai, Chinese, ...)."""
  texts = []
  for name in ("gsm8k", "aqua", "ecqa"):
    with open(flan_data_dir / f"flan/cot/{name}_train.tsv", encoding="utf-8") as f:
      for line in list(f)[:400]:
        texts += [c.replace("\\n", "\n") for c in line.rstrip("\n").split("\t")]
  for path in sorted((flan_data_dir / "niv2" / "tasks").glob("*.json")):
    task = json.loads(path.read_text(encoding="utf-8"))
    texts += task["Definition"]
    for instance in task["Instances"][:300]:
      texts += [instance["input"], *instance["output"]]
  for path in sorted((flan_data_dir / "eval" / "mgsm").glob("mgsm_*.tsv")):
    texts += [c for line in path.read_text(encoding="utf-8").splitlines()[:60] for c in line.split("\t")]
  return texts


# Whitespace runs, leading/trailing space, tabs and CRs, sentinels inside words, characters Python splits on and the
# normalizer does not (encoded whole), and non-ASCII text.
EDGES = ["  a \t b\r\nc  ", "x<extra_id_0>y <extra_id_1> z", "a\x0bb c", "a\x0cb", "caf\u00e9 na\u00efve",
         "\u3000lead", "a\u00a0b", "", " ", "Q: 1+1?\n\nA: 2.\n\n\n", "x \u2034b", "p\x85q r", "\x1ca b"]


def test_word_pieces_equal_sentencepiece_on_real_texts(flan_data_dir):
  sp = tokenizer.processor()
  texts = _real_texts(flan_data_dir) + EDGES
  assert sum(not t.isascii() for t in texts) > 700
  memo = tokenizer.WordPieces(sp, max_words=2000)  # small, so the memo starts over on the way
  want = sp.encode(texts)
  got_ids, got_counts = [], []
  for i in range(0, len(texts), 97):
    values, lengths = memo.encode(texts[i:i + 97])
    got_ids += [ids.tolist() for ids in np.split(values, np.cumsum(lengths)[:-1])]
    got_counts += memo.count(texts[i:i + 97])
  assert got_ids == want
  assert got_counts == [len(ids) for ids in want]
  empty_values, empty_lengths = memo.encode([])
  assert len(empty_values) == len(empty_lengths) == 0


def test_unsplittable_characters_are_exactly_those_where_words_differ(flan_data_dir):
  """Every code point of the BMP in the two contexts where one splits differently: those whose word-by-word ids
  differ from the whole text's are exactly `_UNSPLITTABLE`."""
  sp = tokenizer.processor()
  points = [chr(c) for c in range(1, 0x10000) if not 0xD800 <= c < 0xE000]
  differ = set()
  for context in ("a{}b x", "x {}b"):
    texts = [context.replace("{}", c) for c in points]
    for c, text, ids in zip(points, texts, sp.encode(texts)):
      if sum(sp.encode(text.split()), []) != ids:
        differ.add(c)
  assert differ == {c for c in points if tokenizer._UNSPLITTABLE.search(c)}
