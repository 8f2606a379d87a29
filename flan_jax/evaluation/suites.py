"""The evaluation suites: which examples, how an output is turned into an answer, how it is scored.

| suite          | benchmark | shots | how                                                         | score           |
|----------------|-----------|-------|-------------------------------------------------------------|-----------------|
| mmlu_direct    | MMLU      | 5     | rank classification over the targets A/B/C/D                | accuracy        |
| mmlu_cot       | MMLU      | 5     | generate; letter after the last "the answer is"             | accuracy        |
| bbh_direct     | BBH       | 3     | generate; first line                                        | exact match     |
| bbh_cot        | BBH       | 3     | generate; text after the last "the answer is"               | exact match     |
| mgsm_cot       | MGSM      | 8     | generate (native exemplars); number after the answer marker | accuracy        |
| mgsm_cot_en    | MGSM      | 8     | generate (English exemplars); number after the marker       | accuracy        |
| tydiqa_direct  | TyDiQA    | 1     | generate; first line                                        | exact match, F1 |

Generation stops at each example's stop sequences (the next exemplar's start); answers are extracted from the
output cut there.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

from flan_jax.evaluation import answers, bbh, mgsm, mmlu, numbers, tydiqa
from flan_jax.evaluation.examples import EvalExample


@dataclasses.dataclass(frozen=True)
class Suite:
  name: str
  benchmark: str
  cot: bool
  tasks: tuple[str, ...]
  load_task: Callable[[str, int | None, dict[str, Any]], list[EvalExample]]
  extract: Callable[[str, EvalExample], str]   # (model output, its example) -> answer (generation suites)
  score: Callable[[str, EvalExample], dict[str, float]]   # answer -> metric values in [0, 1]
  primary: str                           # the metric the benchmark score is the mean of
  rank: bool = False                     # rank classification over `EvalExample.options`
  max_decode_length: int = 32

  def examples(self, limit: int | None = None, **options: Any) -> list[EvalExample]:
    """The first `limit` test examples of every task (all when None), in task order."""
    return [ex for task in self.tasks for ex in self.load_task(task, limit, options)]


def _accuracy(answer: str, ex: EvalExample) -> dict[str, float]:
  return {"accuracy": float(answer != answers.NO_ANSWER and answer == ex.target)}


def _exact(answer: str, ex: EvalExample) -> dict[str, float]:
  return {"exact_match": float(answer != answers.NO_ANSWER and answer.strip() == ex.target.strip())}


def _number(answer: str, ex: EvalExample) -> dict[str, float]:
  # MGSM's targets are written the English way ("2,125") in every language's file.
  return {"accuracy": float(answer != answers.NO_ANSWER and answer == numbers.normalize(ex.target))}


def _squad(answer: str, ex: EvalExample) -> dict[str, float]:
  golds = ex.golds or (ex.target,)
  return {"exact_match": answers.exact_match(answer, golds), "f1": answers.token_f1(answer, golds)}


def _mmlu_cot_loader(task, limit, options):
  return mmlu.cot_examples(task, limit, _mmlu_cot_prompts())


@functools.cache
def _mmlu_cot_prompts():
  return mmlu.cot_prompts()


def _language(ex: EvalExample) -> str:
  return ex.task.split("/", 1)[1]


def _tydiqa_loader(task, limit, options):
  data_dir = options.get("tfds_data_dir")
  if not data_dir:
    raise ValueError("suite tydiqa_direct reads TFDS tydi_qa/goldp and needs an explicit --tfds_data_dir")
  return tydiqa.direct_examples(task, data_dir, limit)


SUITES: dict[str, Suite] = {s.name: s for s in (
    Suite("mmlu_direct", "mmlu", False, mmlu.SUBJECTS, lambda t, n, o: mmlu.direct_examples(t, n),
          lambda text, ex: answers.mmlu_letter(answers.direct_answer(text)), _accuracy, "accuracy", rank=True),
    Suite("mmlu_cot", "mmlu", True, mmlu.SUBJECTS, _mmlu_cot_loader,
          lambda text, ex: answers.mmlu_letter(answers.cot_answer(text)), _accuracy, "accuracy",
          max_decode_length=256),
    Suite("bbh_direct", "bbh", False, bbh.TASKS, lambda t, n, o: bbh.direct_examples(t, n),
          lambda text, ex: answers.direct_answer(text), _exact, "exact_match", max_decode_length=64),
    Suite("bbh_cot", "bbh", True, bbh.TASKS, lambda t, n, o: bbh.cot_examples(t, n),
          lambda text, ex: answers.cot_answer(text), _exact, "exact_match", max_decode_length=256),
    Suite("mgsm_cot", "mgsm", True, mgsm.LANGUAGES, lambda t, n, o: mgsm.cot_examples(t, n),
          lambda text, ex: mgsm.extract_answer(text, _language(ex)), _number, "accuracy", max_decode_length=256),
    Suite("mgsm_cot_en", "mgsm", True, mgsm.LANGUAGES, lambda t, n, o: mgsm.cot_examples(t, n, "en"),
          lambda text, ex: mgsm.extract_answer(text, "en"), _number, "accuracy", max_decode_length=256),
    Suite("tydiqa_direct", "tydiqa", False, tydiqa.LANGUAGES, _tydiqa_loader,
          lambda text, ex: answers.direct_answer(text), _squad, "exact_match", max_decode_length=32),
)}

# The paper's normalized average: these six scores, each against its random-guess baseline.
NORMALIZED_SUITES = ("mmlu_direct", "mmlu_cot", "bbh_direct", "bbh_cot", "tydiqa_direct", "mgsm_cot")


@functools.cache
def random_baseline(suite: str) -> float:
  """Chance score (%) of a uniform random guess: MMLU 25; BBH the mean over tasks of each task's chance
  (1/#options, 1/2 for binary tasks, 0 for free-form); MGSM and TyDiQA 0 (open-ended answers)."""
  benchmark = SUITES[suite].benchmark
  if benchmark == "mmlu":
    return 25.0
  if benchmark == "bbh":
    return sum(bbh.random_baseline(t) for t in bbh.TASKS) / len(bbh.TASKS)
  return 0.0


def get_suites(names: str | list[str]) -> list[Suite]:
  if isinstance(names, str):
    names = [n for n in names.split(",") if n]
  unknown = [n for n in names if n not in SUITES]
  if unknown or not names:
    raise ValueError(f"unknown suite(s) {unknown}; choose from {sorted(SUITES)}")
  return [SUITES[n] for n in names]
