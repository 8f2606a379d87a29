"""One trainer per MODEL_DIR: a lease file, `MODEL_DIR/flan_jax.lock`, taken before anything is written there.

The lease names its holder (host, pid, start time) and a thread renews it while the holder lives. A second trainer
refuses at once, naming the holder. A lease is stale, and taken over with a warning, when its holder is gone from
this host (the pid no longer runs, or runs a process started at another time) or when it was not renewed for
`lease_seconds` (a holder on another host that died). On local disks the lease appears whole or not at all (written
aside, then hard-linked into place, which fails when one exists); through epath elsewhere (`gs://`) create-if-absent
is not atomic, so the lease is read back after writing and the trainer that finds another's lease there refuses.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Callable

from etils import epath

LOCK_FILE = "flan_jax.lock"
LEASE_SECONDS = 120.0


class RunLockError(RuntimeError):
  """MODEL_DIR is held by another trainer, or this trainer lost its lease; the message names the holder."""


@dataclasses.dataclass(frozen=True)
class Lease:
  host: str
  pid: int
  pid_start: str | None  # the process's start time in clock ticks after boot (Linux), to tell a reused pid
  started: float
  renewed: float
  lease_seconds: float
  token: str

  def describe(self, now: float) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
    return f"host {self.host} pid {self.pid} (since {since}, lease renewed {now - self.renewed:.0f} s ago)"


def _pid_start(pid: int) -> str | None:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def stale_reason(lease: Lease, now: float, host: str) -> str | None:
  """Why `lease` no longer protects anything, or None while its holder may be alive."""
  if now - lease.renewed > lease.lease_seconds:
    return f"its lease expired {now - lease.renewed - lease.lease_seconds:.0f} s ago"
  if lease.host == host:
    if not _running(lease.pid):
      return f"pid {lease.pid} no longer runs on this host"
    start = _pid_start(lease.pid)
    if lease.pid_start and start and start != lease.pid_start:
      return f"pid {lease.pid} now belongs to another process"
  return None


def _warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr, flush=True)


class RunLock:
  """The lease on one MODEL_DIR: `acquire()`, then `check()` now and then, and `release()` (or `with`)."""

  def __init__(self, directory: str | os.PathLike, *, lease_seconds: float = LEASE_SECONDS,
               warn: Callable[[str], None] = _warn):
    self.directory = epath.Path(directory)
    self.path = self.directory / LOCK_FILE
    self.lease_seconds = lease_seconds
    self._warn = warn
    self._local = "://" not in os.fspath(self.directory)
    self._lease: Lease | None = None
    self._lost: str | None = None
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def read(self) -> Lease | None:
    """The lease on file, or None where there is none (or it cannot be parsed)."""
    try:
      return Lease(**json.loads(self.path.read_text()))
    except (OSError, ValueError, TypeError):
      return None

  def _create(self, lease: Lease) -> bool:
    """Puts `lease` in place where there is none; whether this trainer now holds the lock."""
    if not self._local:
      if self.path.exists():
        return False
      self.path.write_text(json.dumps(dataclasses.asdict(lease)))
      time.sleep(1.0)  # let a racing writer land, then see whose lease stayed
      held = self.read()
      return held is not None and held.token == lease.token
    aside = self.directory / f"{LOCK_FILE}.{os.getpid()}.new"
    try:
      aside.write_text(json.dumps(dataclasses.asdict(lease)))
      os.link(aside, self.path)
      return True
    except FileExistsError:
      return False
    finally:
      aside.unlink(missing_ok=True)

  def _break(self, stale: Lease) -> None:
    """Removes the stale lease, unless another trainer replaced it meanwhile."""
    if not self._local:
      self.path.unlink(missing_ok=True)
      return
    moved = self.directory / f"{LOCK_FILE}.stale.{os.getpid()}"
    try:
      os.rename(self.path, moved)
    except FileNotFoundError:
      return
    taken = json.loads(moved.read_text() or "{}").get("token")
    if taken != stale.token:  # a fresh lease of another trainer: put it back
      try:
        os.link(moved, self.path)
      except FileExistsError:
        pass
    moved.unlink()

  def acquire(self) -> None:
    host, now = socket.gethostname(), time.time()
    lease = Lease(host, os.getpid(), _pid_start(os.getpid()), now, now, self.lease_seconds, uuid.uuid4().hex)
    self.directory.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
      if self._create(lease):
        self._lease = lease
        self._thread = threading.Thread(target=self._renew, name="flan_jax-lock", daemon=True)
        self._thread.start()
        return
      holder = self.read()
      if holder is None:
        time.sleep(0.5)  # vanished, or being replaced: look again
        continue
      now = time.time()
      reason = stale_reason(holder, now, host)
      if reason is None:
        raise RunLockError(
            f"{self.directory} is being trained by {holder.describe(now)}; stop that trainer first or train into "
            f"another MODEL_DIR (if it is gone, its lease expires {holder.lease_seconds:.0f} s after its last "
            f"renewal, or delete {self.path})")
      self._warn(f"{self.directory}: taking over the lock of {holder.describe(now)}: {reason}")
      self._break(holder)
    raise RunLockError(f"{self.path}: could not take the lock: the lease file stays unreadable, or other trainers "
                       "keep taking it; if no trainer uses this MODEL_DIR, delete the file")

  def _renew(self) -> None:
    while not self._stop.wait(self.lease_seconds / 4):
      held = self.read()
      if held is None or held.token != self._lease.token:
        self._lost = (f"lost the lock on {self.directory}"
                      + (f" to {held.describe(time.time())}" if held else " (its lease file is gone)"))
        return
      self._lease = dataclasses.replace(self._lease, renewed=time.time())
      try:
        self._put(self._lease)
      except OSError as e:  # e.g. a full disk: the old lease stays, and expires unless a later renewal lands
        self._warn(f"could not renew the lock {self.path}: {e}")

  def _put(self, lease: Lease) -> None:
    """Overwrites the lease whole: written aside and renamed over it locally, one object write elsewhere."""
    if not self._local:
      self.path.write_text(json.dumps(dataclasses.asdict(lease)))
      return
    aside = self.directory / f"{LOCK_FILE}.{os.getpid()}.renew"
    try:
      aside.write_text(json.dumps(dataclasses.asdict(lease)))
      aside.replace(self.path)
    finally:
      aside.unlink(missing_ok=True)

  def check(self) -> None:
    """Raises RunLockError once another trainer has taken this lease over."""
    if self._lost:
      raise RunLockError(f"{self._lost}; stopping so that two trainers never write one MODEL_DIR")

  def release(self) -> None:
    if self._lease is None:
      return
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    held = self.read()
    if held is not None and held.token == self._lease.token:
      self.path.unlink(missing_ok=True)
    self._lease = None

  def __enter__(self) -> "RunLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
