"""`flan-jax data`: list, show (JSONL/text, tokenized, shuffled), stats, did-you-mean, skip counts, plugged commands."""
from __future__ import annotations

import json

import pytest

from flan_jax.data import cli
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.seqio_adapter import vocab

FIXTURE = ["--module", "data_cli_fixture_tasks"]


def _run(capsys, *argv):
  rc = cli.main(list(argv))
  out, err = capsys.readouterr()
  return rc, out, err


def test_list_filters_by_kind_and_regex(capsys):
  rc, out, _ = _run(capsys, "list", *FIXTURE, "--filter", "^clifix")
  assert rc == 0
  assert out.splitlines() == ["mixture  clifix_mix  (2 tasks)", "task     clifix_qa", "task     clifix_qa_inverted"]
  rc, out, _ = _run(capsys, "list", *FIXTURE, "--kind", "mixture", "--filter", "clifix")
  assert out.splitlines() == ["mixture  clifix_mix  (2 tasks)"]
  rc, _, err = _run(capsys, "list", *FIXTURE, "--filter", "(")
  assert rc == 2 and "--filter '(' is not a valid regex" in err


def test_show_jsonl_in_source_order_names_the_skipped_row(capsys):
  rc, out, err = _run(capsys, "show", "clifix_qa", "-n", "3", *FIXTURE)
  assert rc == 0
  records = [json.loads(line) for line in out.splitlines()]
  assert [r["inputs_pretokenized"] for r in records] == ["What is 2 + 3?", "Is the sky green?", "Name a prime."]
  assert records[1]["targets_pretokenized"] == "The sky is blue,\nnot green. So the answer is no."
  assert set(records[0]) == {"inputs_pretokenized", "targets_pretokenized", "_task_name", "_task_source",
                             "_template_idx", "_template_type"}
  assert records[2]["_task_name"] == "clifix_qa" and records[2]["_template_idx"] == 0
  assert "qa_train.tsv:3: skipped row" in err
  assert "skipped rows: 1" in err and "qa_train.tsv: 1" in err


def test_show_tokenized_adds_ids_with_eos(capsys):
  rc, out, _ = _run(capsys, "show", "clifix_qa", "-n", "1", "--tokenized", *FIXTURE)
  record = json.loads(out)
  v = vocab.get_vocabulary()
  assert record["inputs"] == v.encode("What is 2 + 3?") + [vocab.EOS_ID]
  assert record["targets"][-1] == vocab.EOS_ID


def test_show_text_format(capsys):
  rc, out, _ = _run(capsys, "show", "clifix_qa_inverted", "-n", "1", "--format", "text", *FIXTURE)
  assert rc == 0
  assert out.startswith("=== example 0 (task_name clifix_qa_inverted, task_source Fixture, template_idx 0, "
                        "template_type zs_opt)\n--- inputs\n2 plus 3 is 5. So the answer is 5.\n--- targets\n"
                        "What is 2 + 3?")


def test_show_shuffle_is_deterministic_per_seed(capsys):
  runs = [_run(capsys, "show", "clifix_qa", "-n", "4", "--shuffle", "--seed", "7", *FIXTURE)[1] for _ in range(2)]
  assert runs[0] == runs[1]
  source = _run(capsys, "show", "clifix_qa", "-n", "4", *FIXTURE)[1]
  assert sorted(runs[0].splitlines()) == sorted(source.splitlines())


def test_show_a_mixture_keeps_the_passthrough_features(capsys):
  rc, out, _ = _run(capsys, "show", "clifix_mix", "-n", "6", "--seed", "1", *FIXTURE)
  records = [json.loads(line) for line in out.splitlines()]
  assert len(records) == 6
  assert {r["_task_name"] for r in records} <= {"clifix_qa", "clifix_qa_inverted"}
  assert all(r["_task_source"] == "Fixture" and r["inputs_pretokenized"] for r in records)


def test_unknown_name_gets_did_you_mean(capsys):
  rc, _, err = _run(capsys, "show", "clifix_qq", *FIXTURE)
  assert rc == 2
  assert "unknown task or mixture 'clifix_qq'; did you mean clifix_qa" in err
  rc, _, err = _run(capsys, "stats", "zzzzzzzz", *FIXTURE)
  assert rc == 2 and "see `flan-jax data list`" in err


def test_stats_reports_shares_lengths_packing_and_skips(capsys):
  rc, out, _ = _run(capsys, "stats", "clifix_mix", "-n", "40", "--lengths", "64/32", *FIXTURE)
  assert rc == 0
  assert "clifix_mix: 40 examples" in out
  assert "clifix_qa_inverted" in out and "75.00%" in out and "25.00%" in out
  assert "packing at 64/32" in out and "greedy " in out and "ffd " in out
  assert "skipped rows: " in out and "qa_train.tsv" in out
  rc, out, _ = _run(capsys, "stats", "clifix_qa", "-n", "4", "--json", *FIXTURE)
  d = json.loads(out)
  assert d["examples"] == 4 and d["lengths"] == {"inputs": 2048, "targets": 512}
  assert {p["packer"] for p in d["packing"]} == {"greedy", "ffd"}
  rc, _, err = _run(capsys, "stats", "clifix_qa", "--lengths", "64", *FIXTURE)
  assert rc == 2 and "--lengths '64'" in err


def test_data_dir_flag_sets_the_data_dir_before_or_after_the_command(capsys, flan_data_dir):
  try:
    for argv in (["--data_dir", str(flan_data_dir), "list", *FIXTURE, "--filter", "^$"],
                 ["list", *FIXTURE, "--filter", "^$", "--data_dir", str(flan_data_dir)]):
      data_dir_lib.set_data_dir(None)
      assert _run(capsys, *argv)[0] == 0
      assert data_dir_lib.data_dir() == flan_data_dir
  finally:
    data_dir_lib.set_data_dir(None)


def test_bad_module_is_named(capsys):
  rc, _, err = _run(capsys, "list", "--module", "no_such_tasks_module")
  assert rc == 2 and "cannot import --module 'no_such_tasks_module'" in err


def test_download_and_verify_are_plugged_in(capsys, flan_data_dir):
  rc, out, _ = _run(capsys, "--data_dir", str(flan_data_dir), "verify", "--only", "vocab")
  assert rc == 0
  assert "cc_all.32000.sentencepiece.model" in out or "vocab" in out
  with pytest.raises(SystemExit):
    cli.main(["download", "--help"])
  assert "--only" in capsys.readouterr().out


def test_real_cot_task_and_mixture(capsys):
  rc, out, err = _run(capsys, "show", "cot_gsm8k_template_0to10_zero_shot", "-n", "2", "--tokenized")
  records = [json.loads(line) for line in out.splitlines()]
  assert rc == 0 and len(records) == 2
  assert "skipped rows" not in err  # nothing was skipped: nothing to say
  assert records[0]["_task_name"].startswith("cot_gsm8k") and records[0]["_template_type"] == "zs_opt"
  assert records[0]["inputs_pretokenized"].startswith("Natalia sold clips to 48 of her friends in April")
  assert records[0]["inputs"][-1] == vocab.EOS_ID


def test_real_mixture_stats_leave_out_tasks_without_data_and_name_them(capsys):
  rc, out, err = _run(capsys, "stats", "cot_zsopt", "-n", "200", "--lengths", "2048/512")
  assert rc == 0 and "cot_zsopt: 200 examples" in out and "rows vs bound" in out
  assert "'cot_zsopt': using 14 of its 18 tasks as 'cot_zsopt_available'" in err
  assert len([line for line in err.splitlines() if "cot_zsopt_available" in line]) == 1
  assert "tasks left out, their data is not in the data dir (4): " in out and "cot_esnli" in out
  rc, _, err = _run(capsys, "show", "cot_esnli_template_0to10_zero_shot", "-n", "1")
  assert rc == 2 and "flan/cot/esnli_train.tsv is not in the data dir" in err


def test_stats_collection_counts_parts_against_the_paper(capsys):
  from flan_jax.data import collection
  rc, out, _ = _run(capsys, "stats", "--collection")
  assert rc == 0
  assert out.strip() == "\n".join(collection.report_lines()).strip() and "CoT" in out
  rc, _, err = _run(capsys, "stats")
  assert rc == 2 and "give a task or mixture NAME, or --collection" in err


def test_doctor_and_overlap_are_plugged_in_after_the_registry_import(capsys):
  sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
  assert {"list", "show", "stats", "download", "verify", "doctor", "overlap"} <= set(sub.choices)
  rc, out, _ = _run(capsys, "doctor", "clifix_qq_unknown", *FIXTURE)
  assert rc == 2


def test_rows_left_out_by_flan_filters_are_reported():
  from flan_jax.data.catalog import registry
  before = cli.skip_counters()
  registry.filtered_rows.add("flan_jax_test_filtered")
  registry.filtered_rows.add("flan_jax_test_filtered")
  after = cli.skip_counters()
  report = cli._skip_report(*(cli._since(a, b) for a, b in zip(after, before)))  # pylint: disable=protected-access
  assert "skipped rows: 0" in report
  assert "rows left out by FLAN's own filters: 2\n  flan_jax_test_filtered: 2" in report
