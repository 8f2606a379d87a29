"""Where the upstream Flan data lives: `--data_dir` > `$FLAN_JAX_DATA_DIR` > a per-user cache dir.

Tasks are registered at import time but read their files only when a dataset is built, so a
`--data_dir` flag parsed after `import tasks` still takes effect: entry points call
`set_data_dir` and every reader calls `data_dir()` (or `data_file`) at read time.
"""
from __future__ import annotations

import os
import pathlib

ENV_VAR = "FLAN_JAX_DATA_DIR"

_explicit: pathlib.Path | None = None


class DataMissingError(FileNotFoundError):
  """A file the task needs is not in the data dir; the message says how to get it."""


def default_cache_dir() -> pathlib.Path:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "flan_jax" / "flan_data"


def set_data_dir(path: str | os.PathLike | None) -> None:
  """Sets the data dir from a `--data_dir` flag; None falls back to the env var / cache dir."""
  global _explicit
  _explicit = pathlib.Path(path).expanduser() if path else None


# A source checkout's root: a relative $FLAN_JAX_DATA_DIR written for the README's commands (run from there) still
# resolves from a notebook or a script whose working dir is a subfolder.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


def _resolve(path: pathlib.Path) -> pathlib.Path:
  """An absolute path as is; a relative one against the working dir, else the checkout's root where it exists
  only there."""
  path = path.expanduser()
  if path.is_absolute():
    return path
  if path.exists() or not (REPO_ROOT / path).exists():
    return pathlib.Path(os.path.normpath(path.absolute()))
  return pathlib.Path(os.path.normpath(REPO_ROOT / path))


def data_dir() -> pathlib.Path:
  if _explicit is not None:
    return _resolve(_explicit)
  env = os.environ.get(ENV_VAR)
  if env:
    return _resolve(pathlib.Path(env))
  return default_cache_dir()


def data_file(relpath: str, source: str | None = None) -> pathlib.Path:
  """The path of `relpath` under the data dir, or a DataMissingError naming how to fetch it.

  `source` names the `flan-jax data download --only SOURCE` group that provides the file.
  """
  root = data_dir()
  if not root.is_dir():
    raise DataMissingError(
        f"the data dir {root} does not exist (resolved from --data_dir, then ${ENV_VAR}, then "
        f"{default_cache_dir()}); point --data_dir at the Flan data dir, or fetch the data into it with "
        "`flan-jax data download`")
  path = root / relpath
  if not path.exists():
    hint = f"flan-jax data download --only {source}" if source else "flan-jax data download"
    raise DataMissingError(
        f"{relpath} is not in the data dir {data_dir()} (resolved from --data_dir, then "
        f"${ENV_VAR}, then {default_cache_dir()}); run `{hint}` to fetch it."
    )
  return path
