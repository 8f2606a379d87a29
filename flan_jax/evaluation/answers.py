"""Answer extraction and normalisation: how a model's text output becomes the answer that is scored.

The rules (also in docs/evaluation.md), applied to the output cut at its stop sequence:
  * CoT outputs: the answer is the text after the LAST "the answer is" (case-insensitive), up to the end of that
    line, with surrounding whitespace and one trailing period removed. No marker -> no answer (scored wrong).
  * Direct outputs: the first line, whitespace and one trailing period removed.
  * MMLU: the letter A-D, found as "(X)" / "X" at the start of the extracted answer; anything else -> no answer.
  * MGSM: the number after the exemplar language's answer marker, else the last number (`mgsm.extract_answer`).
  * TyDiQA: SQuAD normalisation (lowercase, punctuation and English articles removed, whitespace collapsed)
    before exact match and token F1.
"""
from __future__ import annotations

import collections
import re
import string

NO_ANSWER = ""
_MARKER = re.compile(r"the answer is", re.IGNORECASE)
_LETTER = re.compile(r"^\(?([A-D])\)?(?:$|[\s.,:;)])")


def _clean(text: str) -> str:
  text = text.strip()
  if text.endswith("."):
    text = text[:-1].rstrip()
  return text


def first_line(text: str) -> str:
  return text.strip().split("\n", 1)[0]


def cot_answer(text: str) -> str:
  """The answer after the last "the answer is" marker, or NO_ANSWER when there is none."""
  matches = list(_MARKER.finditer(text))
  if not matches:
    return NO_ANSWER
  rest = text[matches[-1].end():]
  return _clean(rest.lstrip().split("\n", 1)[0])


def direct_answer(text: str) -> str:
  return _clean(first_line(text))


def mmlu_letter(answer: str) -> str:
  """'(B)', 'B', 'B.' or 'B) foo' -> 'B'; anything else -> NO_ANSWER."""
  match = _LETTER.match(answer.strip())
  return match.group(1) if match else NO_ANSWER


def squad_normalize(text: str) -> str:
  text = text.lower()
  text = "".join(ch for ch in text if ch not in set(string.punctuation))
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def exact_match(prediction: str, golds: list[str] | tuple[str, ...]) -> float:
  pred = squad_normalize(prediction)
  return float(any(pred == squad_normalize(g) for g in golds))


def token_f1(prediction: str, golds: list[str] | tuple[str, ...]) -> float:
  """Max over golds of the token-overlap F1 of normalised texts."""
  pred = squad_normalize(prediction).split()
  best = 0.0
  for gold in golds:
    ref = squad_normalize(gold).split()
    if not pred or not ref:
      best = max(best, float(pred == ref))
      continue
    common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if common:
      precision, recall = common / len(pred), common / len(ref)
      best = max(best, 2 * precision * recall / (precision + recall))
  return best


def majority_vote(answers: list[str]) -> str:
  """Self-consistency: the most frequent non-empty answer; ties go to the one seen first."""
  counts = collections.Counter(a for a in answers if a != NO_ANSWER)
  if not counts:
    return NO_ANSWER
  top = max(counts.values())
  return next(a for a in answers if counts.get(a) == top)
