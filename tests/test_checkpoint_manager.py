import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from flan_jax.checkpoints import manager


def _params():
  return {"dense": {"kernel": jnp.arange(32.0).reshape(8, 4)}, "scale": jnp.ones((4,))}


def test_save_restore_roundtrip_with_dataset_state(tmp_path):
  with manager.Checkpointer(tmp_path, async_save=False) as ckpt:
    params = _params()
    opt_state = {"count": jnp.array(3), "v": jax.tree.map(jnp.zeros_like, params)}
    ckpt.save(5, params=params, opt_state=opt_state, dataset_state={"batches": 5})
    ckpt.wait_until_finished()
    assert ckpt.latest_step() == 5
    restored = ckpt.restore(
        abstract_params=manager.abstract_like(params), abstract_opt_state=manager.abstract_like(opt_state))
  assert restored["step"] == 5 and restored["dataset_state"] == {"batches": 5}
  np.testing.assert_array_equal(restored["params"]["dense"]["kernel"], params["dense"]["kernel"])
  assert int(restored["opt_state"]["count"]) == 3


def test_params_only_checkpoint_refuses_optimizer_restore(tmp_path):
  with manager.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(0, params=_params())
    ckpt.wait_until_finished()
    abstract = manager.abstract_like(_params())
    assert ckpt.restore(abstract_params=abstract)["opt_state"] is None
    with pytest.raises(ValueError, match="no optimizer state"):
      ckpt.restore(abstract_params=abstract, abstract_opt_state=abstract)


def test_restore_onto_a_sharded_mesh(tmp_path):
  with manager.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, params=_params())
    ckpt.wait_until_finished()
    mesh = jax.make_mesh((4, 2), ("data", "model"))
    shardings = {"dense": {"kernel": NamedSharding(mesh, P("data", "model"))},
                 "scale": NamedSharding(mesh, P())}
    restored = ckpt.restore(abstract_params=manager.abstract_like(_params(), shardings))
  kernel = restored["params"]["dense"]["kernel"]
  assert kernel.sharding == shardings["dense"]["kernel"]
  np.testing.assert_array_equal(kernel, _params()["dense"]["kernel"])


def test_uncommitted_step_dirs_are_ignored(tmp_path):
  with manager.Checkpointer(tmp_path, async_save=False) as ckpt:
    ckpt.save(1, params=_params())
    ckpt.wait_until_finished()
  # What a kill mid-save leaves behind: Orbax's temporary step directory.
  os.makedirs(tmp_path / "2.orbax-checkpoint-tmp-1234" / "params")
  with manager.Checkpointer(tmp_path, async_save=False) as ckpt:
    assert ckpt.all_steps() == [1]
    assert ckpt.latest_step() == 1


def test_restore_from_empty_dir_names_it(tmp_path):
  with manager.Checkpointer(tmp_path / "empty") as ckpt:
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
      ckpt.restore(abstract_params=manager.abstract_like(_params()))


def test_is_checkpoint_dir_sees_only_committed_steps(tmp_path):
  assert not manager.Checkpointer.is_checkpoint_dir(tmp_path / "absent")
  (tmp_path / "5.orbax-checkpoint-tmp-123" / "params").mkdir(parents=True)  # a save killed mid-write
  assert not manager.Checkpointer.is_checkpoint_dir(tmp_path)
  with manager.Checkpointer(tmp_path, async_save=False) as ckpt:
    assert ckpt.latest_step() is None
    ckpt.save(2, params=_params())
    ckpt.wait_until_finished()
  assert manager.Checkpointer.is_checkpoint_dir(tmp_path)
  with manager.Checkpointer(tmp_path, async_save=False, create=False) as ckpt:
    assert ckpt.all_steps() == [2]


def test_relative_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with manager.Checkpointer("relative/ckpts", async_save=True) as ckpt:
    ckpt.save(1, params=_params())
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [1]
  assert (tmp_path / "relative" / "ckpts" / "1" / "params").is_dir()
