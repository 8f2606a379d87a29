"""Step manifests: written inside the commit, listing every file; any garbage, truncation or deletion is found."""
from __future__ import annotations

import json
import os

import jax.numpy as jnp
import pytest

from flan_jax.checkpoints import integrity, manager


def _save(directory, steps=(1,), async_save=True):
  with manager.Checkpointer(directory, async_save=async_save) as ckpt:
    for step in steps:
      ckpt.save(step, params={"w": jnp.arange(4096.0) * step, "b": jnp.ones(3)}, opt_state={"v": jnp.zeros(5)},
                dataset_state={"batches_consumed": step})
    ckpt.wait_until_finished()
  return directory


def _biggest_params_file(step_dir) -> str:
  files = [f for f in integrity.data_files(step_dir) if f.startswith("params/") and "/d/" in f]
  return max(files, key=lambda f: os.path.getsize(step_dir / f))


@pytest.mark.parametrize("async_save", [True, False])
def test_every_committed_step_lists_all_its_files(tmp_path, async_save):
  _save(tmp_path, steps=(1, 2), async_save=async_save)
  for step in (1, 2):
    step_dir = tmp_path / str(step)
    manifest = json.loads((step_dir / integrity.MANIFEST).read_text())
    on_disk = {str(p.relative_to(step_dir)) for p in step_dir.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {integrity.MANIFEST} - integrity.COMMIT_TIME_FILES
    assert {"params/_METADATA", "dataset/metadata"} <= set(manifest["files"])
    for name, entry in manifest["files"].items():
      assert integrity.file_digest(step_dir / name) == (entry["size"], entry["sha256"])
    assert integrity.check_step(step_dir, step).status == integrity.VERIFIED


@pytest.mark.parametrize("damage, problem", [
    ("garbage", "SHA-256 mismatch"), ("truncate", "bytes, the manifest says"), ("delete", "missing")])
def test_damage_is_found_and_named(tmp_path, damage, problem):
  step_dir = _save(tmp_path) / "1"
  name = _biggest_params_file(step_dir)
  path = step_dir / name
  size = path.stat().st_size
  if damage == "garbage":
    with open(path, "r+b") as f:
      f.seek(size // 3)
      f.write(b"\x5a" * 64)
    assert path.stat().st_size == size
  elif damage == "truncate":
    os.truncate(path, size // 2)
  else:
    path.unlink()
  check = integrity.check_step(step_dir, 1)
  assert check.status == integrity.DAMAGED and len(check.problems) == 1
  assert check.problems[0].startswith(f"{name}: ") and problem in check.problems[0]
  assert check.summary().startswith(f"step 1 is damaged: {name}")


def test_unreadable_manifest_is_damage_and_a_missing_one_is_unverified(tmp_path):
  step_dir = _save(tmp_path) / "1"
  manifest = step_dir / integrity.MANIFEST
  manifest.write_text(manifest.read_text()[:40])
  check = integrity.check_step(step_dir, 1)
  assert check.status == integrity.DAMAGED and check.problems[0].startswith(f"{integrity.MANIFEST}: unreadable")
  manifest.unlink()
  assert integrity.check_step(step_dir, 1).status == integrity.UNVERIFIED


def test_shards_split_the_files_between_processes(tmp_path):
  step_dir = _save(tmp_path) / "1"
  name = _biggest_params_file(step_dir)
  (step_dir / name).unlink()
  checks = [integrity.check_step(step_dir, 1, (i, 3)) for i in range(3)]
  assert sum(len(c.problems) for c in checks) == 1  # exactly one process read the deleted file
  names = sorted(json.loads((step_dir / integrity.MANIFEST).read_text())["files"])
  assert sorted(n for i in range(3) for n in names[i::3]) == names


def test_a_save_whose_manifest_fails_is_never_committed(tmp_path, monkeypatch):
  """What a kill while hashing leaves: the temporary dir, which no reader lists."""
  _save(tmp_path, steps=(1,))

  def fail(step_dir, step):
    raise OSError(28, "No space left on device", str(step_dir))
  monkeypatch.setattr(integrity, "write_manifest", fail)
  with pytest.raises(Exception, match="No space left"):
    _save(tmp_path, steps=(2,))
  assert manager.committed_steps(tmp_path) == [1]
  with manager.Checkpointer(tmp_path, create=False) as ckpt:
    assert ckpt.all_steps() == [1]
  assert integrity.check_step(tmp_path / "1", 1).status == integrity.VERIFIED


def test_gcs_paths_commit_with_a_commit_file():
  assert integrity.temporary_path_class("gs://bucket/run") is integrity.ManifestCommitFilePath
  assert integrity.temporary_path_class("/local/run") is integrity.ManifestRenamePath
