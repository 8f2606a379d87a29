"""Shared test setup: the data dir, and 8 simulated CPU devices for sharding tests.

XLA_FLAGS must be set before jax is imported anywhere, so it is set here at collection time.
"""
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture
def offline(monkeypatch):
  """Any network connection or TFDS builder construction fails the test."""
  import socket  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  def refuse(*args, **kwargs):
    raise AssertionError("network or TFDS builder used where only the file system should be")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)
  monkeypatch.setattr(tfds, "builder", refuse)
  monkeypatch.setattr(tfds, "builder_from_directory", refuse)


def _flan_data_dir() -> pathlib.Path:
  env = os.environ.get("FLAN_JAX_DATA_DIR")
  return pathlib.Path(env) if env else SHARED / "flan_data"


@pytest.fixture(scope="session")
def flan_data_dir() -> pathlib.Path:
  path = _flan_data_dir()
  if not (path / "MANIFEST.json").exists():
    pytest.fail(f"the Flan data dir {path} is missing; set FLAN_JAX_DATA_DIR (see README)")
  return path


@pytest.fixture(scope="session")
def t5x_tiny_fixture() -> pathlib.Path:
  return SHARED / "fixtures" / "t5x_tiny"


@pytest.fixture(autouse=True, scope="session")
def _data_dir_env():
  os.environ.setdefault("FLAN_JAX_DATA_DIR", str(_flan_data_dir()))
  yield
