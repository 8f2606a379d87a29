"""Progress for long commands: a bar redrawn in place on a terminal, a line every `every_s` seconds otherwise.

`Progress(total, what)`, then `.update(n)` as work is done and `.close()` at the end. Figures are the caller's:
`extra` is appended to each line (tokens/s, loss). Writes to stderr so stdout stays the command's data.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
  """`done / total` with rate and ETA; `start` counts work done before this run (a resumed training)."""

  def __init__(self, total: int, what: str, *, start: int = 0, stream: TextIO | None = None, every_s: float = 10.0,
               width: int = 24):
    self.total = max(total, 0)
    self.what = what
    self.done = start
    self._start = start
    self._stream = stream or sys.stderr
    self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
    self._every_s = every_s
    self._width = width
    self._t0 = time.perf_counter()
    self._last_line = float("-inf")

  def line(self, extra: str = "") -> str:
    elapsed = time.perf_counter() - self._t0
    rate = (self.done - self._start) / elapsed if elapsed > 0 else 0.0
    left = (self.total - self.done) / rate if rate > 0 else None
    eta = f"ETA {format_seconds(left)}" if left is not None else "ETA ?"
    text = f"{self.what} {self.done}/{self.total}, {format_seconds(elapsed)} elapsed, {eta}"
    if self._tty:
      filled = int(self._width * self.done / self.total) if self.total else self._width
      text = f"[{'#' * filled}{'.' * (self._width - filled)}] " + text
    return text + (f", {extra}" if extra else "")

  def update(self, n: int = 1, extra: str = "") -> None:
    self.done = min(self.total, self.done + n)
    now = time.perf_counter()
    if self._tty:
      self._stream.write("\r" + self.line(extra) + "\x1b[K")
      self._stream.flush()
    elif now - self._last_line >= self._every_s or self.done == self.total:
      self._stream.write(self.line(extra) + "\n")
      self._stream.flush()
      self._last_line = now

  def close(self) -> None:
    if self._tty:
      self._stream.write("\n")
      self._stream.flush()
