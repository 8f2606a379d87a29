"""The train entry point: exact resume after kill -9 (onto a different mesh), outputs in MODEL_DIR, and bad
configurations failing before any compile with a message naming the binding."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import gin
import pytest

from flan_jax import train

REPO = pathlib.Path(__file__).resolve().parent.parent
GIN = "tests/fixtures/tiny_t5_test.gin"
COMPARED = ("loss", "accuracy", "grad_norm", "z_loss", "nonpadding_tokens", "learning_rate")


def _cmd(model_dir: pathlib.Path, *extra: str) -> list[str]:
  return [sys.executable, "-m", "flan_jax.train", f"--gin_file={GIN}", f"--gin.MODEL_DIR='{model_dir}'",
          "--gin.TRAIN_STEPS=20", "--gin.CHECKPOINT_PERIOD=1", "--gin.KEEP_CHECKPOINTS=3", *extra]


def _env(devices: int) -> dict[str, str]:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONPATH=str(REPO))
  return env


def _metrics(model_dir: pathlib.Path) -> dict[int, dict]:
  out = {}
  for line in (model_dir / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    if "loss" in record:
      out[record["step"]] = record
  return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pathlib.Path:
  model_dir = tmp_path_factory.mktemp("uninterrupted")
  subprocess.run(_cmd(model_dir), cwd=REPO, env=_env(1), check=True, timeout=600, capture_output=True)
  return model_dir


def test_outputs_and_falling_loss(uninterrupted):
  metrics = _metrics(uninterrupted)
  assert sorted(metrics) == list(range(1, 21))
  first = sum(metrics[s]["loss_per_nonpadding_target_token"] for s in (1, 2, 3)) / 3
  last = sum(metrics[s]["loss_per_nonpadding_target_token"] for s in (18, 19, 20)) / 3
  assert last < first - 0.5
  for key in ("learning_rate", "grad_norm", "tokens_per_second", "seconds_per_step", "mfu", "z_loss", "accuracy"):
    assert key in metrics[5]
  config = (uninterrupted / "config.gin").read_text()
  assert "MODEL_DIR" in config and "TRAIN_STEPS = 20" in config
  assert list((uninterrupted / "tensorboard").glob("events.out.tfevents.*"))
  steps = sorted(int(p.name) for p in uninterrupted.iterdir() if p.name.isdigit())
  assert steps == [18, 19, 20]  # keep-3


def test_kill_and_resume_on_another_mesh_gives_the_same_metrics(uninterrupted, tmp_path):
  model_dir = tmp_path / "killed"
  proc = subprocess.Popen(_cmd(model_dir), cwd=REPO, env=_env(1), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  try:
    while time.time() < deadline:
      if (model_dir / "7" / "params").is_dir() and proc.poll() is None:
        break
      if proc.poll() is not None:
        pytest.fail("the run ended before it could be killed at step 7")
      time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
  finally:
    proc.wait(timeout=60)
  killed_at = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
  assert killed_at < 20
  # Resume on 8 simulated devices with a 4x2 mesh instead of 1 device.
  resumed = subprocess.run(_cmd(model_dir, "--gin.NUM_PARTITIONS=2"), cwd=REPO, env=_env(8), timeout=600,
                           capture_output=True, text=True)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from" in resumed.stdout
  want, got = _metrics(uninterrupted), _metrics(model_dir)
  assert sorted(got) == list(range(1, 21))
  for step in range(8, 21):
    for key in COMPARED:
      assert got[step][key] == pytest.approx(want[step][key], rel=1e-5, abs=1e-5), (step, key)


def _bad(*flags: str) -> tuple[int, str]:
  gin.clear_config()
  import io
  import contextlib
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    code = train.main([f"--gin_file={GIN}", "--gin.MODEL_DIR='/nonexistent/never_written'", *flags])
  gin.clear_config()
  return code, err.getvalue()


def test_unknown_gin_binding_is_named():
  code, err = _bad("--gin.train.no_such_setting=3")
  assert code == 1 and "train.no_such_setting" in err


def test_batch_not_divisible_by_data_axis_is_named():
  code, err = _bad("--gin.BATCH_SIZE=6")  # 8 simulated devices -> data axis 8
  assert code == 1 and "BATCH_SIZE=6 is not divisible by the data-parallel size 8" in err
  assert not os.path.exists("/nonexistent/never_written")


def test_missing_mixture_is_named():
  code, err = _bad("--gin.MIXTURE_OR_TASK_NAME='no_such_mixture'")
  assert code == 1 and "MIXTURE_OR_TASK_NAME='no_such_mixture' is not a registered" in err
