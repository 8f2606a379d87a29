"""HF checkpoint files and configs: every weights layout reads the same tensors; configs map both ways; mismatches
are refused with the list of differences. Numerical parity lives in test_parity_t5.py / test_parity_llama.py."""
from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
import torch

import hf_tiny
from flan_jax.checkpoints import TreeMismatchError, flatten, hf


@pytest.fixture(scope="session")
def t5_saved(tmp_path_factory):
  path = tmp_path_factory.mktemp("t5_saved")
  hf_tiny.hf_t5().save_pretrained(path)
  return path


def _same_tensors(a: dict, b: dict) -> None:
  assert set(a) == set(b)
  for name in a:
    assert a[name].dtype == b[name].dtype, name
    np.testing.assert_array_equal(np.asarray(a[name], np.float32), np.asarray(b[name], np.float32), err_msg=name)


def test_safetensors_reader_matches_the_library_and_reads_bfloat16(tmp_path):
  from safetensors.torch import save_file
  tensors = {"a": torch.randn(3, 4), "b": torch.randn(5).to(torch.bfloat16), "c": torch.arange(6).reshape(2, 3)}
  save_file(tensors, tmp_path / "x.safetensors")
  read = hf.read_safetensors(tmp_path / "x.safetensors")
  assert read["b"].dtype == np.dtype(ml_dtypes.bfloat16) and read["c"].dtype == np.int64
  np.testing.assert_array_equal(read["a"], tensors["a"].numpy())
  np.testing.assert_array_equal(read["b"].astype(np.float32), tensors["b"].float().numpy())
  np.testing.assert_array_equal(read["c"], tensors["c"].numpy())


def test_all_four_weight_layouts_read_the_same(t5_saved, tmp_path):
  reference = hf.read_state_dict(t5_saved)
  # Sharded safetensors with an index, written by our exporter.
  names = hf.write_state_dict(tmp_path / "sharded", reference, max_shard_bytes=20_000)
  assert hf.SAFETENSORS_INDEX in names and len(names) > 3
  _same_tensors(hf.read_state_dict(tmp_path / "sharded"), reference)
  # A single PyTorch .bin, and a sharded .bin with its index (bfloat16 tensors kept as bfloat16).
  torch_tensors = {k: torch.from_numpy(np.array(v)) for k, v in reference.items()}
  (tmp_path / "bin").mkdir()
  torch.save(torch_tensors, tmp_path / "bin" / hf.TORCH_BIN)
  _same_tensors(hf.read_state_dict(tmp_path / "bin"), reference)
  (tmp_path / "bins").mkdir()
  keys = sorted(torch_tensors)
  halves = {"pytorch_model-00001-of-00002.bin": keys[::2], "pytorch_model-00002-of-00002.bin": keys[1::2]}
  for file, part in halves.items():
    torch.save({k: torch_tensors[k].to(torch.bfloat16) for k in part}, tmp_path / "bins" / file)
  (tmp_path / "bins" / hf.TORCH_BIN_INDEX).write_text(json.dumps(
      {"weight_map": {k: f for f, part in halves.items() for k in part}}))
  read = hf.read_state_dict(tmp_path / "bins")
  assert all(v.dtype == np.dtype(ml_dtypes.bfloat16) for v in read.values())
  assert set(read) == set(reference)
  for k in keys:
    np.testing.assert_array_equal(read[k].astype(np.float32),
                                  torch_tensors[k].to(torch.bfloat16).float().numpy(), err_msg=k)


def test_index_naming_a_missing_tensor_is_an_error(t5_saved, tmp_path):
  hf.write_state_dict(tmp_path, hf.read_state_dict(t5_saved), max_shard_bytes=20_000)
  index = json.loads((tmp_path / hf.SAFETENSORS_INDEX).read_text())
  index["weight_map"]["ghost.weight"] = next(iter(index["weight_map"].values()))
  (tmp_path / hf.SAFETENSORS_INDEX).write_text(json.dumps(index))
  with pytest.raises(ValueError, match=r"model.safetensors.index.json: tensors listed but not in their shard files: "
                     r"ghost.weight"):
    hf.read_state_dict(tmp_path)


def test_bin_dir_imports_like_safetensors(t5_saved, tmp_path):
  tensors = hf.read_state_dict(t5_saved)
  torch.save({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, tmp_path / hf.TORCH_BIN)
  (tmp_path / hf.CONFIG).write_text((t5_saved / hf.CONFIG).read_text())
  config_a, params_a = hf.load_t5(t5_saved)
  config_b, params_b = hf.load_t5(tmp_path)
  assert config_a == config_b
  _same_tensors(flatten(params_a), flatten(params_b))


def test_t5_config_mapping_covers_both_transformers_generations():
  base = hf_tiny.hf_t5_config().to_dict()
  v5 = hf.t5_config_from_hf(base)  # transformers 5: tie_word_embeddings forced true, scale_decoder_outputs false
  assert base["tie_word_embeddings"] is True and base["scale_decoder_outputs"] is False
  assert not v5.logits_via_embedding
  v4 = {k: v for k, v in base.items() if k != "scale_decoder_outputs"} | {"tie_word_embeddings": False}
  assert hf.t5_config_from_hf(v4) == v5
  t5_10 = {k: v for k, v in v4.items()} | {"feed_forward_proj": "relu", "tie_word_embeddings": True}
  config = hf.t5_config_from_hf(t5_10)
  assert config.mlp_activations == ("relu",) and config.logits_via_embedding
  assert hf.t5_config_from_hf(hf.t5_config_to_hf(v5)) == v5
  with pytest.raises(ValueError, match=r"my/config.json: feed_forward_proj 'gelu' has no T5X equivalent"):
    hf.t5_config_from_hf(base | {"feed_forward_proj": "gelu"}, "my/config.json")
  with pytest.raises(ValueError, match=r"my/config.json: missing key 'd_model'"):
    hf.t5_config_from_hf({k: v for k, v in base.items() if k != "d_model"}, "my/config.json")


def test_llama_config_mapping():
  base = hf_tiny.hf_llama_config().to_dict()
  config = hf.llama_config_from_hf(base)
  assert (config.num_heads, config.num_kv_heads, config.head_dim, config.rope_theta) == (4, 2, 8, 10000.0)
  assert hf.llama_config_from_hf(hf.llama_config_to_hf(config)) == config
  with pytest.raises(ValueError, match="rope type 'linear' is not supported"):
    hf.llama_config_from_hf(base | {"rope_parameters": {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}})
  with pytest.raises(ValueError, match="attention_bias=true"):
    hf.llama_config_from_hf(base | {"attention_bias": True})
  import dataclasses
  with pytest.raises(ValueError, match="parallel_block=True"):
    hf.llama_config_to_hf(dataclasses.replace(config, parallel_block=True))


def test_t5_mapping_names_and_transposes(t5_saved):
  config, params = hf.load_t5(t5_saved)
  tensors = hf.read_state_dict(t5_saved)
  flat = flatten(params)
  # HF keeps the stack's one relative-position table in block 0, [buckets, heads]; ours is [heads, buckets].
  np.testing.assert_array_equal(
      flat["decoder/relpos_bias/rel_embedding"],
      tensors["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].T)
  np.testing.assert_array_equal(flat["decoder/layers_2/encoder_decoder_attention/out/kernel"],
                                tensors["decoder.block.2.layer.1.EncDecAttention.o.weight"].T)
  np.testing.assert_array_equal(flat["decoder/layers_1/pre_cross_attention_layer_norm/scale"],
                                tensors["decoder.block.1.layer.1.layer_norm.weight"])
  # shared + encoder (relpos, 2 layers x 9, norm) + decoder (relpos, 3 layers x 14, norm) + lm_head
  assert len(flat) == len(hf.t5_mapping(config)) == 1 + (1 + 2 * 9 + 1) + (1 + 3 * 14 + 1) + 1 == len(tensors)


def test_t5_name_and_shape_mismatches_are_listed(t5_saved):
  config = hf.t5_config_from_hf(hf.read_config(t5_saved))
  tensors = dict(hf.read_state_dict(t5_saved))
  del tensors["encoder.block.1.layer.0.SelfAttention.k.weight"]
  tensors["encoder.block.2.layer.0.SelfAttention.k.weight"] = np.zeros((32, 32), np.float32)
  with pytest.raises(TreeMismatchError) as err:
    hf.params_from_hf(tensors, hf.t5_mapping(config), "ckpt X")
  assert "missing from the checkpoint (1): encoder.block.1.layer.0.SelfAttention.k.weight" in str(err.value)
  assert "unexpected in the checkpoint (1): encoder.block.2.layer.0.SelfAttention.k.weight" in str(err.value)
  tensors = dict(hf.read_state_dict(t5_saved))
  tensors["lm_head.weight"] = np.zeros((100, 32), np.float32)
  params = hf.params_from_hf(tensors, hf.t5_mapping(config), "ckpt X")
  with pytest.raises(TreeMismatchError, match=r"shape mismatch decoder/logits_dense/kernel: model \[32, 96\], "
                     r"checkpoint \[32, 100\]"):
    hf.check_against_model(params, config, "ckpt X")
  tensors = dict(hf.read_state_dict(t5_saved))
  tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"] + 1
  with pytest.raises(TreeMismatchError, match="encoder.embed_tokens.weight should equal shared.weight"):
    hf.params_from_hf(tensors, hf.t5_mapping(config), "ckpt X", {"encoder.embed_tokens.weight": "shared.weight"})


def test_export_refuses_a_tree_that_is_not_the_model(t5_saved, tmp_path):
  config, params = hf.load_t5(t5_saved)
  flat = flatten(params)
  del flat["encoder/encoder_norm/scale"]
  from flan_jax.checkpoints import unflatten
  with pytest.raises(TreeMismatchError, match=r"missing from the checkpoint \(1\): encoder/encoder_norm/scale"):
    hf.save_t5(tmp_path, unflatten(flat), config)
  assert not (tmp_path / hf.SAFETENSORS).exists()
