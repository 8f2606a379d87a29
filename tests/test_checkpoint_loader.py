"""The one checkpoint loader: verified restores, fallback past damaged steps, clear errors for wrong paths."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flan_jax.checkpoints import integrity, loader, manager


def _params(step: int) -> dict:
  return {"w": jnp.arange(4096.0) + step, "b": jnp.full((3,), float(step))}


def _opt_state() -> dict:
  return {"v": jnp.zeros(5)}


def _save(directory, steps=(1, 2, 3), **kwargs) -> None:
  with manager.Checkpointer(directory, **kwargs) as ckpt:
    for step in steps:
      ckpt.save(step, params=_params(step), opt_state=_opt_state(), dataset_state={"batches_consumed": step})
    ckpt.wait_until_finished()


def _restore(directory, **kwargs) -> loader.Restored:
  warnings = kwargs.pop("warnings", [])
  return loader.restore(directory, abstract_params=manager.abstract_like(_params(0)),
                        abstract_opt_state=manager.abstract_like(_opt_state()), with_dataset=True,
                        warn=warnings.append, **kwargs)


def _garble(step_dir) -> str:
  name = next(f for f in integrity.data_files(step_dir) if f.startswith("params/") and "/d/" in f)
  with open(step_dir / name, "r+b") as f:
    f.seek(8)
    f.write(b"\xff" * 16)
  return name


@pytest.fixture
def run(tmp_path):
  _save(tmp_path / "run")
  return tmp_path / "run"


def test_restores_the_newest_step_verified(run):
  restored = _restore(run)
  assert (restored.step, restored.verified, restored.damaged) == (3, True, ())
  np.testing.assert_array_equal(restored.params["w"], _params(3)["w"])
  assert restored.dataset_state == {"batches_consumed": 3}


def test_falls_back_past_damaged_steps_naming_step_and_file(run):
  name = _garble(run / "3")
  (run / "2" / "dataset" / "metadata").write_text('{"batches_consumed": 2,,}')
  warnings = []
  restored = _restore(run, warnings=warnings)
  assert restored.step == 1 and [c.step for c in restored.damaged] == [3, 2]
  np.testing.assert_array_equal(restored.params["w"], _params(1)["w"])
  assert f"step 3 is damaged: {name}: contents differ" in warnings[0] and "falling back" in warnings[0]
  assert "step 2 is damaged: dataset/metadata" in warnings[1]


def test_an_asked_for_damaged_step_is_an_error(run):
  _garble(run / "3")
  with pytest.raises(loader.CheckpointError, match=r"step 3 is damaged: params/.*checkpoints verify"):
    _restore(run, step=3)
  assert _restore(run, step=2).step == 2
  with pytest.raises(loader.CheckpointError, match=r"has no step 7; its steps: \[1, 2, 3\]"):
    _restore(run, step=7)


def test_no_intact_step_is_an_error_naming_each(run):
  for step in (1, 2, 3):
    (run / str(step) / "params" / "_METADATA").unlink()
  with pytest.raises(loader.CheckpointError, match=r"no intact step \(step 3 is damaged: params/_METADATA: missing; "
                                                   r"step 2 .*; step 1 .*\); nothing was restored"):
    _restore(run)


def test_unverified_steps_are_restored_with_a_warning_and_skipped_when_unreadable(run):
  for step in (1, 2, 3):
    (run / str(step) / integrity.MANIFEST).unlink()
  os.truncate(run / "3" / "dataset" / "metadata", 5)
  warnings = []
  restored = _restore(run, warnings=warnings)
  assert (restored.step, restored.verified) == (2, False)
  assert "step 3 has no flan_jax_manifest.json" in warnings[0] and "restoring it unverified" in warnings[0]
  assert "step 3 is damaged: cannot be restored" in warnings[1]


def test_unverified_steps_with_non_finite_values_are_skipped(tmp_path):
  with manager.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, params=_params(1), opt_state=_opt_state())
    ckpt.save(2, params={"w": jnp.full((4096,), jnp.nan), "b": jnp.ones(3)}, opt_state=_opt_state())
  for step in (1, 2):
    (tmp_path / str(step) / integrity.MANIFEST).unlink()
  warnings = []
  restored = _restore(tmp_path, warnings=warnings)
  assert restored.step == 1 and "step 2 is damaged: non-finite values in params['w']" in warnings[1]


def test_a_verified_step_that_does_not_fit_the_model_is_an_error_not_damage(run):
  with pytest.raises(loader.CheckpointError, match="files match its manifest, yet it cannot be restored"):
    loader.restore(run, abstract_params=manager.abstract_like({"w": jnp.zeros(7), "b": jnp.zeros(3)}))
  assert manager.committed_steps(run) == [1, 2, 3]


def test_params_only_steps_restore_for_initialization_only(tmp_path):
  with manager.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(0, params=_params(0))
  restored = loader.restore(tmp_path, abstract_params=manager.abstract_like(_params(0)),
                            abstract_opt_state=manager.abstract_like(_opt_state()), opt_state_required=False)
  assert restored.opt_state is None
  with pytest.raises(loader.CheckpointError, match="no optimizer state.*not resume one"):
    _restore(tmp_path)


def test_wrong_paths_say_to_pass_the_run_dir(run, tmp_path):
  (run / "model.json").write_text("{}")
  for where in (run / "3", run / "3" / "params"):
    with pytest.raises(loader.CheckpointError, match=rf"inside step 3 of the run dir {run}.*pass the run dir \(the "
                                                     r"one holding model.json and the step dirs\)"):
      loader.run_dir(where)
  (tmp_path / "other").mkdir()
  with pytest.raises(loader.CheckpointError, match="not a checkpoint dir of ours.*pass the run dir"):
    loader.run_dir(tmp_path / "other")
  with pytest.raises(loader.CheckpointError, match="no such directory"):
    loader.run_dir(tmp_path / "absent")
  (tmp_path / "fresh").mkdir()
  (tmp_path / "fresh" / "model.json").write_text("{}")
  with pytest.raises(loader.CheckpointError, match="model.json but no committed step"):
    loader.run_dir(tmp_path / "fresh")
  assert loader.run_dir(run) == run
  assert all(loader.is_ours(p) for p in (run, run / "3", tmp_path / "fresh"))
  assert not loader.is_ours(tmp_path / "other")


def test_set_aside_moves_steps_out_of_orbaxs_sight(run):
  loader.set_aside(run, [3, 2])
  assert manager.committed_steps(run) == [1]
  assert sorted(p.name.split("-")[0] for p in (run / loader.DAMAGED_DIR).iterdir()) == ["2", "3"]
  _save(run, steps=(2,))  # the steps can be saved again
  assert _restore(run).step == 2


def test_load_model_reads_model_json_and_names_bad_json(tmp_path):
  from flan_jax.models import model as model_lib, spec, t5
  config = t5.T5Config(vocab_size=64, emb_dim=8, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                       head_dim=4, mlp_dim=16)
  model = model_lib.EncoderDecoderModel(config)
  variables = model.init_variables(jax.random.key(0), {k: (1, 4) for k in (
      "encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")})
  params = variables.get("params", variables)
  spec.save_spec(tmp_path, model)
  with manager.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(0, params=params)
  loaded, restored, step = loader.load_model(tmp_path)
  assert step == 0 and loaded.config == config
  np.testing.assert_array_equal(restored["token_embedder"]["embedding"], params["token_embedder"]["embedding"])
  (tmp_path / "model.json").write_text('{"kind": "encoder_decoder",\n "config": }')
  with pytest.raises(loader.CheckpointError, match=r"model.json:2: invalid JSON"):
    loader.load_model(tmp_path)


def test_json_of_the_run_dir_is_untouched(run):
  before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
  _restore(run)
  assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
  assert json.loads((run / "3" / integrity.MANIFEST).read_text())["step"] == 3
