"""The seqio-free SentencePiece processor gives seqio's ids, extra ids included."""
from __future__ import annotations

from flan_jax.data import tokenizer
from flan_jax.data import vocab

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
  from flan_jax.data import data_dir as data_dir_lib
  (tmp_path / "vocab").mkdir()
  (tmp_path / "vocab" / "cc_all.32000.sentencepiece.model").write_bytes(
      (flan_data_dir / tokenizer.VOCAB_PATH).read_bytes())
  monkeypatch.setattr(data_dir_lib, "_explicit", tmp_path)
  assert tokenizer.processor() is not tokenizer._processor(str(flan_data_dir / tokenizer.VOCAB_PATH))
  assert tokenizer.processor().encode("Hello world") == [8774, 296]
