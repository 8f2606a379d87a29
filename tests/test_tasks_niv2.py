"""NIv2 tasks (MMLU and test tasks held out, inline one-shot pattern, x_shot) and the capped mixtures."""
from __future__ import annotations

import json

import pytest
import seqio

from flan_jax.data.catalog import availability, mixing, registry
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.rendering import flan_render


@pytest.fixture(scope="session")
def registered():
  import tasks
  return tasks.REGISTERED


def test_training_tasks_hold_out_mmlu_and_test_split(registered, flan_data_dir):
  from tasks import niv2
  names = set(registered["niv2"])
  assert "task1191_food_veg_nonveg_template_0to10_zero_shot" in names
  for held_out in ("task691_mmmlu_answer_generation_college_physics",
                   "task719_mmmlu_answer_generation_management", "task640_esnli_classification"):
    assert f"{held_out}_template_0to10_zero_shot" not in names
  assert all(not (664 <= niv2.task_id(t) <= 667 or 685 <= niv2.task_id(t) <= 737)
             for t in niv2.training_tasks())
  meta = json.loads((flan_data_dir / "flan/niv2_tasks.json").read_text())["NATINST_META_DATA"]
  test = set((flan_data_dir / "niv2/splits/default/test_tasks.txt").read_text().split())
  mmlu = [t for t in meta if 664 <= int(t[4:t.index("_")]) <= 667 or 685 <= int(t[4:t.index("_")]) <= 737]
  assert len(mmlu) == 57
  # 40 tasks are listed twice ('-' vs '_' in the name); each is trained on once.
  kept = {niv2.seqio_name(t) for t in meta if t not in test and t not in mmlu}
  assert len(niv2.training_tasks()) == len(kept) == 1441


def test_inline_one_shot_pattern(registered, flan_data_dir):
  raw = json.loads((flan_data_dir / "niv2/tasks/task1191_food_veg_nonveg.json").read_text())
  meta = json.loads((flan_data_dir / "flan/niv2_tasks.json").read_text())["NATINST_META_DATA"]
  pos = meta["task1191_food_veg_nonveg"]["positive_examples"]
  pats = json.loads((flan_data_dir / "flan/templates.json").read_text())["INLINE_FS_PATTERNS"]["natinst_v2"]
  src = registry.flan_source("task1191_food_veg_nonveg_template_mix_five_shot")
  examples = list(flan_render.render(src.dataset, src.variant, src.name))
  assert len(examples) == 100 == src.num_examples()  # 101 instances, groups of 10
  for i in (0, 7, 99):
    inst = raw["Instances"][i]
    fields = {"Definition": raw["Definition"][0], "ex_input": pos["input"],
              "ex_output": pos["output"], "ex_explanation": pos["explanation"],
              "input": inst["input"], "output": inst["output"][0]}
    want = pats[i % 10][0]
    for k, v in fields.items():
      want = want.replace("{" + k + "}", v)
    assert examples[i]["inputs"] == want and examples[i]["targets"] == inst["output"][0]
    assert examples[i]["_template_type"] == "fs_opt" and examples[i]["_task_source"] == "NIv2"


def test_x_shot_starts_with_the_definition(registered, flan_data_dir):
  raw = json.loads((flan_data_dir / "niv2/tasks/task1191_food_veg_nonveg.json").read_text())
  src = registry.flan_source("task1191_food_veg_nonveg_template_0to10_x_shot")
  examples = list(flan_render.render(src.dataset, src.variant, src.name))
  assert examples and all(e["inputs"].startswith(raw["Definition"][0] + "\n\n") for e in examples)
  assert all(e["targets"] == e["targets"].strip() for e in examples)


def test_missing_niv2_task_file(registered):
  task = seqio.get_mixture_or_task("task001_quoref_question_generation_template_0to10_zero_shot")
  with pytest.raises(data_dir_lib.DataMissingError, match="flan-jax data download --only niv2"):
    task.get_dataset(sequence_length=None, shuffle=False)


def test_rates_are_capped_counts(registered, flan_data_dir):
  meta = json.loads((flan_data_dir / "flan/niv2_tasks.json").read_text())["NATINST_META_DATA"]
  r = mixing.rates("palmflan_niv2_zs_opt")
  for name, rate in list(r.items())[:200]:
    n = meta[name.removesuffix("_template_0to10_zero_shot")]["number_examples"]
    assert rate == min(5000, n // 10 * 10)
  assert max(r.values()) == 5000
  # cot_zsopt: CoT bases at min(100000, rows after grouping), input inversion at 0.3 of the total.
  cot = mixing.rates("cot_zsopt")
  rows = {"gsm8k": 7473, "strategyqa": 2061, "creak": 6915, "qasc": 1084, "ecqa": 7112,
          "sensemaking": 6070}
  base = {f"cot_{k}_template_0to10_zero_shot": v // 10 * 10 for k, v in rows.items()}
  base["stream_aqua_template_0to10_zero_shot"] = 2715
  base["cot_esnli_template_0to10_zero_shot"] = 36170  # num_cases.json: no TSV here
  base["stream_qed_template_0to10_zero_shot"] = 5145
  ii = {f"cot_input_inversion_{k}_template_0to10_zero_shot": v // 18 * 18 for k, v in rows.items()}
  ii["stream_input_inversion_aqua_template_0to10_zero_shot"] = 2718
  ii["cot_input_inversion_esnli_template_0to10_zero_shot"] = 36170
  ii["stream_input_inversion_qed_template_0to10_zero_shot"] = 5145
  for name, n in base.items():
    assert cot[name] == pytest.approx(n / sum(base.values()))
  for name, n in ii.items():
    assert cot[name] == pytest.approx(0.3 * n / sum(ii.values()))
  sub = mixing.rates("cot_submix")
  # cot_zsopt and cot_fsopt enter at rate 1 each, seqio splitting each over its tasks.
  assert sum(v for k, v in sub.items() if "x_shot" in k or "five_shot" in k) == pytest.approx(1.0)
  assert sum(sub.values()) == pytest.approx(2.0)


def test_available_mixture_leaves_out_missing_files(registered, capfd):
  name = availability.resolve("cot_zsopt", only_available=True)
  kept = mixing.rates(name)
  err = capfd.readouterr().err
  assert "using 14 of its 18 tasks as 'cot_zsopt_available'" in err and len(kept) == 14
  with pytest.raises(KeyError, match="unknown tasks"):
    mixing.register_capped("bad_mix", ["no_such_task"], 10)


def test_readers_of_a_task_file_share_one_parse_and_skips_count_once(tmp_path, monkeypatch):
  from flan_jax.data.files import readers
  task = "task9999_shared_parse_test"
  (tmp_path / "niv2" / "tasks").mkdir(parents=True)
  instances = [{"id": f"i{i}", "input": f"in {i}", "output": [f"out {i}", "alt"]} for i in range(4)]
  instances.insert(2, {"id": "bad", "input": "no output"})
  (tmp_path / "niv2" / "tasks" / f"{task}.json").write_text(json.dumps({"Definition": ["Do it."],
                                                                        "Instances": instances}, indent=1))
  monkeypatch.setattr(data_dir_lib, "_explicit", tmp_path)
  readers.reset_skipped_rows()
  (d1, rows1), (d2, rows2) = readers.read_niv2_instances(task), readers.read_niv2_instances(task)
  assert d1 == d2 == "Do it."
  first, second = list(rows1), list(rows2)
  assert first == second == [(i + (i >= 2), {"input": f"in {i}", "output": f"out {i}"}) for i in range(4)]
  assert first[0][1]["input"] is second[0][1]["input"]  # one parse behind both readers
  assert readers.skipped_rows() == {str(tmp_path / "niv2" / "tasks" / f"{task}.json"): 1}
