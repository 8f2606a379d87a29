"""`flan-jax convert`: T5X -> ours -> HF -> ours keeps every parameter bit for bit; mismatches are refused."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import transformers

import hf_tiny
from flan_jax import cli
from flan_jax.checkpoints import convert, flatten, t5x
from flan_jax.checkpoints.manager import Checkpointer
from flan_jax.models import spec


def _restore_ours(directory):
  model, params = convert.load_source("ours", str(directory))
  return model, {k: np.asarray(v) for k, v in flatten(params).items()}


@pytest.fixture(scope="session")
def from_t5x(t5x_tiny_fixture, tmp_path_factory):
  out = tmp_path_factory.mktemp("conv") / "ours"
  assert cli.main(["convert", "--from", "t5x", str(t5x_tiny_fixture / "ckpt_legacy"), "--to", str(out)]) == 0
  return out


def test_t5x_to_ours_writes_spec_and_step_0(from_t5x, t5x_tiny_fixture):
  model = spec.load_model(from_t5x)
  cfg = model.config
  assert (cfg.vocab_size, cfg.emb_dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim) == (4096, 64, 4, 16, 128)
  assert (cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.mlp_activations) == (2, 2, ("gelu", "linear"))
  assert not cfg.logits_via_embedding
  with Checkpointer(from_t5x, async_save=False) as ckpt:
    assert ckpt.all_steps() == [0]
    assert ckpt.item_names_at(0) == {"params"}
  _, params = _restore_ours(from_t5x)
  source = t5x.T5XCheckpoint(t5x_tiny_fixture / "ckpt_orbax")
  assert set(params) == set(source.param_shapes())
  for name, value in params.items():
    np.testing.assert_array_equal(value, source.arrays["target/" + name].read(), err_msg=name)


def test_ours_to_hf_and_back(from_t5x, tmp_path, capsys):
  hf_dir, back = tmp_path / "hf", tmp_path / "back"
  assert convert.main(["--from", "ours", str(from_t5x), "--to", "hf", str(hf_dir)]) == 0
  assert "52 arrays" in capsys.readouterr().out
  model = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir)
  _, params = _restore_ours(from_t5x)
  state = hf_tiny.state_dict_numpy(model)
  np.testing.assert_array_equal(state["lm_head.weight"], params["decoder/logits_dense/kernel"].T)
  np.testing.assert_array_equal(state["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
                                params["decoder/relpos_bias/rel_embedding"].T)
  np.testing.assert_array_equal(state["encoder.block.1.layer.1.DenseReluDense.wo.weight"],
                                params["encoder/layers_1/mlp/wo/kernel"].T)
  assert convert.main(["--from", "hf", str(hf_dir), "--to", "ours", str(back)]) == 0
  _, again = _restore_ours(back)
  assert set(again) == set(params)
  for name in params:
    np.testing.assert_array_equal(again[name], params[name], err_msg=name)
  assert spec.load_model(back).config == spec.load_model(from_t5x).config


def test_llama_hf_to_ours_to_hf(tmp_path):
  src, ours, out = tmp_path / "src", tmp_path / "ours", tmp_path / "out"
  hf_tiny.hf_llama().save_pretrained(src)
  assert convert.main(["--from", "hf", str(src), "--to", str(ours)]) == 0
  assert json.loads((ours / "model.json").read_text())["kind"] == "decoder_only"
  assert convert.main(["--from", "ours", str(ours), "--to", "hf", str(out)]) == 0
  reloaded = hf_tiny.state_dict_numpy(transformers.LlamaForCausalLM.from_pretrained(out))
  original = hf_tiny.state_dict_numpy(hf_tiny.hf_llama())
  assert set(reloaded) == set(original)
  for name, value in original.items():
    np.testing.assert_array_equal(reloaded[name], value, err_msg=name)


def test_mismatched_model_json_is_refused_with_the_differences(from_t5x, t5x_tiny_fixture, tmp_path, capsys):
  model_json = json.loads((from_t5x / "model.json").read_text())
  model_json["config"]["vocab_size"] = 32128
  model_json["config"]["num_decoder_layers"] = 3
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps(model_json))
  rc = convert.main(["--from", "t5x", str(t5x_tiny_fixture / "ckpt_orbax"), "--to", str(tmp_path / "x"),
                     "--model_json", str(bad)])
  err = capsys.readouterr().err
  assert rc == 1
  assert "missing from the checkpoint" in err and "decoder/layers_2/mlp/wo/kernel" in err
  assert "shape mismatch token_embedder/embedding: model [32128, 64], checkpoint [4096, 64]" in err
  assert "shape mismatch decoder/logits_dense/kernel: model [64, 32128], checkpoint [64, 4096]" in err
  assert not (tmp_path / "x").exists()


def test_hf_dir_missing_a_tensor_is_refused(tmp_path, capsys):
  src = tmp_path / "src"
  hf_tiny.hf_llama().save_pretrained(src)
  from safetensors.numpy import load_file, save_file
  tensors = load_file(src / "model.safetensors")
  del tensors["model.layers.1.mlp.up_proj.weight"]
  tensors["model.layers.1.mlp.extra.weight"] = np.zeros((2, 2), np.float32)
  save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
  assert convert.main(["--from", "hf", str(src), "--to", str(tmp_path / "out")]) == 1
  err = capsys.readouterr().err
  assert "missing from the checkpoint (1): model.layers.1.mlp.up_proj.weight" in err
  assert "unexpected in the checkpoint (1): model.layers.1.mlp.extra.weight" in err


def test_usage_errors(from_t5x, tmp_path, capsys):
  assert convert.main(["--from", "ours", str(from_t5x), "--to", "tf", str(tmp_path / "o")]) == 2
  assert "FORMAT DIR" in capsys.readouterr().err
  assert convert.main(["--from", "ours", str(from_t5x), "--to", str(from_t5x)]) == 1
  assert "not empty" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_:
    cli.main(["convert", "--help"])
  assert exit_.value.code == 0
  assert "--to hf DIR" in capsys.readouterr().out


def test_converted_params_restore_onto_a_sharded_mesh(from_t5x):
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from flan_jax.checkpoints.manager import abstract_like
  from flan_jax.checkpoints import hf, unflatten
  model = spec.load_model(from_t5x)
  mesh = Mesh(np.array(jax.devices()[:2]), ("model",))
  shapes = hf.model_param_shapes(model.config)
  shardings = {n: NamedSharding(mesh, P(None, "model") if n.endswith("kernel") else P()) for n in shapes}
  with Checkpointer(from_t5x, async_save=False) as ckpt:
    restored = ckpt.restore(abstract_params=abstract_like(unflatten(shapes), unflatten(shardings)))
  query = restored["params"]["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  assert query.sharding == shardings["encoder/layers_0/attention/query/kernel"]
  assert restored["step"] == 0
