"""Tasks per part of the Flan 2022 collection, reconciled with the paper's counts.

Chung et al. (2022) count the finetuning collection as four parts: Muffin 80, T0-SF 193, NIV2 1,554 and
CoT 9 tasks (1,836). A "task" there is a source dataset (for NIV2 and T0-SF: one NIv2 task / one P3 prompted
subtask), not a template variant, so this module counts registered *bases*: distinct Flan datasets behind the
registered seqio tasks, by `_task_source` (Flan2021 and Dialog make up Muffin, P3 is T0-SF), input-inversion
twins not counted (they re-use a base's data). It compares each part with the paper and with FLAN's inventory
(flan/flan_collection_info.csv) and says where every difference comes from, computed from the two lists:
  - Muffin: FLAN did not release Task Master or the five program-synthesis sets; the inventory's `mnli` is two
    tasks (mnli_matched, mnli_mismatched); `trivia_qa_wiki_missing` is in the inventory but FLAN v2's code
    registers no task of that name.
  - NIV2: we hold out NIv2's default test split and the MMLU-derived tasks (MMLU is an evaluation benchmark).
Reads only registered tasks and small metadata files; never imports `tasks`.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import re
from typing import Iterable

from flan_jax.data.files import data_dir as data_dir_lib

COLLECTION_INFO = "flan/flan_collection_info.csv"
PAPER_COUNTS = {"Muffin": 80, "T0-SF": 193, "NIV2": 1554, "CoT": 9}
PAPER_TOTAL = 1836
PART_OF_SOURCE = {"Flan2021": "Muffin", "Dialog": "Muffin", "P3": "T0-SF", "NIv2": "NIV2", "CoT": "CoT"}
# Inventory `Source` values per part, and whether the part counts rows (one task a row) or distinct datasets.
INVENTORY_SOURCES = {"Muffin": ({"FLAN", "FLAN/T0", "Dialog", "Program Synthesis"}, False),
                     "T0-SF": ({"T0"}, True), "NIV2": ({"NIv2"}, True), "CoT": ({"CoT"}, False)}
UNRELEASED = {"task_master": "Task Master (not released by FLAN: legal constraints)",
              "dmcc_python": "program synthesis (not released by FLAN: legal constraints)",
              "dr_repair_error_comments": "program synthesis (not released by FLAN: legal constraints)",
              "dr_repair_line_numbers": "program synthesis (not released by FLAN: legal constraints)",
              "dr_repair_no_errors": "program synthesis (not released by FLAN: legal constraints)",
              "dr_repair_plain_code": "program synthesis (not released by FLAN: legal constraints)"}
SPLIT_IN_TWO = {"mnli": ("mnli_matched", "mnli_mismatched")}
INVERSION_MARK = "_input_inversion"
_NOT_SEQIO = re.compile(r"[^\w.:#]")  # seqio task names allow only [\w.:#]


@dataclasses.dataclass
class PartCount:
  part: str
  paper: int
  registered: int
  inventory: int
  present: int  # registered bases whose data is in the data dir / TFDS data dir now
  notes: list[str] = dataclasses.field(default_factory=list)


def registered_bases() -> dict[str, dict[str, object]]:
  """part -> {base name: its FlanDataset}, over every registered Flan task."""
  from flan_jax.data.catalog import registry  # pylint: disable=import-outside-toplevel
  out: dict[str, dict[str, object]] = collections.defaultdict(dict)
  for task in registry.TASKS.values():
    ds = task.dataset
    part = PART_OF_SOURCE.get(ds.task_source)
    if part is None or INVERSION_MARK in ds.name:
      continue
    out[part].setdefault(ds.name, ds)
  return out


def inventory() -> dict[str, list[str]]:
  """part -> the inventory's tasks: rows (T0-SF, NIV2) or distinct datasets (Muffin, CoT)."""
  path = data_dir_lib.data_file(COLLECTION_INFO, source="flan")
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f)
    missing = {"Source", "Dataset"} - set(reader.fieldnames or ())
    if missing:
      raise ValueError(f"{path}:1: missing columns {sorted(missing)}")
    rows = [(r["Source"], r["Dataset"]) for r in reader]
  out = {}
  for part, (sources, per_row) in INVENTORY_SOURCES.items():
    names = [d for s, d in rows if s in sources]
    out[part] = names if per_row else sorted(set(names))
  return out


def _present(datasets: Iterable[object]) -> int:
  n = 0
  for ds in datasets:
    try:
      ds.check_available()
    except data_dir_lib.DataMissingError:
      continue
    n += 1
  return n


def _muffin_notes(registered: set[str], listed: list[str]) -> list[str]:
  notes = []
  listed_set = set(listed)
  for name, halves in SPLIT_IN_TWO.items():
    if name in listed_set and set(halves) <= registered:
      notes.append(f"+1: inventory's {name} is registered as {' and '.join(halves)}")
      registered = registered - set(halves)
      listed_set.discard(name)
  absent = sorted(listed_set - registered)
  unreleased = [n for n in absent if n in UNRELEASED]
  if unreleased:
    notes.append(f"-{len(unreleased)}: unreleased upstream: " + ", ".join(f"{n} ({UNRELEASED[n]})" for n in unreleased))
  other = [n for n in absent if n not in UNRELEASED]
  if other:
    notes.append(f"-{len(other)}: in the inventory, no FLAN v2 task registers it: {', '.join(other)}")
  extra = sorted(registered - listed_set)
  if extra:
    notes.append(f"+{len(extra)}: registered but not in the inventory: {', '.join(extra)}")
  return notes


def _niv2_notes(registered: int) -> list[str]:
  from flan_jax.data.files import readers  # pylint: disable=import-outside-toplevel
  meta = readers.niv2_metadata()
  test = set(readers.niv2_split("test"))
  mmlu = [t for t in meta if _niv2_id(t) in range(664, 668) or _niv2_id(t) in range(685, 738)]
  held_out = [t for t in meta if t in test and t not in mmlu]
  kept = [t for t in meta if t not in mmlu and t not in held_out]
  distinct = len({_NOT_SEQIO.sub("_", t) for t in kept})
  notes = [f"niv2_tasks.json lists {len(meta)} tasks: -{len(mmlu)} MMLU-derived (held out), "
           f"-{len(held_out)} in NIv2's default test split (held out), -{len(kept) - distinct} listed twice "
           f"under an old and a new name ('-' vs '_', one registry task each) = {distinct}"]
  if distinct != registered:
    notes.append(f"registered {registered} differs from that by {registered - distinct:+d}")
  notes.append("the paper counts the NIv2 release of its time before these hold-outs; FLAN's inventory "
               "lists per-task rows of that release")
  return notes


def _niv2_id(task: str) -> int:
  head = task.split("_", 1)[0]
  return int(head[4:]) if head.startswith("task") and head[4:].isdigit() else -1


def reconcile() -> list[PartCount]:
  """One PartCount per paper part, in the paper's order, with the reasons for every difference."""
  bases = registered_bases()
  listed = inventory()
  out = []
  for part, paper in PAPER_COUNTS.items():
    reg = bases.get(part, {})
    pc = PartCount(part, paper, len(reg), len(listed[part]), _present(reg.values()))
    if part == "Muffin":
      pc.notes = _muffin_notes(set(reg), listed[part])
      if pc.inventory + sum(1 for n in listed[part] if n in SPLIT_IN_TWO) != paper:
        pc.notes.append(f"inventory ({pc.inventory}, splits counted) and paper ({paper}) disagree")
    elif part == "T0-SF":
      missing = sorted(set(listed[part]) - {getattr(ds, "task_name") for ds in reg.values()})
      pc.notes = [f"P3 subtasks neither in Flan 2021 nor score-eval: {len(reg)}"]
      if len(listed[part]) != len(reg):
        pc.notes.append(f"the inventory lists {len(listed[part])} rows (by dataset: {len(missing)} names "
                        "not matched to a subtask)")
    elif part == "NIV2":
      pc.notes = _niv2_notes(len(reg))
      if pc.inventory != paper:
        pc.notes.append(f"the inventory has {pc.inventory} NIv2 rows, {pc.inventory - paper:+d} against the paper")
    elif part == "CoT":
      pc.notes = ["nine CoT datasets; their input-inversion twins re-use the data and are not counted"]
    if pc.present < pc.registered:
      pc.notes.append(f"{pc.registered - pc.present} registered base(s) lack their data here "
                      "(`flan-jax data doctor MIXTURE` says how to get it)")
    out.append(pc)
  return out


def report_lines(parts: list[PartCount] | None = None) -> list[str]:
  """The reconciliation as text for `flan-jax data stats`."""
  parts = reconcile() if parts is None else parts
  lines = [f"{'part':<8} {'paper':>6} {'registered':>10} {'inventory':>9} {'present':>7}"]
  for p in parts:
    lines.append(f"{p.part:<8} {p.paper:>6} {p.registered:>10} {p.inventory:>9} {p.present:>7}")
    lines += [f"    {n}" for n in p.notes]
  reg = sum(p.registered for p in parts)
  lines.append(f"{'total':<8} {PAPER_TOTAL:>6} {reg:>10} {sum(p.inventory for p in parts):>9} "
               f"{sum(p.present for p in parts):>7}   ({reg - PAPER_TOTAL:+d} against the paper)")
  return lines
