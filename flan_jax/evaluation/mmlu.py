"""MMLU (57 subjects): the original 5-shot prompt (hendrycks/test evaluate.py) and the Flan CoT 5-shot prompts.

Direct prompt, byte for byte as the original `gen_prompt` + `format_example` build it:
  "The following are multiple choice questions (with answers) about{ subject words, each preceded by a space}.\n\n"
  then per dev exemplar "{question}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: {X}\n\n", then the test question in
  the same form ending "\nAnswer:". Note the original's double space ("about  abstract algebra."): its subject
  formatter prepends a space to every word. Choices are used as written in the CSV (the original's pandas reader
  would turn a literal "None" choice into "nan"; we keep the text).
CoT prompt: `eval/mmlu/flan_cot_prompts.json[subject]` followed by
  "Q: {question.strip()}\n(A) {a} (B) {b} (C) {c} (D) {d}\nA: Let's think step by step."
  A CoT answer ends where the next exemplar would begin: the stop sequence "\n\nQ:".
"""
from __future__ import annotations

import json

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.evaluation.examples import EvalDataError, EvalExample, read_csv_rows

LETTERS = ("A", "B", "C", "D")
SOURCE = "mmlu"
STEM, HUMANITIES, SOCIAL, OTHER = "STEM", "humanities", "social sciences", "other"
COT_STOP_SEQUENCES = ("\n\nQ:",)

# The four MMLU categories (STEM, humanities, social sciences, other) of each subject.
CATEGORIES = {
    **dict.fromkeys([
        "abstract_algebra", "astronomy", "college_biology", "college_chemistry", "college_computer_science",
        "college_mathematics", "college_physics", "computer_security", "conceptual_physics",
        "electrical_engineering", "elementary_mathematics", "high_school_biology", "high_school_chemistry",
        "high_school_computer_science", "high_school_mathematics", "high_school_physics",
        "high_school_statistics", "machine_learning"], STEM),
    **dict.fromkeys([
        "formal_logic", "high_school_european_history", "high_school_us_history", "high_school_world_history",
        "international_law", "jurisprudence", "logical_fallacies", "moral_disputes", "moral_scenarios",
        "philosophy", "prehistory", "professional_law", "world_religions"], HUMANITIES),
    **dict.fromkeys([
        "econometrics", "high_school_geography", "high_school_government_and_politics",
        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology", "human_sexuality",
        "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy"],
        SOCIAL),
    **dict.fromkeys([
        "anatomy", "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
        "management", "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
        "professional_medicine", "virology"], OTHER),
}
SUBJECTS = tuple(sorted(CATEGORIES))


def read_split(subject: str, split: str) -> list[tuple[int, str, tuple[str, ...], str]]:
  """(line, question, four choices, answer letter) rows of `eval/mmlu/{split}/{subject}_{split}.csv`."""
  path = data_dir_lib.data_file(f"eval/mmlu/{split}/{subject}_{split}.csv", source=SOURCE)
  rows = []
  for line, fields in read_csv_rows(path, 6):
    if fields[5] not in LETTERS:
      raise EvalDataError(f"{path}:{line}: answer must be one of {LETTERS}, got {fields[5]!r}")
    rows.append((line, fields[0], tuple(fields[1:5]), fields[5]))
  return rows


def format_subject(subject: str) -> str:
  return "".join(" " + word for word in subject.split("_"))


def format_example(question: str, choices: tuple[str, ...], answer: str | None) -> str:
  text = question + "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, choices)) + "\nAnswer:"
  return text if answer is None else text + f" {answer}\n\n"


def direct_header(subject: str, k: int = 5) -> str:
  head = f"The following are multiple choice questions (with answers) about {format_subject(subject)}.\n\n"
  return head + "".join(format_example(q, c, a) for _, q, c, a in read_split(subject, "dev")[:k])


def direct_examples(subject: str, limit: int | None = None) -> list[EvalExample]:
  header = direct_header(subject)
  return [EvalExample(f"mmlu/{subject}", i, header + format_example(q, c, None), a, options=LETTERS,
                      source_text=format_example(q, c, None))
          for i, (_, q, c, a) in enumerate(read_split(subject, "test")[:limit])]


def cot_prompts() -> dict[str, str]:
  path = data_dir_lib.data_file("eval/mmlu/flan_cot_prompts.json", source=SOURCE)
  with open(path, encoding="utf-8") as f:
    prompts = json.load(f)
  missing = sorted(set(SUBJECTS) - set(prompts))
  if missing:
    raise EvalDataError(f"{path}: no CoT prompt for subjects {missing}")
  return prompts


def cot_question(question: str, choices: tuple[str, ...]) -> str:
  options = " ".join(f"({letter}) {choice}" for letter, choice in zip(LETTERS, choices))
  return f"Q: {question.strip()}\n{options}\nA: Let's think step by step."


def cot_examples(subject: str, limit: int | None = None, prompts: dict[str, str] | None = None
                 ) -> list[EvalExample]:
  header = (prompts or cot_prompts())[subject]
  return [EvalExample(f"mmlu/{subject}", i, header + cot_question(q, c), a,
                      source_text=format_example(q, c, None), stop_sequences=COT_STOP_SEQUENCES)
          for i, (_, q, c, a) in enumerate(read_split(subject, "test")[:limit])]
