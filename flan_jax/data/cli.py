"""`flan-jax data`: list, show and measure the registered Flan tasks and mixtures; download, verify and check overlap.

Tasks are found through seqio's registries after importing `--module` (default `tasks`, which registers everything);
the library itself never imports `tasks`. `download` / `verify` come from `flan_jax.data.files.download`, `doctor` from
`flan_jax.data.doctor` and `overlap` from `flan_jax.evaluation.overlap`, each adding its own subcommands through
`register_cli(subparsers)` (a parser with `needs_registry=True` gets `--module` imported first).
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import json
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.pipeline import packing

# Modules that add subcommands of their own: `register_cli(subparsers)` adds parsers whose `func(args)` returns
# an exit code. Only the module of the command given is imported (overlap pulls in JAX, doctor TFDS), so that
# `download` / `verify` start in a second and fail fast offline.
PLUGINS = {
    "download": "flan_jax.data.files.download",
    "verify": "flan_jax.data.files.download",
    "doctor": "flan_jax.data.doctor",
    "overlap": "flan_jax.evaluation.overlap",
}
META_FEATURES = ("_task_name", "_task_source", "_template_idx", "_template_type")
SHOW_FEATURES = ("inputs_pretokenized", "targets_pretokenized", *META_FEATURES)
DEFAULT_LENGTHS = "2048/512"  # FLAN's SEQUENCE_LEN (flan/constants.json)


class UnknownNameError(KeyError):
  """A task or mixture name that is not registered; the message offers the closest names."""

  def __str__(self) -> str:
    return str(self.args[0])


def _seqio():
  import seqio  # pylint: disable=import-outside-toplevel  (keeps `download`/`verify` free of TF start-up)
  return seqio


def registered_names(kind: str | None = None) -> list[str]:
  seqio = _seqio()
  names: list[str] = []
  if kind in (None, "task"):
    names += seqio.TaskRegistry.names()
  if kind in (None, "mixture"):
    names += seqio.MixtureRegistry.names()
  return sorted(set(names))


def lookup(name: str):
  """The registered task or mixture `name`, or an UnknownNameError with "did you mean"."""
  seqio = _seqio()
  if name in seqio.MixtureRegistry.names():
    return seqio.MixtureRegistry.get(name)
  if name in seqio.TaskRegistry.names():
    return seqio.TaskRegistry.get(name)
  known = registered_names()
  close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
  hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(known)} names registered; see `flan-jax data list`)"
  raise UnknownNameError(f"unknown task or mixture {name!r}{hint}")


def with_available_tasks(name: str):
  """(the task or mixture to read, the tasks left out): a mixture's tasks whose data is absent are left out (said
  in one line, `availability.resolve`); a task is read as it is, so a missing file is named when it is read."""
  from flan_jax.data.catalog import availability, mixing  # pylint: disable=import-outside-toplevel
  provider = lookup(name)
  if name not in mixing.MIXTURES and not isinstance(provider, _seqio().Mixture):
    return provider, []
  resolved = availability.resolve(name, only_available=True)
  if resolved == name:
    return provider, []
  return lookup(resolved), sorted(set(mixing.leaves(name)) - set(mixing.leaves(resolved)))


def iter_examples(name: str, n: int | None, split: str = "train", shuffle: bool = False,
                  seed: int | None = None, provider=None) -> Iterator[dict[str, Any]]:
  """The first `n` examples of a task or mixture as Python values (strings decoded, token ids as lists)."""
  seqio = _seqio()
  if provider is None:
    provider, _ = with_available_tasks(name)
  if isinstance(provider, seqio.Mixture):
    ds = provider.get_dataset(sequence_length=None, split=split, shuffle=shuffle, seed=seed, num_epochs=None,
                              copy_pretokenized=True, passthrough_features=list(META_FEATURES),
                              trim_output_features=False)
  else:
    ds = provider.get_dataset(sequence_length=None, split=split, shuffle=shuffle, seed=seed, num_epochs=1)
  if n is not None:
    ds = ds.take(n)
  for ex in ds.as_numpy_iterator():
    yield {k: _to_python(v) for k, v in ex.items()}


def _to_python(value: Any) -> Any:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if hasattr(value, "tolist"):
    return value.tolist()
  return value


def skip_counters() -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
  """(rows skipped per data file, few-shot queries dropped per task, rows FLAN's filters left out per dataset)
  so far in this process."""
  from flan_jax.data.catalog import registry  # pylint: disable=import-outside-toplevel
  from flan_jax.data.files import readers  # pylint: disable=import-outside-toplevel
  return readers.skipped_rows(), dict(registry.dropped_queries.counts), dict(registry.filtered_rows.counts)


def _since(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
  return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def _skip_report(skipped: dict[str, int], dropped: dict[str, int], filtered: dict[str, int]) -> str:
  from flan_jax.data import stats as stats_lib  # pylint: disable=import-outside-toplevel
  return stats_lib.left_out_lines(skipped, dropped, filtered)


def cmd_list(args: argparse.Namespace) -> int:
  try:
    pattern = re.compile(args.filter) if args.filter else None
  except re.error as e:
    print(f"flan-jax data list: --filter {args.filter!r} is not a valid regex: {e}", file=sys.stderr)
    return 2
  from flan_jax.data.catalog import mixing  # pylint: disable=import-outside-toplevel
  seqio = _seqio()
  mixtures = set(seqio.MixtureRegistry.names())
  for name in registered_names(args.kind):
    if pattern is None or pattern.search(name):
      if name in mixtures:
        print(f"mixture  {name}  ({len(mixing.leaves(name)):,} tasks)")
      else:
        print(f"task     {name}")
  return 0


def cmd_show(args: argparse.Namespace) -> int:
  from flan_jax.data.catalog import mixing, token_tasks  # pylint: disable=import-outside-toplevel
  from flan_jax.data.rendering import tokenizer  # pylint: disable=import-outside-toplevel
  before = skip_counters()
  # Token tasks (UL2R) make ids without text: their examples are shown decoded.
  ids_only = args.name in token_tasks.TASKS or (
      args.name in mixing.MIXTURES and all(t in token_tasks.TASKS for t in mixing.leaves(args.name)))
  decode = tokenizer.processor().decode if ids_only else None
  for i, ex in enumerate(iter_examples(args.name, args.n, args.split, args.shuffle, args.seed)):
    record = {k: ex[k] for k in SHOW_FEATURES if k in ex}
    if decode is not None:
      record.update({f"{k}_pretokenized": decode(ex[k]) for k in ("inputs", "targets")})
    if args.tokenized:
      record.update({k: ex[k] for k in ("inputs", "targets") if k in ex})
    if args.format == "jsonl":
      print(json.dumps(record, ensure_ascii=False))
    else:
      meta = ", ".join(f"{k.lstrip('_')} {record[k]}" for k in META_FEATURES if k in record)
      print(f"=== example {i} ({meta})")
      for k in ("inputs", "targets"):
        print(f"--- {k}\n{record.get(f'{k}_pretokenized', '')}")
        if args.tokenized and k in record:
          print(f"--- {k} ids ({len(record[k])})\n{record[k]}")
  after = skip_counters()
  left_out = [_since(a, b) for a, b in zip(after, before)]
  # stdout carries the examples (JSONL stays parseable); the skip counts go to stderr with the warnings.
  if any(sum(counts.values()) for counts in left_out):
    print(_skip_report(*left_out), file=sys.stderr)
  return 0


def cmd_stats(args: argparse.Namespace) -> int:
  if args.collection:
    from flan_jax.data import collection  # pylint: disable=import-outside-toplevel
    print("\n".join(collection.report_lines()))
    if args.name is None:
      return 0
  elif args.name is None:
    print("flan-jax data stats: give a task or mixture NAME, or --collection", file=sys.stderr)
    return 2
  from flan_jax.data import stats as stats_lib  # pylint: disable=import-outside-toplevel  (seqio: TF start-up)
  try:
    lengths = stats_lib.parse_lengths(args.lengths)
  except ValueError as e:
    print(f"flan-jax data stats: {e}", file=sys.stderr)
    return 2
  provider, left_out = with_available_tasks(args.name)
  before = skip_counters()
  examples = iter_examples(args.name, args.n, args.split, args.shuffle, args.seed, provider=provider)
  result = stats_lib.summarize(args.name, stats_lib.rate_shares(provider), examples, lengths, args.block_size)
  result.left_out = left_out
  after = skip_counters()
  result.skipped_rows, result.dropped_queries, result.filtered_rows = (_since(a, b) for a, b in zip(after, before))
  if args.json:
    print(json.dumps(stats_lib.to_json(result), indent=2))
  else:
    print(stats_lib.format_stats(result))
  return 0


def _common_flags(parser: argparse.ArgumentParser, default: Any) -> None:
  parser.add_argument("--data_dir", default=default,
                      help="the Flan data dir (else $FLAN_JAX_DATA_DIR, else the per-user cache dir)")
  parser.add_argument("--module", default=default,
                      help="module imported to register the tasks and mixtures (default: tasks)")


def _plugins_for(argv: Sequence[str]) -> list[str]:
  """The plugin modules to load: the given command's, or all of them (for --help or a mistyped command)."""
  named = [PLUGINS[a] for a in argv if a in PLUGINS]
  builtin = {"list", "show", "stats"}
  if named:
    return named[:1]
  if any(a in builtin for a in argv) and not {"-h", "--help"} & set(argv):
    return []
  return list(dict.fromkeys(PLUGINS.values()))


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="flan-jax data", description=__doc__.split("\n")[0])
  _common_flags(parser, None)
  # The same flags after the subcommand; SUPPRESS keeps a subparser from resetting a value given before it.
  common = argparse.ArgumentParser(add_help=False)
  _common_flags(common, argparse.SUPPRESS)
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("list", parents=[common], help="registered tasks and mixtures",
                     description="Registered tasks and mixtures, one a line; a mixture with its number of tasks.")
  p.add_argument("--kind", choices=("task", "mixture"), help="only tasks, or only mixtures (default: both)")
  p.add_argument("--filter", help="a regex the names must match (re.search)")
  p.set_defaults(func=cmd_list, needs_registry=True)

  p = sub.add_parser("show", parents=[common], help="examples of a task or mixture")
  p.add_argument("name")
  p.add_argument("-n", type=int, default=5, help="how many examples (default 5)")
  p.add_argument("--split", default="train")
  p.add_argument("--shuffle", action="store_true", help="shuffle (default: source order)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--format", choices=("jsonl", "text"), default="jsonl")
  p.add_argument("--tokenized", action="store_true", help="add the token ids (inputs, targets)")
  p.set_defaults(func=cmd_show, needs_registry=True)

  p = sub.add_parser("stats", parents=[common], help="tasks, rates, token lengths and packing efficiency")
  p.add_argument("name", nargs="?")
  p.add_argument("--collection", action="store_true",
                 help="also count the registered tasks per part of the collection against the paper's counts")
  p.add_argument("-n", type=int, default=20000, help="examples read (default 20000)")
  p.add_argument("--split", default="train")
  p.add_argument("--shuffle", action="store_true")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--lengths", default=DEFAULT_LENGTHS, help="row lengths INPUTS/TARGETS (default 2048/512)")
  p.add_argument("--block_size", type=int, default=packing.DEFAULT_BLOCK_SIZE, help="FFD block (examples)")
  p.add_argument("--json", action="store_true", help="print the stats as JSON")
  p.set_defaults(func=cmd_stats, needs_registry=True)

  for module in _plugins_for(argv):
    importlib.import_module(module).register_cli(sub)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = build_parser(argv).parse_args(argv)
  if args.data_dir:
    data_dir_lib.set_data_dir(args.data_dir)
  if getattr(args, "needs_registry", False):
    module = args.module or "tasks"
    try:
      importlib.import_module(module)
    except ImportError as e:
      print(f"flan-jax data {args.command}: cannot import --module {module!r} to register tasks: {e}",
            file=sys.stderr)
      return 2
  try:
    return int(args.func(args) or 0)
  except (UnknownNameError, FileNotFoundError) as e:
    print(f"flan-jax data {args.command}: {e}", file=sys.stderr)
    return 2
