"""Super-NaturalInstructions (NIv2) tasks in FLAN's formats.

One Flan dataset per NIv2 task named in flan/niv2_tasks.json (definition, positive example, instance count),
minus the MMLU-derived tasks (ids 664-667 and 685-737: MMLU is held out) and minus the tasks of NIv2's
default test split (niv2/splits/default/test_tasks.txt). Rows come from the canonical task file
niv2/tasks/<task>.json (instances: input, first output). The mixture cap of 5,000 is applied per NIv2 task.
"""
from __future__ import annotations

import functools
import re

from flan_jax.data.catalog import registry
from flan_jax.data.files import readers
from flan_jax.data.rendering import templates as tpl

MMLU_TASK_IDS = frozenset(range(664, 668)) | frozenset(range(685, 738))
PATTERN_KEY = "natinst_v2"
TASK_SOURCE = "NIv2"
_TASK_ID = re.compile(r"^task(\d+)_")
_NOT_SEQIO = re.compile(r"[^\w.:#]")


def seqio_name(task: str) -> str:
  """The registry base name of a NIv2 task: seqio names allow only [\\w.:#], so '-' becomes '_'."""
  return _NOT_SEQIO.sub("_", task)


def task_id(task: str) -> int:
  m = _TASK_ID.match(task)
  if not m:
    raise ValueError(f"{task!r} is not a NIv2 task name (taskNNN_...)")
  return int(m.group(1))


def is_mmlu_derived(task: str) -> bool:
  return task_id(task) in MMLU_TASK_IDS


def training_tasks() -> list[str]:
  """NIv2 tasks Flan trains on, in niv2_tasks.json order.

  niv2_tasks.json lists 40 tasks twice, under an old and a new name that differ only in '-' vs '_'; both map to
  one seqio name, so only the first is kept (a second would re-register it and double its mixture weight).
  """
  meta = readers.niv2_metadata()
  held_out = set(readers.niv2_split("test"))
  kept: dict[str, str] = {}
  for t in meta:
    if not is_mmlu_derived(t) and t not in held_out:
      kept.setdefault(seqio_name(t), t)
  return list(kept.values())


def _constants(task: str) -> dict[str, str]:
  info = readers.niv2_metadata()[task]
  pos = info["positive_examples"]
  pos = pos[0] if isinstance(pos, list) else pos
  # The definition as niv2_tasks.json records it (equal to the task file's `Definition`).
  return {"Definition": info["definition"], "ex_input": pos["input"], "ex_output": pos["output"],
          "ex_explanation": pos["explanation"]}


def _rows(task: str):
  _, rows = readers.read_niv2_instances(task)
  return rows


def _num_rows(task: str) -> int:
  # niv2_tasks.json records each task's instance count, so no task file is opened to count.
  return int(readers.niv2_metadata()[task]["number_examples"])


def dataset(task: str) -> registry.FlanDataset:
  return registry.FlanDataset(
      name=seqio_name(task), pattern_key=PATTERN_KEY, task_name=task, task_source=TASK_SOURCE,
      rows=functools.partial(_rows, task), num_rows=functools.partial(_num_rows, task),
      check_available=functools.partial(readers.niv2_task_path, task),
      constants=functools.partial(_constants, task))


def register(templates: tpl.Templates | None = None, tasks: list[str] | None = None) -> list[str]:
  """Registers the NIv2 variants of `tasks` (default: `training_tasks()`); returns task names."""
  variants = registry.niv2_variants(PATTERN_KEY, templates)
  names = []
  for task in (training_tasks() if tasks is None else tasks):
    names += registry.register_variants(dataset(task), variants)
  return names
