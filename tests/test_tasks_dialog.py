"""Dialog tasks on `flan_jax.data.files.mock_sources`' rows (`tfds.testing.mock_data` with the real TFDS feature
specs, given a fixed number of turns and a qrecc turn_id FLAN keeps), through the full pipeline.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import seqio

from flan_jax.data.catalog import registry
from flan_jax.data.files import mock_sources, readers, tfds_source
from flan_jax.data.rendering import flan_render
from flan_jax.data.rendering import templates as tpl
from flan_jax.data.seqio_adapter import vocab
from tasks import dialog

NUM_ROWS = 20
TURNS = 9


@pytest.fixture(scope="module")
def dialog_env(tmp_path_factory):
  with mock_sources.mock_tfds_sources(tmp_path_factory.mktemp("tfds"), num_rows=NUM_ROWS,
                                      dialog=[c.tfds for c in dialog.CONFIGS.values()]):
    yield dialog.register()


def test_registered_names(dialog_env):
  assert len(dialog_env) == 4 * 24
  for base in dialog.base_names(False) + dialog.base_names(True):
    assert f"{base}_template_0to10_non_deter_opt_zero_shot" in dialog_env
    assert f"{base}_template_0to10_x_shot" in dialog_env


def test_full_pipeline_on_mock_data(dialog_env):
  eos = vocab.get_vocabulary().eos_id
  for base in dialog.base_names(False) + dialog.base_names(True):
    task = seqio.get_mixture_or_task(f"{base}_template_0_zero_shot")
    ex = next(task.get_dataset(sequence_length=None, split="train", shuffle=False).as_numpy_iterator())
    assert ex["inputs"][-1] == eos and ex["targets"][-1] == eos
    assert ex["_task_source"] == b"Dialog"
    ii = base.endswith("_input_inversion")
    assert ex["_task_name"].decode() == base.replace("_input_inversion", "") + ("_ii" if ii else "")
    dialog_text = (ex["targets_pretokenized"] if ii else ex["inputs_pretokenized"]).decode()
    first = "turn 1" if base.startswith("wiki_dialog") else "turn 0"  # wiki_dialog drops the intro turn
    assert dialog_text.startswith(f"DIALOG:\n{first}\n- ")


def test_every_variant_renders(dialog_env):
  for name in dialog_env:
    src = registry.flan_source(name)
    assert next(flan_render.render(src.dataset, src.variant, name), None) is not None, name


def test_turn_pick_and_formats_by_hand():
  turns = [f"t{i}" for i in range(TURNS)]
  seen = set()
  for seed in range(200):
    d, a = dialog.pick_turn(turns, random.Random(seed))
    assert len(d) % 2 == 1 and a == turns[len(d)]
    seen.add(len(d))
  assert seen == {1, 3, 5, 7}  # k in [0, 9 // 2)
  with pytest.raises(dialog.mp.MalformedRow):
    dialog.pick_turn(["only one"], random.Random(0))
  assert dialog.format_dialog(["Hi", "Yo", "Sup"]) == "DIALOG:\nHi\n- Yo\n- Sup\n- "
  f = dialog.DialogFormats(["S:"], [["\nA: ", "\nB: ", "\nA: ", "\nB: "]], [[";", ";", ";"]])
  assert dialog.format_dialog_random(["Hi", "Yo", "Sup"], f, random.Random(0)) == \
      "S:\nA: Hi;\nB: Yo;\nA: Sup;\nB: "


def test_random_format_uses_templates_candidates(dialog_env):
  src = registry.flan_source("wiki_dialog_template_0to10_non_deter_opt_zero_shot")
  formats = dialog.dialog_formats()
  outs = list(flan_render.render(src.dataset, src.variant, src.name))
  assert len(outs) == NUM_ROWS // 10 * 10
  texts = [dict(r)["dialog_"] for _, r in src.dataset.rows()]
  assert any(not t.startswith("DIALOG:\nturn") for t in texts)
  for t in texts:
    assert any(t.startswith(s) for s in formats.start_strings)
  zs = tpl.load_templates().zero_shot("wiki_dialog")
  assert outs[0]["inputs"] == tpl.fill(zs[0][0], {"dialog_": texts[0]})


def test_qrecc_filter_and_malformed_rows(dialog_env, monkeypatch, capsys):
  rows = [{"context": np.array([b"a", b"b", b"c"], dtype=object), "turn_id": np.int32(3)},
          {"context": np.array([b"a"], dtype=object), "turn_id": np.int32(8)},
          {"context": np.array([b"a", b"b", b"c"], dtype=object), "turn_id": np.int32(8)}]
  monkeypatch.setattr(tfds_source, "read", lambda spec: enumerate(rows))
  readers.reset_skipped_rows()
  before = registry.filtered_rows.counts.get("qrecc", 0)
  got = list(dialog.rows(dialog.CONFIGS["qrecc"], randomized=False))
  assert [i for i, _ in got] == [2] and got[0][1] == {"dialog_": "DIALOG:\na\n- ", "answer": "b"}
  assert registry.filtered_rows.counts["qrecc"] == before + 1
  assert sum(readers.skipped_rows().values()) == 1
  assert "q_re_cc:1.0.0[train]:1: skipped row" in capsys.readouterr().err
