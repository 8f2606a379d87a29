"""`flan-jax data download` and `flan-jax data verify`.

Download fetches the upstream artifacts named in the pinned manifest as raw files at their pinned
commit (`{base_url}/{repo}/{commit}/{path}`; `--base_url` or `$FLAN_JAX_DOWNLOAD_BASE_URL` points at
a mirror). Each file is written to `NAME.part` in its final directory, resumed with an HTTP Range
request if a `.part` is already there, checked against the pinned sha256 and size, and only then
renamed into place; a mismatch deletes the download and names the file with both hashes. Derived
files (templates.json, ..., the MMLU CSVs) are produced by `upstream_ast` from upstream inputs
fetched to `DATA_DIR/.upstream/` (removed once a run succeeds) and checked against their pinned
sha256 before they are written (again atomically). Before any of that, one short TCP probe of the
server makes an offline machine fail within seconds instead of after minutes of DNS and connect
retries.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import manifest as manifest_lib
from flan_jax.data.files import upstream_ast

BASE_URL_ENV = "FLAN_JAX_DOWNLOAD_BASE_URL"
UPSTREAM_CACHE = ".upstream"
CHUNK = 1 << 16


class DownloadError(RuntimeError):
  """A file could not be fetched, did not match its pin, or the server is unreachable."""


def probe(base_url: str, timeout: float = 3.0) -> None:
  """Fails fast (DNS and connect each bounded by `timeout`) when the server cannot be reached."""
  parts = urllib.parse.urlsplit(base_url)
  if parts.scheme not in ("http", "https") or not parts.hostname:
    raise DownloadError(f"base URL {base_url!r} must be an http(s) URL with a host")
  host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
  hint = (f"Run on a networked machine, or point --base_url (or ${BASE_URL_ENV}) at a mirror "
          "serving {repo}/{commit}/{path}.")
  found: dict[str, object] = {}

  def resolve() -> None:
    try:
      found["addrs"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
      found["error"] = e

  resolver = threading.Thread(target=resolve, daemon=True)
  resolver.start()
  resolver.join(timeout)
  if resolver.is_alive():
    raise DownloadError(f"offline? resolving {host} took longer than {timeout:g}s. {hint}")
  if "error" in found:
    raise DownloadError(f"offline? cannot resolve {host}: {found['error']}. {hint}")
  errors = []
  for family, kind, proto, _, address in found["addrs"]:
    try:
      with socket.socket(family, kind, proto) as s:
        s.settimeout(timeout)
        s.connect(address)
      return
    except OSError as e:
      errors.append(f"{address[0]}: {e}")
  raise DownloadError(f"offline? cannot connect to {host}:{port} ({'; '.join(errors)}). {hint}")


def _check_bytes(path: pathlib.Path, rel: str, url: str, sha256: str | None,
                 size: int | None) -> None:
  if size is not None and path.stat().st_size != size:
    actual = path.stat().st_size
    path.unlink()
    raise DownloadError(f"{rel}: size mismatch: expected {size} bytes, got {actual} (from {url}); "
                        "the download was discarded")
  if sha256 is not None:
    actual = manifest_lib.sha256_file(path)
    if actual != sha256:
      path.unlink()
      raise DownloadError(f"{rel}: sha256 mismatch: expected {sha256}, got {actual} (from {url}); "
                          "the download was discarded")


def _check_unpinned(path: pathlib.Path, rel: str, url: str) -> None:
  """Files without a pinned hash must at least be well-formed."""
  try:
    text = path.read_bytes().decode("utf-8")
    if rel.endswith(".json"):
      json.loads(text)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    path.unlink()
    raise DownloadError(f"{rel}: malformed download from {url} ({e}); it was discarded") from e


def fetch(url: str, dest: pathlib.Path, rel: str, sha256: str | None = None,
          size: int | None = None, timeout: float = 60.0) -> str:
  """Fetches `url` to `dest` via `dest.part` (resumed with Range); returns 'fetched'/'resumed'."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  part = dest.with_name(dest.name + ".part")
  offset = part.stat().st_size if part.exists() else 0
  headers = {"Range": f"bytes={offset}-"} if offset else {}
  request = urllib.request.Request(url, headers=headers)
  resumed = False
  try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
      resumed = offset > 0 and response.status == 206
      if resumed and not (response.headers.get("Content-Range") or "").startswith(
          f"bytes {offset}-"):
        raise DownloadError(f"{rel}: server answered the resume of {url} with a different range "
                            f"({response.headers.get('Content-Range')})")
      with open(part, "ab" if resumed else "wb") as out:
        for block in iter(lambda: response.read(CHUNK), b""):
          out.write(block)
  except urllib.error.HTTPError as e:
    # 416: the .part already holds every byte; it is checked below like any download.
    if not (e.code == 416 and offset):
      raise DownloadError(f"{rel}: HTTP {e.code} {e.reason} for {url}") from e
  except (urllib.error.URLError, OSError) as e:
    reason = getattr(e, "reason", e)
    raise DownloadError(f"{rel}: fetching {url} failed ({reason}); rerun to resume") from e
  _check_bytes(part, rel, url, sha256, size)
  if sha256 is None:
    _check_unpinned(part, rel, url)
  os.replace(part, dest)
  return "resumed" if resumed else "fetched"


def _write_atomic(dest: pathlib.Path, data: bytes) -> None:
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, dest)
  except BaseException:
    os.unlink(tmp)
    raise


@dataclasses.dataclass
class Result:
  counts: dict[str, int] = dataclasses.field(default_factory=dict)
  errors: list[str] = dataclasses.field(default_factory=list)


class _Downloader:

  def __init__(self, data_dir: pathlib.Path, base_url: str, timeout: float,
               log: Callable[[str], None], verbose: bool):
    self.data_dir = data_dir
    self.base_url = base_url
    self.timeout = timeout
    self.log = log
    self.verbose = verbose
    self._locks: dict[str, threading.Lock] = {}
    self._locks_guard = threading.Lock()

  def _lock(self, key: str) -> threading.Lock:
    with self._locks_guard:
      return self._locks.setdefault(key, threading.Lock())

  def _upstream_input(self, up: manifest_lib.Upstream) -> tuple[str, bytes]:
    cached = self.data_dir / UPSTREAM_CACHE / up.repo / up.commit / up.path
    with self._lock(str(cached)):
      if not cached.exists():
        rel = cached.relative_to(self.data_dir).as_posix()
        fetch(up.url(self.base_url), cached, rel, timeout=self.timeout)
    return up.path, cached.read_bytes()

  def process(self, entry: manifest_lib.Entry) -> str:
    dest = self.data_dir / entry.path
    if dest.is_file():
      status = manifest_lib.check_entry(self.data_dir, entry).status
      if status in ("ok", "unpinned"):
        return "present"
      self.log(f"{entry.path}: present but {status} does not match; fetching again")
    if entry.derive is None:
      return fetch(entry.upstream[0].url(self.base_url), dest, entry.path, entry.sha256,
                   entry.size, self.timeout)
    inputs = [self._upstream_input(up) for up in entry.upstream]
    try:
      data = upstream_ast.derive(entry.derive, inputs)
    except upstream_ast.UpstreamShapeError as e:
      raise DownloadError(f"{entry.path}: cannot derive from {', '.join(map(str, entry.upstream))}:"
                          f" {e}") from e
    actual = hashlib.sha256(data).hexdigest()
    if entry.sha256 is not None and actual != entry.sha256:
      for up in entry.upstream:  # so that a rerun fetches the inputs afresh
        (self.data_dir / UPSTREAM_CACHE / up.repo / up.commit / up.path).unlink(missing_ok=True)
      raise DownloadError(f"{entry.path}: sha256 mismatch of the derived file: expected "
                          f"{entry.sha256}, got {actual} (derived by {entry.derive} from "
                          f"{', '.join(map(str, entry.upstream))}); nothing was written")
    _write_atomic(dest, data)
    return "derived"


def download(data_dir: str | os.PathLike, groups: list[str] | None = None,
             base_url: str | None = None, manifest: manifest_lib.Manifest | None = None,
             jobs: int = 8, timeout: float = 60.0, probe_timeout: float = 3.0,
             log: Callable[[str], None] = print, verbose: bool = False) -> Result:
  """Fetches (and derives) every manifest file of `groups` into `data_dir`."""
  manifest = manifest or manifest_lib.load_manifest()
  entries = manifest.select(groups)
  base_url = base_url or os.environ.get(BASE_URL_ENV) or manifest.default_base_url
  data_dir = pathlib.Path(data_dir)
  present = {e.path for e in entries
             if manifest_lib.check_entry(data_dir, e).status in ("ok", "unpinned")}
  result = Result(counts={"present": len(present)})
  todo = [e for e in entries if e.path not in present]
  if not todo:
    log(f"all {len(entries)} files already present in {data_dir}")
    return result
  probe(base_url, probe_timeout)
  log(f"fetching {len(todo)} files from {base_url} into {data_dir} "
      f"({len(present)} already present)")
  downloader = _Downloader(data_dir, base_url, timeout, log, verbose)
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
    futures = {pool.submit(downloader.process, e): e for e in todo}
    for future in concurrent.futures.as_completed(futures):
      entry = futures[future]
      try:
        status = future.result()
      except DownloadError as e:
        result.errors.append(str(e))
        log(f"ERROR {e}")
        continue
      result.counts[status] = result.counts.get(status, 0) + 1
      if verbose or status != "present":
        log(f"{status:<8} {entry.path}")
  if not result.errors:
    # Upstream inputs of derived files are kept only while a rerun may still need them.
    shutil.rmtree(data_dir / UPSTREAM_CACHE, ignore_errors=True)
  summary = ", ".join(f"{n} {s}" for s, n in result.counts.items() if n)
  log(f"done: {summary}; {len(result.errors)} error(s)")
  return result


def _resolve_data_dir(args: argparse.Namespace) -> pathlib.Path:
  # A --data_dir given to `flan-jax data` itself is already set; this one is for the subcommand.
  if getattr(args, "data_dir", None):
    data_dir_lib.set_data_dir(args.data_dir)
  return data_dir_lib.data_dir()


def _load(args: argparse.Namespace) -> manifest_lib.Manifest:
  return manifest_lib.load_manifest(args.manifest)


def run_download(args: argparse.Namespace) -> int:
  try:
    manifest = _load(args)
    result = download(_resolve_data_dir(args), args.only, args.base_url, manifest, args.jobs,
                      args.timeout, verbose=args.verbose)
  except (DownloadError, manifest_lib.ManifestError) as e:
    print(f"flan-jax data download: {e}", file=sys.stderr)
    return 1
  for error in result.errors:
    print(f"flan-jax data download: {error}", file=sys.stderr)
  return 1 if result.errors else 0


def run_verify(args: argparse.Namespace) -> int:
  try:
    manifest = _load(args)
    data_dir = _resolve_data_dir(args)
    checks = manifest_lib.verify(data_dir, manifest, args.only)
  except manifest_lib.ManifestError as e:
    print(f"flan-jax data verify: {e}", file=sys.stderr)
    return 1
  print(manifest_lib.format_report(checks, data_dir, args.verbose))
  return 1 if any(c.problem for c in checks) else 0


DOWNLOAD_HELP = """\
Fetches the upstream data the Flan tasks and the evaluation suites read (T5 vocabulary, FLAN templates, CoT
TSVs, NIv2 tasks, promptsource templates, BBH, MMLU, MGSM, GSM8K) into the data dir, each file at a pinned
upstream commit and checked against its sha256. Run it again to resume: finished files are kept, partial ones
continue where they stopped. `flan-jax data verify` then says what is missing or damaged.

  flan-jax data download                      # everything, into $FLAN_JAX_DATA_DIR (else the cache dir)
  flan-jax data download --only vocab cot     # just these groups
  flan-jax data download --data_dir /data/flan --jobs 16

TFDS-backed parts (Muffin, T0-SF, Dialog, TyDiQA) are not downloaded here: `flan-jax data doctor MIXTURE`
says how to prepare them with `tfds build`.
"""


def _common(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--data_dir", default=argparse.SUPPRESS,
                      help=f"data dir (default: ${data_dir_lib.ENV_VAR}, then the cache dir)")
  parser.add_argument("--only", nargs="+", metavar="SOURCE", default=None,
                      help="restrict to these groups: " + ", ".join(
                          manifest_lib.load_manifest().groups))
  parser.add_argument("--manifest", default=None, help="a manifest other than the packaged one")
  parser.add_argument("--verbose", action="store_true", help="list every file")


def register_cli(subparsers: argparse._SubParsersAction) -> None:
  """Adds `download` and `verify` to `flan-jax data`; each func(args) returns an exit code."""
  download_parser = subparsers.add_parser(
      "download", help="fetch the pinned upstream files and derive the data dir's files",
      description=DOWNLOAD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
  _common(download_parser)
  download_parser.add_argument("--base_url", default=None,
                               help=f"mirror serving REPO/COMMIT/PATH (default: ${BASE_URL_ENV}, "
                               "then https://raw.githubusercontent.com)")
  download_parser.add_argument("--jobs", type=int, default=8, help="parallel downloads")
  download_parser.add_argument("--timeout", type=float, default=60.0,
                               help="seconds before a stalled request fails")
  download_parser.set_defaults(func=run_download)
  verify_parser = subparsers.add_parser(
      "verify", help="check a data dir against the manifest (missing, size, sha256)")
  _common(verify_parser)
  verify_parser.set_defaults(func=run_verify)
