"""Answer extraction on hand-made outputs (malformed ones included), metrics and aggregation on hand-computed
cases, the normalized average."""
from __future__ import annotations

import pytest

from flan_jax.evaluation import answers, report, suites
from flan_jax.evaluation.examples import EvalExample


@pytest.mark.parametrize("text, want", [
    ("Let's see. 2 + 2 = 4. So the answer is 4.", "4"),
    ("So the answer is (A).", "(A)"),
    ("The answer is (B). Wait, no. So the answer is (C).", "(C)"),       # the last marker wins
    ("So THE ANSWER IS yes.\nQ: next question", "yes"),                  # case-insensitive, one line only
    ("So the answer is ] } ].", "] } ]"),
    ("So the answer is costume counterpart oven.", "costume counterpart oven"),
    ("So the answer is", ""),                                            # marker without an answer
    ("I think it is (A).", answers.NO_ANSWER),                           # no marker
    ("", answers.NO_ANSWER),
])
def test_cot_answer(text, want):
  assert answers.cot_answer(text) == want


@pytest.mark.parametrize("text, want", [
    ("(A)", "(A)"), (" False.\nQ: more", "False"), ("valid", "valid"), ("\n\n", ""), ("3929.", "3929"),
])
def test_direct_answer(text, want):
  assert answers.direct_answer(text) == want


@pytest.mark.parametrize("text, want", [
    ("(B)", "B"), ("B", "B"), ("B.", "B"), ("C) foo", "C"), ("D is right", "D"),
    ("E", ""), ("(AB)", ""), ("Because", ""), ("", ""), ("a", ""),
])
def test_mmlu_letter(text, want):
  assert answers.mmlu_letter(text) == want


@pytest.mark.parametrize("text, want", [
    ("5 + 6 = 11. The answer is 11.", "11"),
    ("She makes 9 * 2 = $18 every day.", "18"),
    ("It costs 1,250 dollars", "1250"),
    ("The answer is -3.", "-3"),
    ("2.50 dollars", "2.5"),
    ("18.0", "18"),
    ("答案是 8。", "8"),
    ("no numbers here", answers.NO_ANSWER),
    ("", answers.NO_ANSWER),
])
def test_last_number(text, want):
  assert answers.last_number(text) == want


def test_squad_metrics_hand_computed():
  assert answers.squad_normalize("The  Cat, sat!") == "cat sat"
  assert answers.exact_match("the cat", ["Cat", "dog"]) == 1.0
  assert answers.exact_match("cats", ["cat"]) == 0.0
  # pred "black cat sat" vs gold "the cat sat down": common {cat, sat} = 2; P = 2/3, R = 2/3 -> F1 = 2/3.
  assert answers.token_f1("black cat sat", ["the cat sat down"]) == pytest.approx(2 / 3)
  # Max over golds: exact on the second.
  assert answers.token_f1("dog", ["cat", "a dog"]) == 1.0
  assert answers.token_f1("", ["cat"]) == 0.0 and answers.token_f1("", [""]) == 1.0


def test_majority_vote():
  assert answers.majority_vote(["3", "4", "4", "3", ""]) == "3"         # tie -> first seen
  assert answers.majority_vote(["", "", "7"]) == "7"                    # empty answers never win
  assert answers.majority_vote(["", ""]) == answers.NO_ANSWER
  assert answers.majority_vote(["a", "b", "b"]) == "b"


def test_suite_scoring_rules():
  mgsm = suites.SUITES["mgsm_cot"]
  ex = EvalExample("mgsm/en", 0, "p", "1,000")
  assert mgsm.score(mgsm.extract("So she pays 1000 dollars."), ex) == {"accuracy": 1.0}
  assert mgsm.score(mgsm.extract("no idea"), ex) == {"accuracy": 0.0}
  bbh = suites.SUITES["bbh_cot"]
  ex = EvalExample("bbh/navigate", 0, "p", "No")
  assert bbh.score(bbh.extract("... So the answer is No."), ex) == {"exact_match": 1.0}
  assert bbh.score(bbh.extract("... So the answer is no."), ex) == {"exact_match": 0.0}   # exact, case kept
  assert bbh.score(bbh.extract("No."), ex) == {"exact_match": 0.0}   # CoT output without the marker
  mmlu = suites.SUITES["mmlu_cot"]
  ex = EvalExample("mmlu/anatomy", 0, "p", "C")
  assert mmlu.score(mmlu.extract("blah. The answer is (C)."), ex) == {"accuracy": 1.0}
  assert mmlu.score(mmlu.extract("The answer is C because"), ex) == {"accuracy": 1.0}
  assert mmlu.score(mmlu.extract("It is (C)."), ex) == {"accuracy": 0.0}
  tydi = suites.SUITES["tydiqa_direct"]
  ex = EvalExample("tydiqa/sw", 0, "p", "Nairobi", golds=("Nairobi", "jiji la Nairobi"))
  assert tydi.score(tydi.extract("jiji la Nairobi.\nQ:"), ex) == {"exact_match": 1.0, "f1": 1.0}


def test_aggregate_macro_averages_and_categories():
  records = [
      {"task": "mmlu/abstract_algebra", "metrics": {"accuracy": 1.0}},
      {"task": "mmlu/abstract_algebra", "metrics": {"accuracy": 0.0}},
      {"task": "mmlu/anatomy", "metrics": {"accuracy": 1.0}},
      {"task": "mmlu/philosophy", "metrics": {"accuracy": 0.0}},
      {"task": "mmlu/philosophy", "metrics": {"accuracy": 0.0}},
      {"task": "mmlu/philosophy", "metrics": {"accuracy": 1.0}},
  ]
  agg = report.aggregate("mmlu_direct", records)
  assert agg["tasks"]["mmlu/abstract_algebra"] == {"accuracy": 50.0, "count": 2}
  # Macro average over subjects: (50 + 100 + 33.33) / 3.
  assert agg["score"] == pytest.approx((50 + 100 + 100 / 3) / 3)
  assert agg["categories"] == pytest.approx({"STEM": 50.0, "other": 100.0, "humanities": 100 / 3})
  assert agg["baseline"] == 25.0 and agg["count"] == 6


def test_normalized_average_formula():
  assert report.normalized(25.0, 25.0) == 0.0
  assert report.normalized(100.0, 25.0) == 100.0
  assert report.normalized(40.0, 25.0) == pytest.approx(20.0)    # (40 - 25) / 75
  assert report.normalized(10.0, 25.0) == pytest.approx(-20.0)   # below chance goes negative
  results = {"mmlu_direct": {"score": 40.0, "baseline": 25.0}, "mgsm_cot": {"score": 10.0, "baseline": 0.0},
             "mgsm_cot_en": {"score": 90.0, "baseline": 0.0}}
  summary = report.summarize(results)
  assert summary["normalized"] == pytest.approx({"mmlu_direct": 20.0, "mgsm_cot": 10.0})  # mgsm_cot_en not one of six
  assert summary["normalized_average"] == pytest.approx(15.0) and not summary["normalized_complete"]


def test_unknown_suite_is_rejected():
  with pytest.raises(ValueError, match="unknown suite"):
    suites.get_suites("mmlu_direct,mmlu")
