"""`flan-jax rate DIR`: a local web page for rating a side-by-side run (`flan-jax eval open-ended`) by hand.

  flan-jax rate DIR [--port N] [--host 127.0.0.1] [--rater NAME]

One prompt at a time with its two anonymous responses; choices "Response 1 better", "Response 2 better", "tie"
(keys 1, 2, t), an optional comment, Enter saves and moves on. Each rating is appended to DIR/ratings.jsonl as it
is made (`flan_jax/evaluation/ratings.py`), so a reload or a restarted server continues at the rater's first
unrated item. Without --rater every rater types a name on the page (kept in the browser); each rater's progress is
their own. The page never sees key.json: which model wrote which response stays hidden until the report.

API (JSON): GET /api/items (the rating set and the fixed rater, if any), GET /api/progress?rater=NAME (the ids that
rater has rated), POST /api/rate {item, rater, choice, comment} -> 200 with the rater's progress, or 400 with an
"error" message (unknown item, bad choice, missing rater, ...).
"""
from __future__ import annotations

import argparse
import http.server
import json
import pathlib
import sys
import threading
import urllib.parse
from typing import Any

from flan_jax.evaluation import ratings, side_by_side

PAGE = pathlib.Path(__file__).resolve().parent / "evaluation" / "rating_page.html"
MAX_BODY_BYTES = 64 * 1024


class RatingApp:
  """The rating set of a run dir and its ratings log, behind the page's three API calls."""

  def __init__(self, directory: str | pathlib.Path, rater: str | None = None):
    self.directory = pathlib.Path(directory)
    self.items = side_by_side.load_rating_set(self.directory)
    self.ids = {item["id"] for item in self.items}
    self.path = self.directory / side_by_side.RATINGS
    self.rater = ratings.check_rater(rater) if rater is not None else None
    ratings.read(self.path, self.ids)  # a damaged log fails now, naming its line, not on the first click
    self.page = PAGE.read_bytes()

  def items_payload(self) -> dict[str, Any]:
    fields = ("id", "prompt", "category", "response_1", "response_2")
    return {"items": [{f: item[f] for f in fields if f in item} for item in self.items], "rater": self.rater}

  def progress(self, rater: str) -> dict[str, Any]:
    rater = self._rater(rater)
    done = {item for item, who in ratings.latest(ratings.read(self.path, self.ids)) if who == rater}
    return {"rater": rater, "rated": [i["id"] for i in self.items if i["id"] in done], "total": len(self.items)}

  def rate(self, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
      raise ratings.RatingError("the body must be a JSON object {item, rater, choice, comment}")
    if "time" in body:
      raise ratings.RatingError("time: set by the server")
    rating = ratings.check_rating({**body, "rater": self._rater(body.get("rater"))}, self.ids)
    rating["time"] = ratings.now()
    ratings.append(self.path, rating)
    return self.progress(rating["rater"])

  def _rater(self, name: Any) -> str:
    name = ratings.check_rater(name)
    if self.rater is not None and name != self.rater:
      raise ratings.RatingError(f"rater: this server rates as {self.rater!r} (--rater), got {name!r}")
    return name


def _handler(app: RatingApp) -> type[http.server.BaseHTTPRequestHandler]:

  class Handler(http.server.BaseHTTPRequestHandler):

    def _send(self, status: int, body: bytes, content_type: str) -> None:
      self.send_response(status)
      self.send_header("Content-Type", content_type)
      self.send_header("Content-Length", str(len(body)))
      self.send_header("Cache-Control", "no-store")
      self.end_headers()
      self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
      self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def do_GET(self) -> None:  # pylint: disable=invalid-name
      url = urllib.parse.urlsplit(self.path)
      try:
        if url.path in ("/", "/index.html"):
          self._send(200, app.page, "text/html; charset=utf-8")
        elif url.path == "/api/items":
          self._json(200, app.items_payload())
        elif url.path == "/api/progress":
          query = urllib.parse.parse_qs(url.query)
          self._json(200, app.progress(query.get("rater", [""])[0]))
        else:
          self._json(404, {"error": f"no such page: {url.path}"})
      except ratings.RatingError as e:
        self._json(400, {"error": str(e)})

    def do_POST(self) -> None:  # pylint: disable=invalid-name
      if urllib.parse.urlsplit(self.path).path != "/api/rate":
        self._json(404, {"error": f"no such endpoint: {self.path}"})
        return
      try:
        length = int(self.headers.get("Content-Length", ""))
      except ValueError:
        self._json(411, {"error": "a Content-Length header is needed"})
        return
      if length > MAX_BODY_BYTES:
        self._json(413, {"error": f"a rating is at most {MAX_BODY_BYTES} bytes"})
        return
      try:
        body = json.loads(self.rfile.read(length).decode("utf-8"))
      except (UnicodeDecodeError, json.JSONDecodeError) as e:
        self._json(400, {"error": f"the body is not JSON: {e}"})
        return
      try:
        self._json(200, app.rate(body))
      except ratings.RatingError as e:
        self._json(400, {"error": str(e)})

    def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
      del format, args  # one line per click would bury the server's own messages

  return Handler


def make_server(directory: str | pathlib.Path, host: str = "127.0.0.1", port: int = 0,
                rater: str | None = None) -> http.server.ThreadingHTTPServer:
  """The server, bound (port 0: a free one; `server.server_address` says which) but not yet serving."""
  server = http.server.ThreadingHTTPServer((host, port), _handler(RatingApp(directory, rater)))
  server.daemon_threads = True
  return server


def serve_in_thread(server: http.server.ThreadingHTTPServer) -> threading.Thread:
  thread = threading.Thread(target=server.serve_forever, name="flan-jax-rate", daemon=True)
  thread.start()
  return thread


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="flan-jax rate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("dir", help="a run dir of `flan-jax eval open-ended` (holds rating_set.jsonl)")
  parser.add_argument("--port", type=int, default=8765, help="0: any free port")
  parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: this machine only)")
  parser.add_argument("--rater", default=None, help="rate as NAME (default: each rater types a name on the page)")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  try:
    server = make_server(args.dir, args.host, args.port, args.rater)
  except (side_by_side.RunFileError, ratings.RatingError, OSError) as e:
    print(f"flan-jax rate: {e}", file=sys.stderr)
    return 2
  host, port = server.server_address[:2]
  print(f"rating {args.dir}: open http://{host}:{port}/ (Ctrl-C stops; ratings are saved as they are made)",
        file=sys.stderr)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
  return 0
