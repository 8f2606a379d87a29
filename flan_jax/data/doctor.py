"""`flan-jax data doctor MIXTURE`: per task of a mixture, is its data present, and how to get what is missing.

Presence is `availability.diagnose`: file-system checks only, so the report is quick even for thousands of tasks
and never waits on the network. Exit code 0 when everything is present, 1 when something is missing, 2 for an
unknown name.
"""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

from flan_jax.data.catalog.availability import TaskStatus, diagnose, fixes
from flan_jax.data.files import tfds_source


def report(name: str, statuses: list[TaskStatus], out: TextIO, verbose: bool = False,
           max_fixes: int = 40) -> int:
  """The summary first, then one fix per dataset (at most `max_fixes` unless `verbose`), then with `verbose`
  every task's status."""
  missing = [s for s in statuses if not s.present]
  if not missing:
    print(f"all {len(statuses)} tasks of {name} have their data", file=out)
  else:
    grouped = fixes(statuses)
    print(f"{len(missing)} of {len(statuses)} tasks of {name} lack their data ({len(statuses) - len(missing)} "
          f"present); {len(grouped)} dataset(s) to get:", file=out)
    shown = grouped if verbose else grouped[:max_fixes]
    for how, count in shown:
      print(f"- {how} ({count} task{'s' if count > 1 else ''})", file=out)
    if len(shown) < len(grouped):
      print(f"... and {len(grouped) - len(shown)} more dataset(s): --verbose lists them all", file=out)
  if verbose:
    print("", file=out)
    for s in statuses:
      note = f"  ({s.how_to_get})" if s.present and s.how_to_get else ""
      print(f"{'ok     ' if s.present else 'MISSING'}  {s.task}{note}", file=out)
  elif statuses:
    print("(--verbose lists every task's status)", file=out)
  return 1 if missing else 0


def run(args: argparse.Namespace) -> int:
  if getattr(args, "tfds_data_dir", None):
    tfds_source.set_tfds_data_dir(args.tfds_data_dir)
  try:
    statuses = diagnose(args.mixture)
  except ValueError as e:  # seqio: unknown task or mixture
    print(f"error: {e}", file=sys.stderr)
    return 2
  return report(args.mixture, statuses, sys.stdout, verbose=args.verbose)


def register_cli(subparsers) -> None:
  p = subparsers.add_parser(
      "doctor", help="per task of a mixture: is its data present, and how to get it",
      description="Says which tasks of a mixture lack their data and, once per dataset, how to get it.",
      epilog="exit status: 0 when every task has its data, 1 when some lack it, 2 for an unknown name")
  p.add_argument("mixture", help="a registered mixture or task name")
  p.add_argument("--verbose", action="store_true", help="every dataset's fix and every task's status")
  p.add_argument("--tfds_data_dir", default=None,
                 help=f"prepared TFDS datasets (default ${tfds_source.ENV_VAR}, then ~/tensorflow_datasets)")
  # The data CLI's common flags, accepted after the subcommand too; SUPPRESS keeps the values given
  # before it (the top-level parser defines both, and imports --module before running the command).
  p.add_argument("--data_dir", default=argparse.SUPPRESS, help="the Flan data dir")
  p.add_argument("--module", default=argparse.SUPPRESS, help="module imported to register the tasks")
  p.set_defaults(func=run, needs_registry=True)
