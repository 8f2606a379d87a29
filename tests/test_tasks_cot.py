"""CoT registry: the 414 names, seqio examples, missing files, bad input, determinism, sharding."""
from __future__ import annotations

import itertools
import shutil

import pytest
import seqio

from flan_jax.data.catalog import availability, mixing, registry
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import readers
from flan_jax.data.rendering import flan_render
from flan_jax.data.rendering import templates as tpl
from flan_jax.data.seqio_adapter import seqio_tasks


@pytest.fixture(scope="session")
def registered():
  import tasks
  return tasks.REGISTERED


def test_414_cot_task_names(registered):
  names = registered["cot"]
  assert len(names) == len(set(names)) == 414
  # 18 bases (9 CoT + 9 input inversion) x 23: 3 zero-shot + 2 option sets x (5 formatted bases +
  # 5 few-shot tasks).
  per_base = {n.split("_template_")[0] for n in names}
  assert len(per_base) == 18
  for want in ("cot_gsm8k_template_0to10_zero_shot", "cot_gsm8k_template_0to10_no_opt_x_shot",
               "cot_input_inversion_gsm8k_template_mix_five_shot", "stream_qed_template_1_two_shot",
               "cot_esnli_template_2_no_opt_one_shot", "stream_input_inversion_aqua_template_0_zero_shot"):
    assert want in names
  suffixes = {n.split("_template_")[1] for n in names}
  assert len(suffixes) == 23


def test_seqio_examples_carry_the_contract_features(registered):
  task = seqio.get_mixture_or_task("cot_gsm8k_template_0to10_x_shot")
  ds = task.get_dataset(sequence_length={"inputs": 2048, "targets": 512}, shuffle=False)
  ex = next(ds.as_numpy_iterator())
  vocab = task.output_features["inputs"].vocabulary
  assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1
  assert ex["inputs"].tolist() == vocab.encode(ex["inputs_pretokenized"].decode()) + [1]
  assert ex["targets"].tolist() == vocab.encode(ex["targets_pretokenized"].decode()) + [1]
  assert ex["_task_name"] == b"cot_gsm8k" and ex["_task_source"] == b"CoT"
  assert ex["_template_type"] == b"fs_opt" and ex["_template_idx"] == 0


def test_missing_esnli_fails_with_download_command(registered):
  task = seqio.get_mixture_or_task("cot_esnli_template_0to10_zero_shot")
  with pytest.raises(data_dir_lib.DataMissingError, match="esnli_train.tsv is not in the data dir.*"
                     "flan-jax data download --only cot"):
    task.get_dataset(sequence_length=None, shuffle=False)
  # Its count still comes from num_cases.json, so mixture rates stay computable.
  assert registry.flan_source(task).num_examples() == 36170


def test_same_seed_same_examples_and_shards_cover(registered):
  task = seqio.get_mixture_or_task("cot_qasc_template_0to10_zero_shot")

  def texts(n=None, **kw):
    ds = task.get_dataset(sequence_length=None, **kw)
    ds = ds.take(n) if n else ds
    return [e["inputs_pretokenized"] for e in ds.as_numpy_iterator()]

  a = texts(30, shuffle=True, seed=5)
  assert a == texts(30, shuffle=True, seed=5) and a != texts(30, shuffle=True, seed=6)
  full = texts(shuffle=False)
  shards = [texts(shuffle=False, shard_info=seqio.ShardInfo(i, 3)) for i in range(3)]
  assert sum(map(len, shards)) == len(full) == 1080
  assert sorted(itertools.chain(*shards)) == sorted(full)
  assert shards[1] == full[1::3]


def _tmp_data_dir(tmp_path, flan_data_dir):
  (tmp_path / "flan/cot").mkdir(parents=True)
  shutil.copy(flan_data_dir / "flan/templates.json", tmp_path / "flan")
  return tmp_path


def test_malformed_tsv_rows_are_warned_skipped_counted(tmp_path, flan_data_dir, registered, capfd):
  d = _tmp_data_dir(tmp_path, flan_data_dir)
  good = (flan_data_dir / "flan/cot/strategyqa_train.tsv").read_text(encoding="utf-8").split("\n")[:22]
  rows = good[:3] + ["only\ttwo"] + good[3:] + ["a\tb\tc\td"]
  path = d / "flan/cot/strategyqa_train.tsv"
  path.write_text("\n".join(rows) + "\n", encoding="utf-8")
  data_dir_lib.set_data_dir(d)
  try:
    src = registry.flan_source("cot_strategyqa_template_0to10_zero_shot")
    before = readers.skipped_rows().get(str(path), 0)
    examples = list(flan_render.render(src.dataset, src.variant, src.name))
    err = capfd.readouterr().err
    assert f"{path}:4: skipped row" in err and f"{path}:24: skipped row" in err
    assert readers.skipped_rows()[str(path)] - before == 2
    assert len(examples) == 20 == src.num_examples()
    assert examples[3]["inputs"].startswith(tpl.fill(src.variant.patterns[3][0], {
        "question": good[3].split("\t")[0], "answer": "", "chain_of_thought": ""})[:20])
  finally:
    data_dir_lib.set_data_dir(None)


def test_invalid_json_names_file_and_line(tmp_path):
  bad = tmp_path / "templates.json"
  bad.write_text('{\n  "PATTERNS": {\n    "x": [1, 2,]\n  }\n}\n', encoding="utf-8")
  with pytest.raises(readers.DataFormatError, match=rf"{bad}:3:\d+: invalid JSON"):
    readers.load_json(bad)


def test_unknown_names_are_errors(registered):
  with pytest.raises(ValueError, match="cot_gsm9k"):
    seqio.get_mixture_or_task("cot_gsm9k_template_0to10_zero_shot")
  with pytest.raises(TypeError, match="not a Flan task"):
    seqio.TaskRegistry.add("not_flan_task_for_test", source=seqio.FunctionDataSource(
        lambda split, shuffle_files: None, splits=["train"]), output_features={})
    registry.flan_source("not_flan_task_for_test")


def test_source_ids_equal_seqio_tokenization_across_batches(registered):
  """The source tokenizes in Python, in batches; its ids must equal seqio's TF tokenization + EOS,
  across batch boundaries and in every shard."""
  task = seqio.get_mixture_or_task("cot_qasc_template_mix_five_shot")
  src = registry.flan_source(task)
  vocab = task.output_features["inputs"].vocabulary
  want = list(flan_render.render(src.dataset, src.variant, src.name, shard_index=1, num_shards=2))
  assert len(want) > 2 * seqio_tasks.ENCODE_BATCH
  ds = task.get_dataset(sequence_length=None, shuffle=False, shard_info=seqio.ShardInfo(1, 2))
  got = list(ds.as_numpy_iterator())
  assert len(got) == len(want)
  texts = [w["inputs"] for w in want] + [w["targets"] for w in want]
  tf_ids = vocab.encode_tf(texts).to_list()  # seqio's own tokenize path (tf_text SentencePiece)
  for i, (g, w) in enumerate(zip(got, want)):
    assert g["inputs_pretokenized"].decode() == w["inputs"]
    assert g["targets_pretokenized"].decode() == w["targets"]
    assert g["inputs"].tolist() == tf_ids[i] + [1]
    assert g["targets"].tolist() == tf_ids[len(want) + i] + [1]
    assert g["_template_idx"] == w["_template_idx"] and g["_template_type"] == b"fs_opt"
    assert g["_task_name"] == b"cot_qasc" and g["_task_source"] == b"CoT"
  # Trimming keeps seqio's semantics: cut to length - 1, then EOS.
  short = next(task.get_dataset(sequence_length={"inputs": 16, "targets": 8}, shuffle=False,
                                shard_info=seqio.ShardInfo(1, 2)).as_numpy_iterator())
  assert short["inputs"].tolist() == tf_ids[0][:15] + [1]
  assert short["targets"].tolist() == tf_ids[len(want)][:7] + [1]


def test_shuffling_is_in_the_source_per_epoch_and_keeps_templates(registered):
  task = seqio.get_mixture_or_task("cot_qasc_template_0to10_zero_shot")
  assert task.shuffle_buffer_size is None  # no seqio buffer of rendered, tokenized examples
  src = registry.flan_source(task)
  plain = {e["inputs"]: e["_template_idx"] for e in flan_render.render(src.dataset, src.variant, src.name)}
  ds = task.get_dataset(sequence_length=None, shuffle=True, seed=3, num_epochs=2)
  got = [(e["inputs_pretokenized"].decode(), e["_template_idx"]) for e in ds.as_numpy_iterator()]
  first, second = got[:len(plain)], got[len(plain):]
  assert len(second) == len(plain)
  # Each epoch is a permutation of the source's examples, each with the template of its position.
  assert dict(first) == plain and dict(second) == plain
  assert [t for t, _ in first] != list(plain) and first != second


def test_the_seqio_mixture_mixes_the_catalog_rates(registered):
  name = availability.resolve("cot_submix", only_available=True)
  mix = seqio.get_mixture_or_task(name)
  rates = mixing.rates(name)
  assert {t.name: mix.get_rate(t) for t in mix.tasks} == pytest.approx(rates, rel=1e-9)
  assert len(set(rates.values())) > 1
