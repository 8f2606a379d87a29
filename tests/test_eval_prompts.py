"""Golden prompts on the real data dir: byte-exact MMLU (original + Flan CoT), BBH and MGSM prompts; TyDiQA on
TFDS mock data."""
from __future__ import annotations

import functools
import json

import pytest

from flan_jax.evaluation import bbh, mgsm, mmlu, suites, tydiqa
from flan_jax.evaluation.examples import EvalDataError, read_csv_rows

# hendrycks/test evaluate.py: header with the double space its subject formatter produces, 5 dev exemplars.
MMLU_ABSTRACT_ALGEBRA_0 = (
    "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
    "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
    "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
    "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\n"
    "Answer: B\n\n"
    "Statement 1 | Every element of a group generates a cyclic subgroup of the group. Statement 2 | The symmetric "
    "group S_10 has 10 elements.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer: C\n\n"
    "Statement 1| Every function from a finite set onto itself must be one to one. Statement 2 | Every subgroup "
    "of an abelian group is abelian.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\n"
    "Answer: A\n\n"
    "Find the characteristic of the ring 2Z.\nA. 0\nB. 3\nC. 12\nD. 30\nAnswer: A\n\n"
    "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\n"
    "D. 6\nAnswer:"
)


def test_mmlu_direct_prompt_is_the_original_format(flan_data_dir):
  ex = mmlu.direct_examples("abstract_algebra", limit=1)[0]
  assert ex.prompt == MMLU_ABSTRACT_ALGEBRA_0
  assert ex.target == "B" and ex.options == ("A", "B", "C", "D") and ex.task == "mmlu/abstract_algebra"
  assert mmlu.direct_examples("high_school_government_and_politics", 1)[0].prompt.startswith(
      "The following are multiple choice questions (with answers) about  high school government and politics."
      "\n\n")


def test_mmlu_cot_prompt_is_flan_prompt_plus_question(flan_data_dir):
  prompts = json.loads((flan_data_dir / "eval/mmlu/flan_cot_prompts.json").read_text())
  ex = mmlu.cot_examples("abstract_algebra", limit=1)[0]
  assert ex.prompt == prompts["abstract_algebra"] + (
      "Q: Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
      "(A) 0 (B) 4 (C) 2 (D) 6\nA: Let's think step by step.")


def test_mmlu_tables_cover_the_data(flan_data_dir):
  files = {p.name[:-len("_test.csv")] for p in (flan_data_dir / "eval/mmlu/test").glob("*_test.csv")}
  assert files == set(mmlu.SUBJECTS) and len(files) == 57
  counts = {c: list(mmlu.CATEGORIES.values()).count(c) for c in set(mmlu.CATEGORIES.values())}
  assert counts == {"STEM": 18, "humanities": 13, "social sciences": 12, "other": 14}
  assert sum(len(mmlu.read_split(s, "test")) for s in mmlu.SUBJECTS) == 14042


def test_bbh_cot_prompt_is_the_file_plus_question(flan_data_dir):
  for task in ("boolean_expressions", "snarks", "word_sorting"):
    raw = (flan_data_dir / f"eval/bbh/cot-prompts/{task}.txt").read_text()
    lines = raw.split("\n")
    assert lines[1] == "-----"
    body = "\n".join(lines[2:])
    data = json.loads((flan_data_dir / f"eval/bbh/{task}.json").read_text())["examples"][0]
    ex = bbh.cot_examples(task, limit=1)[0]
    assert ex.prompt == body + "\n\nQ: " + data["input"] + "\nA: Let's think step by step."
    assert ex.target == data["target"]


def test_bbh_direct_prompt_keeps_only_final_answers(flan_data_dir):
  ex = bbh.direct_examples("boolean_expressions", limit=1)[0]
  assert ex.prompt == (
      "Evaluate the result of a random Boolean expression.\n\n"
      "Q: not ( ( not not True ) ) is\nA: False\n\n"
      "Q: True and False and not True and True is\nA: False\n\n"
      "Q: not not ( not ( False ) ) is\nA: True\n\n"
      "Q: not ( True ) and ( True ) is\nA:")
  for task in bbh.TASKS:
    description, exemplars = bbh.parse_exemplars(task)
    assert len(exemplars) == 3 and "Let's think" not in bbh.direct_header(task)
  assert bbh.parse_exemplars("dyck_languages")[1][0][1] == "] } ]"


def test_bbh_random_baselines(flan_data_dir):
  assert bbh.random_baseline("boolean_expressions") == 50.0
  assert bbh.random_baseline("logical_deduction_five_objects") == pytest.approx(20.0)
  assert bbh.random_baseline("word_sorting") == 0.0
  assert 0 < suites.random_baseline("bbh_cot") < 50


def test_mgsm_prompt_with_exemplars(flan_data_dir):
  ex = mgsm.cot_examples("en", limit=1)[0]
  assert ex.prompt.startswith(
      "Question: Roger has 5 tennis balls. He buys 2 more cans of tennis balls. Each can has 3 tennis balls. How "
      "many tennis balls does he have now?\nStep-by-Step Answer: Roger started with 5 balls. 2 cans of 3 tennis "
      "balls each is 6 tennis balls. 5 + 6 = 11. The answer is 11.\n\nQuestion: ")
  assert ex.prompt.endswith(
      "so now there should be 3 + 2 = 5 cars. The answer is 5.\n\nQuestion: Janet’s ducks lay 16 eggs per day. "
      "She eats three for breakfast every morning and bakes muffins for her friends every day with four. She "
      "sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she "
      "make every day at the farmers' market?\nStep-by-Step Answer:")
  assert ex.prompt.count("\nStep-by-Step Answer:") == 9 and ex.target == "18"
  zh = mgsm.cot_examples("zh", limit=1)[0]
  assert zh.prompt.startswith("问题：罗杰有 5 个网球。") and zh.prompt.endswith(
      "\n\n问题：珍妮特的鸭子每天下 16 颗蛋。她每天早上早餐时吃 3 颗，每天用 4 颗为自己的朋友做松饼。剩下的鸭蛋她每天拿去农贸市场卖，"
      "每颗新鲜鸭蛋卖 2 美元。她每天在农贸市场赚多少钱？\n逐步解答：")
  zh_en = mgsm.cot_examples("zh", limit=1, exemplar_lang="en")[0]
  assert zh_en.prompt.startswith("Question: Roger") and zh_en.prompt.endswith("？\nStep-by-Step Answer:")
  assert mgsm.prefixes("fr") == ("Question : ", "Réponse étape par étape :")


@pytest.mark.parametrize("make, count", [
    (lambda: mgsm.cot_examples("en", 1), 8), (lambda: mgsm.cot_examples("fr", 1), 8),
    (lambda: mgsm.cot_examples("zh", 1), 8), (lambda: mgsm.cot_examples("zh", 1, "en"), 8),
    (lambda: bbh.cot_examples("navigate", 1), 4), (lambda: bbh.direct_examples("navigate", 1), 4),
    (lambda: mmlu.cot_examples("anatomy", 1), 6),
])
def test_stop_sequences_begin_every_later_exemplar(make, count, flan_data_dir):
  """A prompt's stop is what ends each block before an exemplar or the question: it occurs once before every
  exemplar that follows text (MGSM: 7 of 8; BBH, MMLU: all, after the task description) and before the question."""
  ex = make()[0]
  (stop,) = ex.stop_sequences
  assert ex.prompt.count(stop) == count


def test_mgsm_answer_markers_come_from_the_exemplars(flan_data_dir):
  final_answers = mgsm._exemplar_file()["EXEMPLAR_NUMBER_ANSWERS"]
  for lang in mgsm.LANGUAGES:
    markers = mgsm.answer_markers(lang)
    assert markers and not any(ch.isdigit() for m in markers for ch in m), lang
    # Every exemplar's own answer text yields its answer through the markers.
    for (_, answer), number in zip(mgsm.exemplars()[lang], final_answers):
      assert any(m in answer for m in markers) and mgsm.extract_answer(answer, lang) == str(number), (lang, answer)
  assert set(mgsm.answer_markers("de")) == {"Die Antwort ist", "Die Antwort lautet"}   # both phrasings
  assert mgsm.answer_markers("th") == ("คำตอบคือ",)                # units before it ("29 เครื่อง") dropped


def test_mgsm_markers_follow_the_exemplar_file(monkeypatch):
  table = {lang: {str(i): {"q": f"Q{i}: how many?", "a": f"A: {i} + 1 = {i + 1}. Final count: {i + 1}."}
                  for i in range(1, 9)} for lang in mgsm.LANGUAGES}
  for cache in (mgsm.exemplars, mgsm.answer_markers, mgsm._marker_pattern):
    monkeypatch.setattr(mgsm, cache.__name__, functools.cache(cache.__wrapped__))
  monkeypatch.setattr(mgsm, "_exemplar_file", lambda: {"MGSM_EXEMPLARS": table,
                                                       "EXEMPLAR_NUMBER_ANSWERS": list(range(2, 10))})
  assert mgsm.answer_markers("sw") == ("Final count:",)
  assert mgsm.extract_answer("Final count: 7. Then 12 more.", "sw") == "7"
  for lang in mgsm.LANGUAGES:
    for i in range(1, 9):
      table[lang][str(i)]["a"] = f"A: {i} + 1 = {i + 1}."
  mgsm.exemplars.cache_clear()
  mgsm.answer_markers.cache_clear()
  with pytest.raises(EvalDataError, match=r"exemplars.json: MGSM_EXEMPLARS\['sw'\] writes no phrase"):
    mgsm.answer_markers("sw")


def test_malformed_csv_names_file_and_line(tmp_path):
  path = tmp_path / "x_test.csv"
  path.write_text('q,a,b,c,d,A\n"multi\nline",a,b,c,d,B\nshort,row\n')
  with pytest.raises(EvalDataError, match=r"x_test.csv:4: expected 6 CSV fields, got 2"):
    read_csv_rows(path, 6)


def test_tydiqa_one_shot_from_mock_data(tmp_path):
  import tensorflow_datasets as tfds

  with tfds.testing.mock_data(num_examples=4, data_dir=str(tmp_path)):
    examples = tydiqa.direct_examples("sw", tmp_path, limit=2)
    rows = tydiqa.read_split("sw", tmp_path)
  assert len(examples) == 2 and [e.task for e in examples] == ["tydiqa/sw"] * 2
  shot, first = rows[0], rows[1]
  assert examples[0].prompt == (f"{shot['context']}\n\nQ: {shot['question']}\n\nA: {shot['answers'][0]}\n\n"
                                f"{first['context']}\n\nQ: {first['question']}\n\nA:")
  assert examples[0].golds == first["answers"]
  with pytest.raises(ValueError, match="tfds_data_dir"):
    suites.SUITES["tydiqa_direct"].examples(1)
