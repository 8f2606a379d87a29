"""mock_sources: every Muffin, T0-SF and Dialog task renders offline from mock rows (so all of flan2022_submix
has examples, CoT and NIv2 coming from the data dir), and leaving the context restores the TFDS readers."""
from __future__ import annotations

import collections
import subprocess
import sys

import pytest
import seqio

import tasks
from flan_jax.data.catalog import registry
from flan_jax.data.files import mock_sources, readers, tfds_source
from flan_jax.data.rendering import flan_render
from flan_jax.data.seqio_adapter import vocab
from tasks import dialog
from tasks import flan2022
from tasks import muffin
from tasks import t0

NUM_ROWS = 10
MOCKED_SOURCES = {"Flan2021", "P3", "Dialog"}


# These run before the module's shared context opens: inside it the outer mock would serve their datasets.
def test_exit_restores_state_after_an_error(tmp_path):
  real_dir = tmp_path / "real"  # an explicit TFDS dir without the dataset, which must come back
  (tmp_path / "mock" / "kept").mkdir(parents=True)
  config = dialog.CONFIGS["qrecc"]
  read, num_examples = tfds_source.read, tfds_source.num_examples
  tfds_source.set_tfds_data_dir(real_dir)
  try:
    with pytest.raises(RuntimeError, match="inside"):
      with mock_sources.mock_tfds_sources(tmp_path / "mock", dialog=[config.tfds], num_rows=3):
        ds = dialog.datasets(config, input_inversion=False, randomized=False)  # bound while mocked
        ds.check_available()
        assert ds.num_rows() == 3 and len(list(ds.rows())) == 3
        assert tfds_source.tfds_data_dir() == tmp_path / "mock"
        raise RuntimeError("inside")
    assert (tfds_source.read, tfds_source.num_examples) == (read, num_examples)
    assert tfds_source.tfds_data_dir() == real_dir
    assert [p.name for p in (tmp_path / "mock").iterdir()] == ["kept"]  # the markers it made are gone
    for use in (ds.check_available, ds.num_rows, lambda: list(ds.rows())):
      with pytest.raises(tfds_source.TfdsMissingError, match="q_re_cc"):
        use()
  finally:
    tfds_source.set_tfds_data_dir(None)


def test_isolated_rows_are_drawn_in_a_child_and_equal(tmp_path):
  """isolated=True draws in a spawned process (so a TF-free caller stays TF-free) and serves the same rows."""
  specs = {"dialog": [dialog.CONFIGS["qrecc"].tfds], "muffin": [muffin.CONFIGS["bool_q"].tfds]}
  with mock_sources.mock_tfds_sources(tmp_path / "a", num_rows=3, **specs) as here:
    pass
  with mock_sources.mock_tfds_sources(tmp_path / "b", num_rows=3, isolated=True, **specs) as child:
    assert len(list(tfds_source.read(specs["dialog"][0]))) == 3
  assert here.keys() == child.keys() and len(here) == 2
  for name, rows in here.items():
    assert [sorted(r) for r in rows] == [sorted(r) for r in child[name]], name
    assert repr(list(rows)) == repr(list(child[name])), name


def test_dataset_mock_data_cannot_build_is_named(tmp_path):
  read = tfds_source.read
  with pytest.raises(mock_sources.MockDataError, match="no_such_dataset:1.0.0"):
    with mock_sources.mock_tfds_sources(tmp_path, muffin=[tfds_source.TfdsSpec("no_such_dataset", "1.0.0")]):
      pass
  assert tfds_source.read is read and not any(tmp_path.iterdir())


def test_niv2_overlay_mocks_missing_task_files_and_restores_the_data_dir(tmp_path, flan_data_dir):
  from flan_jax.data.files import data_dir as data_dir_lib
  from tasks import niv2
  training = niv2.training_tasks()
  present = [t for t in training if (flan_data_dir / "niv2" / "tasks" / f"{t}.json").exists()]
  missing = [t for t in training if t not in present][:2]
  assert present and len(missing) == 2
  before = data_dir_lib.data_dir()
  with mock_sources.mock_niv2_tasks(tmp_path / "overlay", present[:1] + missing, num_rows=4) as mocked:
    assert mocked == missing
    assert data_dir_lib.data_dir() == tmp_path / "overlay"
    examples = list(flan_render.render(niv2.dataset(missing[0]), registry.niv2_variants()[0], missing[0]))
    assert len(examples) == 4 and "Mock input 0" in examples[0]["inputs"]
    real = next(flan_render.render(niv2.dataset(present[0]), registry.niv2_variants()[0], present[0]))
    assert "Mock input" not in real["inputs"]
  assert data_dir_lib.data_dir() == before
  with pytest.raises(data_dir_lib.DataMissingError):
    niv2.dataset(missing[0]).check_available()


def test_import_leaves_tfds_unimported():
  code = "import sys, flan_jax.data.files.mock_sources; assert 'tensorflow_datasets' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def flan2022_env(tmp_path_factory):
  with mock_sources.mock_tfds_sources(tmp_path_factory.mktemp("tfds"), num_rows=NUM_ROWS,
                                      **flan2022.tfds_specs()) as rows:
    yield tasks.register_all(), rows


def _first_example(task: str) -> dict | None:
  src = registry.flan_source(task)
  return next(flan_render.render(src.dataset, src.variant, src.name), None)


def test_rows_once_per_dataset(flan2022_env):
  _, rows = flan2022_env
  specs = flan2022.tfds_specs()
  full_names = {s.full_name for s in [*specs["muffin"], *specs["dialog"], *specs["p3"]]}
  assert set(rows) == full_names  # mnli_matched/mismatched and the para_crawl/enda slices share rows
  assert len(rows) < len(muffin.CONFIGS) + len(dialog.CONFIGS) + len(specs["p3"])
  assert all(len(r) == NUM_ROWS for r in rows.values())
  mc = next(s for s in t0.subtasks() if s.multiple_choice)
  qa = next(s for s in t0.subtasks() if not s.multiple_choice)
  assert "answer_choices" in rows[mc.tfds.full_name][0] and "answer_choices" not in rows[qa.tfds.full_name][0]


def test_every_mocked_task_renders(flan2022_env):
  names, _ = flan2022_env
  mocked = [*names["muffin"], *names["t0"], *names["dialog"]]
  assert len(mocked) == len(set(mocked)) > 6000
  leaves = seqio.get_mixture_or_task(flan2022.FLAN2022).tasks
  mocked_leaves = {t.name for t in leaves if registry.flan_source(t.name).dataset.task_source in MOCKED_SOURCES}
  assert mocked_leaves <= set(mocked) and len(mocked_leaves) > 1000
  readers.reset_skipped_rows()
  empty = [name for name in mocked if _first_example(name) is None]
  assert not empty, f"{len(empty)} tasks rendered nothing: {empty[:10]}"
  assert readers.skipped_rows() == {}


def test_seqio_reads_one_task_per_family(flan2022_env):
  eos = vocab.get_vocabulary().eos_id
  for name in ("anli_r1_template_0to10_zero_shot", f"{t0.subtasks()[0].key}_template_0_zero_shot",
               "qrecc_template_0_zero_shot"):
    ds = seqio.get_mixture_or_task(name).get_dataset(sequence_length=None, split="train", shuffle=False)
    exs = list(ds.as_numpy_iterator())
    assert len(exs) == NUM_ROWS, name
    assert all(ex["inputs"][-1] == eos and ex["targets"][-1] == eos for ex in exs)


def test_flan2022_shares_from_mock_counts(flan2022_env):
  by_source: collections.Counter[str] = collections.Counter()
  for task, share in flan2022.shares(flan2022.FLAN2022).items():
    by_source[registry.flan_source(task).dataset.task_source] += share
  rates = flan2022.FLAN2022_RATES
  total = sum(rates.values())
  for source, submix in (("Flan2021", "flan2021_submix"), ("P3", "t0_submix"), ("Dialog", "dialog_submix")):
    assert by_source[source] == pytest.approx(rates[submix] / total)


def test_grain_workers_read_the_mock_rows_this_process_shares(flan2022_env):
  """grain's workers do not see the readers the context patched here; they read the rows this process shares with
  them (`flan_render.share_rows`), so 2 workers give the batches this process gives."""
  from flan_jax import data_layout  # pylint: disable=import-outside-toplevel
  from flan_jax.data.pipeline import host_batches, input_pipeline  # pylint: disable=import-outside-toplevel
  names, _ = flan2022_env
  name = "flan_jax_test_mocked_families"
  input_pipeline.register_mixture(name, [(names[f][0], 1.0) for f in ("muffin", "t0", "dialog")], "m")
  config = input_pipeline.InputConfig(name, {"inputs": 128, "targets": 32}, batch_size=4, seed=1)
  layout, shard = host_batches.InputLayout(block_size=64), data_layout.HostDataLayout.even(0, 1, 4)
  here = input_pipeline.host_iterator(config, layout, shard, workers=0)
  want = [next(here) for _ in range(12)]
  it = input_pipeline.host_iterator(config, layout, shard, workers=2)
  try:
    got = [next(it) for _ in range(12)]
  finally:
    it.close()
  for a, b in zip(got, want):
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
