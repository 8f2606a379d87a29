"""Integrity of checkpoint steps: a manifest of every file's size and SHA-256, checked before a step is restored.

Orbax commits a step by renaming its temporary directory (local disks) or by writing `commit_success.txt` into it
(GCS). The `TemporaryPath` classes here write `flan_jax_manifest.json` into the step just before that commit, on
the process that commits (process 0), after every process has finished writing. So a committed step written by
this code always carries its manifest, and a kill while the manifest is being written leaves an uncommitted step
that Orbax never lists. Orbax writes two files of its own during the commit itself, after the manifest (the
step's top-level `_CHECKPOINT_METADATA` and `commit_success.txt`); they are left out of the manifest, and damage
to them shows when the step is restored.

Paths go through `etils.epath`, so local dirs and `gs://` buckets are handled by the same code.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import json
from typing import Sequence

from etils import epath
from orbax.checkpoint import path as ocp_path

MANIFEST = "flan_jax_manifest.json"
FORMAT = "flan_jax.step_manifest.v1"
# Written by Orbax during the commit, after the manifest (see the module docstring).
COMMIT_TIME_FILES = frozenset({"_CHECKPOINT_METADATA", "commit_success.txt"})
_CHUNK = 16 << 20
_READERS = 8  # files hashed in parallel: hashlib releases the GIL, and remote reads overlap

VERIFIED = "verified"
UNVERIFIED = "unverified"  # no manifest: written by code before manifests existed
DAMAGED = "damaged"


@dataclasses.dataclass(frozen=True)
class StepCheck:
  """The outcome of checking one step dir against its manifest."""
  step: int
  status: str
  problems: tuple[str, ...] = ()  # each "relative/path: what is wrong"
  files: int = 0
  bytes: int = 0

  def summary(self) -> str:
    if self.status == DAMAGED:
      more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
      return f"step {self.step} is damaged: {self.problems[0]}{more}"
    if self.status == UNVERIFIED:
      return f"step {self.step} has no {MANIFEST} (written before checkpoints carried one)"
    return f"step {self.step} verified ({self.files} files, {self.bytes:,} bytes)"


def data_files(step_dir: epath.Path) -> list[str]:
  """Every file under the step dir (relative, sorted) except the manifest and Orbax's commit-time files."""
  out = []
  step_dir = epath.Path(step_dir)
  for root, _, files in step_dir.walk():
    for name in files:
      rel = (root / name).relative_to(step_dir).as_posix()
      if rel != MANIFEST and rel not in COMMIT_TIME_FILES:
        out.append(rel)
  return sorted(out)


def file_digest(path: epath.Path) -> tuple[int, str]:
  """(size in bytes, SHA-256 hex) of one file, read in chunks."""
  digest, size = hashlib.sha256(), 0
  with epath.Path(path).open("rb") as f:
    while chunk := f.read(_CHUNK):
      digest.update(chunk)
      size += len(chunk)
  return size, digest.hexdigest()


def _digests(step_dir: epath.Path, names: Sequence[str]) -> dict[str, tuple[int, str] | OSError]:
  def one(name: str):
    try:
      return file_digest(step_dir / name)
    except OSError as e:
      return e
  with concurrent.futures.ThreadPoolExecutor(_READERS) as pool:
    return dict(zip(names, pool.map(one, names)))


def write_manifest(step_dir: epath.Path | str, step: int) -> None:
  """Hashes every file of the (not yet committed) step dir and writes its manifest there."""
  step_dir = epath.Path(step_dir)
  names = data_files(step_dir)
  files = {}
  for name, result in _digests(step_dir, names).items():
    if isinstance(result, OSError):
      raise result
    files[name] = {"size": result[0], "sha256": result[1]}
  manifest = {"format": FORMAT, "step": step, "files": files}
  try:
    (step_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
  except OSError as e:  # a failed write(2) names no file; say which, keeping errno (ENOSPC: a full disk)
    raise OSError(e.errno, f"{e.strerror}: writing {step_dir / MANIFEST}") from e


def check_step(step_dir: epath.Path | str, step: int, shard: tuple[int, int] = (0, 1)) -> StepCheck:
  """Checks the step's files against its manifest: every listed file present, of its size and hash.

  `shard=(i, n)` checks only every n-th listed file from the i-th, so n processes share the reading; a file on
  disk that the manifest does not list is ignored (nothing restores it).
  """
  step_dir = epath.Path(step_dir)
  path = step_dir / MANIFEST
  if not path.exists():
    return StepCheck(step, UNVERIFIED)
  try:
    manifest = json.loads(path.read_text())
    files = {str(k): (int(v["size"]), str(v["sha256"])) for k, v in manifest["files"].items()}
    if manifest.get("format") != FORMAT:
      raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    return StepCheck(step, DAMAGED, (f"{MANIFEST}: unreadable ({e})",))
  index, count = shard
  names = sorted(files)[index::count]
  problems = []
  for name, result in _digests(step_dir, names).items():
    size, sha = files[name]
    if isinstance(result, FileNotFoundError):
      problems.append(f"{name}: missing")
    elif isinstance(result, OSError):
      problems.append(f"{name}: unreadable ({result})")
    elif result[0] != size:
      problems.append(f"{name}: {result[0]} bytes, the manifest says {size}")
    elif result[1] != sha:
      problems.append(f"{name}: contents differ from the manifest (SHA-256 mismatch)")
  status = DAMAGED if problems else VERIFIED
  return StepCheck(step, status, tuple(problems), len(files), sum(size for size, _ in files.values()))


class _WritesManifest:
  """Mixed into Orbax's TemporaryPath classes: the manifest goes in right before Orbax commits the step.

  Orbax commits each item (`params`, ...) inside the step dir with the same class first; only the step dir itself
  (named by its number) gets a manifest, once its items are final.
  """

  async def finalize(self, *args, **kwargs):
    name = self.get_final().name
    if name.isdigit():
      await asyncio.to_thread(write_manifest, self.get(), int(name))
    await super().finalize(*args, **kwargs)


class ManifestRenamePath(_WritesManifest, ocp_path.atomicity.AtomicRenameTemporaryPath):
  """Local dirs: write into `<step>.orbax-checkpoint-tmp-*`, manifest, rename."""


class ManifestCommitFilePath(_WritesManifest, ocp_path.atomicity.CommitFileTemporaryPath):
  """GCS: write into `<step>/`, manifest, then `commit_success.txt`."""


def temporary_path_class(directory: epath.Path | str) -> type:
  """Orbax's commit protocol for `directory`, with the manifest written before the commit."""
  base = ocp_path.atomicity_defaults.get_default_temporary_path_class(epath.Path(directory))
  if issubclass(base, ocp_path.atomicity.CommitFileTemporaryPath):
    return ManifestCommitFilePath
  return ManifestRenamePath
