"""Collection counts per paper part, reconciled with the paper (Muffin 80, T0-SF 193, NIV2 1,554, CoT 9)."""
from __future__ import annotations

import pytest

from flan_jax.data import collection


@pytest.fixture(scope="module")
def parts():
  import tasks  # noqa: F401
  from tasks import flan2022
  flan2022.register_all()
  return {p.part: p for p in collection.reconcile()}


def test_parts_and_paper_counts(parts):
  assert list(parts) == ["Muffin", "T0-SF", "NIV2", "CoT"]
  assert sum(p.paper for p in parts.values()) == collection.PAPER_TOTAL == 1836
  assert parts["T0-SF"].registered == parts["T0-SF"].paper == parts["T0-SF"].inventory == 193
  assert parts["CoT"].registered == 9 and parts["CoT"].present == 7  # esnli and qed TSVs are absent


def test_muffin_difference_explained(parts):
  m = parts["Muffin"]
  notes = "\n".join(m.notes)
  assert "mnli is registered as mnli_matched and mnli_mismatched" in notes
  assert "task_master" in notes and "dr_repair_plain_code" in notes and "trivia_qa_wiki_missing" in notes
  # registered + unreleased (6) + unregistered inventory rows (1) - the mnli split (1) = the inventory
  assert m.registered + 6 + 1 - 1 == m.inventory
  assert m.inventory + 1 == m.paper  # mnli counted as two tasks, as the paper does


def test_niv2_difference_explained(parts):
  n = parts["NIV2"]
  assert "MMLU-derived" in n.notes[0] and "test split" in n.notes[0]
  assert n.notes[0].endswith(f"= {n.registered}")
  assert any("+2 against the paper" in x for x in n.notes)


def test_report_lines(parts):
  lines = collection.report_lines(list(parts.values()))
  assert lines[0].split() == ["part", "paper", "registered", "inventory", "present"]
  total = lines[-1].split()
  assert total[:2] == ["total", "1836"] and int(total[2]) == sum(p.registered for p in parts.values())
