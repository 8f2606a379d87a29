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


def test_two_processes_match_one_device():
  port = _free_port()
  # Two processes with 2 simulated devices each: a 2x2 mesh spanning both (data across processes).
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=str(REPO))
  procs = [subprocess.Popen([sys.executable, "-m", "tests.multihost_worker", str(port), str(i), "2"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
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
  result = json.loads(outs[0][0].strip().splitlines()[-1])
  assert result["processes"] == 2 and result["mesh"] == {"data": 2, "model": 2}
  single = _run(pl.PartitionerConfig(), jax.devices()[:1], random_batches(10))
  np.testing.assert_allclose(result["losses"], single, rtol=0, atol=1e-5)
