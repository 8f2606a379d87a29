"""promptsource rendering on the real templates.yaml files of the data dir, with hand-written rows."""
from __future__ import annotations

import json

import pytest

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import promptsource as ps

COPA_ROW = {"premise": "The man broke his toe.", "choice1": "He dropped a hammer on his foot.",
            "choice2": "He got a hole in his sock.", "question": "cause", "label": 0, "idx": 0}


def test_copa_exercise_renders_input_target_and_choices():
  t = ps.load("super_glue", "copa")["exercise"]
  r = ps.render(t, COPA_ROW)
  assert r.inputs == ("Exercise: choose the most plausible alternative.\n\n"
                      "The man broke his toe.  because... \n"
                      "- He dropped a hammer on his foot.\n- He got a hole in his sock.")
  assert r.targets == "He dropped a hammer on his foot."
  assert r.answer_choices == ["He dropped a hammer on his foot.", "He got a hole in his sock."]
  # label -1 (test rows): the template gives no target, and P3 leaves the row out.
  assert ps.render(t, {**COPA_ROW, "label": -1}).targets == ""
  assert ps.p3_row(t, {**COPA_ROW, "label": -1}) is None


def test_answer_choices_from_a_list_feature_and_p3_row():
  t = ps.find_template("quail_no_prompt_text")
  row = {"context": "Ann met Bo.", "question": "Who did Ann meet?", "answers": ["Cy", "Bo", "Di", "Ed"],
         "correct_answer_id": 1}
  p3 = ps.p3_row(t, row)
  assert p3["answer_choices"] == ["Cy", "Bo", "Di", "Ed"]
  assert p3["targets_pretokenized"] == "Bo"
  assert "Ann met Bo." in p3["inputs_pretokenized"] and "Who did Ann meet?" in p3["inputs_pretokenized"]


def test_choice_filter_is_seeded_per_row():
  t = ps.find_template("cos_e_v1.11_i_think")
  row = {"question": "Where do you keep milk?", "choices": ["fridge", "oven", "sink", "car", "bed"],
         "answer": "fridge", "abstractive_explanation": "Milk stays cold in a fridge.", "id": "x",
         "extractive_explanation": "cold"}
  a = [ps.render(t, row, seed=s).inputs for s in range(6)]
  assert a == [ps.render(t, row, seed=s).inputs for s in range(6)]


def test_every_t0_sf_subtask_has_its_template():
  meta = json.loads(data_dir_lib.data_file("flan/t0_tasks.json").read_text())["T0_TRAIN_TASK_METADATA"]
  subs = [k.split(":", 1)[1] for k, v in meta.items() if not v["in_flan"] and "_score_eval" not in k]
  assert len(subs) == 193
  for s in subs:
    t = ps.find_template(s)
    assert ps.p3_name(t.dataset, t.subset, t.name) == s
  assert ps.p3_name("super_glue", "copa", "…What could happen next, C1 or C2?") == \
      "super_glue_copa__What_could_happen_next_C1_or_C2_"  # as P3 names it
  with pytest.raises(KeyError, match="no_such_subtask"):
    ps.find_template("no_such_subtask")


def test_template_line_numbers_point_at_the_template():
  t = ps.load("super_glue", "copa")["exercise"]
  lines = open(t.path, encoding="utf-8").read().splitlines()
  assert t.id in lines[t.line - 1] or t.id in lines[t.line - 2]


def test_sandbox_refuses_python_internals(tmp_path):
  t = ps.Template(id="x", name="evil", jinja="{{ ''.__class__.__mro__[1].__subclasses__() }} ||| y",
                  answer_choices=None, dataset="d", subset=None, path="d/templates.yaml", line=7)
  with pytest.raises(ps.PromptsourceError, match=r"d/templates.yaml:7 \(template 'evil'\)"):
    ps.render(t, {})


def test_missing_feature_names_file_line_and_template():
  t = ps.load("super_glue", "copa")["exercise"]
  with pytest.raises(ps.PromptsourceError, match=r"copa/templates.yaml:\d+ \(template 'exercise'\)"):
    ps.render(t, {"premise": "p"})


def test_bad_yaml_names_file_and_line(tmp_path):
  d = tmp_path / "promptsource" / "templates" / "broken"
  d.mkdir(parents=True)
  (d / "templates.yaml").write_text("dataset: broken\ntemplates:\n  a: !Template\n    jinja: 'x\n   bad: [\n")
  data_dir_lib.set_data_dir(tmp_path)
  try:
    with pytest.raises(ps.PromptsourceError, match=r"broken/templates.yaml:\d+: not valid YAML"):
      ps.load("broken")
  finally:
    data_dir_lib.set_data_dir(None)

