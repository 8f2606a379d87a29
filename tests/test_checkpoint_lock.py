"""The MODEL_DIR lease: one holder, refused while it lives, taken over (with a warning) once it is stale."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from flan_jax.checkpoints import lock


def _write_lease(directory, **fields) -> None:
  now = time.time()
  lease = dict(host=socket.gethostname(), pid=os.getpid(), pid_start=None, started=now, renewed=now,
               lease_seconds=lock.LEASE_SECONDS, token="theirs")
  lease.update(fields)
  (directory / lock.LOCK_FILE).write_text(json.dumps(lease))


@pytest.fixture
def other_process():
  proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  yield proc
  proc.kill()
  proc.wait()


def test_acquire_writes_the_holder_and_release_removes_it(tmp_path):
  run_lock = lock.RunLock(tmp_path / "run")
  run_lock.acquire()
  held = run_lock.read()
  assert (held.host, held.pid) == (socket.gethostname(), os.getpid())
  run_lock.release()
  assert not (tmp_path / "run" / lock.LOCK_FILE).exists()
  assert sorted(os.listdir(tmp_path / "run")) == []  # nothing left aside


def test_a_live_holder_is_refused_naming_it(tmp_path, other_process):
  _write_lease(tmp_path, pid=other_process.pid, pid_start=lock._pid_start(other_process.pid))
  with pytest.raises(lock.RunLockError, match=rf"is being trained by host {socket.gethostname()} pid "
                                              rf"{other_process.pid} \(since .*\); stop that trainer first"):
    lock.RunLock(tmp_path).acquire()
  assert json.loads((tmp_path / lock.LOCK_FILE).read_text())["token"] == "theirs"


@pytest.mark.parametrize("fields, reason", [
    (dict(pid=2**22 + 12345), "no longer runs on this host"),
    (dict(pid_start="1"), "now belongs to another process"),
    (dict(host="elsewhere", renewed=time.time() - 1000), "its lease expired"),
])
def test_a_stale_lease_is_taken_over_with_a_warning(tmp_path, other_process, fields, reason):
  fields.setdefault("pid", other_process.pid)
  _write_lease(tmp_path, **fields)
  warnings = []
  with lock.RunLock(tmp_path, warn=warnings.append) as run_lock:
    assert run_lock.read().pid == os.getpid()
  assert len(warnings) == 1 and "taking over the lock of" in warnings[0] and reason in warnings[0]


def test_a_live_holder_on_another_host_is_refused_until_its_lease_expires(tmp_path):
  _write_lease(tmp_path, host="elsewhere", pid=1, renewed=time.time() - 10)
  with pytest.raises(lock.RunLockError, match="host elsewhere pid 1"):
    lock.RunLock(tmp_path).acquire()


def test_the_lease_is_renewed_and_a_lost_lease_is_noticed(tmp_path):
  run_lock = lock.RunLock(tmp_path, lease_seconds=0.4)
  run_lock.acquire()
  first = run_lock.read().renewed
  time.sleep(0.35)
  assert run_lock.read().renewed > first
  run_lock.check()
  taken = dataclasses.replace(run_lock.read(), host="elsewhere", token="theirs")
  (tmp_path / lock.LOCK_FILE).write_text(json.dumps(dataclasses.asdict(taken)))
  time.sleep(0.35)
  with pytest.raises(lock.RunLockError, match="lost the lock on .* to host elsewhere"):
    run_lock.check()
  run_lock.release()
  assert json.loads((tmp_path / lock.LOCK_FILE).read_text())["token"] == "theirs"  # not ours to remove
