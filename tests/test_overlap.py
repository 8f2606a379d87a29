"""Contamination check: n-gram overlap on hand-made texts, and `flan-jax data overlap` on a registered task."""
from __future__ import annotations

import argparse
import json

import pytest
import seqio
import tensorflow as tf

from flan_jax.evaluation import bbh, overlap
from flan_jax.evaluation.examples import EvalExample


def _ex(task, i, text):
  return EvalExample(task, i, "prompt", "t", source_text=text)


def test_overlap_hand_made():
  examples = [_ex("a/x", 0, "The quick brown fox jumps over the lazy dog"),
              _ex("a/x", 1, "Completely unrelated words about chemistry and atoms here"),
              _ex("b/y", 0, "Two words")]
  train = ["Yesterday THE QUICK brown fox, jumps over a fence.",   # 4-gram "the quick brown fox" matches item 0
           "nothing to see",
           "She said: two words!"]                                  # item 2 is shorter than n: whole-text match
  result = overlap.overlap(train, examples, n=4)
  assert result["contaminated"] == 2 and result["train_examples_with_overlap"] == 2
  assert result["tasks"] == {"a/x": {"contaminated": 1, "examples": 2}, "b/y": {"contaminated": 1, "examples": 1}}
  assert result["contaminated_examples"] == [{"task": "a/x", "index": 0}, {"task": "b/y", "index": 0}]
  # No 7-gram of item 0 survives ("...jumps over the" vs "...jumps over a"); the short item still matches.
  assert overlap.overlap(train, examples, n=7)["contaminated"] == 1


def test_data_overlap_command(flan_data_dir, capsys):
  leaked = bbh.read_examples("navigate")[0][0]
  name = "overlap_test_leaky_task"
  if name not in seqio.TaskRegistry.names():
    texts = [f"Please answer. {leaked}", "an innocent training input with no benchmark text at all"]

    def dataset_fn(split, shuffle_files, seed=None):
      return tf.data.Dataset.from_tensor_slices({"inputs": texts, "targets": ["x", "y"]})

    seqio.TaskRegistry.add(
        name, seqio.FunctionDataSource(dataset_fn, splits=["train"]),
        preprocessors=[
            lambda ds: ds.map(lambda ex: {**ex, "inputs_pretokenized": ex["inputs"],
                                          "targets_pretokenized": ex["targets"]})],
        output_features={})
  parser = argparse.ArgumentParser()
  sub = parser.add_subparsers(dest="command")
  overlap.register_cli(sub)
  args = parser.parse_args(["overlap", name, "--suite", "bbh_direct,bbh_cot", "--benchmark_limit", "3"])
  assert args.needs_registry and args.func(args) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["benchmark_examples"] == 27 * 3     # direct and CoT share items: counted once
  assert result["train_examples"] == 2 and result["train_examples_with_overlap"] == 1
  assert {"task": "bbh/navigate", "index": 0} in result["contaminated_examples"]
  assert result["tasks"]["bbh/navigate"]["contaminated"] >= 1
  bad = parser.parse_args(["overlap", name, "--suite", "nope"])
  assert bad.func(bad) == 2


def test_data_overlap_only_available(flan_data_dir, capsys):
  import tasks  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import  (cot_zsopt lacks esnli/qed)
  parser = argparse.ArgumentParser()
  parser.add_argument("--data_dir")
  parser.add_argument("--module")
  overlap.register_cli(parser.add_subparsers(dest="command"))
  args = parser.parse_args(["overlap", "cot_zsopt", "--suite", "bbh_direct", "--benchmark_limit", "1",
                            "--limit", "5"])
  with pytest.raises(SystemExit, match=r"mixture='cot_zsopt': 4 of its 18 task\(s\) lack their data"):
    args.func(args)
  args = parser.parse_args(["overlap", "cot_zsopt", "--suite", "bbh_direct", "--benchmark_limit", "1",
                            "--limit", "5", "--only_available"])
  assert args.func(args) == 0
  captured = capsys.readouterr()
  assert json.loads(captured.out)["train_examples"] == 5
  assert "using 14 of its 18 tasks as 'cot_zsopt_available'" in captured.err
