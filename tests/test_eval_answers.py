"""Answer extraction on hand-made outputs (malformed ones included), metrics and aggregation on hand-computed
cases, the normalized average; per suite, a table of realistic outputs, each with the verdict its benchmark's
convention gives (outputs are cut at the suite's stop sequences first, as the runner does)."""
from __future__ import annotations

import pytest

from flan_jax import stopping
from flan_jax.evaluation import answers, bbh, mgsm, mmlu, report, suites, tydiqa
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
  mgsm_suite = suites.SUITES["mgsm_cot"]
  ex = EvalExample("mgsm/en", 0, "p", "1,000")
  assert mgsm_suite.score(mgsm_suite.extract("So she pays 1000 dollars.", ex), ex) == {"accuracy": 1.0}
  assert mgsm_suite.score(mgsm_suite.extract("no idea", ex), ex) == {"accuracy": 0.0}
  bbh_suite = suites.SUITES["bbh_cot"]
  ex = EvalExample("bbh/navigate", 0, "p", "No")
  assert bbh_suite.score(bbh_suite.extract("... So the answer is No.", ex), ex) == {"exact_match": 1.0}
  assert bbh_suite.score(bbh_suite.extract("... So the answer is no.", ex), ex) == {"exact_match": 0.0}
  assert bbh_suite.score(bbh_suite.extract("No.", ex), ex) == {"exact_match": 0.0}   # CoT output without the marker
  tydi = suites.SUITES["tydiqa_direct"]
  ex = EvalExample("tydiqa/sw", 0, "p", "Nairobi", golds=("Nairobi", "jiji la Nairobi"))
  assert tydi.score(tydi.extract("jiji la Nairobi.\nQ:", ex), ex) == {"exact_match": 1.0, "f1": 1.0}


def test_aggregate_macro_averages_and_categories():
  records = [
      {"task": "mmlu/abstract_algebra", "answer": "A", "metrics": {"accuracy": 1.0}},
      {"task": "mmlu/abstract_algebra", "answer": "", "metrics": {"accuracy": 0.0}},
      {"task": "mmlu/anatomy", "answer": "B", "metrics": {"accuracy": 1.0}},
      {"task": "mmlu/philosophy", "answer": "C", "metrics": {"accuracy": 0.0}},
      {"task": "mmlu/philosophy", "answer": "", "metrics": {"accuracy": 0.0}},
      {"task": "mmlu/philosophy", "answer": "D", "metrics": {"accuracy": 1.0}},
  ]
  agg = report.aggregate("mmlu_direct", records)
  assert agg["tasks"]["mmlu/abstract_algebra"] == {"accuracy": 50.0, "count": 2}
  # Macro average over subjects: (50 + 100 + 33.33) / 3.
  assert agg["score"] == pytest.approx((50 + 100 + 100 / 3) / 3)
  assert agg["categories"] == pytest.approx({"STEM": 50.0, "other": 100.0, "humanities": 100 / 3})
  assert agg["baseline"] == 25.0 and agg["count"] == 6 and agg["no_answer"] == 2


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


def _verdict(suite_name: str, output: str, ex: EvalExample) -> float:
  suite = suites.SUITES[suite_name]
  text, _ = stopping.cut(output, ex.stop_sequences)
  return suite.score(suite.extract(text, ex), ex)[suite.primary]


@pytest.mark.parametrize("output, target, correct", [
    ("The hyoid comes from the second and third arches. The answer is (D).", "D", True),
    ("The answer is (B)", "B", True),                                      # no final period
    ("the answer is (B).", "B", True),                                     # lowercase marker
    ("THE ANSWER IS (B).", "B", True),
    ("The answer is B.", "B", True),                                       # letter without parentheses
    ("The answer is B) Paris.", "B", True),
    ("The answer is (B) Paris.", "B", True),                               # answer restated after the letter
    ("The answer is  (B)", "B", True),
    ("We need the capital.\nThe answer is\n(B).", "B", True),             # letter on the next line
    ("The answer is (A). Wait, A is a city in Italy. The answer is (B).", "B", True),   # the last marker wins
    ("The answer is (B). Q: Which of the following is a prime? (A) 4 (B) 6. The answer is (A).", "B", True),
    ("The answer is (B).\n\nQ: What is 2 + 2?\nA: Let's think step by step. The answer is (C).", "B", True),
    ("The answer is (C).", "B", False),
    ("The answer is (B). The answer is (C).", "B", False),
    ("(B) is correct.", "B", False),                                       # no marker
    ("B", "B", False),
    ("The correct answer is (B).", "B", False),                            # not the exemplars' marker
    ("The answer is Paris.", "B", False),                                  # wrong format: no letter
    ("The answer is (b).", "B", False),                                    # letters are capitals
    ("The answer is: (B).", "B", False),                                   # the letter must follow the marker
    ("The answer is (E).", "B", False),
    ("The answer is (AB).", "B", False),
    ("The answer is D because (B) is wrong.", "B", False),
])
def test_mmlu_cot_verdicts(output, target, correct):
  ex = EvalExample("mmlu/anatomy", 0, "p", target, stop_sequences=mmlu.COT_STOP_SEQUENCES)
  assert _verdict("mmlu_cot", output, ex) == float(correct)


@pytest.mark.parametrize("suite, output, target, correct", [
    ("bbh_cot", "Since (0, 0) is (0, 0), we are indeed where we started. So the answer is Yes.", "Yes", True),
    ("bbh_cot", "So the answer is Yes", "Yes", True),                     # no final period
    ("bbh_cot", "so the answer is Yes.", "Yes", True),                    # lowercase marker
    ("bbh_cot", "So the answer is yes.", "Yes", False),                   # exact match keeps case
    ("bbh_cot", "So the answer is (A).", "(A)", True),
    ("bbh_cot", "So the answer is A.", "(A)", False),                     # the options are written "(A)"
    ("bbh_cot", "So the answer is (A) Yes.", "(A)", False),               # answer restated: no longer exact
    ("bbh_cot", "So the answer is ] ) }.", "] ) }", True),
    ("bbh_cot", "So the answer is 24.", "24", True),
    ("bbh_cot", "(-3 + 5) * -12 = -24. So the answer is -24.", "-24", True),   # negative number
    ("bbh_cot", "So the answer is 24.", "-24", False),
    ("bbh_cot", "So the answer is 1,024.", "1024", False),                # separators are not exact
    ("bbh_cot", "So the answer is valid.", "valid", True),
    ("bbh_cot", "So the answer is invalid.", "valid", False),
    ("bbh_cot", "So the answer is No. Q: Today is Christmas Eve of 1937. What is the date?", "No", True),
    ("bbh_cot", "So the answer is No.\n\nQ: Is it plausible?\nA: Let's think step by step. So the answer is Yes.",
     "No", True),
    ("bbh_cot", "The answer is apple banana cherry.", "apple banana cherry", True),
    ("bbh_cot", "So the answer is apple banana cherry", "apple banana cherry", True),
    ("bbh_cot", "Let's think step by step. 3 + 2 = 5.", "5", False),     # no marker
    ("bbh_cot", "So the answer is False.", "True", False),
    ("bbh_direct", "Yes", "Yes", True),
    ("bbh_direct", " Yes.", "Yes", True),
    ("bbh_direct", "Yes Q: Is the following sentence plausible?", "Yes", True),
    ("bbh_direct", "Yes\n\nQ: Is the following sentence plausible?", "Yes", True),
    ("bbh_direct", "yes", "Yes", False),
    ("bbh_direct", "(A)", "(A)", True),
    ("bbh_direct", "(A) Yes", "(A)", False),
])
def test_bbh_verdicts(suite, output, target, correct):
  ex = EvalExample("bbh/navigate", 0, "p", target, stop_sequences=bbh.STOP_SEQUENCES)
  assert _verdict(suite, output, ex) == float(correct)


@pytest.mark.parametrize("suite, lang, output, target, correct", [
    ("mgsm_cot", "en", "Roger started with 5 balls. 5 + 6 = 11. The answer is 11.", "11", True),
    ("mgsm_cot", "en", "The answer is 7. He had 15 marbles at first.", "7", True),      # keeps talking
    ("mgsm_cot", "en", "... The answer is 9. Question: Ana has 2 pens and buys 3 more.", "9", True),   # runs on
    ("mgsm_cot", "en", "The answer is 9.\n\nQuestion: Ana has 2 pens.\nStep-by-Step Answer: 2 + 3 = 5. "
     "The answer is 5.", "9", True),
    ("mgsm_cot", "en", "the answer is $1,250.", "1,250", True),           # lowercase marker, currency
    ("mgsm_cot", "en", "The answer is 1,250 dollars", "1250", True),      # unit, no final period
    ("mgsm_cot", "en", "THE ANSWER IS 42", "42", True),
    ("mgsm_cot", "en", "The answer is 18.0.", "18", True),
    ("mgsm_cot", "en", "The answer is 1,000,000.", "1000000", True),
    ("mgsm_cot", "en", "The answer is -3.", "3", False),                  # the sign is kept
    ("mgsm_cot", "en", "The answer is 2.5 hours.", "3", False),
    ("mgsm_cot", "en", "She has 20 - 12 = 8 left. So she has 8 lollipops.", "8", True),   # no marker: last number
    ("mgsm_cot", "en", "5 + 3 = 8. The answer is eight.", "8", True),     # no number after it: last number
    ("mgsm_cot", "en", "The answer is 12. Thus the answer is", "12", True),
    ("mgsm_cot", "en", "No idea.", "8", False),
    ("mgsm_cot", "de", "Die Antwort lautet 2.500.", "2500", True),        # German digit groups
    ("mgsm_cot", "de", "Er verdient 2,50 € pro Stunde, also 18 €. Die Antwort ist 18.", "18", True),
    ("mgsm_cot", "de", "The answer is 7. Die Antwort lautet 9.", "9", True),
    ("mgsm_cot", "de", "The answer is 2.500", "2500", True),              # English marker, German number
    ("mgsm_cot", "fr", "La réponse est 5 000 €.", "5000", True),
    ("mgsm_cot", "fr", "la réponse est 1,5.", "1.5", True),
    ("mgsm_cot", "es", "La respuesta es 1.250.", "1250", True),
    ("mgsm_cot", "ru", "Ответ — 70 000.", "70000", True),
    ("mgsm_cot", "ja", "答えは11個です。", "11", True),
    ("mgsm_cot", "zh", "所以现在有 29 台电脑。答案是 1,000。", "1000", True),
    ("mgsm_cot", "th", "ดังนั้น 5 + 6 = 11 คำตอบคือ 35 บาท", "35", True),
    ("mgsm_cot", "sw", "Jibu ni 18.", "18", True),
    ("mgsm_cot", "bn", "উত্তর হল 29।", "29", True),
    ("mgsm_cot", "te", "సమాధానం 33.", "33", True),
    ("mgsm_cot_en", "de", "The answer is 2.500.", "2500", False),         # English exemplars: 2.5
    ("mgsm_cot_en", "de", "The answer is 2,500. Question: Wie viele?", "2500", True),
])
def test_mgsm_verdicts(suite, lang, output, target, correct):
  exemplar_lang = "en" if suite == "mgsm_cot_en" else lang
  ex = EvalExample(f"mgsm/{lang}", 0, "p", target, stop_sequences=mgsm.stop_sequences(exemplar_lang))
  assert _verdict(suite, output, ex) == float(correct)


@pytest.mark.parametrize("output, golds, correct", [
    ("Nairobi", ("Nairobi",), True),
    ("Nairobi.", ("Nairobi",), True),
    ("nairobi", ("Nairobi",), True),
    ("The Nairobi", ("Nairobi",), True),                                  # English articles are dropped
    ("  Dodoma  ", ("Dodoma",), True),
    ("Dodoma!", ("Dodoma",), True),
    ("Nairobi\n\nKenya ni nchi ya Afrika Mashariki.", ("Nairobi",), True),   # runs into the next context
    ("Nairobi\nQ: Mji mkuu wa Tanzania ni upi?", ("Nairobi",), True),     # first line
    ("jiji la Nairobi", ("Nairobi", "jiji la Nairobi"), True),           # any gold
    ("1963", ("1963",), True),
    ("1963.", ("1963",), True),
    ("1,000", ("1000",), True),                                           # ASCII punctuation is dropped
    ("Москва", ("Москва",), True),
    ("москва", ("Москва",), True),
    ("an apple", ("apple",), True),
    ("Dar es Salaam", ("Dar es Salaam",), True),
    ("Nairobi, Kenya", ("Nairobi",), False),
    ("mwaka 1963", ("1963",), False),
    ("Julius Nyerere", ("Julius Kambarage Nyerere",), False),
    ("", ("Nairobi",), False),
    ("«Москва»", ("Москва",), False),                                     # SQuAD drops only ASCII punctuation
    ("Helsinki, Suomi", ("Helsinki",), False),
    ("Dar-es-Salaam", ("Dar es Salaam",), False),
])
def test_tydiqa_verdicts(output, golds, correct):
  ex = EvalExample("tydiqa/sw", 0, "p", golds[0], golds=golds, stop_sequences=tydiqa.STOP_SEQUENCES)
  assert _verdict("tydiqa_direct", output, ex) == float(correct)
