"""Template filling, options formatting and zero-shot round-robin on the real CoT data."""
from __future__ import annotations

import json
import random

import pytest

from flan_jax.data.catalog import registry
from flan_jax.data.rendering import flan_render
from flan_jax.data.rendering import templates as tpl
from tests.flan_task_fixtures import hand_rows


@pytest.fixture(scope="session")
def templates_json(flan_data_dir):
  return json.loads((flan_data_dir / "flan/templates.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def cot_tasks():
  from tasks import cot
  cot.register()
  return cot


def test_fill_replaces_word_fields_only():
  assert tpl.fill("Q: {question} {x-y} {} A:", {"question": "why?", "": "E"}) == "Q: why? {x-y} E A:"
  assert tpl.fill("{n} items", {"n": 3}) == "3 items"
  with pytest.raises(tpl.TemplateError, match="needs feature 'answer'"):
    tpl.fill("{answer}", {"question": "q"})


def test_format_options_deterministic():
  assert tpl.format_options(["yes", "no"]) == "OPTIONS:\n- yes\n- no"


def test_random_options_letters_become_the_answer(flan_data_dir):
  t = tpl.load_templates()
  letters = markers = None
  for seed in range(500):
    rng = random.Random(seed)
    start_i = rng.randrange(len(t.opt_start_strings))
    names_i = rng.randrange(len(t.opt_item_names))
    names = t.opt_item_names[names_i][:3]
    stripped = [n.strip() for n in names]
    if len(set(stripped)) == 3 and letters is None:
      letters = seed
    if len(set(stripped)) == 1 and markers is None:
      markers = seed
  assert letters is not None and markers is not None
  for seed, abc in ((letters, True), (markers, False)):
    rng = random.Random(seed)
    start = t.opt_start_strings[rng.randrange(len(t.opt_start_strings))]
    names = t.opt_item_names[rng.randrange(len(t.opt_item_names))][:3]
    ends = t.opt_item_end_strs[rng.randrange(len(t.opt_item_end_strs))]
    text, answer = tpl.format_options_random(["red", " green ", "blue"], "green", t,
                                             random.Random(seed))
    assert text == start + names[0] + "red" + ends[0] + names[1] + " green " + ends[1] + names[2] + \
        "blue" + ends[2]
    assert answer == (names[1].strip() if abc else "green")


def test_templates_match_the_json(templates_json):
  t = tpl.load_templates()
  assert t.zero_shot("cot_gsm8k") == [tuple(p) for p in templates_json["PATTERNS"]["cot_gsm8k"]]
  fs = t.few_shot("stream_aqua", options=False)[1]
  raw = templates_json["FEWSHOT_PATTERNS_NO_OPTIONS"]["stream_aqua"][1]
  assert (fs.inputs_prefix, fs.targets_prefix, fs.example_separator) == (
      raw["inputs_prefix"], raw["targets_prefix"], raw["example_separator"])
  assert fs.combined_inputs_w_target_prefix == raw["inputs_prefix"] + raw["inputs"] + \
      raw["x_y_delimiter"] + raw["targets_prefix"]
  with pytest.raises(tpl.TemplateError, match="no PATTERNS entry 'nope'"):
    t.zero_shot("nope")


@pytest.mark.parametrize("suffix,table,ttype", [
    ("_template_0to10_zero_shot", "PATTERNS", "zs_opt"),
    ("_template_0to10_no_opt_zero_shot", "PATTERNS_NO_OPTIONS", "zs_noopt"),
])
def test_zero_shot_round_robin_gsm8k(cot_tasks, flan_data_dir, templates_json, suffix, table, ttype):
  src = registry.flan_source("cot_gsm8k" + suffix)
  examples = list(flan_render.render(src.dataset, src.variant, src.name))
  rows = hand_rows(flan_data_dir / "flan/cot/gsm8k_train.tsv")
  pats = templates_json[table]["cot_gsm8k"]
  assert len(rows) == 7473 and len(pats) == 10
  assert len(examples) == 7470 == src.num_examples()
  for i in list(range(25)) + list(range(7440, 7470)):
    ex, row = examples[i], rows[i]
    inputs, targets = pats[i % 10]
    expected_in = inputs.replace("{question}", row["question"]).replace("{answer}", row["answer"])
    expected_in = expected_in.replace("{chain_of_thought}", row["chain_of_thought"])
    expected_tg = targets.replace("{answer}", row["answer"]).replace(
        "{chain_of_thought}", row["chain_of_thought"]).replace("{question}", row["question"])
    assert ex["inputs"] == expected_in and ex["targets"] == expected_tg
    assert ex["_template_idx"] == i % 10 and ex["_template_type"] == ttype
    assert ex["_task_name"] == "cot_gsm8k" and ex["_task_source"] == "CoT"


def test_aqua_has_fifteen_templates(cot_tasks):
  src = registry.flan_source("stream_aqua_template_0to10_zero_shot")
  examples = list(flan_render.render(src.dataset, src.variant, src.name))
  assert len(examples) == 2715 and {e["_template_idx"] for e in examples} == set(range(15))


def test_input_inversion_rows(cot_tasks, flan_data_dir, templates_json):
  src = registry.flan_source("cot_input_inversion_gsm8k_template_0to10_zero_shot")
  examples = list(flan_render.render(src.dataset, src.variant, src.name))
  assert len(examples) == 7470 and len(templates_json["PATTERNS"]["cot_input_inversion_gsm8k"]) == 18
  row = hand_rows(flan_data_dir / "flan/cot/gsm8k_train.tsv")[19]
  pat = templates_json["PATTERNS"]["cot_input_inversion_gsm8k"][1]
  assert examples[19]["inputs"] == pat[0].replace("{chain_of_thought}", row["chain_of_thought"]) \
      .replace("{answer}", row["answer"])
  assert examples[19]["targets"] == pat[1].replace("{question}", row["question"])
  assert examples[19]["_task_name"] == "cot_gsm8k_ii" and examples[19]["_task_source"] == "CoT"
  for name, n in (("cot_input_inversion_strategyqa", 2052), ("cot_input_inversion_creak", 6912),
                  ("cot_input_inversion_sensemaking", 6066), ("stream_input_inversion_aqua", 2718)):
    assert registry.flan_source(f"{name}_template_0to10_zero_shot").num_examples() == n
