"""Flan 2022 mixtures: upstream's names, rates and shares checked against hand computations from
num_cases.json, and the two policies for absent data (fail naming tasks, or renormalise over what is present)."""
from __future__ import annotations

import json
import time

import pytest
import seqio

from flan_jax.data.catalog import mixing, registry
from flan_jax.data.files import data_dir as data_dir_lib


@pytest.fixture(scope="module")
def everything():
  import tasks  # noqa: F401  (CoT, NIv2 and their submixes)
  from tasks import flan2022
  start = time.perf_counter()
  out = flan2022.register_all()
  return flan2022, out, time.perf_counter() - start


def _by_source(shares):
  out = {}
  for task, share in shares.items():
    src = registry.flan_source(task).dataset.task_source
    out[src] = out.get(src, 0.0) + share
  return out


def test_names_as_upstream_and_fast(everything):
  flan2022, out, seconds = everything
  names = set(seqio.MixtureRegistry.names())
  for fam in ("flan", "t0"):
    assert {f"{fam}_{s}" for s in ("zsopt", "zsnoopt", "fsopt", "fsnoopt")} <= names
  assert {"dialog_zsopt", "dialog_fsopt"} <= names and "dialog_zsnoopt" not in names
  assert {"flan2021_submix", "t0_submix", "dialog_submix", "flan2022_submix", flan2022.PAPER_COLLECTION} <= names
  assert len(seqio.TaskRegistry.names()) > 15000
  assert seconds < 60, f"registering Muffin, T0-SF, Dialog and mixtures took {seconds:.1f}s"


def test_flan2022_shares_by_hand(everything):
  flan2022 = everything[0]
  got = _by_source(flan2022.shares("flan2022_submix"))
  want = {"Flan2021": 0.4, "P3": 0.32, "NIv2": 0.2, "CoT": 0.05, "Dialog": 0.03}
  assert got == pytest.approx(want)
  paper = _by_source(flan2022.shares(flan2022.PAPER_COLLECTION))
  assert paper == pytest.approx({k: v / 0.97 for k, v in want.items() if k != "Dialog"})


def test_submix_settings_equal_weights(everything):
  flan2022 = everything[0]
  mix = seqio.get_mixture_or_task("t0_submix")
  assert {n: float(r) for n, r in mix.rate_per_task_name.items()} == \
      {"t0_zsopt": 1.0, "t0_fsopt": 1.0, "t0_zsnoopt": 1.0, "t0_fsnoopt": 1.0}
  shares = flan2022.shares("t0_submix")
  zs_noopt = set(t.name for t in seqio.get_mixture_or_task("t0_zsnoopt").tasks)
  assert sum(v for k, v in shares.items() if k in zs_noopt) == pytest.approx(0.25)


def test_capped_rates_by_hand(everything):
  cases = json.loads(data_dir_lib.data_file("flan/num_cases.json").read_text())["T_NAME_TO_NUM_CASES"]
  rates = mixing.rates("palmflan_t0_zs_noopt")
  for task, rate in list(rates.items())[:40]:
    base = task.removesuffix("_template_0to10_no_opt_zero_shot")
    assert rate == min(20000, cases[base]["zero_shot"])
  assert any(r == 20000 for r in rates.values()) and any(r < 20000 for r in rates.values())
  d = mixing.rates("palmflan_dialog-ii_zs_opt")
  assert set(d) == {"wiki_dialog_input_inversion_template_0to10_non_deter_opt_zero_shot",
                    "qrecc_input_inversion_template_0to10_non_deter_opt_zero_shot"}
  assert d["qrecc_input_inversion_template_0to10_non_deter_opt_zero_shot"] == \
      min(200000, cases["qrecc"]["zero_shot"])
  # Dialog-II enters dialog_zsopt at 0.3 of Dialog's weight.
  top = seqio.get_mixture_or_task("dialog_zsopt").rate_per_task_name
  assert float(top["palmflan_dialog-ii_zs(1)_opts(1)"]) == pytest.approx(0.3)


def test_missing_data_fails_naming_tasks(everything):
  from flan_jax.data.catalog import availability  # pylint: disable=import-outside-toplevel
  with pytest.raises(data_dir_lib.DataMissingError,
                     match=r"mixture='dialog_submix': \d+ of its \d+ task\(s\) lack their data: .*wiki_dialog"):
    availability.resolve("dialog_submix", False)
  with pytest.raises(data_dir_lib.DataMissingError, match="'dialog_zsopt': none of its"):
    availability.resolve("dialog_zsopt", True)


def test_available_only_renormalises(everything, capsys):
  from flan_jax.data.catalog import availability, mixing  # pylint: disable=import-outside-toplevel
  flan2022 = everything[0]
  full = flan2022.shares("cot_zsopt")
  shares = flan2022.shares(availability.resolve("cot_zsopt", True))
  assert sum(shares.values()) == pytest.approx(1.0)
  assert not any("esnli" in t or "qed" in t for t in shares)  # their TSVs are absent offline
  kept = sum(full[t] for t in shares)
  for t, s in shares.items():
    assert s == pytest.approx(full[t] / kept)
  assert "renormalised shares: CoT 1.0000" in capsys.readouterr().err
  assert set(mixing.rates("cot_zsopt_available")) == set(shares)
