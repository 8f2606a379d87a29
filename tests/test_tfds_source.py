"""The read-only TFDS source: data dir resolution, presence from the file system, reading a dataset that
TFDS itself prepared (a tiny builder defined here, built offline into tmp), and missing datasets
(built-in, manual-download and `huggingface:` community ones) failing at once, without any network or
TFDS builder call, with the command or manual step that prepares them."""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import tfds_source
from flan_jax.data.files.tfds_source import TfdsSpec

TRAIN_ROWS = 10


class FlanJaxTinyText(tfds.core.GeneratorBasedBuilder):
  """Ten labelled sentences in `train`, three in `validation`; nothing to download."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "sentence": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["no", "yes"])}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(TRAIN_ROWS), "validation": self._generate_examples(3)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {"sentence": f"sentence {i}", "label": i % 2}


class FlanJaxTinyFeatures(tfds.core.GeneratorBasedBuilder):
  """Every feature kind the Flan TFDS tasks read: text, labels, scalars, sequences of text and of dicts, dicts."""
  VERSION = tfds.core.Version("1.2.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "question": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["no", "yes"]),
        "idx": np.int32, "score": np.float32, "choices": tfds.features.Sequence(tfds.features.Text()),
        "answers": tfds.features.Sequence({"text": tfds.features.Text(), "answer_start": np.int32}),
        "meta": {"source": tfds.features.Text(), "n": np.int64},
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(7)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {"question": f"q {i} \u00e9", "label": i % 2, "idx": i, "score": i / 2,
                "choices": [f"c{j}" for j in range(i % 3)],
                "answers": {"text": [f"a{j}" for j in range(i % 2 + 1)], "answer_start": list(range(i % 2 + 1))},
                "meta": {"source": "s", "n": i * 10}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> pathlib.Path:
  """A TFDS data dir holding flan_jax_tiny_text/1.0.0, and a copy laid out as a community dataset
  (huggingface:someone__tiny) at two versions."""
  d = tmp_path_factory.mktemp("tfds")
  b = FlanJaxTinyText(data_dir=str(d))
  b.download_and_prepare(download_dir=str(d / "downloads"),
                         download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  FlanJaxTinyFeatures(data_dir=str(d)).download_and_prepare(
      download_dir=str(d / "downloads"), download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  src = d / "flan_jax_tiny_text" / "1.0.0"
  for version in ("1.9.0", "1.10.0"):
    shutil.copytree(src, d / "someone__tiny" / version)
  return d


@pytest.fixture(autouse=True)
def fresh_state():
  tfds_source.set_tfds_data_dir(None)
  tfds_source.clear_cache()
  yield
  tfds_source.set_tfds_data_dir(None)
  tfds_source.clear_cache()


def test_data_dir_precedence(monkeypatch, tmp_path):
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.delenv(tfds_source.ENV_VAR, raising=False)
  assert tfds_source.tfds_data_dir() == tmp_path / "home" / "tensorflow_datasets"
  monkeypatch.setenv(tfds_source.ENV_VAR, str(tmp_path / "env"))
  assert tfds_source.tfds_data_dir() == tmp_path / "env"
  tfds_source.set_tfds_data_dir(tmp_path / "flag")
  assert tfds_source.tfds_data_dir() == tmp_path / "flag"
  tfds_source.set_tfds_data_dir(None)
  assert tfds_source.tfds_data_dir() == tmp_path / "env"


def test_spec_names_and_layout():
  assert TfdsSpec("glue/mnli", "2.0.0").relative_dir() == pathlib.Path("glue/mnli")
  assert TfdsSpec("glue/mnli", "2.0.0").full_name == "glue/mnli:2.0.0"
  hf = TfdsSpec("huggingface:bigscience__p3/ag_news_classify", None)
  assert hf.is_community and hf.relative_dir() == pathlib.Path("bigscience__p3/ag_news_classify")
  with pytest.raises(ValueError, match="bad TFDS dataset name 'glue mnli'"):
    TfdsSpec("glue mnli", "2.0.0")
  with pytest.raises(ValueError, match="bad TFDS version '2.0' for glue/mnli"):
    TfdsSpec("glue/mnli", "2.0")


def test_present_dataset_reads_in_file_order(prepared):
  tfds_source.set_tfds_data_dir(prepared)
  spec = TfdsSpec("flan_jax_tiny_text", "1.0.0")
  assert tfds_source.check(spec) == prepared / "flan_jax_tiny_text" / "1.0.0"
  assert tfds_source.num_examples(spec) == TRAIN_ROWS
  rows = list(tfds_source.read(spec))
  assert [i for i, _ in rows] == list(range(TRAIN_ROWS))
  assert sorted(ex["sentence"] for _, ex in rows) == sorted(f"sentence {i}".encode() for i in range(TRAIN_ROWS))
  assert all(ex["label"] == int(ex["sentence"].split()[-1]) % 2 for _, ex in rows)
  # File order is fixed (no file shuffling), so indices name the same row on every read.
  assert [ex["sentence"] for _, ex in tfds_source.read(spec)] == [ex["sentence"] for _, ex in rows]


def _assert_same(a, b, where=""):
  if isinstance(b, dict):
    assert isinstance(a, dict) and a.keys() == b.keys(), where
    for k in b:
      _assert_same(a[k], b[k], f"{where}/{k}")
  else:
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(b, np.ndarray):
      assert a.dtype == b.dtype and a.tolist() == b.tolist(), where
    else:
      assert a == b, where


@pytest.mark.parametrize("split", ["train", "train[2:-1]"])
def test_values_are_what_tfds_as_numpy_gives(prepared, split):
  """Decoded without TF, every feature comes in the types and values TFDS's own tf.data reader gives."""
  tfds_source.set_tfds_data_dir(prepared)
  spec = TfdsSpec("flan_jax_tiny_features", "1.2.0", split)
  ds = tfds.builder_from_directory(str(prepared / "flan_jax_tiny_features" / "1.2.0")).as_dataset(
      split=split, shuffle_files=False, read_config=tfds.ReadConfig(interleave_cycle_length=1))
  want = list(tfds.as_numpy(ds))
  got = list(tfds_source.read(spec))
  assert [i for i, _ in got] == list(range(len(want))) and len(want) == (7 if split == "train" else 4)
  for (_, g), w in zip(got, want):
    _assert_same(g, w)


def test_reading_imports_no_tensorflow(prepared):
  code = ("import sys; from flan_jax.data.files import tfds_source as t; t.set_tfds_data_dir(sys.argv[1]); "
          "n = len(list(t.read(t.TfdsSpec('flan_jax_tiny_text', '1.0.0')))); "
          "print(n, 'tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code, str(prepared)], capture_output=True, text=True, timeout=120,
                       check=True)
  assert out.stdout.split() == [str(TRAIN_ROWS), "False"], out.stderr[-2000:]


def test_truncated_record_names_file_and_record(prepared, tmp_path):
  copy = tmp_path / "flan_jax_tiny_text" / "1.0.0"
  shutil.copytree(prepared / "flan_jax_tiny_text" / "1.0.0", copy)
  shard = next(copy.glob("*-train.tfrecord-*"))
  shard.write_bytes(shard.read_bytes()[:-7])
  tfds_source.set_tfds_data_dir(tmp_path)
  with pytest.raises(tfds_source.TfdsFormatError, match=rf"{shard}: record {TRAIN_ROWS - 1}: truncated"):
    list(tfds_source.read(TfdsSpec("flan_jax_tiny_text", "1.0.0")))


def test_split_slices_resolved(prepared):
  tfds_source.set_tfds_data_dir(prepared)
  head = TfdsSpec("flan_jax_tiny_text", "1.0.0", "train[:-2]")
  assert tfds_source.num_examples(head) == TRAIN_ROWS - 2
  full = [ex["sentence"] for _, ex in tfds_source.read(TfdsSpec("flan_jax_tiny_text", "1.0.0"))]
  assert [ex["sentence"] for _, ex in tfds_source.read(head)] == full[:-2]
  assert tfds_source.num_examples(TfdsSpec("flan_jax_tiny_text", "1.0.0", "validation")) == 3


def test_community_dataset_read_from_files_alone_newest_version(prepared, monkeypatch):
  def no_code_builder(*args, **kwargs):
    raise AssertionError("tfds.builder called for a community dataset (it would query the Hub)")
  monkeypatch.setattr(tfds, "builder", no_code_builder)
  tfds_source.set_tfds_data_dir(prepared)
  spec = TfdsSpec("huggingface:someone__tiny", None)
  assert tfds_source.check(spec) == prepared / "someone__tiny" / "1.10.0"  # numeric, not string, order
  assert tfds_source.num_examples(spec) == TRAIN_ROWS
  assert len(list(tfds_source.read(spec))) == TRAIN_ROWS


def test_data_dir_change_takes_effect_after_clear_cache(prepared, tmp_path):
  spec = TfdsSpec("flan_jax_tiny_text", "1.0.0")
  tfds_source.set_tfds_data_dir(prepared)
  assert tfds_source.num_examples(spec) == TRAIN_ROWS
  tfds_source.set_tfds_data_dir(tmp_path)
  tfds_source.clear_cache()
  with pytest.raises(tfds_source.TfdsMissingError, match=str(tmp_path)):
    tfds_source.num_examples(spec)


def test_unfinished_build_counts_as_missing(tmp_path):
  (tmp_path / "glue" / "mnli" / "2.0.0").mkdir(parents=True)  # an interrupted build: no dataset_info.json
  (tmp_path / "glue" / "mnli" / "2.0.0" / "glue-train.tfrecord-00000-of-00001").write_bytes(b"")
  assert tfds_source.prepared_dir(TfdsSpec("glue/mnli", "2.0.0"), tmp_path) is None


@pytest.mark.parametrize("spec, expected", [
    (TfdsSpec("glue/mnli", "2.0.0", "train[:-200]"),
     r"on a machine with network run `tfds build glue/mnli:2.0.0 --data_dir {d}`, then copy {d}/glue/mnli/2.0.0"),
    (TfdsSpec("story_cloze/2016", "1.0.0", manual="request the CSVs and put them in DIR"),
     r"request the CSVs and put them in DIR; then run `tfds build story_cloze/2016:1.0.0 --data_dir {d} "
     r"--manual_dir DIR`"),
    (TfdsSpec("huggingface:bigscience__p3/ag_news_classify", None),
     r"run `tfds build huggingface:bigscience__p3/ag_news_classify --data_dir {d}`"),
], ids=["builtin", "manual", "community"])
def test_missing_fails_fast_naming_the_fix(tmp_path, offline, spec, expected):
  tfds_source.set_tfds_data_dir(tmp_path)
  start = time.monotonic()
  with pytest.raises(tfds_source.TfdsMissingError) as err:
    tfds_source.builder(spec)
  # A network attempt is refused above; this bound only catches a retry loop that sleeps instead.
  assert time.monotonic() - start < 5
  msg = str(err.value)
  assert f"TFDS dataset {spec.full_name} is not prepared in {tmp_path}" in msg
  assert expected.format(d=tmp_path) in msg, msg
  assert isinstance(err.value, data_dir_lib.DataMissingError)  # callers treat it like any missing file
  with pytest.raises(tfds_source.TfdsMissingError):
    list(tfds_source.read(spec))
