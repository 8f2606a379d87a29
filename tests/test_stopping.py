"""Stop sequences under the T5 vocabulary: token spellings found in realistic tokenized outputs, tables, text cut."""
from __future__ import annotations

import pytest

from flan_jax import decoding, stopping
from flan_jax.data.rendering import tokenizer


@pytest.fixture(scope="module")
def stops(flan_data_dir) -> stopping.StopTokenizer:
  return stopping.StopTokenizer(tokenizer.processor())


def _ends_with_a_spelling(ids: list[int], spellings) -> bool:
  return any(len(ids) >= len(s) and tuple(ids[-len(s):]) == s for s in spellings)


@pytest.mark.parametrize("stop, output", [
    ("\n\nQ:", "So the answer is (B).\n\nQ:"),
    ("\n\nQ:", "So the answer is (B). Q:"),
    ("\n\nQ:", "a\n\nQ:"),                                  # "a" is spelled "▁" "a": bare-▁ context
    ("\n\nQuestion:", "The answer is 9. Question:"),
    ("\n\nQuestion:", "The answer is 9.\n\nQuestion:"),
    ("\n\nQuestion :", "La réponse est 5. Question :"),
    ("\n\nFrage:", "Die Antwort lautet 29.\n\nFrage:"),
    ("\n\nPregunta:", "La respuesta es 8. Pregunta:"),
    ("Q:", "so (A).Q:"),                                    # no leading whitespace: may begin inside a word
])
def test_a_spelling_ends_the_tokenized_output(stops, stop, output):
  """The ids SentencePiece gives the output text end with one of the stop's spellings."""
  ids = tokenizer.processor().encode(output)
  assert _ends_with_a_spelling(ids, stops.spellings(stop)), [tokenizer.processor().id_to_piece(i) for i in ids]


def test_spellings_of_text_the_vocabulary_cannot_write(stops):
  sp = tokenizer.processor()
  assert stops.spellings("\n\n") == () and stops.spellings("") == ()
  assert stops.spellings("\n\n问题：") == ()                # only "<unk>" ":" would spell it
  q = stops.spellings("\n\nQ:")
  assert (sp.piece_to_id("▁Q"), sp.piece_to_id(":")) in q
  assert (sp.piece_to_id("Q"), sp.piece_to_id(":")) not in q   # "\n\nQ:" begins a word
  assert (sp.piece_to_id("Q"), sp.piece_to_id(":")) in stops.spellings("Q:")


def test_table_is_right_aligned_per_row(stops):
  table = stops.table([["\n\nQ:"], [], ["\n\nQuestion :", "\n\n"]], 4)
  assert table.shape[0] == 4 and table.shape[1] >= 2 and table.shape[1] & (table.shape[1] - 1) == 0
  rows = [{tuple(int(t) for t in s if t != decoding.NO_TOKEN) for s in table[b]} - {()} for b in range(4)]
  assert rows[0] == set(stops.spellings("\n\nQ:"))
  assert rows[1] == set() and rows[3] == set()
  assert rows[2] == set(stops.spellings("\n\nQuestion :"))
  for b in range(4):
    for s in table[b]:
      kept = s[s != decoding.NO_TOKEN]
      assert (s[len(s) - len(kept):] == kept).all()         # padding only on the left
  assert stops.table([["\n\n"], []], 2) is None


@pytest.mark.parametrize("text, stops_, want, found", [
    ("The answer is 9. Question: Ana has 2 pens.", ["\n\nQuestion:"], "The answer is 9.", "\n\nQuestion:"),
    ("The answer is 9.\n\nQuestion: Ana", ["\n\nQuestion:"], "The answer is 9.", "\n\nQuestion:"),
    ("Question: Ana", ["\n\nQuestion:"], "", "\n\nQuestion:"),
    ("See the FAQuestion: x", ["\n\nQuestion:"], "See the FAQuestion: x", None),   # not at a word start
    ("So (A). Q: next. Question: more", ["\n\nQuestion:", "\n\nQ:"], "So (A).", "\n\nQ:"),   # earliest wins
    ("答案是 11。\n\n问题：x", ["\n\n问题："], "答案是 11。", "\n\n问题："),
    ("11 問題: x", ["\n\n問題："], "11", "\n\n問題："),             # NFKC: "：" is written ":"
    ("Nairobi\n\nKenya's capital", ["\n\n"], "Nairobi", "\n\n"),
    ("Nairobi Kenya", ["\n\n"], "Nairobi Kenya", None),
    ("  The answer is 5.  ", [], "  The answer is 5.  ", None),
])
def test_cut(text, stops_, want, found):
  assert stopping.cut(text, stops_) == (want, found)


def test_sentencepiece_of_rejects_other_vocabularies():
  with pytest.raises(TypeError, match="not a SentencePiece vocabulary"):
    stopping.sentencepiece_of(object())
  sp = tokenizer.processor()
  assert stopping.sentencepiece_of(sp) is sp

