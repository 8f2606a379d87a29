"""`flan-jax data download` / `verify` (flan_jax.data.files.download, flan_jax.data.files.manifest).

A local HTTP server on 127.0.0.1 (ephemeral port, honouring Range) serves an upstream mirror built
from the hand-written fixtures in tests/fixtures/upstream/, laid out as REPO/COMMIT/PATH.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import pathlib
import shutil
import socket
import threading
import time

import pytest

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import download as dl
from flan_jax.data.files import manifest as manifest_lib
from flan_jax.data.files import upstream_ast

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "upstream"
FLAN = ("google-research/FLAN", "e9e4ec6e2701182c7a91af176f705310da541277")
NIV2 = ("allenai/natural-instructions", "e0fd31052b21acea5bd95fb00253e1ee1f5d8259")
VOCAB = bytes(range(256)) * 64  # binary, 16 KiB: large enough to be cut in half for a resume
TSV = "Q1\tA1\tbecause 1\nQ2\tA2\tbecause 2\n".encode()
TASK = json.dumps({"Definition": ["Copy the input."], "Instances": [
    {"id": "t-1", "input": "ü", "output": ["ü"]}]}, indent=4, ensure_ascii=False).encode()


@pytest.fixture(autouse=True)
def _reset_data_dir():
  """The CLI funcs set the process-wide data dir; later tests must see the default again."""
  yield
  data_dir_lib.set_data_dir(None)


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
  """Serves files, honouring `Range: bytes=N-`; records each request's path and Range header."""

  requests: list[tuple[str, str | None]]

  def log_message(self, *args):  # keep pytest output clean
    pass

  def do_GET(self):
    self.requests.append((self.path, self.headers.get("Range")))
    path = pathlib.Path(self.translate_path(self.path))
    if not path.is_file():
      self.send_error(404)
      return
    data = path.read_bytes()
    spec = self.headers.get("Range")
    if spec:
      start = int(spec.removeprefix("bytes=").rstrip("-"))
      if start >= len(data):
        self.send_response(416)
        self.send_header("Content-Range", f"bytes */{len(data)}")
        self.end_headers()
        return
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
      data = data[start:]
    else:
      self.send_response(200)
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)


def _put(root: pathlib.Path, repo_commit: tuple[str, str], path: str, data: bytes) -> dict:
  dest = root / repo_commit[0] / repo_commit[1] / path
  dest.parent.mkdir(parents=True, exist_ok=True)
  dest.write_bytes(data)
  return {"repo": repo_commit[0], "commit": repo_commit[1], "path": path}


def _entry(path, group, data, upstream, derive=None, pinned=True):
  return {"path": path, "group": group, "derive": derive, "upstream": upstream,
          "sha256": hashlib.sha256(data).hexdigest() if pinned else None,
          "bytes": len(data) if pinned else None}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
  """(root dir served, manifest dict, expected data-dir bytes per path)."""
  root = tmp_path_factory.mktemp("mirror")
  fixture = lambda rel: (FIXTURES / rel).read_bytes()  # noqa: E731
  templates_in = [_put(root, FLAN, f"flan/v2/{n}", fixture(f"flan/v2/{n}"))
                  for n in ("templates.py", "flan_templates_branched.py")]
  constants_in = [_put(root, FLAN, "flan/v2/constants.py", fixture("flan/v2/constants.py"))]
  mmlu_in = [_put(root, ("HaeChan0305/MLILAB-FedLLM", "d" * 40), "data/mmlu/dev/anatomy_dev.csv",
                  fixture("mmlu/anatomy_dev.csv"))]
  expected = {
      "vocab/cc_all.32000.sentencepiece.model": VOCAB,
      "flan/cot/aqua_train.tsv": TSV,
      "niv2/tasks/task001_copy.json": TASK,
      "flan/templates.json": upstream_ast.derive_templates(
          ("flan/v2/templates.py", fixture("flan/v2/templates.py")),
          ("flan/v2/flan_templates_branched.py", fixture("flan/v2/flan_templates_branched.py"))),
      "flan/constants.json": upstream_ast.derive_constants(("c", fixture("flan/v2/constants.py"))),
      "eval/mmlu/dev/anatomy_dev.csv": upstream_ast.convert_mmlu_csv(
          ("m", fixture("mmlu/anatomy_dev.csv"))),
  }
  files = [
      _entry("vocab/cc_all.32000.sentencepiece.model", "vocab", VOCAB,
             [_put(root, ("google/trax", "7" * 40), "trax/data/testdata/sentencepiece.model", VOCAB)]),
      _entry("flan/cot/aqua_train.tsv", "cot", TSV,
             [_put(root, FLAN, "flan/v2/cot_data/aqua_train.tsv", TSV)]),
      _entry("flan/templates.json", "flan", expected["flan/templates.json"], templates_in,
             "flan_templates"),
      _entry("flan/constants.json", "flan", expected["flan/constants.json"], constants_in,
             "flan_constants"),
      _entry("eval/mmlu/dev/anatomy_dev.csv", "mmlu", expected["eval/mmlu/dev/anatomy_dev.csv"],
             mmlu_in, "mmlu_csv"),
  ]
  _put(root, NIV2, "tasks/task001_copy.json", TASK)
  manifest = {
      "format": 1, "default_base_url": "http://127.0.0.1:9",
      "groups": {g: g for g in ("vocab", "flan", "cot", "niv2", "mmlu")},
      "files": files,
      "file_sets": [{"group": "niv2", "dir": "niv2/tasks", "suffix": ".json",
                     "upstream": {"repo": NIV2[0], "commit": NIV2[1], "dir": "tasks"},
                     "names": ["task001_copy"]}],
  }
  return root, manifest, expected


@pytest.fixture(scope="module")
def server(mirror):
  root = mirror[0]
  handler = functools.partial(_RangeHandler, directory=str(root))
  _RangeHandler.requests = []
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}", _RangeHandler.requests
  httpd.shutdown()
  httpd.server_close()


def _manifest(tmp_path, raw: dict) -> manifest_lib.Manifest:
  path = tmp_path / "manifest.json"
  path.write_text(json.dumps(raw))
  return manifest_lib.load_manifest(path)


def _closed_port_url() -> str:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}"


def _quiet(_line: str) -> None:
  pass


def test_full_download_derives_and_verifies(tmp_path, mirror, server):
  _, raw, expected = mirror
  manifest = _manifest(tmp_path, raw)
  data = tmp_path / "data"
  lines = []
  result = dl.download(data, base_url=server[0], manifest=manifest, log=lines.append)
  assert result.errors == []
  assert result.counts == {"present": 0, "fetched": 3, "derived": 3}
  for rel, content in expected.items():
    assert (data / rel).read_bytes() == content, rel
  assert not list(data.rglob("*.part")) and not list(data.rglob("*.tmp"))
  assert not (data / dl.UPSTREAM_CACHE).exists()
  checks = manifest_lib.verify(data, manifest)
  assert {c.status for c in checks} == {"ok", "unpinned"}
  assert [c.entry.path for c in checks if c.status == "unpinned"] == ["niv2/tasks/task001_copy.json"]
  # Everything is in place: a second run needs no server at all.
  again = dl.download(data, base_url=_closed_port_url(), manifest=manifest, log=_quiet)
  assert again.counts == {"present": 6} and again.errors == []


def test_only_restricts_to_groups(tmp_path, mirror, server):
  manifest = _manifest(tmp_path, mirror[1])
  data = tmp_path / "data"
  result = dl.download(data, ["flan", "niv2"], server[0], manifest, log=_quiet)
  assert result.errors == []
  present = sorted(p.relative_to(data).as_posix() for p in data.rglob("*")
                   if p.is_file() and dl.UPSTREAM_CACHE not in p.parts)
  assert present == ["flan/constants.json", "flan/templates.json", "niv2/tasks/task001_copy.json"]
  with pytest.raises(manifest_lib.ManifestError, match="unknown group.*nope"):
    dl.download(data, ["nope"], server[0], manifest, log=_quiet)


def test_partial_file_is_resumed_with_a_range_request(tmp_path, mirror, server):
  manifest = _manifest(tmp_path, mirror[1])
  data = tmp_path / "data"
  part = data / "vocab" / "cc_all.32000.sentencepiece.model.part"
  part.parent.mkdir(parents=True)
  part.write_bytes(VOCAB[:5000])
  del server[1][:]
  result = dl.download(data, ["vocab"], server[0], manifest, log=_quiet)
  assert result.errors == [] and result.counts["resumed"] == 1
  assert (data / "vocab" / "cc_all.32000.sentencepiece.model").read_bytes() == VOCAB
  assert not part.exists()
  assert server[1] == [("/google/trax/" + "7" * 40 + "/trax/data/testdata/sentencepiece.model",
                        "bytes=5000-")]


def test_complete_part_file_answered_416_is_checked_and_kept(tmp_path, mirror, server):
  manifest = _manifest(tmp_path, mirror[1])
  data = tmp_path / "data"
  part = data / "flan" / "cot" / "aqua_train.tsv.part"
  part.parent.mkdir(parents=True)
  part.write_bytes(TSV)
  result = dl.download(data, ["cot"], server[0], manifest, log=_quiet)
  assert result.errors == []
  assert (data / "flan" / "cot" / "aqua_train.tsv").read_bytes() == TSV


def test_sha256_mismatch_names_file_and_hashes_and_leaves_nothing(tmp_path, mirror, server):
  raw = json.loads(json.dumps(mirror[1]))
  wrong = "0" * 64
  for f in raw["files"]:
    if f["path"] in ("flan/cot/aqua_train.tsv", "flan/constants.json"):
      f["sha256"] = wrong
  manifest = _manifest(tmp_path, raw)
  data = tmp_path / "data"
  result = dl.download(data, ["cot", "flan"], server[0], manifest, log=_quiet)
  assert len(result.errors) == 2
  tsv_error = next(e for e in result.errors if e.startswith("flan/cot/aqua_train.tsv"))
  assert f"expected {wrong}, got {hashlib.sha256(TSV).hexdigest()}" in tsv_error
  derived_error = next(e for e in result.errors if e.startswith("flan/constants.json"))
  assert "sha256 mismatch of the derived file" in derived_error and wrong in derived_error
  assert not (data / "flan/cot/aqua_train.tsv").exists()
  assert not (data / "flan/cot/aqua_train.tsv.part").exists()
  assert not (data / "flan/constants.json").exists()
  assert (data / "flan/templates.json").exists()  # the good file of the group still lands


def test_http_404_is_reported_per_file(tmp_path, mirror, server):
  raw = json.loads(json.dumps(mirror[1]))
  raw["files"][1]["upstream"][0]["path"] = "flan/v2/cot_data/no_such_file.tsv"
  manifest = _manifest(tmp_path, raw)
  result = dl.download(tmp_path / "data", ["cot", "vocab"], server[0], manifest, log=_quiet)
  assert len(result.errors) == 1
  assert result.errors[0].startswith("flan/cot/aqua_train.tsv: HTTP 404")
  assert "no_such_file.tsv" in result.errors[0]
  assert result.counts.get("fetched") == 1


def test_offline_fails_within_seconds_with_a_clear_message(tmp_path, mirror, capsys):
  path = tmp_path / "manifest.json"
  path.write_text(json.dumps(mirror[1]))
  parser = argparse.ArgumentParser()
  dl.register_cli(parser.add_subparsers())
  args = parser.parse_args(["download", "--data_dir", str(tmp_path / "data"), "--manifest",
                            str(path), "--base_url", _closed_port_url()])
  start = time.monotonic()
  assert args.func(args) == 1
  assert time.monotonic() - start < 5
  err = capsys.readouterr().err
  assert "offline? cannot connect to 127.0.0.1" in err and "--base_url" in err
  with pytest.raises(dl.DownloadError, match="must be an http"):
    dl.probe("ftp://example.com")


def test_base_url_from_environment(tmp_path, mirror, server, monkeypatch):
  monkeypatch.setenv(dl.BASE_URL_ENV, server[0])
  manifest = _manifest(tmp_path, mirror[1])
  result = dl.download(tmp_path / "data", ["cot"], manifest=manifest, log=_quiet)
  assert result.errors == [] and result.counts["fetched"] == 1


def _copy_subset(flan_data_dir, dest, relpaths):
  for rel in relpaths:
    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(flan_data_dir / rel, dest / rel)


def test_verify_good_and_broken_copies(tmp_path, flan_data_dir, capsys):
  manifest = manifest_lib.load_manifest()
  rels = ["eval/gsm8k/test.jsonl", "eval/bbh/boolean_expressions.json",
          "eval/bbh/cot-prompts/boolean_expressions.txt", "flan/constants.json"]
  good = tmp_path / "good"
  _copy_subset(flan_data_dir, good, rels)
  parser = argparse.ArgumentParser()
  parser.add_argument("--data_dir")  # as `flan-jax data --data_dir D verify` gives it
  dl.register_cli(parser.add_subparsers())
  args = parser.parse_args(["--data_dir", str(good), "verify", "--only", "gsm8k"])
  assert args.func(args) == 0
  assert "all files present and matching the manifest" in capsys.readouterr().out
  broken = tmp_path / "broken"
  _copy_subset(flan_data_dir, broken, rels)
  (broken / "eval/gsm8k/test.jsonl").unlink()
  (broken / "eval/bbh/boolean_expressions.json").write_bytes(b"{}")
  prompt = broken / "eval/bbh/cot-prompts/boolean_expressions.txt"
  text = bytearray(prompt.read_bytes())
  text[0] ^= 1  # same size, different bytes
  prompt.write_bytes(bytes(text))
  checks = {c.entry.path: c for c in manifest_lib.verify(broken, manifest, ["gsm8k", "bbh", "flan"])}
  assert checks["eval/gsm8k/test.jsonl"].status == "missing"
  assert checks["eval/bbh/boolean_expressions.json"].status == "size"
  assert checks["eval/bbh/cot-prompts/boolean_expressions.txt"].status == "sha256"
  assert checks["flan/constants.json"].status == "ok"
  args = parser.parse_args(["verify", "--data_dir", str(broken), "--only", "gsm8k", "bbh"])
  assert args.func(args) == 1
  out = capsys.readouterr().out
  assert "MISSING  eval/gsm8k/test.jsonl" in out
  assert "SIZE     eval/bbh/boolean_expressions.json  expected 17172 bytes, found 2" in out
  actual = manifest_lib.sha256_file(prompt)
  assert "SHA256   eval/bbh/cot-prompts/boolean_expressions.txt  expected sha256 " in out
  assert actual in out
  assert "flan-jax data download --only bbh gsm8k" in out


def test_verify_the_shared_data_dir(flan_data_dir, capsys):
  parser = argparse.ArgumentParser()
  dl.register_cli(parser.add_subparsers())
  args = parser.parse_args(["verify", "--data_dir", str(flan_data_dir)])
  assert args.func(args) == 1
  out = capsys.readouterr().out
  rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:15] if line.strip()}
  # group: files, ok, unpinned, missing, size, sha256
  assert rows["promptsource"] == ["279", "279", "0", "0", "0", "0"]
  assert rows["mmlu"] == ["115", "115", "0", "0", "0", "0"]
  assert rows["cot"] == ["9", "7", "0", "2", "0", "0"]
  assert rows["niv2"] == ["1616", "11", "0", "1605", "0", "0"]
  assert rows["total"] == ["2102", "495", "0", "1607", "0", "0"]
  assert "MISSING  flan/cot/esnli_train.tsv" in out and "MISSING  flan/cot/qed_train.tsv" in out
  assert "MISSING  niv2: 1605 files" in out
  assert len(out.splitlines()) < 40
  args = parser.parse_args(["verify", "--data_dir", str(flan_data_dir), "--only", "niv2",
                            "--verbose"])
  assert args.func(args) == 1
  assert capsys.readouterr().out.count("\nMISSING  niv2/tasks/") == 1605


def test_packaged_manifest_pins_every_shared_file(flan_data_dir):
  shared = json.loads((flan_data_dir / "MANIFEST.json").read_text())
  manifest = manifest_lib.load_manifest()
  entries = {e.path: e for e in manifest.entries}
  for f in shared["files"]:
    if f["upstream_repo"] is None:  # the data card is written locally
      continue
    e = entries[f["path"]]
    assert (e.sha256, e.size) == (f["sha256"], f["bytes"]), f["path"]
    paths = f["upstream_path"] if isinstance(f["upstream_path"], list) else [f["upstream_path"]]
    assert [(u.repo, u.commit, u.path) for u in e.upstream] == [
        (f["upstream_repo"], f["commit"], p) for p in paths]
    assert (e.derive is None) == (f["transform"] == "none"), f["path"]
  tasks = set()
  for split in ("train", "test", "excluded"):
    tasks |= set((flan_data_dir / f"niv2/splits/default/{split}_tasks.txt").read_text().split())
  niv2_files = {e.path for e in manifest.entries if e.path.startswith("niv2/tasks/")}
  assert niv2_files == {f"niv2/tasks/{t}.json" for t in tasks} and len(niv2_files) == 1613
  unpinned = {e.path for e in manifest.entries if e.sha256 is None}
  assert {"flan/cot/esnli_train.tsv", "flan/cot/qed_train.tsv"} <= unpinned
  assert len(unpinned) == 2 + 1613 - 8
  assert all(e.derive in upstream_ast.DERIVATIONS for e in manifest.entries if e.derive)
  assert entries["flan/templates.json"].upstream[0].url("https://raw.githubusercontent.com") == (
      "https://raw.githubusercontent.com/google-research/FLAN/"
      "e9e4ec6e2701182c7a91af176f705310da541277/flan/v2/templates.py")


def test_malformed_manifest_is_refused(tmp_path):
  bad = tmp_path / "manifest.json"
  bad.write_text('{"groups": {}, "files": [\n  {"path": "x",}\n]}')
  with pytest.raises(manifest_lib.ManifestError, match=r"manifest.json:2: invalid JSON"):
    manifest_lib.load_manifest(bad)
  bad.write_text(json.dumps({"groups": {"a": "a"}, "files": [
      {"path": "x", "group": "b", "sha256": None, "bytes": None, "upstream": []}]}))
  with pytest.raises(manifest_lib.ManifestError, match=r"files\[0\] \(x\): group 'b'"):
    manifest_lib.load_manifest(bad)


def test_malformed_unpinned_download_is_discarded(tmp_path, mirror, server):
  raw = json.loads(json.dumps(mirror[1]))
  raw["file_sets"][0]["names"].append("task002_broken")
  (mirror[0] / NIV2[0] / NIV2[1] / "tasks" / "task002_broken.json").write_bytes(b'{"Definition": [')
  manifest = _manifest(tmp_path, raw)
  data = tmp_path / "data"
  result = dl.download(data, ["niv2"], server[0], manifest, log=_quiet)
  assert len(result.errors) == 1
  assert result.errors[0].startswith("niv2/tasks/task002_broken.json: malformed download from ")
  assert not list((data / "niv2" / "tasks").glob("task002_broken.json*"))
  assert (data / "niv2" / "tasks" / "task001_copy.json").read_bytes() == TASK
