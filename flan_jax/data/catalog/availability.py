"""Which tasks of a mixture have their data, and `resolve`: the one way to train or read "what is present".

Presence is decided without reading data: each Flan or token task's `check_available()` (file-system checks of the
Flan data dir, the TFDS data dir, or a token task's text files), so it is quick even for thousands of tasks and never
waits on the network. Other tasks count as present (their data is their own business).
"""
from __future__ import annotations

import dataclasses
import sys

from flan_jax.data.catalog import mixing, registry, token_tasks
from flan_jax.data.files import data_dir as data_dir_lib


@dataclasses.dataclass(frozen=True)
class TaskStatus:
  task: str
  present: bool
  how_to_get: str = ""


def diagnose(name: str) -> list[TaskStatus]:
  """The status of every leaf task of a task or mixture (sub-mixtures flattened), sorted by name."""
  out = []
  for task in sorted(mixing.leaves(name)):
    flan_task = registry.TASKS.get(task)
    token_task = token_tasks.TASKS.get(task)
    if flan_task is None and token_task is None:
      out.append(TaskStatus(task, True, "not a Flan task; presence not checked"))
      continue
    try:
      (flan_task.dataset if flan_task is not None else token_task).check_available()
    except data_dir_lib.DataMissingError as e:
      out.append(TaskStatus(task, False, str(e)))
      continue
    out.append(TaskStatus(task, True))
  return out


def fixes(statuses: list[TaskStatus]) -> list[tuple[str, int]]:
  """Each distinct way to get missing data (one per dataset: its variants share it) and how many tasks need it."""
  counts: dict[str, int] = {}
  for s in statuses:
    if not s.present:
      counts[s.how_to_get] = counts.get(s.how_to_get, 0) + 1
  return list(counts.items())


def resolve(name: str, only_available: bool, binding: str = "mixture") -> str:
  """The name to read for `name`: itself when every task has its data; else, with `only_available`, a registered
  `<name>_available` of the present tasks at their effective rates (renormalised, said in one line per call);
  else a DataMissingError naming `binding`, the missing tasks and how to get them."""
  statuses = diagnose(name)
  missing = [s for s in statuses if not s.present]
  if not missing:
    return name
  grouped = fixes(statuses)
  if not only_available:
    raise data_dir_lib.DataMissingError(
        f"{binding}={name!r}: {len(missing)} of its {len(statuses)} task(s) lack their data: "
        f"{', '.join(s.task for s in missing[:12])}{' ...' if len(missing) > 12 else ''}\n"
        + "\n".join(f"- {how}" for how, _ in grouped[:6])
        + (f"\n- ... {len(grouped) - 6} more: `flan-jax data doctor {name}`" if len(grouped) > 6 else "")
        + "\n(or set ONLY_AVAILABLE_DATA = True / --only_available to use the tasks that are present)")
  absent = {s.task for s in missing}
  kept = [(task, rate) for task, rate in mixing.rates(name).items() if task not in absent]
  if not kept:
    raise data_dir_lib.DataMissingError(
        f"{binding}={name!r}: none of its {len(statuses)} task(s) has its data in {data_dir_lib.data_dir()}; "
        f"`flan-jax data doctor {name}` says how to get it")
  available = mixing.add_mixture(f"{name}_available", kept)
  print(f"note: {binding}={name!r}: using {len(kept)} of its {len(statuses)} tasks as {available!r}; the other "
        f"{len(missing)} ({len(grouped)} dataset(s)) have no data in {data_dir_lib.data_dir()} "
        f"(`flan-jax data doctor {name}` lists them); renormalised shares: {_shares(kept)}",
        file=sys.stderr, flush=True)
  return available


def _shares(kept: list[tuple[str, float]], shown: int = 6) -> str:
  """Shares by task source (CoT, NIv2, ...) where every task is a Flan task, else by task."""
  total = sum(rate for _, rate in kept)
  groups: dict[str, float] = {}
  for task, rate in kept:
    flan_task = registry.TASKS.get(task)
    key = flan_task.dataset.task_source if flan_task is not None else task
    groups[key] = groups.get(key, 0.0) + rate / total
  ranked = sorted(groups.items(), key=lambda kv: -kv[1])
  text = ", ".join(f"{k} {v:.4f}" for k, v in ranked[:shown])
  return text + (f", ... ({len(ranked) - shown} more)" if len(ranked) > shown else "")
