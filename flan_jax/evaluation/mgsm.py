"""MGSM (11 languages), 8-shot CoT with the exemplars of `eval/mgsm/exemplars.json` (url-nlp `exemplars.py`).

Prompt: the eight exemplars "{q}\n{a}" in order "1".."8", separated by blank lines, then
"\n\n{question prefix}{question}\n{answer prefix}", where the prefixes are the exemplar language's own
("Question: " / "Step-by-Step Answer:", "问题：" / "逐步解答：", ...), read off its first exemplar: the text up to
and including the first ':' or '：' (plus the space after it, for the question prefix).
Settings: native (each language's own exemplars) and English exemplars for every language ("en_exemplars").
"""
from __future__ import annotations

import functools
import json
import re

from flan_jax.data import data_dir as data_dir_lib
from flan_jax.evaluation.examples import EvalDataError, EvalExample, read_tsv_rows

SOURCE = "mgsm"
LANGUAGES = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
_Q_PREFIX = re.compile(r"^[^:：]*[:：] *")
_A_PREFIX = re.compile(r"^[^:：]*[:：]")


@functools.cache
def exemplars() -> dict[str, list[tuple[str, str]]]:
  path = data_dir_lib.data_file("eval/mgsm/exemplars.json", source=SOURCE)
  with open(path, encoding="utf-8") as f:
    table = json.load(f).get("MGSM_EXEMPLARS", {})
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
    raise EvalDataError(f"eval/mgsm/exemplars.json: MGSM_EXEMPLARS[{lang!r}]['1'] has no 'prefix:' to reuse")
  return q_match.group(0), a_match.group(0)


def header(exemplar_lang: str) -> str:
  return "\n\n".join(f"{q}\n{a}" for q, a in exemplars()[exemplar_lang])


def read_questions(lang: str) -> list[tuple[str, str]]:
  path = data_dir_lib.data_file(f"eval/mgsm/mgsm_{lang}.tsv", source=SOURCE)
  return [(q, a) for _, (q, a) in read_tsv_rows(path, 2)]


def cot_examples(lang: str, limit: int | None = None, exemplar_lang: str | None = None) -> list[EvalExample]:
  exemplar_lang = exemplar_lang or lang
  head = header(exemplar_lang)
  q_prefix, a_prefix = prefixes(exemplar_lang)
  return [EvalExample(f"mgsm/{lang}", i, f"{head}\n\n{q_prefix}{q}\n{a_prefix}", a, source_text=q)
          for i, (q, a) in enumerate(read_questions(lang)[:limit])]
