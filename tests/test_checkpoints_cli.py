"""`flan-jax checkpoints list|verify DIR`: each step's state, exit 1 when one is damaged, a hint for wrong dirs."""
from __future__ import annotations

import os

import jax.numpy as jnp

from flan_jax import cli
from flan_jax.checkpoints import integrity, loader, lock, manager


def _run_dir(tmp_path):
  with manager.Checkpointer(tmp_path / "run") as ckpt:
    for step in (1, 2, 3):
      ckpt.save(step, params={"w": jnp.arange(1024.0) * step}, opt_state={"v": jnp.ones(2)},
                dataset_state={"batches_consumed": step})
    ckpt.wait_until_finished()
  return tmp_path / "run"


def test_list_and_verify(tmp_path, capsys):
  run = _run_dir(tmp_path)
  (run / "1" / integrity.MANIFEST).unlink()
  os.truncate(run / "3" / "params" / "_METADATA", 10)
  (run / "4.orbax-checkpoint-tmp-99").mkdir()
  loader.set_aside(run, [2])
  with lock.RunLock(run):
    assert cli.main(["checkpoints", "list", str(run)]) == 0
  out = capsys.readouterr().out
  assert f"{run}: 2 step(s); locked by host" in out
  assert "step 1: dataset, opt_state, params; no manifest" in out
  assert "step 3: dataset, opt_state, params; " in out and "bytes, manifest" in out
  assert "uncommitted: 4.orbax-checkpoint-tmp-99" in out and "set aside: damaged_steps/2-" in out
  assert cli.main(["checkpoints", "verify", str(run)]) == 1
  out = capsys.readouterr().out
  assert "step 1 has no flan_jax_manifest.json" in out
  assert "step 3: DAMAGED\n  params/_METADATA: 10 bytes, the manifest says" in out
  assert out.strip().endswith("0 verified, 1 without a manifest (restored unverified), 1 damaged")
  assert cli.main(["checkpoints", "verify", str(run), "--step", "1"]) == 0


def test_a_step_dir_is_refused_with_the_run_dir_hint(tmp_path, capsys):
  run = _run_dir(tmp_path)
  assert cli.main(["checkpoints", "verify", str(run / "2")]) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and f"inside step 2 of the run dir {run}" in err and "pass the run dir" in err
