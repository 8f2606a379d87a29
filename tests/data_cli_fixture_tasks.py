"""Small seqio tasks for the `flan-jax data` CLI tests, read from a fixture TSV (one malformed row) through the real
TSV reader and tokenized with the real T5 vocabulary. Imported by the CLI as `--module data_cli_fixture_tasks`."""
from __future__ import annotations

import pathlib

import seqio
import tensorflow as tf

from flan_jax.data.files import readers
from flan_jax.data.seqio_adapter import vocab

TSV = pathlib.Path(__file__).resolve().parent / "fixtures" / "data_cli" / "qa_train.tsv"
STRINGS = ("inputs", "targets", "_task_name", "_task_source", "_template_type")


def _source(task_name: str, inverted: bool) -> seqio.FunctionDataSource:
  def rows():
    for i, (_, row) in enumerate(readers.read_cot_tsv(TSV)):
      question, answer = row["question"], f"{row['chain_of_thought']} So the answer is {row['answer']}."
      inputs, targets = (answer, question) if inverted else (question, answer)
      yield {"inputs": inputs, "targets": targets, "_task_name": task_name, "_task_source": "Fixture",
             "_template_idx": i % 2, "_template_type": "zs_opt"}

  signature = {k: tf.TensorSpec([], tf.string) for k in STRINGS}
  signature["_template_idx"] = tf.TensorSpec([], tf.int32)
  return seqio.FunctionDataSource(
      lambda split, shuffle_files, seed=None: tf.data.Dataset.from_generator(rows, output_signature=signature),
      splits=["train"])


for _name, _inverted in (("clifix_qa", False), ("clifix_qa_inverted", True)):
  seqio.TaskRegistry.remove(_name)
  seqio.TaskRegistry.add(_name, source=_source(_name, _inverted),
                         preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
                         output_features=vocab.output_features())
seqio.MixtureRegistry.remove("clifix_mix")
seqio.MixtureRegistry.add("clifix_mix", [("clifix_qa", 1.0), ("clifix_qa_inverted", 3.0)])
