"""`flan-jax data doctor MIXTURE` on a mixture of real Muffin tasks: one dataset prepared by TFDS itself
(its real builder's metadata written into a tmp TFDS data dir), the others missing (a built-in dataset, a
manual-download one, a `huggingface:` community one), plus a task that is not a Flan task. Per-task
ok/MISSING lines, each fix once, exit codes 0/1/2, and no network or TFDS builder used."""
from __future__ import annotations

import argparse

import pytest
import seqio
import tensorflow_datasets as tfds

from flan_jax.data import doctor
from flan_jax.data.catalog import registry
from flan_jax.data.files import tfds_source
from flan_jax.data.seqio_adapter import vocab
from tasks import muffin

PRESENT = ("rte",)
MISSING = ("cola", "story_cloze", "xsum")
OTHER_TASK = "doctor_test_not_flan"


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("tfds")
  spec = muffin.CONFIGS["rte"].tfds
  b = tfds.builder(spec.full_name, data_dir=str(d), try_gcs=False)
  (d / spec.relative_dir() / spec.version).mkdir(parents=True)
  b.info.write_to_directory(b.data_dir)
  return d


@pytest.fixture(scope="module")
def mixtures():
  tasks = []
  for name in PRESENT + MISSING:
    c = muffin.CONFIGS[name]
    tasks += muffin.register_task(c, registry.flan_variants(c.pattern_key, c.has_options, name)[:2])
  if OTHER_TASK in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(OTHER_TASK)
  seqio.TaskRegistry.add(OTHER_TASK, source=seqio.FunctionDataSource(lambda split, shuffle_files: None,
                                                                     splits=("train",)),
                         preprocessors=[], output_features=vocab.output_features())
  mixes = {"doctor_test_mixed": tasks, "doctor_test_present": [t for t in tasks if t.startswith(PRESENT)],
           "doctor_test_outer": ["doctor_test_present", OTHER_TASK]}
  for name, members in mixes.items():
    if name in seqio.MixtureRegistry.names():
      seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, [(m, 1.0) for m in members])
  yield tasks
  # The Muffin tasks stay: register_task re-registered them exactly as `import tasks` does.
  for name in mixes:
    seqio.MixtureRegistry.remove(name)
  seqio.TaskRegistry.remove(OTHER_TASK)


@pytest.fixture
def offline(offline):  # conftest's: no network, no TFDS builder; then forget the TFDS dir the doctor was given
  yield offline
  tfds_source.set_tfds_data_dir(None)


def _doctor(*argv: str) -> int:
  """Parses and runs `doctor ARGV` the way the data CLI does (its common flags on the top parser)."""
  parser = argparse.ArgumentParser(prog="flan-jax data")
  parser.add_argument("--data_dir")
  parser.add_argument("--module")
  doctor.register_cli(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(["doctor", *argv])
  assert args.needs_registry
  return args.func(args)


def test_mixed_mixture_lists_each_task_and_each_fix_once(tfds_dir, mixtures, offline, capsys):
  assert _doctor("doctor_test_mixed", "--tfds_data_dir", str(tfds_dir), "--verbose") == 1
  out = capsys.readouterr().out
  lines = out.splitlines()
  assert lines[0].startswith(f"{len(mixtures) - 2} of {len(mixtures)} tasks of doctor_test_mixed lack their data")
  status = {line.split()[1]: line.split()[0] for line in lines if line.startswith(("ok", "MISSING"))}
  assert status == {t: "ok" if t.startswith(PRESENT) else "MISSING" for t in mixtures}
  assert f"{len(mixtures) - 2} of {len(mixtures)} tasks of doctor_test_mixed lack their data" in out
  fixes = [line for line in lines if line.startswith("- ")]
  assert len(fixes) == len(MISSING)  # two variants per dataset, one instruction per dataset
  d = tfds_dir
  assert any(f"`tfds build glue/cola:2.0.0 --data_dir {d}`" in f for f in fixes)
  assert any("Story Cloze needs a manual download" in f and "--manual_dir DIR" in f for f in fixes)
  assert any(f"`tfds build huggingface:xsum --data_dir {d}`" in f for f in fixes)


def test_all_present_exits_zero_and_non_flan_tasks_are_noted(tfds_dir, mixtures, offline, capsys):
  assert _doctor("doctor_test_outer", "--tfds_data_dir", str(tfds_dir), "--verbose") == 0
  out = capsys.readouterr().out
  assert f"ok       {OTHER_TASK}  (not a Flan task; presence not checked)" in out
  assert "ok       rte_template_0_zero_shot\n" in out  # the sub-mixture is flattened
  assert "all 3 tasks of doctor_test_outer have their data" in out


def test_tfds_data_dir_from_env_when_no_flag(tfds_dir, mixtures, offline, monkeypatch, capsys):
  monkeypatch.setenv(tfds_source.ENV_VAR, str(tfds_dir))
  assert _doctor("doctor_test_present") == 0
  monkeypatch.setenv(tfds_source.ENV_VAR, str(tfds_dir / "elsewhere"))
  assert _doctor("doctor_test_present", "--verbose") == 1
  assert "MISSING  rte_template_0_zero_shot" in capsys.readouterr().out


def test_unknown_name_exits_two(mixtures, capsys):
  assert _doctor("doctor_test_no_such_mixture") == 2
  assert "doctor_test_no_such_mixture" in capsys.readouterr().err


def test_a_large_mixture_summarises_in_few_lines(flan_data_dir, capsys):
  import tasks  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  assert _doctor("niv2_submix") == 1
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) <= 50
  assert " tasks of niv2_submix lack their data (" in lines[0] and "dataset(s) to get:" in lines[0]
  assert lines[-2].startswith("... and ") and lines[-2].endswith("more dataset(s): --verbose lists them all")
  assert all(line.endswith("tasks)") for line in lines[1:-2])  # each NIv2 dataset: its 3 variants
