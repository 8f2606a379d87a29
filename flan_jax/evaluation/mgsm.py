"""MGSM (11 languages), 8-shot CoT with the exemplars of `eval/mgsm/exemplars.json` (url-nlp `exemplars.py`).

Prompt: the eight exemplars "{q}\n{a}" in order "1".."8", separated by blank lines, then
"\n\n{question prefix}{question}\n{answer prefix}", where the prefixes are the exemplar language's own
("Question: " / "Step-by-Step Answer:", "问题：" / "逐步解答：", ...), read off its first exemplar: the text up to
and including the first ':' or '：' (plus the space after it, for the question prefix).
Settings: native (each language's own exemplars) and English exemplars for every language ("en_exemplars").
An answer ends where the next exemplar would begin: "\n\n" and the question prefix (the stop sequence).

The answer of an output is the first number after the last answer marker that a number follows, else the last
number of the output; numbers are read with the exemplar language's conventions (`numbers.py`). The markers are
the phrases the exemplars write right before their final answers ("The answer is 11.", "Die Antwort lautet 29.",
"答えは11です。"), read off the exemplar file: for each exemplar, the text between the last digit or punctuation
mark (a phrase's own closing one, as in "Answer: 11", aside) and the last occurrence of its answer
(EXEMPLAR_NUMBER_ANSWERS); phrases without a letter are dropped, and a phrase ending in another exemplar's phrase
is reduced to it (Thai "... 29 เครื่อง คำตอบคือ 29" -> "คำตอบคือ").
Matching ignores case and spacing, and every language also accepts the English markers (models trained on
English chain-of-thought write them).
"""
from __future__ import annotations

import functools
import json
import re
import unicodedata

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.evaluation import answers, numbers
from flan_jax.evaluation.examples import EvalDataError, EvalExample, read_tsv_rows

SOURCE = "mgsm"
LANGUAGES = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
_Q_PREFIX = re.compile(r"^[^:：]*[:：] *")
_A_PREFIX = re.compile(r"^[^:：]*[:：]")
_EXEMPLAR_FILE = "eval/mgsm/exemplars.json"


@functools.cache
def _exemplar_file() -> dict:
  path = data_dir_lib.data_file(_EXEMPLAR_FILE, source=SOURCE)
  with open(path, encoding="utf-8") as f:
    return json.load(f)


@functools.cache
def exemplars() -> dict[str, list[tuple[str, str]]]:
  path = data_dir_lib.data_file(_EXEMPLAR_FILE, source=SOURCE)
  table = _exemplar_file().get("MGSM_EXEMPLARS", {})
  out = {}
  for lang in LANGUAGES:
    items = table.get(lang, {})
    if sorted(items) != [str(i) for i in range(1, 9)]:
      raise EvalDataError(f"{path}: MGSM_EXEMPLARS[{lang!r}] must have exemplars '1'..'8', got {sorted(items)}")
    out[lang] = [(items[str(i)]["q"], items[str(i)]["a"]) for i in range(1, 9)]
  return out


def prefixes(lang: str) -> tuple[str, str]:
  q, a = exemplars()[lang][0]
  q_match, a_match = _Q_PREFIX.match(q), _A_PREFIX.match(a)
  if not q_match or not a_match:
    raise EvalDataError(f"{_EXEMPLAR_FILE}: MGSM_EXEMPLARS[{lang!r}]['1'] has no 'prefix:' to reuse")
  return q_match.group(0), a_match.group(0)


def stop_sequences(exemplar_lang: str) -> tuple[str, ...]:
  """Where an answer ends: the blank line and question prefix that start the next exemplar."""
  return ("\n\n" + prefixes(exemplar_lang)[0].rstrip(),)


def _is_punctuation(ch: str) -> bool:
  return unicodedata.category(ch) == "Po"


def _phrase_before_answer(answer_text: str, number: str) -> str:
  """The text between the last digit or punctuation mark and the last occurrence of `number`, stripped; the
  phrase's own closing punctuation ("Answer: 11") does not end it."""
  hits = list(re.finditer(rf"(?<![\d.,]){re.escape(number)}(?!\d)", answer_text))
  if not hits:
    return ""
  before = answer_text[:hits[-1].start()].rstrip()
  core = before
  while core and _is_punctuation(core[-1]):
    core = core[:-1].rstrip()
  start = max((i + 1 for i, ch in enumerate(core) if ch.isdigit() or _is_punctuation(ch)), default=0)
  return before[start:].strip()


@functools.cache
def answer_markers(lang: str) -> tuple[str, ...]:
  """The phrases the exemplars of `lang` write before their final answers (see the module docstring)."""
  final_answers = _exemplar_file().get("EXEMPLAR_NUMBER_ANSWERS")
  if not isinstance(final_answers, list) or len(final_answers) != 8:
    raise EvalDataError(f"{_EXEMPLAR_FILE}: EXEMPLAR_NUMBER_ANSWERS must list the 8 exemplars' answers")
  phrases = {_phrase_before_answer(a, str(n)) for (_, a), n in zip(exemplars()[lang], final_answers)}
  phrases = {p for p in phrases if any(unicodedata.category(ch).startswith("L") for ch in p)}
  markers = tuple(sorted(p for p in phrases if not any(o != p and p.endswith(o) for o in phrases)))
  if not markers:
    raise EvalDataError(f"{_EXEMPLAR_FILE}: MGSM_EXEMPLARS[{lang!r}] writes no phrase before its answers "
                        f"{final_answers}")
  return markers


@functools.cache
def _marker_pattern(lang: str) -> re.Pattern:
  markers = sorted(set(answer_markers(lang)) | set(answer_markers("en")), key=len, reverse=True)
  return re.compile("|".join(r"\s*".join(map(re.escape, m.split())) for m in markers), re.IGNORECASE)


def extract_answer(text: str, lang: str) -> str:
  """The first number after the last answer marker that a number follows, else the last number; canonical."""
  for match in reversed(list(_marker_pattern(lang).finditer(text))):
    found = numbers.read_numbers(text[match.end():], lang)
    if found:
      return found[0]
  found = numbers.read_numbers(text, lang)
  return found[-1] if found else answers.NO_ANSWER


def header(exemplar_lang: str) -> str:
  return "\n\n".join(f"{q}\n{a}" for q, a in exemplars()[exemplar_lang])


def read_questions(lang: str) -> list[tuple[str, str]]:
  path = data_dir_lib.data_file(f"eval/mgsm/mgsm_{lang}.tsv", source=SOURCE)
  return [(q, a) for _, (q, a) in read_tsv_rows(path, 2)]


def cot_examples(lang: str, limit: int | None = None, exemplar_lang: str | None = None) -> list[EvalExample]:
  exemplar_lang = exemplar_lang or lang
  head = header(exemplar_lang)
  q_prefix, a_prefix = prefixes(exemplar_lang)
  stops = stop_sequences(exemplar_lang)
  return [EvalExample(f"mgsm/{lang}", i, f"{head}\n\n{q_prefix}{q}\n{a_prefix}", a, source_text=q,
                      stop_sequences=stops)
          for i, (q, a) in enumerate(read_questions(lang)[:limit])]
