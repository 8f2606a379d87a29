"""TyDiQA GoldP, 1-shot direct, from TFDS `tydi_qa/goldp` (read-only, explicit data dir; never downloaded).

Languages: the eight non-English ones (ar, bn, fi, id, ko, ru, sw, te), split `validation-<lang>`.
The one exemplar is the first example of that split (it is not scored). Prompt, ours (no published one to match):
  "{context}\n\nQ: {question}\n\nA: {first gold answer}\n\n{context}\n\nQ: {question}\n\nA:"
An answer ends at the blank line that ends the shot's answer (the stop sequence "\n\n").
Scored by SQuAD-normalised exact match and token F1 against every gold answer.
"""
from __future__ import annotations

import os

from flan_jax.evaluation.examples import EvalExample

LANGUAGES = ("ar", "bn", "fi", "id", "ko", "ru", "sw", "te")
DATASET = "tydi_qa/goldp"
STOP_SEQUENCES = ("\n\n",)


def _text(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def read_split(lang: str, data_dir: str | os.PathLike, limit: int | None = None) -> list[dict]:
  import tensorflow_datasets as tfds

  ds = tfds.load(DATASET, split=f"validation-{lang}", data_dir=os.fspath(data_dir), download=False,
                 try_gcs=False)
  rows = []
  for ex in tfds.as_numpy(ds.take(-1 if limit is None else limit + 1)):
    rows.append({"context": _text(ex["context"]), "question": _text(ex["question"]),
                 "answers": tuple(_text(a) for a in ex["answers"]["text"])})
  return rows


def format_qa(context: str, question: str) -> str:
  return f"{context}\n\nQ: {question}\n\nA:"


def direct_examples(lang: str, data_dir: str | os.PathLike, limit: int | None = None) -> list[EvalExample]:
  rows = read_split(lang, data_dir, limit)
  if len(rows) < 2:
    raise ValueError(f"{DATASET} validation-{lang} in {data_dir} has {len(rows)} examples; 1-shot needs >= 2")
  shot = rows[0]
  header = f"{format_qa(shot['context'], shot['question'])} {shot['answers'][0] if shot['answers'] else ''}\n\n"
  return [EvalExample(f"tydiqa/{lang}", i, header + format_qa(r["context"], r["question"]),
                      r["answers"][0] if r["answers"] else "", golds=r["answers"],
                      source_text=f"{r['context']}\n{r['question']}", stop_sequences=STOP_SEQUENCES)
          for i, r in enumerate(rows[1:])]
