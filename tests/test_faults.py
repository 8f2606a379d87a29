"""Fault injection on `flan-jax train` (the tiny fixture model, 8 steps, a checkpoint every step): kills at any moment,
SIGTERM, damaged checkpoint files, two trainers on one MODEL_DIR, a full disk, and bad configurations. Each
asserts that nothing is trained on damaged data and that the resumed run's metrics equal, bit for bit, those of
one uninterrupted run (the `reference`, which a second trainer tried and failed to join)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import gin
import pytest

from flan_jax import eval as eval_lib, infer, train
from flan_jax.checkpoints import convert, integrity, loader, lock, manager
from flan_jax.data.files import data_dir

REPO = pathlib.Path(__file__).resolve().parent.parent
GIN = "tests/fixtures/tiny_t5_test.gin"
STEPS, KEEP = 8, 5
COMPARED = tuple(f"train/{k}" for k in ("loss", "loss_sum", "accuracy", "grad_norm", "z_loss", "nonpadding_tokens",
                                         "learning_rate"))


def _flags(model_dir: pathlib.Path, *extra: str) -> list[str]:
  return [f"--gin_file={GIN}", f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={STEPS}",
          "--gin.CHECKPOINT_PERIOD=1", f"--gin.KEEP_CHECKPOINTS={KEEP}", *extra]


def _env() -> dict[str, str]:
  # One device, as in the reference: bit-equal results need the same mesh.
  return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", PYTHONPATH=str(REPO),
              TF_CPP_MIN_LOG_LEVEL="3")


def _start(model_dir: pathlib.Path, *extra: str) -> subprocess.Popen:
  """The trainer in its own process group, its output in files beside MODEL_DIR (`_output` reads them)."""
  with open(f"{model_dir}.out", "a") as out, open(f"{model_dir}.err", "w") as err:
    return subprocess.Popen([sys.executable, "-m", "flan_jax.train", *_flags(model_dir, *extra)], cwd=REPO,
                            env=_env(), stdout=out, stderr=err, start_new_session=True)


def _output(model_dir: pathlib.Path) -> tuple[str, str]:
  return pathlib.Path(f"{model_dir}.out").read_text(), pathlib.Path(f"{model_dir}.err").read_text()


def _finish(proc: subprocess.Popen, model_dir: pathlib.Path, want: int = 0) -> str:
  rc = proc.wait(timeout=300)
  out, err = _output(model_dir)
  assert rc == want, err[-3000:]
  return err


def _kill(proc: subprocess.Popen) -> None:
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait(timeout=60)


def _wait_for(condition, proc: subprocess.Popen, what: str, poll: float = 0.05) -> None:
  deadline = time.time() + 300
  while not condition():
    if proc.poll() is not None:
      pytest.fail(f"the trainer ended (rc {proc.returncode}) before {what}")
    if time.time() > deadline:
      pytest.fail(f"timed out waiting for {what}")
    time.sleep(poll)


def _losses(model_dir: pathlib.Path) -> dict[int, dict]:
  records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  steps = [r["step"] for r in records if "train/loss" in r]
  assert len(steps) == len(set(steps)), f"a step logged twice: {steps}"
  return {r["step"]: r for r in records if "train/loss" in r}


def _assert_same_run(reference: pathlib.Path, model_dir: pathlib.Path) -> None:
  want, got = _losses(reference), _losses(model_dir)
  assert sorted(got) == list(range(1, STEPS + 1))
  for step in got:
    assert {k: got[step][k] for k in COMPARED} == {k: want[step][k] for k in COMPARED}, step


def _assert_intact(model_dir: pathlib.Path) -> list[int]:
  """Every committed step passes its check; returns them."""
  steps = manager.committed_steps(model_dir)
  for step in steps:
    assert integrity.check_step(model_dir / str(step), step).status == integrity.VERIFIED, step
  return steps


def _in_process(main, argv: list[str]) -> tuple[int, str]:
  gin.clear_config()
  err = io.StringIO()
  try:
    with contextlib.redirect_stderr(err):
      code = main(argv)
  finally:
    gin.clear_config()
  return code, err.getvalue()


def _one_error_line(err: str, prog: str) -> str:
  assert "Traceback" not in err, err
  prefix = "flan-jax train: error: " if prog == "train" else f"flan-jax {prog}: "
  lines = [line for line in err.splitlines() if line.startswith(prefix)]
  assert len(lines) == 1, err
  return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
  """One uninterrupted run, which a second trainer tries to join while the first is paused mid-run."""
  model_dir = tmp_path_factory.mktemp("reference") / "run"
  first = _start(model_dir)
  _wait_for(lambda: (model_dir / lock.LOCK_FILE).exists(), first, "the lock was taken")
  os.killpg(first.pid, signal.SIGSTOP)  # paused, so it is surely still training while the second one tries
  try:
    code, err = _in_process(train.main, _flags(model_dir))
  finally:
    os.killpg(first.pid, signal.SIGCONT)
  _finish(first, model_dir)
  return {"dir": model_dir, "pid": first.pid, "second": (code, err)}


def test_a_second_trainer_is_refused_and_the_first_is_undisturbed(reference):
  code, err = reference["second"]
  line = _one_error_line(err, "train")
  assert code == 1 and "is being trained by host" in line and f"pid {reference['pid']} " in line
  model_dir = reference["dir"]
  assert sorted(_losses(model_dir)) == list(range(1, STEPS + 1))  # one line per step
  assert _assert_intact(model_dir) == list(range(STEPS - KEEP + 1, STEPS + 1))  # KEEP_CHECKPOINTS kept
  assert not (model_dir / lock.LOCK_FILE).exists()  # released at the end


def test_kill_9_anywhere_and_sigterm_then_resume_bit_exact(reference, tmp_path):
  model_dir = tmp_path / "run"
  # 1. SIGKILL to the process group at a random moment: start-up, compile or the first steps.
  proc = _start(model_dir)
  time.sleep(random.Random(13).uniform(1.0, 8.0))
  assert proc.poll() is None, "the run ended before the random kill"
  _kill(proc)
  _assert_intact(model_dir)
  # 2. SIGKILL while a save is being written or hashed (its temporary dir is there).
  started = manager.committed_steps(model_dir)
  proc = _start(model_dir)
  _wait_for(lambda: manager.committed_steps(model_dir) != started
            and any(".orbax-checkpoint-tmp" in name for name in os.listdir(model_dir)), proc, "a save", poll=0.002)
  _kill(proc)
  killed_at = _assert_intact(model_dir)
  assert killed_at and killed_at[-1] < STEPS
  # 3. SIGTERM: the current step is saved, the trainer exits 0.
  proc = _start(model_dir)
  _wait_for(lambda: manager.committed_steps(model_dir)[-1:] > killed_at[-1:], proc, "a new step")
  proc.send_signal(signal.SIGTERM)
  err = _finish(proc, model_dir)
  assert "SIGTERM received; saved step" in err
  assert "taking over the lock of host" in err and "no longer runs on this host" in err  # the killed one's lease
  _assert_intact(model_dir)
  # 4. To the end: every step's metrics as in the uninterrupted run, whatever was redone.
  proc = _start(model_dir)
  _finish(proc, model_dir)
  assert _output(model_dir)[0].count("resumed from") >= 2
  _assert_same_run(reference["dir"], model_dir)
  _assert_intact(model_dir)


def _data_file(step_dir: pathlib.Path, index: int) -> str:
  names = [n for n in integrity.data_files(step_dir) if n.startswith("params/") and "/d/" in n]
  return sorted(names, key=lambda n: -(step_dir / n).stat().st_size)[index]


def test_damaged_steps_are_set_aside_and_never_trained_on(reference, tmp_path):
  model_dir = tmp_path / "run"
  shutil.copytree(reference["dir"], model_dir)
  damaged = {}
  damaged[8] = _data_file(model_dir / "8", 0)
  with open(model_dir / "8" / damaged[8], "r+b") as f:  # 16 KiB of garbage (or the whole file), size unchanged
    size = f.seek(0, 2)
    f.seek(0)
    f.write(os.urandom(min(size, 16384)))
  damaged[7] = _data_file(model_dir / "7", 0)
  os.truncate(model_dir / "7" / damaged[7], (model_dir / "7" / damaged[7]).stat().st_size // 2)
  damaged[6] = _data_file(model_dir / "6", 1)
  (model_dir / "6" / damaged[6]).unlink()
  damaged[5] = "dataset/metadata"
  (model_dir / "5" / damaged[5]).write_text('{"process_0": {"batches_consumed": 5,,}}')
  proc = _start(model_dir)
  err = _finish(proc, model_dir)
  for step, name in damaged.items():
    assert f"step {step} is damaged: {name}: " in err, step
  assert "resumed from" in _output(model_dir)[0] and "step 4, the newest intact step: skipped damaged step(s) " \
      "[8, 7, 6, 5]" in _output(model_dir)[0]
  records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  assert {"step": 4, "checkpoint/damaged_steps_skipped": 4.0, "checkpoint/newest_damaged_step": 8.0} in [
      {k: v for k, v in r.items() if k != "time"} for r in records]
  assert sorted(p.name.split("-")[0] for p in (model_dir / loader.DAMAGED_DIR).iterdir()) == ["5", "6", "7", "8"]
  _assert_same_run(reference["dir"], model_dir)  # steps 5..8 retrained from step 4, as first trained
  assert _assert_intact(model_dir) == list(range(STEPS - KEEP + 1, STEPS + 1))


def test_no_intact_step_stops_with_one_line_and_moves_nothing(reference, tmp_path):
  model_dir = tmp_path / "run"
  shutil.copytree(reference["dir"], model_dir)
  for step in manager.committed_steps(model_dir):
    (model_dir / str(step) / "params" / "_METADATA").unlink()
  code, err = _in_process(train.main, _flags(model_dir))
  line = _one_error_line(err, "train")
  assert code == 1 and "no intact step (step 8 is damaged: params/_METADATA: missing;" in line
  assert "nothing was restored" in line
  assert manager.committed_steps(model_dir) == list(range(STEPS - KEEP + 1, STEPS + 1))
  assert not (model_dir / lock.LOCK_FILE).exists()


@pytest.fixture
def small_disk(tmp_path):
  mount = tmp_path / "disk"
  mount.mkdir()
  done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                        text=True)
  if done.returncode:
    pytest.skip(f"mounting a small tmpfs is not permitted here ({done.stderr.strip()}); needs root")
  yield mount
  subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_cleanly_and_resumes_bit_exact_once_freed(reference, small_disk):
  model_dir = small_disk / "run"
  proc = _start(model_dir)
  _wait_for(lambda: len(manager.committed_steps(model_dir)) >= 2, proc, "two saves")
  filler = small_disk / "filler"
  with contextlib.suppress(OSError), open(filler, "wb") as f:
    while True:
      f.write(b"\0" * 65536)
      f.flush()
  err = _finish(proc, model_dir, want=1)
  line = _one_error_line(err, "train")
  assert "No space left on device" in line or "RESOURCE_EXHAUSTED" in line
  assert "disk is full: its committed steps are intact; free space, then run the same command" in err
  _assert_intact(model_dir)
  filler.unlink()
  proc = _start(model_dir)
  _finish(proc, model_dir)
  _assert_same_run(reference["dir"], model_dir)


@pytest.mark.parametrize("flag, expected", [
    ("--gin.TRAIN_STEPZ=10", "no binding reads the macro TRAIN_STEPZ, so setting it changes nothing; did you "
                             "mean TRAIN_STEPS?"),
    ("--gin.MIXTURE_OR_TASK_NAME='flan_jax_test_cpy'", "MIXTURE_OR_TASK_NAME='flan_jax_test_cpy' is not a "
                                                       "registered task or mixture; did you mean 'flan_jax_test_copy'"),
])
def test_misspelled_settings_fail_before_anything_is_built(tmp_path, flag, expected):
  code, err = _in_process(train.main, _flags(tmp_path / "never", flag))
  assert code == 1 and expected in _one_error_line(err, "train")
  assert not (tmp_path / "never").exists()


def test_a_missing_data_dir_is_named(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "flan_jax.train", *_flags(
      tmp_path / "never", "--gin.MIXTURE_OR_TASK_MODULE='tasks'", "--gin.MIXTURE_OR_TASK_NAME='cot_zsopt'"),
      f"--data_dir={tmp_path / 'no_data'}"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  line = _one_error_line(proc.stderr, "train")
  assert proc.returncode == 1 and f"the data dir {tmp_path / 'no_data'} does not exist" in line


def test_a_missing_vocabulary_fails_before_compile(tmp_path, flan_data_dir):
  partial = tmp_path / "data"
  partial.mkdir()
  for entry in flan_data_dir.iterdir():
    if entry.name != "vocab":
      (partial / entry.name).symlink_to(entry)
  import tasks  # noqa: F401  (imported here, where the data dir is whole: it reads its templates at import)
  try:
    code, err = _in_process(train.main, _flags(tmp_path / "never", "--gin.MIXTURE_OR_TASK_MODULE='tasks'",
                                               "--gin.MIXTURE_OR_TASK_NAME='cot_zsopt'", f"--data_dir={partial}"))
  finally:
    data_dir.set_data_dir(None)
  line = _one_error_line(err, "train")
  assert code == 1 and "vocab/cc_all.32000.sentencepiece.model is not in the data dir" in line
  assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("entry", ["eval", "infer", "convert"])
def test_a_checkpoint_flag_at_a_step_dir_or_other_dir_says_pass_the_run_dir(reference, tmp_path, entry):
  run = reference["dir"]
  for where in (run / str(STEPS), tmp_path):
    argv = {"eval": ["--checkpoint", str(where), "--suite", "bbh_direct"],
            "infer": ["--checkpoint", str(where), "--input", "hello"],
            "convert": ["--from", "ours", str(where), "--to", str(tmp_path / "out")]}[entry]
    main = {"eval": eval_lib.main, "infer": infer.main, "convert": convert.main}[entry]
    code, err = _in_process(main, argv)
    assert code == 1 and "pass the run dir (the one holding model.json and the step dirs)" in _one_error_line(
        err, entry)
