"""The pinned manifest of the Flan data dir (`manifest.json` in this package), and `verify`.

Every data-dir file has an entry: its path, the `--only` group that fetches it, sha256 and size
(null where no pinned hash exists: the esnli/qed CoT TSVs and the NIv2 task files outside the
shared sample), and its upstream inputs (repo + commit + path, fetched as raw files at that commit),
plus, for derived files, the `upstream_ast` derivation that produces it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib

MANIFEST_PATH = pathlib.Path(__file__).with_name("manifest.json")
# Groups with more problems than this are summarised unless --verbose.
SUMMARY_THRESHOLD = 10


class ManifestError(ValueError):
  """The manifest file is malformed."""


@dataclasses.dataclass(frozen=True)
class Upstream:
  repo: str
  commit: str
  path: str

  def url(self, base_url: str) -> str:
    return f"{base_url.rstrip('/')}/{self.repo}/{self.commit}/{self.path}"

  def __str__(self) -> str:
    return f"{self.repo}@{self.commit[:12]}:{self.path}"


@dataclasses.dataclass(frozen=True)
class Entry:
  path: str
  group: str
  sha256: str | None
  size: int | None
  upstream: tuple[Upstream, ...]
  derive: str | None = None
  license: str | None = None


@dataclasses.dataclass
class Manifest:
  entries: list[Entry]
  groups: dict[str, str]
  default_base_url: str
  source: str

  def select(self, groups: list[str] | None = None) -> list[Entry]:
    if not groups:
      return list(self.entries)
    unknown = sorted(set(groups) - set(self.groups))
    if unknown:
      raise ManifestError(f"unknown group(s) {', '.join(unknown)}; known: {', '.join(self.groups)}")
    return [e for e in self.entries if e.group in groups]


def _sha256_or_none(value, where: str) -> str | None:
  if value is None:
    return None
  if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
    raise ManifestError(f"{where}: sha256 must be 64 lowercase hex digits, got {value!r}")
  return value


def load_manifest(path: str | os.PathLike | None = None) -> Manifest:
  """Reads and checks a manifest (the packaged one by default)."""
  path = pathlib.Path(path) if path else MANIFEST_PATH
  try:
    raw = json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ManifestError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
  try:
    groups = dict(raw["groups"])
    entries: dict[str, Entry] = {}
    for fs in raw.get("file_sets", []):
      up = fs["upstream"]
      if fs["group"] not in groups:
        raise ManifestError(f"{path}: file set {fs['dir']}: group {fs['group']!r} is not declared")
      for name in fs["names"]:
        rel = f"{fs['dir']}/{name}{fs['suffix']}"
        entries[rel] = Entry(rel, fs["group"], None, None,
                             (Upstream(up["repo"], up["commit"], f"{up['dir']}/{name}{fs['suffix']}"),),
                             None, fs.get("license"))
    for i, f in enumerate(raw["files"]):
      where = f"{path}: files[{i}] ({f.get('path')})"
      if f["group"] not in groups:
        raise ManifestError(f"{where}: group {f['group']!r} is not declared in groups")
      upstream = tuple(Upstream(u["repo"], u["commit"], u["path"]) for u in f["upstream"])
      if not upstream:
        raise ManifestError(f"{where}: no upstream inputs")
      if f.get("derive") is None and len(upstream) != 1:
        raise ManifestError(f"{where}: a raw file has exactly one upstream input")
      entries[f["path"]] = Entry(f["path"], f["group"], _sha256_or_none(f["sha256"], where),
                                 f["bytes"], upstream, f.get("derive"), f.get("license"))
    order = {g: i for i, g in enumerate(groups)}
    return Manifest(sorted(entries.values(), key=lambda e: (order[e.group], e.path)), groups,
                    raw.get("default_base_url", "https://raw.githubusercontent.com"), str(path))
  except (KeyError, TypeError) as e:
    raise ManifestError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from e


def sha256_file(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Check:
  entry: Entry
  status: str  # ok | unpinned (present, no pinned hash) | missing | size | sha256
  detail: str = ""

  @property
  def problem(self) -> bool:
    return self.status in ("missing", "size", "sha256")


def check_entry(data_dir: pathlib.Path, entry: Entry) -> Check:
  path = data_dir / entry.path
  if not path.is_file():
    return Check(entry, "missing")
  size = path.stat().st_size
  if entry.size is not None and size != entry.size:
    return Check(entry, "size", f"expected {entry.size} bytes, found {size}")
  if entry.sha256 is None:
    return Check(entry, "unpinned", f"{size} bytes, no pinned sha256")
  actual = sha256_file(path)
  if actual != entry.sha256:
    return Check(entry, "sha256", f"expected sha256 {entry.sha256}, got {actual}")
  return Check(entry, "ok")


def verify(data_dir: str | os.PathLike, manifest: Manifest | None = None,
           groups: list[str] | None = None) -> list[Check]:
  """Checks every manifest file (of `groups`) in `data_dir`: present, size, sha256."""
  manifest = manifest or load_manifest()
  return [check_entry(pathlib.Path(data_dir), e) for e in manifest.select(groups)]


def format_report(checks: list[Check], data_dir: str | os.PathLike, verbose: bool = False) -> str:
  """A per-group table, then one line per problem (summarised for large groups unless verbose)."""
  by_group: dict[str, list[Check]] = {}
  for c in checks:
    by_group.setdefault(c.entry.group, []).append(c)
  statuses = ["ok", "unpinned", "missing", "size", "sha256"]
  lines = [f"data dir: {data_dir}", "",
           f"{'group':<14}{'files':>7}" + "".join(f"{s:>10}" for s in statuses)]
  for group, group_checks in by_group.items():
    counts = [sum(c.status == s for c in group_checks) for s in statuses]
    lines.append(f"{group:<14}{len(group_checks):>7}" + "".join(f"{n:>10}" for n in counts))
  total = [sum(c.status == s for c in checks) for s in statuses]
  lines.append(f"{'total':<14}{len(checks):>7}" + "".join(f"{n:>10}" for n in total))
  listed_statuses = ("missing", "size", "sha256") + (("unpinned",) if verbose else ())
  if any(c.status in listed_statuses for c in checks):
    lines.append("")
  for group, group_checks in by_group.items():
    for status in ("missing", "size", "sha256", "unpinned"):
      if status not in listed_statuses:
        continue
      listed = [c for c in group_checks if c.status == status]
      if not verbose and len(listed) > SUMMARY_THRESHOLD:
        examples = ", ".join(c.entry.path for c in listed[:3])
        lines.append(f"{status.upper():<9}{group}: {len(listed)} files (e.g. {examples}, ...; "
                     "--verbose lists them)")
        continue
      for c in listed:
        lines.append(f"{c.status.upper():<9}{c.entry.path}" + (f"  {c.detail}" if c.detail else ""))
  bad_groups = [g for g, cs in by_group.items() if any(c.problem for c in cs)]
  if bad_groups:
    lines += ["", f"{sum(c.problem for c in checks)} problem(s); to fetch: "
              f"flan-jax data download --only {' '.join(bad_groups)}"]
  else:
    lines += ["", "all files present and matching the manifest"]
  return "\n".join(lines)
