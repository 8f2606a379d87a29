"""Several processes on 127.0.0.1 over gloo give the single-process losses, whichever mesh axis spans them: each
host feeds the rows its devices hold on the data axes (`flan_jax.data_layout`), so hosts of one data-parallel
replica read the same rows."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from flan_jax import partitioning as pl
from tests.test_partitioning import _run, random_batches

REPO = pathlib.Path(__file__).resolve().parent.parent


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_processes(count: int, devices_each: int, argv_of) -> list[tuple[str, str]]:
  """Runs `argv_of(process_index)` for `count` processes with `devices_each` simulated devices; (stdout, stderr)
  of each once all exited 0."""
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_each}", PYTHONPATH=str(REPO))
  procs = [subprocess.Popen(argv_of(i), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for i in range(count)]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=600))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


@pytest.mark.parametrize("processes,devices_each,num_partitions,mesh,shards", [
    (2, 2, 2, {"data": 2, "model": 2}, 2),   # data axis across the processes
    (2, 1, 2, {"data": 1, "model": 2}, 1),   # the model axis spans both: they read the same rows
    (4, 1, 2, {"data": 2, "model": 2}, 2),   # data=2 x model=2: hosts 0,1 and 2,3 each share a shard
])
def test_processes_match_one_device(processes, devices_each, num_partitions, mesh, shards):
  port = _free_port()
  outs = _run_processes(processes, devices_each, lambda i: [
      sys.executable, "-m", "tests.multihost_worker", str(port), str(i), str(processes), str(num_partitions)])
  result = json.loads(outs[0][0].strip().splitlines()[-1])
  assert result["processes"] == processes and result["mesh"] == mesh and result["shards"] == shards
  single = _run(pl.PartitionerConfig(), jax.devices()[:1], random_batches(10))
  np.testing.assert_allclose(result["losses"], single, rtol=0, atol=1e-5)


def _train(model_dir: pathlib.Path, processes: int, devices_each: int, *bindings: str) -> list[tuple[str, str]]:
  argv = [sys.executable, "-m", "flan_jax.train", "--gin_file=tests/fixtures/tiny_t5_test.gin",
          f"--gin.MODEL_DIR='{model_dir}'", *bindings]
  if processes == 1:
    return _run_processes(1, devices_each, lambda i: argv)
  port = _free_port()
  return _run_processes(processes, devices_each, lambda i: argv + [
      f"--coordinator_address=127.0.0.1:{port}", f"--process_count={processes}", f"--process_index={i}"])


def _losses(model_dir: pathlib.Path) -> list[float]:
  records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  return [r["train/loss"] for r in records if "train/loss" in r]


def test_train_main_on_two_processes_checkpoints_every_hosts_input_state(tmp_path):
  """`flan-jax train` itself on 2 processes over gloo: each reads its shard of the mixture, the run completes,
  process 0 writes the metrics, and each checkpoint holds both processes' iterator states."""
  model_dir = tmp_path / "two_hosts"
  outs = _train(model_dir, 2, 2, "--gin.TRAIN_STEPS=6", "--gin.CHECKPOINT_PERIOD=3")
  assert "mesh {'data': 4, 'model': 1} over 4 devices (2 processes)" in outs[0][0]
  assert "input: 2 shard(s) of 4 rows of the 8-row batch over 2 host(s); shard 0: host 0; shard 1: host 1" \
      in outs[0][0]
  records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
  assert all(np.isfinite(r["train/loss"]) and r["train/nonpadding_tokens"] > 0 for r in records)
  assert sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit()) == [3, 6]
  dataset_files = list((model_dir / "6" / "dataset").glob("*"))
  assert dataset_files
  state = json.loads(next(f for f in dataset_files if f.is_file()).read_text())
  assert set(state) == {"process_0", "process_1"}
  for i in range(2):  # 6 batches of the host's 4 rows, all from the first packed block (thousands of examples)
    assert (state[f"process_{i}"]["block"], state[f"process_{i}"]["row"]) == (0, 24)
    assert state[f"process_{i}"]["num_shards"] == 2


def test_train_main_with_the_model_axis_across_processes_matches_one_process(tmp_path):
  """NUM_PARTITIONS=2 over 2 processes x 1 device (the model axis spans the hosts, which read the same rows)
  trains as 1 process x 2 devices does."""
  steps = ("--gin.TRAIN_STEPS=4", "--gin.CHECKPOINT_PERIOD=4", "--gin.NUM_PARTITIONS=2")
  outs = _train(tmp_path / "spanning", 2, 1, *steps)
  assert "mesh {'data': 1, 'model': 2} over 2 devices (2 processes)" in outs[0][0]
  assert "input: 1 shard(s) of 8 rows of the 8-row batch over 2 host(s); shard 0: hosts 0,1" in outs[0][0]
  _train(tmp_path / "local", 1, 2, *steps)
  spanning, local = _losses(tmp_path / "spanning"), _losses(tmp_path / "local")
  assert len(spanning) == 4
  np.testing.assert_allclose(spanning, local, rtol=0, atol=1e-5)
