"""MetricsWriter: TensorBoard reads back the scalars of each step from records with valid CRCs, writing imports no
TensorFlow, a resumed run drops the metrics.jsonl rows past its checkpoint, and only process 0 writes."""
from __future__ import annotations

import json
import pathlib
import struct
import subprocess
import sys
import textwrap

import numpy as np

from flan_jax import metrics_writer

REPO = pathlib.Path(__file__).resolve().parent.parent
SCALARS = {
    1: {"train/loss": 3.25, "train/learning_rate": 0.1},
    2: {"train/loss": 2.5, "train/learning_rate": 0.05},
    7: {"train/loss": 1.125, "train/learning_rate": 0.0125, "eval/bbh_direct": 31.7},
}

# TensorBoard's own reader, on tensorboard's TF stub (what it runs on where TensorFlow is not installed): here, where
# TF is installed, it would import TF, and the stub choice cannot be undone in this process.
READER = textwrap.dedent("""
    import json, sys, types
    sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util
    acc = event_accumulator.EventAccumulator(sys.argv[1], size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    tags = {tag: {"plugin": acc.SummaryMetadata(tag).plugin_data.plugin_name,
                  "events": [[e.step, tensor_util.make_ndarray(e.tensor_proto).item()] for e in acc.Tensors(tag)]}
            for tag in acc.Tags()["tensors"]}
    print(json.dumps({"tags": tags, "tensorflow": "tensorflow" in sys.modules}))
""")


def _write(model_dir: pathlib.Path, steps: dict[int, dict[str, float]], resume_step: int = 0) -> None:
  writer = metrics_writer.MetricsWriter(str(model_dir), resume_step=resume_step)
  for step, scalars in steps.items():
    writer.write(step, scalars)
  writer.flush()
  writer.close()


def _event_files(model_dir: pathlib.Path) -> list[pathlib.Path]:
  return sorted((model_dir / metrics_writer.TENSORBOARD_DIR).glob("events.out.tfevents.*"))


def _crc32c(data: bytes) -> int:
  """Bitwise CRC-32C (Castagnoli), independent of the table the writer uses."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
  return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
  crc = _crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _records(path: pathlib.Path) -> list[bytes]:
  """The TFRecord payloads of `path`, each frame's length and data checked against their masked CRC32C."""
  data, pos, out = path.read_bytes(), 0, []
  while pos < len(data):
    header = data[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == _masked_crc(header), f"{path}@{pos}: length CRC"
    body = data[pos + 12:pos + 12 + length]
    assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == _masked_crc(body), f"{path}@{pos}"
    out.append(body)
    pos += 16 + length
  assert pos == len(data)
  return out


def test_tensorboard_reads_back_names_steps_and_values(tmp_path):
  _write(tmp_path, SCALARS)
  out = subprocess.run([sys.executable, "-c", READER, str(tmp_path / metrics_writer.TENSORBOARD_DIR)],
                       capture_output=True, text=True, check=True)
  read = json.loads(out.stdout)
  assert not read["tensorflow"]
  names = {name for scalars in SCALARS.values() for name in scalars}
  assert sorted(read["tags"]) == sorted(names)
  for name in names:
    assert read["tags"][name]["plugin"] == "scalars"
    expected = [[step, float(np.float32(scalars[name]))] for step, scalars in SCALARS.items() if name in scalars]
    assert read["tags"][name]["events"] == expected
  rows = [json.loads(line) for line in (tmp_path / metrics_writer.METRICS_FILE).read_text().splitlines()]
  assert [{k: v for k, v in row.items() if k != "time"} for row in rows] == [
      {"step": step, **scalars} for step, scalars in SCALARS.items()]


def test_event_records_have_valid_crcs(tmp_path):
  from tensorboard.compat.proto import event_pb2  # pylint: disable=import-outside-toplevel
  assert _crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
  _write(tmp_path, SCALARS)
  (path,) = _event_files(tmp_path)
  events = [event_pb2.Event.FromString(record) for record in _records(path)]
  assert events[0].file_version == "brain.Event:2"
  assert [e.step for e in events[1:]] == list(SCALARS)
  assert [{v.tag for v in e.summary.value} for e in events[1:]] == [set(s) for s in SCALARS.values()]


def test_writing_imports_no_tensorflow(tmp_path):
  code = ("import sys\n"
          "from flan_jax import metrics_writer\n"
          "writer = metrics_writer.MetricsWriter(sys.argv[1])\n"
          "writer.write(1, {'train/loss': 1.0})\n"
          "writer.close()\n"
          "print(sorted(m for m in ('tensorflow', 'clu') if m in sys.modules))\n")
  out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip() == "[]"
  assert len(_event_files(tmp_path)) == 1


def test_resume_drops_rows_past_the_checkpoint_and_starts_a_new_event_file(tmp_path, capsys):
  _write(tmp_path, {step: {"train/loss": float(step)} for step in range(1, 6)})
  with open(tmp_path / metrics_writer.METRICS_FILE, "a") as f:
    f.write('{"step": 6, "train/lo')  # a killed write
  _write(tmp_path, {4: {"train/loss": 40.0}}, resume_step=3)
  assert "metrics.jsonl:6: unreadable metrics line" in capsys.readouterr().err
  rows = [json.loads(line) for line in (tmp_path / metrics_writer.METRICS_FILE).read_text().splitlines()]
  assert [(row["step"], row["train/loss"]) for row in rows] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
  assert len(_event_files(tmp_path)) == 2


def test_only_process_zero_writes(tmp_path, monkeypatch):
  monkeypatch.setattr(metrics_writer.jax, "process_index", lambda: 1)
  _write(tmp_path, SCALARS)
  assert not list(tmp_path.iterdir())
