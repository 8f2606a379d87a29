"""`flan-jax data doctor MIXTURE`: per task of a mixture, is its data present, and how to get what is missing.

Presence is decided without reading data: each Flan task's `check_available()` (file-system checks of the
flan data dir or the TFDS data dir), so the report is quick even for thousands of tasks and never waits on
the network. Exit code 0 when everything is present, 1 when something is missing, 2 for an unknown name.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import TextIO

from flan_jax.data import data_dir as data_dir_lib
from flan_jax.data import tfds_source


@dataclasses.dataclass(frozen=True)
class TaskStatus:
  task: str
  present: bool
  how_to_get: str = ""


def diagnose(name: str) -> list[TaskStatus]:
  """The status of every leaf task of a task or mixture (sub-mixtures flattened), sorted by name."""
  from flan_jax.data import mixing, registry  # pylint: disable=import-outside-toplevel
  out = []
  for task in sorted(mixing.leaves(name)):
    flan_task = registry.TASKS.get(task)
    if flan_task is None:  # its data is the task's own business
      out.append(TaskStatus(task, True, "not a Flan task; presence not checked"))
      continue
    try:
      flan_task.dataset.check_available()
    except data_dir_lib.DataMissingError as e:
      out.append(TaskStatus(task, False, str(e)))
      continue
    out.append(TaskStatus(task, True))
  return out


def report(name: str, statuses: list[TaskStatus], out: TextIO) -> int:
  missing = [s for s in statuses if not s.present]
  for s in statuses:
    note = f"  ({s.how_to_get})" if s.present and s.how_to_get else ""
    print(f"{'ok     ' if s.present else 'MISSING'}  {s.task}{note}", file=out)
  if missing:
    print(f"\n{len(missing)} of {len(statuses)} tasks of {name} lack their data; to get it:", file=out)
    seen = set()
    for s in missing:
      if s.how_to_get not in seen:  # variants of one dataset share one instruction
        seen.add(s.how_to_get)
        print(f"- {s.how_to_get}", file=out)
  else:
    print(f"\nall {len(statuses)} tasks of {name} have their data", file=out)
  return 1 if missing else 0


def run(args: argparse.Namespace) -> int:
  if getattr(args, "tfds_data_dir", None):
    tfds_source.set_tfds_data_dir(args.tfds_data_dir)
  try:
    statuses = diagnose(args.mixture)
  except ValueError as e:  # seqio: unknown task or mixture
    print(f"error: {e}", file=sys.stderr)
    return 2
  return report(args.mixture, statuses, sys.stdout)


def register_cli(subparsers) -> None:
  p = subparsers.add_parser("doctor", help="per task of a mixture: is its data present, and how to get it")
  p.add_argument("mixture", help="a registered mixture or task name")
  p.add_argument("--tfds_data_dir", default=None,
                 help=f"prepared TFDS datasets (default ${tfds_source.ENV_VAR}, then ~/tensorflow_datasets)")
  # The data CLI's common flags, accepted after the subcommand too; SUPPRESS keeps the values given
  # before it (the top-level parser defines both, and imports --module before running the command).
  p.add_argument("--data_dir", default=argparse.SUPPRESS, help="the Flan data dir")
  p.add_argument("--module", default=argparse.SUPPRESS, help="module imported to register the tasks")
  p.set_defaults(func=run, needs_registry=True)
