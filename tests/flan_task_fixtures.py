"""Shared helpers for the Flan task tests: registering once per session, hand-parsing TSV rows."""
from __future__ import annotations

import pathlib


def hand_rows(path: pathlib.Path) -> list[dict[str, str]]:
  """The CoT TSV rows parsed independently of flan_jax.data.files.readers."""
  rows = []
  for line in path.read_text(encoding="utf-8").split("\n"):
    if not line:
      continue
    q, a, c = line.split("\t")
    rows.append({"question": q.replace("\\n", "\n"), "answer": a,
                 "chain_of_thought": c.replace("\\n", "\n")})
  return rows
