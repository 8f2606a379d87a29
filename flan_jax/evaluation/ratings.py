"""Side-by-side ratings: what a rating holds, how it is checked, how it reaches `ratings.jsonl` and is read back.

One line per rating: {"item", "rater", "choice" ("1", "2" or "tie": Response 1 better, Response 2 better, a tie),
"comment", "time" (UTC, ISO 8601)}. A rater who rates an item again replaces their earlier rating (the later line
wins), so the file is an append-only log.

Writes append one line with a single `write` on an O_APPEND descriptor, under an exclusive `flock` (which also
orders the threads of one server, each append opening its own descriptor), then `fsync`. Appending costs the same
however many ratings the file holds, and a crash can only tear the last line: readers skip a torn last line with a
warning, and the next append first cuts it off. Rewriting the whole file and renaming it would cost a full copy
per click and still need the lock to keep two raters' ratings from overwriting each other.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import pathlib
import sys
import unicodedata
from typing import Any, Collection

from flan_jax.evaluation.side_by_side import RunFileError

CHOICES = ("1", "2", "tie")
MAX_RATER_CHARS = 64
MAX_COMMENT_CHARS = 4000
FIELDS = ("item", "rater", "choice", "comment", "time")


class RatingError(ValueError):
  """A rating that cannot be stored; the message says which field and why."""


def check_rater(name: Any) -> str:
  """The rater id, stripped: 1..64 characters, no control characters."""
  if not isinstance(name, str) or not name.strip():
    raise RatingError("rater: a non-empty name is needed")
  name = name.strip()
  if len(name) > MAX_RATER_CHARS:
    raise RatingError(f"rater: at most {MAX_RATER_CHARS} characters, got {len(name)}")
  if any(unicodedata.category(c).startswith("C") for c in name):
    raise RatingError("rater: control characters are not allowed")
  return name


def check_rating(rating: Any, item_ids: Collection[str]) -> dict[str, Any]:
  """The rating with its rater stripped, or RatingError naming the bad field (unknown item, bad choice, ...)."""
  if not isinstance(rating, dict):
    raise RatingError(f"a rating is a JSON object, got {type(rating).__name__}")
  unknown = sorted(set(rating) - set(FIELDS))
  if unknown:
    raise RatingError(f"unknown field(s) {unknown}; a rating has {list(FIELDS)}")
  item = rating.get("item")
  if not isinstance(item, str) or item not in item_ids:
    raise RatingError(f"item: {json.dumps(item)} is not an item of this rating set")
  choice = rating.get("choice")
  if choice not in CHOICES:
    raise RatingError(f"choice: {json.dumps(choice)} is not one of {list(CHOICES)}")
  comment = rating.get("comment", "")
  if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
    raise RatingError(f"comment: a string of at most {MAX_COMMENT_CHARS} characters")
  time = rating.get("time")
  if time is not None and not isinstance(time, str):
    raise RatingError("time: an ISO 8601 string")
  return {"item": item, "rater": check_rater(rating.get("rater")), "choice": choice, "comment": comment.strip(),
          "time": time}


def now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _cut_torn_tail(fd: int, path: pathlib.Path) -> None:
  """Ends the file at a newline before appending: completes a whole last record, drops a torn one."""
  size = os.fstat(fd).st_size
  if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
    return
  data = os.pread(fd, size, 0)
  start = data.rfind(b"\n") + 1
  try:
    json.loads(data[start:])
    os.write(fd, b"\n")
  except ValueError:
    print(f"warning: {path}: dropping a torn last line ({size - start} bytes) before appending", file=sys.stderr)
    os.ftruncate(fd, start)


def append(path: str | os.PathLike, rating: dict[str, Any]) -> None:
  """Appends one rating line durably (see the module docstring)."""
  path = pathlib.Path(path)
  line = (json.dumps(rating, ensure_ascii=False) + "\n").encode("utf-8")
  fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    _cut_torn_tail(fd, path)
    view = memoryview(line)
    while view:
      view = view[os.write(fd, view):]
    os.fsync(fd)
  finally:
    os.close(fd)  # closing releases the lock


def read(path: str | os.PathLike, item_ids: Collection[str]) -> list[dict[str, Any]]:
  """Every rating in file order (none when the file does not exist); a bad line fails naming file:line, except a
  torn last line (a crash while writing), which is skipped with a warning."""
  path = pathlib.Path(path)
  try:
    f = open(path, "rb")
  except FileNotFoundError:
    return []
  with f:
    fcntl.flock(f.fileno(), fcntl.LOCK_SH)  # never sees half of a line being appended
    lines = f.read().decode("utf-8", errors="replace").split("\n")
  out = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    last_unterminated = number == len(lines)
    try:
      out.append(check_rating(json.loads(line), item_ids))
    except json.JSONDecodeError as e:
      if last_unterminated:
        print(f"warning: {path}:{number}: skipping a torn last line", file=sys.stderr)
        continue
      raise RunFileError(f"{path}:{number}: not JSON ({e.msg} at column {e.colno})") from None
    except RatingError as e:
      raise RunFileError(f"{path}:{number}: {e}") from None
  return out


def latest(ratings: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
  """(item, rater) -> that rater's last rating of the item."""
  return {(r["item"], r["rater"]): r for r in ratings}
