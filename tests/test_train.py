"""The train entry point: exact resume after kill -9 (onto a different mesh), outputs in MODEL_DIR, and bad
configurations failing before any compile with a message naming the binding."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import gin
import pytest

from flan_jax import train

REPO = pathlib.Path(__file__).resolve().parent.parent
GIN = "tests/fixtures/tiny_t5_test.gin"
COMPARED = tuple(f"train/{k}" for k in ("loss", "loss_sum", "accuracy", "grad_norm", "z_loss", "nonpadding_tokens",
                                         "learning_rate"))


def _cmd(model_dir: pathlib.Path, *extra: str) -> list[str]:
  return [sys.executable, "-m", "flan_jax.train", f"--gin_file={GIN}", f"--gin.MODEL_DIR='{model_dir}'",
          "--gin.TRAIN_STEPS=20", "--gin.CHECKPOINT_PERIOD=1", "--gin.KEEP_CHECKPOINTS=3", *extra]


def _env(devices: int) -> dict[str, str]:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONPATH=str(REPO))
  return env


def _metrics(model_dir: pathlib.Path) -> dict[int, dict]:
  out = {}
  for line in (model_dir / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    if "train/loss" in record:
      out[record["step"]] = record
  return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pathlib.Path:
  model_dir = tmp_path_factory.mktemp("uninterrupted")
  subprocess.run(_cmd(model_dir), cwd=REPO, env=_env(1), check=True, timeout=600, capture_output=True)
  return model_dir


def test_outputs_and_falling_loss(uninterrupted):
  metrics = _metrics(uninterrupted)
  assert sorted(metrics) == list(range(1, 21))
  first = sum(metrics[s]["train/loss"] for s in (1, 2, 3)) / 3
  last = sum(metrics[s]["train/loss"] for s in (18, 19, 20)) / 3
  assert last < first - 0.5
  for key in ("learning_rate", "grad_norm", "tokens_per_second", "seconds_per_step", "mfu", "z_loss", "accuracy",
              "loss_sum", "num_examples", "input_wait_seconds"):
    assert f"train/{key}" in metrics[5]
  # The time a step waited for its batch is part of that step's time.
  assert all(0 <= m["train/input_wait_seconds"] <= m["train/seconds_per_step"] for m in metrics.values())
  assert metrics[5]["train/loss"] == pytest.approx(metrics[5]["train/loss_sum"] / metrics[5]["train/nonpadding_tokens"])
  assert all(metrics[s]["time"] <= metrics[s + 1]["time"] for s in range(1, 20))  # wall clock per row
  config = (uninterrupted / "config.gin").read_text()
  assert "MODEL_DIR" in config and "TRAIN_STEPS = 20" in config
  assert list((uninterrupted / "tensorboard").glob("events.out.tfevents.*"))
  steps = sorted(int(p.name) for p in uninterrupted.iterdir() if p.name.isdigit())
  assert steps == [18, 19, 20]  # keep-3


def test_kill_and_resume_on_another_mesh_gives_the_same_metrics(uninterrupted, tmp_path):
  model_dir = tmp_path / "killed"
  proc = subprocess.Popen(_cmd(model_dir), cwd=REPO, env=_env(1), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  try:
    while time.time() < deadline:
      if (model_dir / "7" / "params").is_dir() and proc.poll() is None:
        break
      if proc.poll() is not None:
        pytest.fail("the run ended before it could be killed at step 7")
      time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
  finally:
    proc.wait(timeout=60)
  killed_at = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
  assert killed_at < 20
  # Resume on 8 simulated devices with a 4x2 mesh instead of 1 device.
  resumed = subprocess.run(_cmd(model_dir, "--gin.NUM_PARTITIONS=2"), cwd=REPO, env=_env(8), timeout=600,
                           capture_output=True, text=True)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from" in resumed.stdout
  want, got = _metrics(uninterrupted), _metrics(model_dir)
  assert sorted(got) == list(range(1, 21))
  for step in range(8, 21):
    for key in COMPARED:
      assert got[step][key] == pytest.approx(want[step][key], rel=1e-5, abs=1e-5), (step, key)


def _bad(*flags: str) -> tuple[int, str]:
  gin.clear_config()
  import io
  import contextlib
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    code = train.main([f"--gin_file={GIN}", "--gin.MODEL_DIR='/nonexistent/never_written'", *flags])
  gin.clear_config()
  return code, err.getvalue()


def test_unknown_gin_binding_is_named():
  code, err = _bad("--gin.train.no_such_setting=3")
  assert code == 1 and "train.no_such_setting" in err


def test_batch_not_divisible_by_data_axis_is_named():
  code, err = _bad("--gin.BATCH_SIZE=6")  # 8 simulated devices -> data axis 8
  assert code == 1 and "BATCH_SIZE=6 is not divisible by the data-parallel size 8" in err
  assert not os.path.exists("/nonexistent/never_written")


def test_missing_mixture_is_named():
  code, err = _bad("--gin.MIXTURE_OR_TASK_NAME='no_such_mixture'")
  assert code == 1 and "MIXTURE_OR_TASK_NAME='no_such_mixture' is not a registered" in err


def test_missing_data_fails_naming_it_unless_only_available():
  code, err = _bad("--gin.MIXTURE_OR_TASK_MODULE='tasks'", "--gin.MIXTURE_OR_TASK_NAME='cot_zsopt'")
  assert code == 1
  assert "MIXTURE_OR_TASK_NAME='cot_zsopt'" in err and "cot_esnli_template_0to10_zero_shot" in err
  assert "ONLY_AVAILABLE_DATA = True" in err


def test_tfds_data_dir_reaches_every_reader(tmp_path):
  from flan_jax.data.files import tfds_source  # pylint: disable=import-outside-toplevel
  try:
    code, _ = _bad(f"--tfds_data_dir={tmp_path}", "--gin.BATCH_SIZE=6")  # fails after the flags took effect
    assert code == 1
    assert tfds_source.tfds_data_dir() == tmp_path  # the TF-free reader, and so the input process's job
  finally:
    tfds_source.set_tfds_data_dir(None)


def test_bad_eval_suites_are_named():
  code, err = _bad("--gin.EVAL_SUITES_PERIOD=2", "--gin.EVAL_SUITES='mmlu_direct,no_such_suite'")
  assert code == 1 and "EVAL_SUITES='mmlu_direct,no_such_suite'" in err and "no_such_suite" in err
  code, err = _bad("--gin.EVAL_SUITES_PERIOD=2", "--gin.EVAL_SUITES='bbh_direct'")
  assert code == 1 and "TinyModel is not one" in err  # the suites decode with flan_jax models only


def test_trained_dir_feeds_infer_and_eval_and_suites_run_periodically(tmp_path):
  """A real (tiny) flan_jax T5 trained 4 steps, the BBH suite every 2: MODEL_DIR has model.json, the infer/eval
  loader rebuilds the model and restores the final params, and the suite scores are in metrics.jsonl."""
  from flan_jax import inference
  from flan_jax.models import model as model_lib
  model_dir = tmp_path / "real_t5"
  gin.clear_config()
  try:
    code = train.main([
        "--gin_file=tests/fixtures/tiny_real_t5_test.gin", f"--gin.MODEL_DIR='{model_dir}'",
        "--gin.TRAIN_STEPS=4", "--gin.CHECKPOINT_PERIOD=4", "--gin.EVAL_SUITES='bbh_direct'",
        "--gin.EVAL_SUITES_PERIOD=2", "--gin.EVAL_SUITES_LIMIT=1", "--gin.utils.SuiteEvalConfig.max_input_length=256",
        "--gin.utils.SuiteEvalConfig.max_decode_length=2"])
  finally:
    gin.clear_config()
  assert code == 0
  spec = json.loads((model_dir / "model.json").read_text())
  assert spec["kind"] == "encoder_decoder" and spec["config"]["emb_dim"] == 16
  model, params, step = inference.load_checkpoint(model_dir)
  assert step == 4 and isinstance(model, model_lib.EncoderDecoderModel) and model.config.vocab_size == 32128
  records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  suite_steps = [r["step"] for r in records if "eval/bbh_direct" in r]
  assert suite_steps == [2, 4]
  for s in (2, 4):
    results = json.loads((model_dir / "eval_suites" / f"step_{s}" / "results.json").read_text())
    assert results["suites"]["bbh_direct"]["count"] == 27
  # The loader restored the trained params, not a fresh init: they differ from step 0's.
  trained = {r["step"]: r for r in records if "train/loss" in r}
  assert sorted(trained) == [1, 2, 3, 4]
  import jax
  import numpy as np
  init = model.init_variables(jax.random.key(0), {k: (1, 8) for k in (
      "encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")})
  init = init.get("params", init)
  assert not np.allclose(np.asarray(params["decoder"]["logits_dense"]["kernel"]),
                         np.asarray(init["decoder"]["logits_dense"]["kernel"]))


def test_progress_summary_and_a_finished_rerun(uninterrupted, capsys):
  """Progress lines say step N/TOTAL with an ETA; the end says what was done; a finished run's rerun does nothing
  (and writes no second TensorBoard events file)."""
  events = sorted((uninterrupted / "tensorboard").glob("events.out.tfevents.*"))
  gin.clear_config()
  try:
    assert train.main([f"--gin_file={GIN}", f"--gin.MODEL_DIR='{uninterrupted}'", "--gin.TRAIN_STEPS=20"]) == 0
  finally:
    gin.clear_config()
  assert f"is already at step 20 (TRAIN_STEPS=20); nothing to do" in capsys.readouterr().out
  assert sorted((uninterrupted / "tensorboard").glob("events.out.tfevents.*")) == events


def test_progress_lines_and_summary(tmp_path):
  out = subprocess.run(_cmd(tmp_path / "run", "--gin.TRAIN_STEPS=4", "--gin.LOG_PERIOD=2"), cwd=REPO, env=_env(1),
                       check=True, timeout=600, capture_output=True, text=True).stdout
  lines = [line for line in out.splitlines() if line.startswith("step ")]
  assert [line.split(" | ")[0] for line in lines] == ["step 2/4", "step 4/4"]
  assert all(" | loss " in line and " | tok/s " in line and " | ETA " in line for line in lines)
  done = next(line for line in out.splitlines() if line.startswith("flan-jax train: done: step 4/4 (4 this run)"))
  assert "loss per target token" in done and "(best " in done and "examples seen" in done
  assert done.endswith(str(tmp_path / "run" / "4"))


def test_help_shows_gin_usage_and_the_macros(capsys):
  with pytest.raises(SystemExit) as e:
    train.main(["--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  assert "--gin.NAME=VALUE sets a macro" in out and "--gin_file=models/flan_t5_small.gin" in out
  assert "  TRAIN_STEPS = %gin.REQUIRED" in out and "  LEARNING_RATE = 1e-3  (Flan-T5: constant 1e-3" in out
