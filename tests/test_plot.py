"""`flan-jax plot`: a PNG of loss per target token (and suite scores) from runs' metrics.jsonl."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flan_jax import plot


def _run_dir(path, losses, suites=None):
  path.mkdir()
  rows = [{"step": i + 1, "train/loss": loss, "train/loss_sum": loss * 100} for i, loss in enumerate(losses)]
  for step, score in (suites or {}).items():
    rows.append({"step": step, "eval/bbh_direct": score})
  (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
  return path


def test_plot_two_runs_with_suite_scores(tmp_path):
  a = _run_dir(tmp_path / "a", [9.0, 7.5, 6.0], {2: 10.0, 3: 12.5})
  b = _run_dir(tmp_path / "b", [9.1, 8.0])
  rows = plot.read_metrics(a)
  assert plot.series(rows, plot.TRAIN_LOSS) == ([1, 2, 3], [9.0, 7.5, 6.0])
  assert plot.suite_keys(rows) == ["eval/bbh_direct"]
  out = plot.plot([a, b], tmp_path / "both.png")
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_cli_writes_next_to_the_run_and_names_bad_input(tmp_path):
  run = _run_dir(tmp_path / "run", [5.0, 4.0])
  result = subprocess.run([sys.executable, "-m", "flan_jax.cli", "plot", str(run)], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0 and (run / "loss.png").exists(), result.stderr
  (run / "metrics.jsonl").write_text('{"step": 1, "train/loss": 3.0}\n{oops\n')
  with pytest.raises(ValueError, match=r"metrics.jsonl:2: not JSON"):
    plot.read_metrics(run)
  assert plot.main([str(tmp_path / "nowhere")]) == 1
