"""UL2R tasks: text sources (and their file:line errors), denoised documents that fit, reconstruct and are a function
of (seed, task, epoch, document) whatever the sharding, packing in both layouts, grain's workers, the seqio task, gin
configuration, the registered `ul2r_*` tasks, and a `flan-jax train` run on a UL2R mixture."""
from __future__ import annotations

import collections
import itertools
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from flan_jax.data.catalog import availability, mixing, registry, token_tasks, ul2r
from flan_jax.data.files import data_dir, readers, text_sources, tfds_source
from flan_jax.data.pipeline import blocks, host_batches, input_pipeline
from flan_jax.data.pipeline import sources as task_sources
from flan_jax.data.rendering import denoisers, tokenizer
from flan_jax.data_layout import HostDataLayout
from tests.batch_checks import assert_batches_equal

REPO = pathlib.Path(__file__).resolve().parent.parent
WORDS = ("river stone light north garden paper engine winter market silver forest table music window bridge "
         "doctor village summer letter number").split()
LENGTHS = {"inputs": 64, "targets": 64}


def _text(n_docs: int, seed: int) -> list[str]:
  rng = np.random.default_rng(seed)
  return [" ".join(rng.choice(WORDS, int(rng.integers(5, 120)))) + "." for _ in range(n_docs)]


@pytest.fixture
def text_task(tmp_path, flan_data_dir) -> ul2r.Ul2rTask:
  del flan_data_dir  # the vocabulary
  docs = _text(120, seed=0)
  (tmp_path / "a.txt").write_text("\n".join(docs[:70]) + "\n")
  (tmp_path / "b.txt").write_text("\n\n".join(docs[70:]) + "\n")  # blank lines between: skipped as empty
  task = ul2r.Ul2rTask(f"ul2r_test_{tmp_path.name}", text_sources.TextFiles(str(tmp_path / "*.txt")))
  ul2r.register(task)
  return task


Example = tuple[tuple[int, ...], tuple[int, ...]]


def _pairs(columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[Example]:
  """Ragged (values, lengths) columns -> (inputs, targets) id tuples."""
  split = {}
  for k, (values, lens) in columns.items():
    ends = np.cumsum(lens)
    split[k] = [tuple(values[e - n:e].tolist()) for e, n in zip(ends, lens)]
  return list(zip(split["inputs"], split["targets"]))


def _examples(task, seed: int = 0, shuffle: bool = False, epoch: int = 0, split: str = "train") -> list[Example]:
  """One epoch of the task's draws (documents) as the training input reads them, tokenized and denoised."""
  source = task_sources.TokenSource(task, seed, shuffle, split)
  draws = [source.draw(epoch * source.size() + i) for i in range(source.size())]
  return _pairs(blocks.examples_to_columns(draws, LENGTHS))


def _input_examples(task, shard: HostDataLayout, seed: int) -> list[Example]:
  """One epoch of the task through the training input, one example a row."""
  config = input_pipeline.InputConfig(task.name, LENGTHS, shard.rows * shard.num_shards, seed=seed, num_epochs=1)
  it = input_pipeline.host_iterator(config, host_batches.InputLayout(pack=False), shard, workers=0)
  return [(tuple(x[x != 0].tolist()), tuple(y[y != 0].tolist()))
          for batch in it for x, y in zip(batch["encoder_input_tokens"], batch["decoder_target_tokens"])]


def _reconstruct(inputs, targets) -> list[int]:
  """A segment back from its example: span sentinels filled in, or the S prefix joined to its rest."""
  sp = tokenizer.processor()
  inputs, targets = list(inputs[:-1]), list(targets[:-1])  # EOS off
  for paradigm in ("[NLU]", "[NLG]", "[S2S]"):
    ids = sp.encode(paradigm)
    if inputs[:len(ids)] == ids:
      inputs = inputs[len(ids):]
      break
  else:
    raise AssertionError(f"no paradigm token leads {inputs[:8]}")
  if not any(t >= 32000 for t in targets):
    return inputs + targets
  spans: dict[int, list[int]] = {}
  for t in targets:
    if t >= 32000:  # a sentinel opens its span
      current = spans.setdefault(t, [])
    else:
      current.append(t)
  return [u for t in inputs for u in spans.get(t, [t])]


# --- text sources

def test_text_files_read_lines_paragraphs_and_jsonl(tmp_path):
  (tmp_path / "x.txt").write_text("one line\n\n  \nsecond line\n")
  (tmp_path / "p.txt").write_text("first para\nstill first\n\n\nsecond para\n")
  (tmp_path / "r.jsonl").write_text('{"text": "a doc"}\n\n{"text": "b doc", "id": 2}\n')
  assert list(text_sources.TextFiles(str(tmp_path / "x.txt")).documents("train")) == ["one line", "second line"]
  assert list(text_sources.TextFiles(str(tmp_path / "p.txt"), "paragraph").documents("train")) == [
      "first para\nstill first", "second para"]
  assert list(text_sources.TextFiles(str(tmp_path / "*.jsonl"), "jsonl").documents("train")) == ["a doc", "b doc"]


@pytest.mark.parametrize("content, unit, message", [
    (b'{"text": "ok"}\n{"text": "ok"}\n{"text": broken}\n', "jsonl", ":3: not a JSON line"),
    (b'{"text": "ok"}\n{"body": "no text"}\n', "jsonl", r":2: no field 'text' \(has \['body'\]\)"),
    (b'{"text": 7}\n', "jsonl", ":1: field 'text' is int, not text"),
    (b"fine\nbad \xff byte\n", "line", ":2: not UTF-8"),
    (b"para\n\nbad \xff\n", "paragraph", ":3: not UTF-8"),
])
def test_text_files_errors_name_file_and_line(tmp_path, content, unit, message):
  path = tmp_path / "bad.txt"
  path.write_bytes(content)
  with pytest.raises(readers.DataFormatError, match=f"^{path}{message}"):
    list(text_sources.TextFiles(str(path), unit).documents("train"))


def test_text_files_that_match_nothing_or_other_splits_are_named(tmp_path):
  missing = text_sources.TextFiles(str(tmp_path / "none*.txt"))
  with pytest.raises(data_dir.DataMissingError, match="none\\*.txt' matches no file"):
    missing.check_available()
  with pytest.raises(ValueError, match="unit='words'"):
    text_sources.TextFiles("x", "words")
  (tmp_path / "a.txt").write_text("x\n")
  with pytest.raises(ValueError, match="has no split 'validation'"):
    next(text_sources.TextFiles(str(tmp_path / "a.txt")).documents("validation"))


class Ul2rTinyCorpus(tfds.core.GeneratorBasedBuilder):
  """A few documents in `train` and `validation`, built offline: a stand-in for C4."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "text": tfds.features.Text(), "id": np.int32}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, 40), "validation": self._generate_examples(1, 5)}

  def _generate_examples(self, seed, n):
    for i, doc in enumerate(_text(n, seed)):
      yield i, {"text": doc, "id": i}


def test_tfds_text_reads_a_prepared_dataset_by_split(tmp_path, flan_data_dir):
  del flan_data_dir  # the vocabulary
  Ul2rTinyCorpus(data_dir=str(tmp_path)).download_and_prepare(
      download_dir=str(tmp_path / "downloads"), download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  tfds_source.set_tfds_data_dir(tmp_path)
  try:
    source = text_sources.TfdsText("ul2r_tiny_corpus", "1.0.0", "text")
    source.check_available()
    assert sorted(source.documents("train")) == sorted(_text(40, 0))  # in TFDS's file order
    assert sorted(source.documents("validation")) == sorted(_text(5, 1))
    task = ul2r.Ul2rTask("ul2r_test_tfds", source)
    held_out = _examples(task, split="validation")
    assert len(held_out) >= 5 and all(x[-1] == y[-1] == tokenizer.EOS_ID for x, y in held_out)
    with pytest.raises(readers.DataFormatError, match=r"record 0: no feature 'body' \(has \['id', 'text'\]\)"):
      next(text_sources.TfdsText("ul2r_tiny_corpus", "1.0.0", "body").documents("train"))
  finally:
    tfds_source.set_tfds_data_dir(None)
    tfds_source.clear_cache()


@pytest.fixture(scope="module")
def flan_catalog(flan_data_dir):
  del flan_data_dir
  import tasks  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import


def test_task_fields_read_a_flan_tasks_rows(flan_catalog):
  source = text_sources.TaskFields("cot_gsm8k_template_0to10_zero_shot", ("question", "chain_of_thought"))
  first = next(source.documents("train"))
  _, row = next(readers.read_cot_tsv(data_dir.data_file("flan/cot/gsm8k_train.tsv")))
  assert first == row["question"] + "\n" + row["chain_of_thought"]
  with pytest.raises(ValueError, match="'no_such_task' is not a registered Flan task"):
    text_sources.TaskFields("no_such_task", ("question",)).check_available()
  with pytest.raises(readers.DataFormatError, match=r"row 1: no field\(s\) \['nope'\]"):
    next(text_sources.TaskFields("cot_gsm8k_template_0to10_zero_shot", ("nope",)).documents("train"))


# --- the task's draws

def test_examples_fit_end_in_eos_and_rebuild_every_document(text_task):
  sp = tokenizer.processor()
  got = _examples(text_task, seed=3)
  assert all(len(x) <= LENGTHS["inputs"] and len(y) <= LENGTHS["targets"] for x, y in got)
  assert all(x[-1] == y[-1] == tokenizer.EOS_ID for x, y in got)
  rebuilt = iter(_reconstruct(x, y) for x, y in got)
  for doc in text_task.source.documents("train"):
    ids, have = sp.encode(doc), []
    while len(have) < len(ids) - 1:  # a document's last lone token is dropped
      have += next(rebuilt)
    assert have == ids[:len(have)]
  assert next(rebuilt, None) is None


def test_examples_are_a_function_of_seed_epoch_and_document_whatever_the_shard(text_task):
  first = _examples(text_task, seed=1, shuffle=True)
  assert _examples(text_task, seed=1, shuffle=True) == first
  assert _examples(text_task, seed=2, shuffle=True) != first
  assert _examples(text_task, seed=1, shuffle=True, epoch=1) != first
  unshuffled = _examples(text_task, seed=1)
  assert collections.Counter(unshuffled) == collections.Counter(first) and unshuffled != first
  ids = np.asarray(tokenizer.processor().encode(text_task.documents("train")[0]), np.int32)
  pairs = lambda key: [(x.tolist(), y.tolist()) for x, y in text_task.examples_of(ids, key, LENGTHS)]  # noqa: E731
  assert pairs([1, 2, 3, 4]) == pairs([1, 2, 3, 4]) != pairs([1, 2, 3, 5])
  whole = _input_examples(text_task, HostDataLayout.even(0, 1, 1), seed=1)
  shards = [_input_examples(text_task, HostDataLayout.even(k, 3, 3), seed=1) for k in range(3)]
  assert collections.Counter(sum(shards, [])) == collections.Counter(whole) == collections.Counter(first)
  assert all(shards)


@pytest.mark.parametrize("model", ["encoder_decoder", "prefix_lm"])
def test_denoised_examples_pack_in_both_layouts(text_task, model):
  source = task_sources.TokenSource(text_task, 4, False, "train")
  columns = blocks.examples_to_columns([source.draw(g) for g in range(source.size())], LENGTHS)
  examples = _pairs(columns)
  layout = host_batches.BatchConfig(model, "ffd", LENGTHS, batch_size=4, block_size=len(examples))
  rows = host_batches.convert_block(columns, layout)
  chunk_examples = collections.Counter()
  for r in range(len(rows["decoder_target_tokens"])):
    segments = rows["decoder_segment_ids"][r]
    for s in set(segments.tolist()) - {0}:
      here = segments == s
      if model == "encoder_decoder":
        inputs = rows["encoder_input_tokens"][r][rows["encoder_segment_ids"][r] == s]
        targets = rows["decoder_target_tokens"][r][here]
      else:  # the prefix LM sees inputs then targets; attention is bidirectional over the inputs (and one more)
        whole = rows["decoder_target_tokens"][r][here]
        width = int(rows["decoder_causal_attention"][r][here].sum()) - 1
        inputs, targets = whole[:width], whole[width:]
        assert (rows["decoder_loss_weights"][r][here] == (np.arange(len(whole)) >= width)).all()
      chunk_examples[(tuple(inputs.tolist()), tuple(targets.tolist()))] += 1
  assert sum(chunk_examples.values()) > len(rows["decoder_target_tokens"])  # packed: several examples a row
  assert chunk_examples == collections.Counter(examples)  # every example of the block, once


def test_grain_workers_give_the_ul2r_batches_given_here(text_task):
  config = input_pipeline.InputConfig(text_task.name, LENGTHS, batch_size=4, seed=5)
  layout = host_batches.InputLayout(block_size=32)  # 32 documents a block: the batches below cross blocks
  shard = HostDataLayout.even(0, 1, 4)
  here = list(itertools.islice(input_pipeline.host_iterator(config, layout, shard, workers=0), 40))
  it = input_pipeline.host_iterator(config, layout, shard, workers=2)
  try:
    assert_batches_equal([next(it) for _ in range(40)], here)
    assert it.state()["block"] > 0
  finally:
    it.close()


def test_the_seqio_task_denoises_the_same_documents(text_task):
  import seqio  # pylint: disable=import-outside-toplevel
  task = seqio.get_mixture_or_task(text_task.name)

  def read(seed):
    ds = task.get_dataset(sequence_length=LENGTHS, shuffle=False, seed=seed, num_epochs=1)
    return [(tuple(ex["inputs"].tolist()), tuple(ex["targets"].tolist())) for ex in ds.as_numpy_iterator()]

  got = read(7)
  assert got == read(7) and got != read(8)
  assert all(len(x) <= LENGTHS["inputs"] and len(y) <= LENGTHS["targets"] and x[-1] == y[-1] == 1 for x, y in got)
  sp = tokenizer.processor()
  everything = [t for doc in text_task.source.documents("train") for t in sp.encode(doc)]
  rebuilt = [t for x, y in got for t in _reconstruct(x, y)]
  assert collections.Counter(rebuilt) <= collections.Counter(everything)
  assert len(rebuilt) >= len(everything) - 120  # at most a lone last token per document


def test_gin_configures_the_denoisers_of_a_mixture_component(tmp_path):
  import gin  # pylint: disable=import-outside-toplevel
  from flan_jax import gin_utils  # pylint: disable=import-outside-toplevel
  gin_utils.register_configurables()
  gin.parse_config(f"""
    r/ul2r.DenoiserConfig.name = 'R'
    r/ul2r.DenoiserConfig.mean_span_length = 5.0
    r/ul2r.DenoiserConfig.rate = 2.0
    s/ul2r.DenoiserConfig.name = 'S'
    s/ul2r.DenoiserConfig.kind = 'prefix'
    s/ul2r.DenoiserConfig.paradigm = '[S2S]'
    ul2r.DenoiserMixture.denoisers = [@r/ul2r.DenoiserConfig(), @s/ul2r.DenoiserConfig()]
    ul2r.mixture_component.name = 'ul2r_gin_test'
    ul2r.mixture_component.source = @ul2r.TextFiles()
    ul2r.TextFiles.pattern = '{tmp_path}/*.txt'
    ul2r.mixture_component.denoisers = @ul2r.DenoiserMixture()
    ul2r.mixture_component.rate = 3.0
  """)
  try:
    assert gin.get_configurable("ul2r.mixture_component")() == ("ul2r_gin_test", 3.0)
  finally:
    gin.clear_config()
  task = token_tasks.TASKS["ul2r_gin_test"]
  assert task.source == text_sources.TextFiles(f"{tmp_path}/*.txt")
  assert task.denoisers == denoisers.DenoiserMixture((
      denoisers.DenoiserConfig("R", mean_span_length=5.0, rate=2.0),
      denoisers.DenoiserConfig("S", kind="prefix", paradigm="[S2S]")))
  with pytest.raises(ValueError, match="start with 'ul2r_'"):
    ul2r.mixture_component("my_text", task.source)


# --- the registered tasks

def test_ul2r_cot_mixes_the_present_cot_rows_by_size(flan_catalog):
  rates = mixing.rates("ul2r_cot")
  assert rates["ul2r_cot_gsm8k"] == registry.TASKS["cot_gsm8k_template_0to10_zero_shot"].num_examples() > 7000
  statuses = {s.task: s.present for s in availability.diagnose("ul2r_cot")}
  assert not statuses["ul2r_cot_esnli"] and statuses["ul2r_cot_gsm8k"]
  present = availability.resolve("ul2r_cot", only_available=True)
  config = input_pipeline.InputConfig(present, {"inputs": 256, "targets": 128}, batch_size=8, seed=0)
  spec = input_pipeline.input_spec(config, host_batches.InputLayout(pack=False, block_size=256),
                                   HostDataLayout.even(0, 1, 8))
  rows = blocks.PackedBlocks(spec)[0]["encoder_input_tokens"]  # one example a row
  heads = collections.Counter(tokenizer.processor().decode(row[:4].tolist()).split("]")[0] + "]" for row in rows)
  assert set(heads) == {"[NLU]", "[NLG]", "[S2S]"} and heads["[S2S]"] > heads["[NLU]"]


def test_data_show_decodes_ul2r_examples(flan_catalog, capsys):
  from flan_jax.data import cli  # pylint: disable=import-outside-toplevel
  assert cli.main(["show", "ul2r_cot_gsm8k", "-n", "6", "--format", "jsonl"]) == 0
  records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert len(records) == 6 and all(r["inputs_pretokenized"][:5] in ("[NLU]", "[NLG]", "[S2S]") for r in records)
  assert any("<extra_id_0>" in r["targets_pretokenized"] for r in records)


def test_ul2r_c4_says_how_to_prepare_c4(flan_catalog, tmp_path):
  tfds_source.set_tfds_data_dir(tmp_path)
  try:
    with pytest.raises(tfds_source.TfdsMissingError, match="tfds build c4/en:3.0.1"):
      token_tasks.TASKS["ul2r_c4"].check_available()
    assert [s.present for s in availability.diagnose("ul2r_c4")] == [False]
  finally:
    tfds_source.set_tfds_data_dir(None)


# --- training

def test_train_runs_on_a_ul2r_mixture_through_grain_workers(tmp_path, flan_data_dir):
  (tmp_path / "text").mkdir()
  (tmp_path / "text" / "t.txt").write_text("\n".join(_text(300, seed=1)) + "\n")
  model_dir = tmp_path / "run"
  cmd = [sys.executable, "-m", "flan_jax.train", "--gin_file=tests/fixtures/tiny_t5_test.gin",
         f"--gin.MODEL_DIR='{model_dir}'", "--gin.TRAIN_STEPS=3", "--gin.CHECKPOINT_PERIOD=3",
         "--gin.tiny_model.TinyModel.vocab=32128", "--gin.MIXTURE_OR_TASK_NAME='ul2r_train_test'",
         "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 64}", "--gin.INPUT_WORKERS=2",
         "--gin.utils.DatasetConfig.mixture_components=[@ul2r.mixture_component()]",
         "--gin.ul2r.mixture_component.name='ul2r_train_test_text'",
         "--gin.ul2r.mixture_component.source=@ul2r.TextFiles()",
         f"--gin.ul2r.TextFiles.pattern='{tmp_path}/text/*.txt'"]
  env = dict(os.environ, PYTHONPATH=str(REPO), FLAN_JAX_DATA_DIR=str(flan_data_dir),
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  losses = {r["step"]: r["train/loss"] for r in records if "train/loss" in r}
  assert sorted(losses) == [1, 2, 3] and all(np.isfinite(v) and v > 0 for v in losses.values())
