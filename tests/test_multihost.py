"""Two processes on 127.0.0.1 over gloo give the single-device losses (global arrays from per-process rows)."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np

from flan_jax import partitioning as pl
from tests.test_partitioning import _run, random_batches

REPO = pathlib.Path(__file__).resolve().parent.parent


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_two_processes(argv_of) -> list[tuple[str, str]]:
  """Runs `argv_of(process_index)` for processes 0 and 1, each with 2 simulated devices; (stdout, stderr) of each
  once both exited 0."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=str(REPO))
  procs = [subprocess.Popen(argv_of(i), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for i in range(2)]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=400))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def test_two_processes_match_one_device():
  port = _free_port()
  # Two processes with 2 simulated devices each: a 2x2 mesh spanning both (data across processes).
  outs = _run_two_processes(lambda i: [sys.executable, "-m", "tests.multihost_worker", str(port), str(i), "2"])
  result = json.loads(outs[0][0].strip().splitlines()[-1])
  assert result["processes"] == 2 and result["mesh"] == {"data": 2, "model": 2}
  single = _run(pl.PartitionerConfig(), jax.devices()[:1], random_batches(10))
  np.testing.assert_allclose(result["losses"], single, rtol=0, atol=1e-5)


def test_train_main_on_two_processes_checkpoints_every_hosts_input_state(tmp_path):
  """`flan-jax train` itself on 2 processes over gloo: each reads its shard of the mixture, the run completes,
  process 0 writes the metrics, and each checkpoint holds both processes' iterator states."""
  port = _free_port()
  model_dir = tmp_path / "two_hosts"
  outs = _run_two_processes(lambda i: [
      sys.executable, "-m", "flan_jax.train", "--gin_file=tests/fixtures/tiny_t5_test.gin",
      f"--gin.MODEL_DIR='{model_dir}'", "--gin.TRAIN_STEPS=6", "--gin.CHECKPOINT_PERIOD=3",
      f"--coordinator_address=127.0.0.1:{port}", "--process_count=2", f"--process_index={i}"])
  assert "mesh {'data': 4, 'model': 1} over 4 devices (2 processes)" in outs[0][0]
  records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
  assert all(np.isfinite(r["loss"]) and r["nonpadding_tokens"] > 0 for r in records)
  assert sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit()) == [3, 6]
  dataset_files = list((model_dir / "6" / "dataset").glob("*"))
  assert dataset_files
  state = json.loads(next(f for f in dataset_files if f.is_file()).read_text())
  assert set(state) == {"process_0", "process_1"}
  for i in range(2):
    assert state[f"process_{i}"]["batches_consumed"] == 6 and state[f"process_{i}"]["process_count"] == 2
