"""`flan-jax checkpoints`: the state of a checkpoint dir's steps.

  flan-jax checkpoints list DIR              # each step: items, files, bytes, whether it carries a manifest
  flan-jax checkpoints verify DIR [--step N] # each step's files against its manifest; exit 1 when one is damaged

DIR is a run dir (model.json and the step dirs), local or `gs://`. `list` reads only the file listing and the
manifests; `verify` reads every file back and hashes it, as `train`, `eval`, `infer` and `convert` do before
they restore a step.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

from etils import epath

from flan_jax.checkpoints import integrity, loader, lock, manager


def _list(path: epath.Path) -> int:
  steps = manager.committed_steps(path)
  held = lock.RunLock(path).read()
  print(f"{path}: {len(steps)} step(s)" + (f"; locked by {held.describe(time.time())}" if held else ""))
  for step in steps:
    step_dir = path / str(step)
    items = sorted(p.name for p in step_dir.iterdir() if p.is_dir())
    manifest = step_dir / integrity.MANIFEST
    if manifest.exists():
      try:
        files = json.loads(manifest.read_text())["files"]
        state = f"{len(files)} files, {sum(f['size'] for f in files.values()):,} bytes, manifest"
      except (ValueError, KeyError, TypeError):
        state = "manifest unreadable"
    else:
      state = "no manifest"
    print(f"  step {step}: {', '.join(items)}; {state}")
  for entry in sorted(p.name for p in path.iterdir() if ".orbax-checkpoint-tmp" in p.name):
    print(f"  uncommitted: {entry} (a save that never finished; never restored)")
  aside = path / loader.DAMAGED_DIR
  if aside.is_dir():
    for entry in sorted(p.name for p in aside.iterdir()):
      print(f"  set aside: {loader.DAMAGED_DIR}/{entry} (failed its check when a run resumed)")
  return 0


def _verify(path: epath.Path, only: int | None) -> int:
  steps = manager.committed_steps(path)
  if only is not None:
    if only not in steps:
      raise loader.CheckpointError(f"{path} has no step {only}; its steps: {steps}")
    steps = [only]
  counts = {integrity.VERIFIED: 0, integrity.UNVERIFIED: 0, integrity.DAMAGED: 0}
  for step in steps:
    check = integrity.check_step(path / str(step), step)
    counts[check.status] += 1
    print(check.summary() if check.status != integrity.DAMAGED else f"step {step}: DAMAGED")
    for problem in check.problems:
      print(f"  {problem}")
  print(f"{path}: {counts[integrity.VERIFIED]} verified, {counts[integrity.UNVERIFIED]} without a manifest "
        f"(restored unverified), {counts[integrity.DAMAGED]} damaged")
  return 1 if counts[integrity.DAMAGED] else 0


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="flan-jax checkpoints", description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="\n\n".join(__doc__.split("\n\n")[1:]))
  sub = p.add_subparsers(dest="command", required=True)
  for name, help_ in (("list", "each step's items and size, and whether it carries a manifest"),
                      ("verify", "check every file of each step against its manifest")):
    command = sub.add_parser(name, help=help_)
    command.add_argument("dir", metavar="DIR", help="the run dir (model.json and the step dirs)")
    if name == "verify":
      command.add_argument("--step", type=int, default=None, help="only this step")
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
  try:
    path = loader.run_dir(args.dir, need_model_json=False)
    return _list(path) if args.command == "list" else _verify(path, args.step)
  except loader.CheckpointError as e:
    print(f"flan-jax checkpoints: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
