"""What the checkpoint manifest costs: saving with and without it, and checking a step before a restore.

  python benchmarks/checkpoint_integrity.py [--mib 512] [--repeats 3] [--dir DIR]

Saves a params tree and an optimizer-state tree of `--mib` MiB each (float32, 64 arrays per tree) into DIR (default:
a temp dir) through Orbax with its default commit (baseline) and through `flan_jax.checkpoints.manager.Checkpointer`
(which hashes every file and writes the manifest before the commit), both asynchronously as training saves:
prints the time until save() returns (what a training step waits for) and until the step is committed, and then the
time the hashing alone takes, the time `integrity.check_step` takes to verify the step, and a restore.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from etils import epath  # noqa: E402

from flan_jax.checkpoints import integrity, manager  # noqa: E402


def _tree(mib: int, seed: int) -> dict:
  rows = mib * 2**20 // 4 // 64 // 1024
  keys = jax.random.split(jax.random.key(seed), 64)
  return {f"w{i}": jax.random.normal(k, (rows, 1024)) for i, k in enumerate(keys)}


def _baseline(directory: str) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(enable_async_checkpointing=True)
  return ocp.CheckpointManager(directory, options=options, item_names=manager.ITEM_NAMES)


def _save_times(make, directory: str, params, opt_state, repeats: int) -> tuple[list[float], list[float]]:
  returned, committed = [], []
  with make(directory) as ckpt:
    for step in range(1, repeats + 1):
      start = time.perf_counter()
      if isinstance(ckpt, manager.Checkpointer):
        ckpt.save(step, params=params, opt_state=opt_state)
      else:
        ckpt.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                                opt_state=ocp.args.StandardSave(opt_state)))
      returned.append(time.perf_counter() - start)
      ckpt.wait_until_finished()
      committed.append(time.perf_counter() - start)
  return returned, committed


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--mib", type=int, default=512, help="MiB per tree (params and optimizer state each)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
  args = parser.parse_args()
  params, opt_state = _tree(args.mib, 0), _tree(args.mib, 1)
  jax.block_until_ready((params, opt_state))
  with tempfile.TemporaryDirectory(dir=args.dir) as root:
    results = {}
    for name, make in (("orbax default", _baseline),
                       ("with manifest", lambda d: manager.Checkpointer(d, async_save=True))):
      directory = os.path.join(root, name.replace(" ", "_"))
      results[name] = _save_times(make, directory, params, opt_state, args.repeats)
    print(f"save of {2 * args.mib} MiB ({args.repeats} steps, median seconds):")
    for name, (returned, committed) in results.items():
      print(f"  {name:<14} save() returns {statistics.median(returned):6.2f}   committed "
            f"{statistics.median(committed):6.2f}")
    base, ours = (statistics.median(results[n][1]) for n in results)
    print(f"  manifest cost per save: {ours - base:+.2f} s ({(ours - base) / base:+.0%} of the commit time); "
          "training waits for it only when the next save comes before it is done")
    directory = os.path.join(root, "with_manifest")
    hashing = []
    for _ in range(args.repeats):  # what the commit waits for, on its own (rewrites the same manifest)
      start = time.perf_counter()
      integrity.write_manifest(epath.Path(directory) / str(args.repeats), args.repeats)
      hashing.append(time.perf_counter() - start)
    print(f"  hashing the step's files and writing the manifest alone: {statistics.median(hashing):.2f} s")
    start = time.perf_counter()
    check = integrity.check_step(os.path.join(directory, str(args.repeats)), args.repeats)
    seconds = time.perf_counter() - start
    print(f"verify before restore: {seconds:.2f} s for {check.files} files, {check.bytes / 2**20:,.0f} MiB "
          f"({check.bytes / 2**20 / seconds:,.0f} MiB/s; {check.status})")
    start = time.perf_counter()
    with manager.Checkpointer(directory, async_save=False, create=False) as ckpt:
      ckpt.restore(args.repeats, abstract_params=manager.abstract_like(params),
                   abstract_opt_state=manager.abstract_like(opt_state), with_dataset=False)
    print(f"restore itself: {time.perf_counter() - start:.2f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
