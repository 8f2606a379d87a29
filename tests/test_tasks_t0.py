"""T0-SF: every subtask through the full pipeline (read -> preprocess -> template -> tokenize).

P3 rows are `flan_jax.data.files.mock_sources`' hand-written ones (`huggingface:bigscience__p3` cannot be mocked
offline), with P3's features (`inputs_pretokenized`, `targets_pretokenized`, and for multiple choice
`answer_choices`). The promptsource route renders raw rows written as JSON lines with the real templates.
"""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import seqio

from flan_jax.data.catalog import registry
from flan_jax.data.files import mock_sources, readers, tfds_source
from flan_jax.data.rendering import flan_render
from flan_jax.data.seqio_adapter import vocab
from tasks import t0

NUM_ROWS = 20


@pytest.fixture(scope="module")
def t0_env(tmp_path_factory):
  with mock_sources.mock_tfds_sources(tmp_path_factory.mktemp("tfds"), num_rows=NUM_ROWS,
                                      p3={st.tfds: st.multiple_choice for st in t0.subtasks()}):
    yield t0.register()


def test_the_193_subtasks():
  subs = t0.subtasks()
  assert len(subs) == 193
  assert all(":" in s.key and s.key.endswith(s.subtask) for s in subs)
  by_type = {tt: sum(s.task_type == tt for s in subs) for tt in t0.TASK_TYPES}
  meta = t0.all_p3_subtasks()
  expected = {tt: sum(1 for k, v in meta.items() if v["task_type"] == tt and not v["in_flan"]
                      and "_score_eval" not in k) for tt in t0.TASK_TYPES}
  assert by_type == expected and sum(expected.values()) == 193
  assert not any("_score_eval" in s.subtask for s in subs)


def _check(st, ex):
  assert ex["_task_name"] == st.subtask and ex["_task_source"] == "P3"
  assert ex["inputs"].startswith(f"Question 0 about {st.subtask}? Pick well.")  # newlines -> spaces, stripped
  assert ex["targets"] == ("choice 0" if st.multiple_choice else "answer 0")


def test_every_subtask_renders_and_tokenizes(t0_env):
  """All 193 through preprocess -> template -> the task's own vocabulary (seqio's graph per task would
  cost seconds each on 2 cores; the seqio pipeline itself is run below, once per task type)."""
  voc = vocab.get_vocabulary()
  for st in t0.subtasks():
    src = registry.flan_source(f"{st.key}_template_0_zero_shot")
    ex = next(flan_render.render(src.dataset, src.variant, src.name))
    _check(st, ex)
    assert voc.decode(voc.encode(ex["targets"])) == ex["targets"]


def test_seqio_pipeline_per_task_type(t0_env):
  eos = vocab.get_vocabulary().eos_id
  for tt in t0.TASK_TYPES:
    st = next(s for s in t0.subtasks() if s.task_type == tt)
    task = seqio.get_mixture_or_task(f"{st.key}_template_0_zero_shot")
    ex = next(task.get_dataset(sequence_length=None, split="train", shuffle=False).as_numpy_iterator())
    _check(st, {k: v.decode() if isinstance(v, bytes) else v for k, v in ex.items()
                if k in ("_task_name", "_task_source")} |
           {"inputs": ex["inputs_pretokenized"].decode(), "targets": ex["targets_pretokenized"].decode()})
    assert ex["inputs"][-1] == eos and ex["targets"][-1] == eos


def test_variants_and_options(t0_env):
  sep = next(s for s in t0.subtasks() if s.task_type == t0.MC_SEPARATED)
  qa = next(s for s in t0.subtasks() if s.task_type == t0.QA)
  names = set(t0_env)
  assert f"{sep.key}_template_0to10_non_deter_opt_zero_shot" in names
  assert f"{qa.key}_template_0to10_non_deter_opt_zero_shot" not in names
  assert len([n for n in t0_env if n.startswith(sep.key + "_")]) == 24
  assert len([n for n in t0_env if n.startswith(qa.key + "_")]) == 23
  src = registry.flan_source(f"{sep.key}_template_0to10_zero_shot")
  first = next(flan_render.render(src.dataset, src.variant, src.name))
  assert "OPTIONS:\n- choice 0\n- choice 1\n- choice 2" in first["inputs"]
  src = registry.flan_source(f"{sep.key}_template_0to10_no_opt_zero_shot")
  assert all("OPTIONS" not in o["inputs"] for o in flan_render.render(src.dataset, src.variant, src.name))
  assert seqio.get_mixture_or_task(f"{qa.key}_template_0_zero_shot").postprocess_fn is not None


def test_preprocess_by_hand():
  ex = {"inputs_pretokenized": b" Is it\nraining?\n", "targets_pretokenized": b"\n Yes \n",
        "answer_choices": np.array([b"No\n", b" Yes"], dtype=object)}
  assert t0.preprocess(ex, multiple_choice=True) == {"question": "Is it raining?", "answer": "Yes",
                                                     "options": ["No", "Yes"]}
  assert t0.preprocess(ex, multiple_choice=False) == {"question": "Is it raining?", "answer": "Yes"}
  with pytest.raises(t0.mp.MalformedRow, match="not among the answer choices"):
    t0.preprocess({**ex, "targets_pretokenized": b"Maybe"}, multiple_choice=True)


def test_malformed_rows_are_warned_and_counted(capsys):
  st = next(s for s in t0.subtasks() if s.multiple_choice)
  row = functools.partial(mock_sources.p3_row, st.subtask, st.multiple_choice)
  rows = [(0, row(0)), (1, {**row(1), "targets_pretokenized": b"nope"}), (2, row(2))]
  readers.reset_skipped_rows()
  kept = list(t0._preprocessed(st, "tfds:x[train]", iter(rows)))
  assert [i for i, _ in kept] == [0, 2]
  assert readers.skipped_rows() == {"tfds:x[train]": 1}
  assert "tfds:x[train]:1: skipped row" in capsys.readouterr().err


def test_missing_p3_fails_fast_with_how_to_prepare(tmp_path):
  tfds_source.set_tfds_data_dir(tmp_path)
  try:
    st = t0.subtasks()[0]
    with pytest.raises(tfds_source.TfdsMissingError, match=rf"tfds build huggingface:bigscience__p3/{st.subtask}"):
      t0.p3_dataset(st).check_available()
  finally:
    tfds_source.set_tfds_data_dir(None)


def test_promptsource_route_renders_raw_rows(tmp_path, capsys):
  raw = tmp_path / "raw" / "quail"
  raw.mkdir(parents=True)
  rows = [{"context": f"Ann met Bo on day {i}.", "question": "Who did Ann meet?",
           "answers": ["Cy", "Bo", "Di", "Ed"], "correct_answer_id": 1} for i in range(12)]
  lines = [json.dumps(r) for r in rows[:5]] + ["{not json"] + [json.dumps(r) for r in rows[5:]]
  (raw / "train.jsonl").write_text("\n".join(lines) + "\n")
  st = next(s for s in t0.subtasks() if s.subtask == "quail_no_prompt_text")
  ds = t0.promptsource_dataset(st, tmp_path / "raw")
  ds.check_available()
  readers.reset_skipped_rows()
  got = list(ds.rows())
  assert len(got) == 12 and got[0][1]["answer"] == "Bo" and got[0][1]["options"] == ["Cy", "Bo", "Di", "Ed"]
  assert "Ann met Bo on day 0." in got[0][1]["question"] and "\n" not in got[0][1]["question"]
  assert readers.skipped_rows() == {str(raw / "train.jsonl"): 1}
  assert "train.jsonl:6: skipped row: not JSON" in capsys.readouterr().err
  other = next(s for s in t0.subtasks() if s.subtask.startswith("wiki_qa_"))
  with pytest.raises(t0.data_dir_lib.DataMissingError, match="wiki_qa/train.jsonl"):
    t0.promptsource_dataset(other, tmp_path / "raw").check_available()
