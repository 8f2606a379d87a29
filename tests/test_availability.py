"""`availability.resolve`: a mixture with absent data fails naming what is missing, or (only_available) becomes
`<name>_available` of its present tasks at their effective rates, said in one line."""
from __future__ import annotations

import pytest

from flan_jax.data.catalog import availability, mixing
from flan_jax.data.files import data_dir as data_dir_lib
from tests import fixture_tasks


@pytest.fixture(scope="module")
def absent(flan_data_dir):
  import tasks  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (the CoT mixtures)
  missing = [d for d in ("esnli", "qed") if not (flan_data_dir / "flan" / "cot" / f"{d}_train.tsv").exists()]
  assert missing, "the test needs a CoT dataset missing from the data dir"
  return missing


def test_missing_data_fails_naming_the_binding_and_the_fix(absent):
  with pytest.raises(data_dir_lib.DataMissingError,
                     match=r"(?s)X='cot_zsopt': \d+ of its \d+ task\(s\) lack.*download --only cot.*ONLY_AVAILABLE"):
    availability.resolve("cot_zsopt", False, "X")


def test_only_available_renormalises_over_the_present_tasks(absent, capsys):
  name = availability.resolve("cot_zsopt", True, "X")
  assert name == "cot_zsopt_available"
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1
  assert err[0].startswith("note: X='cot_zsopt': using 14 of its 18 tasks as 'cot_zsopt_available'; the other 4 "
                           f"({len(absent)} dataset(s)) have no data in ")
  assert err[0].endswith("renormalised shares: CoT 1.0000")
  full = mixing.rates("cot_zsopt")
  want = {t: r for t, r in full.items() if not any(d in t for d in absent)}
  assert mixing.rates(name) == pytest.approx(want)


def test_present_names_come_back_unchanged_and_fixes_group_by_dataset(absent):
  assert availability.resolve(fixture_tasks.TRAIN_TASK, False) == fixture_tasks.TRAIN_TASK
  statuses = availability.diagnose("cot_zsopt")
  fixes = availability.fixes(statuses)
  assert len(fixes) == len(absent) and all(count == 2 for _, count in fixes)  # zero-shot + its inversion

