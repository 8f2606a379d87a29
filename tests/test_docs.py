"""The docs stay true: every command they show runs or parses, their tables match the code, the catalogue is fresh."""
from __future__ import annotations

import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from flan_jax import cli, gin_utils, partitioning, plan

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
REPO = DOCS.parent


def doc_commands() -> list[tuple[str, list[str]]]:
  """(where, argv) of every `flan-jax ...` / `python -m launch....` line in the docs' ```sh blocks."""
  out = []
  for path in sorted(DOCS.glob("*.md")):
    in_sh = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
      if line.startswith("```"):
        in_sh = line.strip() == "```sh"
        continue
      if in_sh and (line.startswith("flan-jax ") or line.startswith("python -m launch.")):
        out.append((f"{path.name}:{n}", shlex.split(line)))
  return out


COMMANDS = doc_commands()


def _id(item):
  return item[0]


def test_the_docs_show_commands_of_every_kind():
  kinds = {argv[1] if argv[0] == "flan-jax" else argv[2] for _, argv in COMMANDS}
  assert {"train", "plan", "data", "convert", "launch.tpu_pod", "launch.xm_launch"} <= kinds


def _help(capsys, argv: list[str]) -> str:
  with pytest.raises(SystemExit) as e:
    cli.main(argv + ["--help"])
  assert e.value.code == 0
  return capsys.readouterr().out


def _flags(argv: list[str]) -> set[str]:
  return {a.split("=", 1)[0] for a in argv if a.startswith("--") and not a.startswith("--gin.")}


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_doc_command(where, argv, capsys):
  if argv[0] == "python":
    # Launchers: only ever dry runs here; they print their commands and exit 0.
    assert "--dry_run" in argv, f"{where}: a launcher example must be a --dry_run"
    module = __import__(argv[2], fromlist=["main"])
    assert module.main(argv[3:]) == 0, where
    assert capsys.readouterr().out
    return
  command, rest = argv[1], argv[2:]
  assert command in cli.COMMANDS, f"{where}: unknown command {command}"
  if command == "plan":
    assert cli.main(argv[1:]) == 0, where
    assert "per device:" in capsys.readouterr().out
    return
  if command == "train":
    # The gin files and bindings must parse and set every REQUIRED macro; the other flags must exist.
    bindings, others = gin_utils.split_gin_flags(rest)
    files = [a.split("=", 1)[1] for a in others if a.startswith("--gin_file=")]
    import gin
    try:
      plan.load_gin(files, bindings)
      gin.finalize()  # fails naming any REQUIRED macro the command leaves unset
    finally:
      gin.clear_config()
    assert _flags(others) <= set(re.findall(r"--\w+", _help(capsys, ["train"]))), where
    return
  # data / eval / infer / convert: the (sub)command's --help must know every flag used.
  sub = [command] + ([rest[0]] if rest and not rest[0].startswith("-") and command in ("data", "eval")
                     and rest[0] in ("download", "verify", "list", "show", "stats", "prompts", "open-ended")
                     else [])
  help_text = _help(capsys, sub)
  assert _flags(rest) <= set(re.findall(r"--\w+", help_text)), f"{where}: {sorted(_flags(rest))}"
  if sub == ["data", "list"]:  # cheap and offline (verify fails on a partial data dir by design)
    assert cli.main(argv[1:]) == 0, where


def _table(doc: str, header: str) -> list[list[str]]:
  """Rows of the markdown table whose header line starts with `header`."""
  lines = (DOCS / doc).read_text().splitlines()
  start = next(i for i, l in enumerate(lines) if l.startswith(header))
  rows = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    rows.append([c.strip().strip("`") for c in line.strip("|").split("|")])
  return rows


def test_macro_table_lists_exactly_finetune_gins_macros():
  text = (REPO / "gin_configs/runs/finetune.gin").read_text()
  macros = re.findall(r"^([A-Z][A-Z0-9_]*) = ", text, flags=re.M)
  assert [r[0] for r in _table("training.md", "| macro |")] == macros


def test_partitioning_table_matches_the_rules():
  rows = {r[0]: r[1] for r in _table("training.md", "| logical axis |")}
  rules = partitioning.standard_logical_axis_rules(1, 2)
  first = {}
  for name, axis in rules:
    first.setdefault(name, []).append(axis)
  assert set(rows) == set(first)
  for name, axes in first.items():
    if name == "embed":
      assert axes == ["data", None]
      assert rows[name].startswith("data") and "PARAMETER_PARTITIONING_DIMS=2" in rows[name]
    else:
      assert rows[name] == (axes[0] if axes[0] else "replicated"), name


def test_recipe_table_matches_the_recipes():
  rows = _table("training.md", "| recipe |")
  assert len(rows) == 5
  for recipe, _, steps, lr, topology, mesh, remat, _ in rows:
    plan.load_gin([f"runs/{recipe}"], [])
    assert plan.gin_macro("TRAIN_STEPS") == int(steps.replace(",", "")), recipe
    assert plan.gin_macro("LEARNING_RATE") == float(lr), recipe
    assert plan.gin_macro("REMAT_POLICY") == remat, recipe
    data, model = (int(x) for x in mesh.split(" x "))
    assert plan.gin_macro("NUM_PARTITIONS") == model, recipe
    assert plan.parse_tpu(topology).devices == data * model, recipe
    # The recipe's mixture is a registered one (the catalogue is regenerated from the registry).
    assert f"| `{plan.gin_macro('MIXTURE_OR_TASK_NAME')}` |" in (DOCS / "tasks.md").read_text(), recipe


def test_task_catalogue_is_generated_from_the_registry():
  # A fresh interpreter: other test files register fixture tasks in this process's seqio registry.
  proc = subprocess.run([sys.executable, str(DOCS / "make_catalogue.py"), "--check"], capture_output=True, text=True,
                        cwd=DOCS.parent, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]


def test_gin_file_examples_in_run_configs_name_files_that_exist():
  """The usage examples in gin_configs/runs/*.gin comments name gin files that are there."""
  named = []
  for path in sorted((REPO / "gin_configs" / "runs").glob("*.gin")):
    for line in path.read_text().splitlines():
      if line.startswith("#"):
        named += [(path.name, f) for f in re.findall(r"--gin_file=([\w/.]+\.gin)", line)]
  assert ("finetune.gin", "models/flan_t5_small.gin") in named
  missing = [(where, f) for where, f in named if not (REPO / "gin_configs" / f).exists() and not (REPO / f).exists()]
  assert not missing
