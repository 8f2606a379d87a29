"""BIG-Bench Hard (27 tasks), 3-shot from `eval/bbh/cot-prompts/<task>.txt`.

A prompt file is a canary line, a "-----" line, the task description, then three exemplars
"Q: ...\nA: Let's think step by step.\n<rationale> So the answer is <answer>." separated by blank lines.
  * CoT prompt: the file's text after the "-----" line, then "\n\nQ: {input}\nA: Let's think step by step."
  * Direct prompt: the description and the same three questions answered with the final answer only
    ("Q: ...\nA: <answer>"), blank-line separated, then "\n\nQ: {input}\nA:".
In both, an answer ends where the next exemplar would begin: the stop sequence "\n\nQ:".
"""
from __future__ import annotations

import json
import re

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.evaluation import answers
from flan_jax.evaluation.examples import EvalDataError, EvalExample

SOURCE = "bbh"
TASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)
COT_TRIGGER = "A: Let's think step by step."
STOP_SEQUENCES = ("\n\nQ:",)
_SEPARATOR = "\n-----\n"
_OPTION = re.compile(r"^\([A-Z]\)", re.MULTILINE)
_BINARY = ({"True", "False"}, {"Yes", "No"}, {"yes", "no"}, {"valid", "invalid"})


def read_prompt_file(task: str) -> str:
  """The few-shot part of the task's CoT prompt file (everything after the "-----" line)."""
  path = data_dir_lib.data_file(f"eval/bbh/cot-prompts/{task}.txt", source=SOURCE)
  text = path.read_text(encoding="utf-8")
  if _SEPARATOR not in text:
    raise EvalDataError(f"{path}:1: no '-----' line after the canary header")
  return text.split(_SEPARATOR, 1)[1].rstrip("\n")


def parse_exemplars(task: str) -> tuple[str, list[tuple[str, str]]]:
  """(description, [(question, final answer)]) from the task's prompt file."""
  body = read_prompt_file(task)
  description, sep, rest = body.partition("\n\nQ: ")
  path = f"eval/bbh/cot-prompts/{task}.txt"
  if not sep:
    raise EvalDataError(f"{path}: no exemplar (a line starting 'Q: ')")
  exemplars = []
  for chunk in ("Q: " + rest).split("\n\nQ: "):
    chunk = chunk if chunk.startswith("Q: ") else "Q: " + chunk
    question, sep, rationale = chunk.partition("\n" + COT_TRIGGER)
    answer = answers.cot_answer(rationale)
    if not sep or answer == answers.NO_ANSWER:
      raise EvalDataError(f"{path}: exemplar {question[:40]!r} lacks '{COT_TRIGGER}' or 'So the answer is'")
    exemplars.append((question[len("Q: "):], answer))
  return description, exemplars


def read_examples(task: str) -> list[tuple[str, str]]:
  path = data_dir_lib.data_file(f"eval/bbh/{task}.json", source=SOURCE)
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  out = []
  for i, ex in enumerate(data.get("examples", [])):
    if not isinstance(ex.get("input"), str) or not isinstance(ex.get("target"), str):
      raise EvalDataError(f"{path}: examples[{i}] needs string 'input' and 'target'")
    out.append((ex["input"], ex["target"]))
  return out


def cot_examples(task: str, limit: int | None = None) -> list[EvalExample]:
  header = read_prompt_file(task)
  return [EvalExample(f"bbh/{task}", i, f"{header}\n\nQ: {q}\n{COT_TRIGGER}", t, source_text=q,
                      stop_sequences=STOP_SEQUENCES)
          for i, (q, t) in enumerate(read_examples(task)[:limit])]


def direct_header(task: str) -> str:
  description, exemplars = parse_exemplars(task)
  return description + "".join(f"\n\nQ: {q}\nA: {a}" for q, a in exemplars)


def direct_examples(task: str, limit: int | None = None) -> list[EvalExample]:
  header = direct_header(task)
  return [EvalExample(f"bbh/{task}", i, f"{header}\n\nQ: {q}\nA:", t, source_text=q,
                      stop_sequences=STOP_SEQUENCES)
          for i, (q, t) in enumerate(read_examples(task)[:limit])]


def random_baseline(task: str) -> float:
  """Chance accuracy (%) of a uniform guess: 1/#options for lettered options, 1/2 for binary tasks, 0 for
  free-form answers; averaged over the task's examples."""
  examples = read_examples(task)
  targets = {t for _, t in examples}
  if any(targets <= pair for pair in _BINARY):
    return 50.0
  chances = []
  for question, target in examples:
    n = len(_OPTION.findall(question))
    chances.append(100.0 / n if n and _OPTION.fullmatch(target) else 0.0)
  return sum(chances) / len(chances)
