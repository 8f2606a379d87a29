"""Hugging Face checkpoints in and out: T5 / Flan-T5 (`T5ForConditionalGeneration`) and LLaMA (`LlamaForCausalLM`).

Reading needs neither torch nor transformers for safetensors: a directory with `config.json` and weights in
`model.safetensors`, `model.safetensors.index.json` (sharded), `pytorch_model.bin` or `pytorch_model.bin.index.json`
(the `.bin` files need torch). Writing produces `config.json` plus `model.safetensors` (or shards with an index
once `max_shard_bytes` is exceeded), which `from_pretrained` loads.

The mapping, T5 (HF name -> ours; torch `Linear.weight` is `[out, in]`, our kernels `[in, out]`, so all transpose):
  shared.weight                                  token_embedder/embedding
  encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}  encoder/layers_{i}/attention/{query,key,value,out}/kernel
  encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight [buckets, heads]
                                                 encoder/relpos_bias/rel_embedding [heads, buckets]
      (HF keeps the one table per stack in block 0; T5X keeps it beside the layers)
  encoder.block.{i}.layer.0.layer_norm           .../pre_attention_layer_norm/scale
  encoder.block.{i}.layer.1.DenseReluDense.{wi_0,wi_1,wo} / {wi,wo}   .../mlp/{wi_0,wi_1,wo}/kernel
  encoder.block.{i}.layer.1.layer_norm           .../pre_mlp_layer_norm/scale
  decoder.block.{i}.layer.{0: SelfAttention, 1: EncDecAttention, 2: DenseReluDense} and their layer_norms
                                                 self_attention, encoder_decoder_attention, mlp, pre_*_layer_norm
  {encoder.final_layer_norm, decoder.final_layer_norm}   {encoder/encoder_norm, decoder/decoder_norm}/scale
  lm_head.weight [vocab, embed]                  decoder/logits_dense/kernel [embed, vocab] (absent when tied)
HF T5 never scales attention logits, like T5X. A tied head (T5 1.0, `logits_via_embedding`) rescales the decoder
output by 1/sqrt(d_model) in both. transformers 5 stores `tie_word_embeddings: true` always and records the real
choice as `scale_decoder_outputs`; older configs use `tie_word_embeddings: false` for T5 v1.1 / Flan-T5.

LLaMA (`LlamaForCausalLM` <-> our `DecoderOnlyConfig` with RoPE, SwiGLU, runtime query scaling): the table is in
`flan_jax.models.decoder_only`'s docstring (`model.layers.{i}.self_attn.q_proj` -> `decoder/layers_{i}/self_attention/
query/kernel`, ...); both use the "rotate half" RoPE convention, so q/k rows need no permutation.
"""
from __future__ import annotations

import json
import os
import pathlib
import struct
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from flan_jax.checkpoints import TreeMismatchError, check_tree, flatten, hf_tokenizer, unflatten

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
CONFIG = "config.json"

_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def _np_dtype(name: str) -> np.dtype:
  if name == "bfloat16":
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(name)


# ----------------------------------------------------------------------------------------------- reading files


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """All tensors of one .safetensors file as numpy (bfloat16 included), memory-mapped."""
  path = pathlib.Path(path)
  with open(path, "rb") as f:
    header_len = struct.unpack("<Q", f.read(8))[0]
    try:
      header = json.loads(f.read(header_len))
    except ValueError as e:
      raise ValueError(f"{path}: bad safetensors header ({e})") from e
  data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
  tensors = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info["dtype"] not in _SAFETENSORS_DTYPES:
      raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
    begin, end = info["data_offsets"]
    dtype = _np_dtype(_SAFETENSORS_DTYPES[info["dtype"]])
    tensors[name] = data[begin:end].view(dtype).reshape(info["shape"])
  return tensors


def read_torch_bin(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """All tensors of one PyTorch `.bin` state dict as numpy (loaded with weights_only=True)."""
  import torch
  state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
  out = {}
  for name, tensor in state.items():
    tensor = tensor.detach().contiguous()
    if tensor.dtype == torch.bfloat16:
      out[name] = tensor.view(torch.int16).numpy().view(_np_dtype("bfloat16"))
    else:
      out[name] = tensor.numpy()
  return out


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The weights of an HF model dir (or of one weights file), from whichever of the four layouts it holds."""
  path = pathlib.Path(path)
  if path.is_file():
    return read_torch_bin(path) if path.suffix == ".bin" else read_safetensors(path)
  for index_name, reader in ((SAFETENSORS_INDEX, read_safetensors), (TORCH_BIN_INDEX, read_torch_bin)):
    index_path = path / index_name
    if index_path.exists():
      try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
      except (ValueError, KeyError) as e:
        raise ValueError(f"{index_path}: not a weights index ({e})") from e
      tensors: dict[str, np.ndarray] = {}
      for shard in sorted(set(weight_map.values())):
        shard_tensors = reader(path / shard)
        tensors.update({n: t for n, t in shard_tensors.items() if weight_map.get(n) == shard})
      listed_missing = sorted(set(weight_map) - set(tensors))
      if listed_missing:
        raise ValueError(f"{index_path}: tensors listed but not in their shard files: {', '.join(listed_missing)}")
      return tensors
  if (path / SAFETENSORS).exists():
    return read_safetensors(path / SAFETENSORS)
  if (path / TORCH_BIN).exists():
    return read_torch_bin(path / TORCH_BIN)
  raise FileNotFoundError(f"{path}: no {SAFETENSORS}, {SAFETENSORS_INDEX}, {TORCH_BIN} or {TORCH_BIN_INDEX}")


def read_config(path: str | os.PathLike) -> dict[str, Any]:
  config_path = pathlib.Path(path) / CONFIG
  try:
    return json.loads(config_path.read_text())
  except FileNotFoundError:
    raise FileNotFoundError(f"{config_path}: missing (an HF model dir holds config.json beside the weights)")
  except ValueError as e:
    raise ValueError(f"{config_path}: not JSON ({e})") from e


def write_state_dict(directory: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                     max_shard_bytes: int = 5 * 2**30) -> list[str]:
  """Writes `model.safetensors`, or numbered shards plus `model.safetensors.index.json`; returns the file names."""
  from safetensors.numpy import save_file
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name in sorted(tensors):
    array = np.ascontiguousarray(tensors[name])
    if shards[-1] and size + array.nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = array
    size += array.nbytes
  if len(shards) == 1:
    save_file(shards[0], directory / SAFETENSORS, metadata={"format": "pt"})
    return [SAFETENSORS]
  names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
  weight_map = {}
  for name, shard in zip(names, shards):
    save_file(shard, directory / name, metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(shard, name))
  total = sum(a.nbytes for a in tensors.values())
  (directory / SAFETENSORS_INDEX).write_text(
      json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True))
  return names + [SAFETENSORS_INDEX]


# ------------------------------------------------------------------------------------------------- the mapping
# One entry per parameter: (hf name, our name, hf->ours, ours->hf). Both directions are exact (transposes only).

_Entry = tuple[str, str, Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _same(x: np.ndarray) -> np.ndarray:
  return x


def _transpose(x: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(np.asarray(x).T)


def _linear(hf: str, ours: str) -> _Entry:
  return (hf + ".weight", ours + "/kernel", _transpose, _transpose)


def _norm(hf: str, ours: str) -> _Entry:
  return (hf + ".weight", ours + "/scale", _same, _same)


def _t5_mlp_names(activations: tuple[str, ...]) -> list[str]:
  return ["wi"] if len(activations) == 1 else [f"wi_{i}" for i in range(len(activations))]


def t5_mapping(config) -> list[_Entry]:
  """The HF <-> ours parameter table for a `flan_jax.models.t5.T5Config`."""
  entries: list[_Entry] = [("shared.weight", "token_embedder/embedding", _same, _same)]
  mlp = _t5_mlp_names(config.mlp_activations)
  attn = (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))
  for stack, layers, self_name, norm_name in (("encoder", config.num_encoder_layers, "attention", "encoder_norm"),
                                              ("decoder", config.num_decoder_layers, "self_attention",
                                               "decoder_norm")):
    entries.append((f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                    f"{stack}/relpos_bias/rel_embedding", _transpose, _transpose))
    for i in range(layers):
      hf, ours = f"{stack}.block.{i}.layer", f"{stack}/layers_{i}"
      sublayers = [("0.SelfAttention", self_name, "pre_self_attention_layer_norm" if stack == "decoder"
                    else "pre_attention_layer_norm")]
      if stack == "decoder":
        sublayers.append(("1.EncDecAttention", "encoder_decoder_attention", "pre_cross_attention_layer_norm"))
      for hf_sub, our_sub, our_norm in sublayers:
        entries += [_linear(f"{hf}.{hf_sub}.{a}", f"{ours}/{our_sub}/{b}") for a, b in attn]
        entries.append(_norm(f"{hf}.{hf_sub.split('.')[0]}.layer_norm", f"{ours}/{our_norm}"))
      mlp_idx = len(sublayers)
      entries += [_linear(f"{hf}.{mlp_idx}.DenseReluDense.{name}", f"{ours}/mlp/{name}") for name in mlp + ["wo"]]
      entries.append(_norm(f"{hf}.{mlp_idx}.layer_norm", f"{ours}/pre_mlp_layer_norm"))
    entries.append(_norm(f"{stack}.final_layer_norm", f"{stack}/{norm_name}"))
  if not config.logits_via_embedding:
    entries.append(("lm_head.weight", "decoder/logits_dense/kernel", _transpose, _transpose))
  return entries


# HF's feed_forward_proj <-> our mlp_activations ('gelu' is the tanh approximation in both: HF's 'gelu_new').
_T5_FEED_FORWARD = {"gated-gelu": ("gelu", "linear"), "gated-silu": ("silu", "linear"), "relu": ("relu",),
                    "gated-relu": ("relu", "linear")}


def t5_config_from_hf(hf: Mapping[str, Any], where: str = CONFIG):
  """Our T5Config from an HF T5 `config.json` dict (`where` names it in errors)."""
  from flan_jax.models.t5 import T5Config
  proj = hf.get("feed_forward_proj", "relu")
  if proj not in _T5_FEED_FORWARD:
    raise ValueError(f"{where}: feed_forward_proj {proj!r} has no T5X equivalent; supported: {sorted(_T5_FEED_FORWARD)}")
  if hf.get("model_type", "t5") != "t5":
    raise ValueError(f"{where}: model_type {hf.get('model_type')!r} is not t5")
  if "scale_decoder_outputs" in hf:  # transformers >= 5 records the head choice here
    tied = bool(hf["scale_decoder_outputs"])
  else:
    tied = bool(hf.get("tie_word_embeddings", True))
  try:
    return T5Config(
        vocab_size=int(hf["vocab_size"]), emb_dim=int(hf["d_model"]), num_heads=int(hf["num_heads"]),
        num_encoder_layers=int(hf["num_layers"]),
        num_decoder_layers=int(hf.get("num_decoder_layers") or hf["num_layers"]),
        head_dim=int(hf["d_kv"]), mlp_dim=int(hf["d_ff"]), mlp_activations=_T5_FEED_FORWARD[proj],
        dropout_rate=float(hf.get("dropout_rate", 0.1)), logits_via_embedding=tied,
        relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(hf.get("relative_attention_max_distance", 128)),
        layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-6)))
  except KeyError as e:
    raise ValueError(f"{where}: missing key {e.args[0]!r}") from e


def t5_config_to_hf(config) -> dict[str, Any]:
  """An HF `config.json` dict for our T5Config (readable by transformers 4 and 5)."""
  acts = tuple(config.mlp_activations)
  proj = {v: k for k, v in _T5_FEED_FORWARD.items()}.get(acts)
  if proj is None:
    raise ValueError(f"mlp_activations {acts} have no HF T5 feed_forward_proj; supported: {sorted(_T5_FEED_FORWARD.values())}")
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
      "vocab_size": config.vocab_size, "d_model": config.emb_dim, "d_kv": config.head_dim, "d_ff": config.mlp_dim,
      "num_layers": config.num_encoder_layers, "num_decoder_layers": config.num_decoder_layers,
      "num_heads": config.num_heads, "feed_forward_proj": proj,
      "relative_attention_num_buckets": config.relative_attention_num_buckets,
      "relative_attention_max_distance": config.relative_attention_max_distance,
      "dropout_rate": config.dropout_rate, "layer_norm_epsilon": config.layer_norm_epsilon,
      "initializer_factor": 1.0, "is_encoder_decoder": True, "use_cache": True,
      "tie_word_embeddings": bool(config.logits_via_embedding),
      "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
  }


# Copies of the shared embedding HF may save; they are checked equal to `shared.weight` and otherwise ignored.
_T5_TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def params_from_hf(tensors: Mapping[str, np.ndarray], mapping: Iterable[_Entry], source: str,
                   tied_copies: Mapping[str, str] | None = None, dtype: Any = np.float32) -> dict[str, Any]:
  """Our params tree (numpy) from HF tensors; every name and shape must match the mapping.

  `tied_copies` maps optional HF names to the HF name they must equal (tied embeddings saved twice).
  """
  mapping = list(mapping)
  tensors = dict(tensors)
  for copy, original in (tied_copies or {}).items():
    if copy in tensors:
      if original in tensors and not np.array_equal(tensors[copy], tensors[original]):
        raise TreeMismatchError(f"{source}: {copy} should equal {original} (tied) but differs")
      if original not in tensors:
        tensors[original] = tensors[copy]
      del tensors[copy]
  # Expected HF shapes come from our side through the same transform, so check names first, then shapes below.
  missing = sorted({hf for hf, *_ in mapping} - set(tensors))
  unexpected = sorted(set(tensors) - {hf for hf, *_ in mapping})
  if missing or unexpected:
    check_tree(dict.fromkeys([hf for hf, *_ in mapping], ()), dict.fromkeys(tensors, ()), source)
  flat = {}
  for hf, ours, to_ours, _ in mapping:
    flat[ours] = to_ours(np.asarray(tensors[hf], dtype=dtype) if dtype is not None else np.asarray(tensors[hf]))
  return unflatten(flat)


def params_to_hf(params: Mapping[str, Any], mapping: Iterable[_Entry], source: str,
                 dtype: Any = np.float32) -> dict[str, np.ndarray]:
  """HF tensors (numpy, torch layouts) from our params; names must match the mapping exactly."""
  mapping = list(mapping)
  flat = flatten(params)
  check_tree(dict.fromkeys([ours for _, ours, *_ in mapping], ()), dict.fromkeys(flat, ()), source)
  return {hf: to_hf(np.asarray(flat[ours], dtype=dtype)) for hf, ours, _, to_hf in mapping}


def load_t5(path: str | os.PathLike, dtype: Any = np.float32):
  """(T5Config, params) from an HF T5 / Flan-T5 model dir; refuses name or shape mismatches."""
  path = pathlib.Path(path)
  config = t5_config_from_hf(read_config(path), str(path / CONFIG))
  source = f"HF T5 checkpoint {path}"
  params = params_from_hf(read_state_dict(path), t5_mapping(config), source,
                          {c: "shared.weight" for c in _T5_TIED_COPIES}, dtype)
  check_against_model(params, config, source)
  return config, params


def save_t5(directory: str | os.PathLike, params: Mapping[str, Any], config,
            max_shard_bytes: int = 5 * 2**30) -> None:
  """Writes an HF T5 dir (`config.json`, `generation_config.json`, safetensors) from our params and config."""
  check_against_model(params, config, "params to export")
  directory = pathlib.Path(directory)
  write_state_dict(directory, params_to_hf(params, t5_mapping(config), "params to export"), max_shard_bytes)
  (directory / CONFIG).write_text(json.dumps(t5_config_to_hf(config), indent=2, sort_keys=True))
  (directory / "generation_config.json").write_text(json.dumps(
      {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}, indent=2))


# ----------------------------------------------------------------------------------------------------- LLaMA

def llama_mapping(config) -> list[_Entry]:
  """The HF LlamaForCausalLM <-> ours table for a `DecoderOnlyConfig`."""
  entries: list[_Entry] = [("model.embed_tokens.weight", "token_embedder/embedding", _same, _same)]
  for i in range(config.num_layers):
    hf, ours = f"model.layers.{i}", f"decoder/layers_{i}"
    entries.append(_norm(f"{hf}.input_layernorm", f"{ours}/pre_self_attention_layer_norm"))
    entries += [_linear(f"{hf}.self_attn.{a}_proj", f"{ours}/self_attention/{b}")
                for a, b in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))]
    entries.append(_norm(f"{hf}.post_attention_layernorm", f"{ours}/pre_mlp_layer_norm"))
    entries += [_linear(f"{hf}.mlp.{a}_proj", f"{ours}/mlp/{b}")
                for a, b in (("gate", "wi_0"), ("up", "wi_1"), ("down", "wo"))]
  entries.append(_norm("model.norm", "decoder/decoder_norm"))
  if not config.logits_via_embedding:
    entries.append(_linear("lm_head", "decoder/logits_dense"))
  return entries


def _llama_rope_theta(hf: Mapping[str, Any], where: str) -> float:
  rope = hf.get("rope_parameters") or {}
  scaling = hf.get("rope_scaling") or {}
  kind = rope.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
  if kind != "default":
    raise ValueError(f"{where}: rope type {kind!r} is not supported (only plain RoPE)")
  return float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))


def llama_config_from_hf(hf: Mapping[str, Any], where: str = CONFIG):
  """Our DecoderOnlyConfig (LLaMA layout) from an HF LLaMA `config.json` dict."""
  from flan_jax.models.decoder_only import DecoderOnlyConfig
  if hf.get("model_type", "llama") != "llama":
    raise ValueError(f"{where}: model_type {hf.get('model_type')!r} is not llama")
  for flag in ("attention_bias", "mlp_bias"):
    if hf.get(flag):
      raise ValueError(f"{where}: {flag}=true has no counterpart here (our layers have no biases)")
  if hf.get("hidden_act", "silu") not in ("silu", "swish"):
    raise ValueError(f"{where}: hidden_act {hf.get('hidden_act')!r} is not supported (LLaMA uses silu)")
  try:
    heads = int(hf["num_attention_heads"])
    kv_heads = int(hf.get("num_key_value_heads") or heads)
    return DecoderOnlyConfig(
        vocab_size=int(hf["vocab_size"]), emb_dim=int(hf["hidden_size"]), num_heads=heads,
        num_kv_heads=None if kv_heads == heads else kv_heads, num_layers=int(hf["num_hidden_layers"]),
        head_dim=int(hf.get("head_dim") or int(hf["hidden_size"]) // heads),
        mlp_dim=int(hf["intermediate_size"]), mlp_activations=("silu", "linear"),
        dropout_rate=float(hf.get("attention_dropout", 0.0)),
        logits_via_embedding=bool(hf.get("tie_word_embeddings", False)), position_embedding="rope",
        rope_theta=_llama_rope_theta(hf, where), query_scale="runtime",
        layer_norm_epsilon=float(hf.get("rms_norm_eps", 1e-6)), parallel_block=False)
  except KeyError as e:
    raise ValueError(f"{where}: missing key {e.args[0]!r}") from e


def llama_config_to_hf(config) -> dict[str, Any]:
  """An HF LLaMA `config.json` dict for our DecoderOnlyConfig; refuses settings LLaMA cannot express."""
  problems = []
  if config.position_embedding != "rope":
    problems.append(f"position_embedding={config.position_embedding!r} (LLaMA uses 'rope')")
  if config.query_scale != "runtime":
    problems.append(f"query_scale={config.query_scale!r} (LLaMA scales at run time)")
  if config.parallel_block:
    problems.append("parallel_block=True")
  if tuple(config.mlp_activations) != ("silu", "linear"):
    problems.append(f"mlp_activations={tuple(config.mlp_activations)} (LLaMA uses ('silu', 'linear'))")
  if problems:
    raise ValueError("DecoderOnlyConfig has no LlamaForCausalLM equivalent: " + "; ".join(problems))
  return {
      "architectures": ["LlamaForCausalLM"], "model_type": "llama",
      "vocab_size": config.vocab_size, "hidden_size": config.emb_dim, "intermediate_size": config.mlp_dim,
      "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_heads,
      "num_key_value_heads": config.num_kv_heads or config.num_heads, "head_dim": config.head_dim,
      "hidden_act": "silu", "rms_norm_eps": config.layer_norm_epsilon, "rope_theta": config.rope_theta,
      "rope_parameters": {"rope_theta": config.rope_theta, "rope_type": "default"},
      "attention_bias": False, "mlp_bias": False, "attention_dropout": config.dropout_rate,
      "tie_word_embeddings": bool(config.logits_via_embedding), "use_cache": True,
      "max_position_embeddings": 2048, "initializer_range": 0.02,
      "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 1,
  }


def load_llama(path: str | os.PathLike, dtype: Any = np.float32):
  """(DecoderOnlyConfig, params) from an HF LlamaForCausalLM dir; refuses name or shape mismatches."""
  path = pathlib.Path(path)
  config = llama_config_from_hf(read_config(path), str(path / CONFIG))
  source = f"HF LLaMA checkpoint {path}"
  tied = {"lm_head.weight": "model.embed_tokens.weight"} if config.logits_via_embedding else {}
  params = params_from_hf(read_state_dict(path), llama_mapping(config), source, tied, dtype)
  check_against_model(params, config, source)
  return config, params


def save_llama(directory: str | os.PathLike, params: Mapping[str, Any], config,
               max_shard_bytes: int = 5 * 2**30) -> None:
  """Writes an HF LlamaForCausalLM dir (`config.json`, safetensors) from our params and config."""
  hf_config = llama_config_to_hf(config)
  check_against_model(params, config, "params to export")
  directory = pathlib.Path(directory)
  write_state_dict(directory, params_to_hf(params, llama_mapping(config), "params to export"), max_shard_bytes)
  (directory / CONFIG).write_text(json.dumps(hf_config, indent=2, sort_keys=True))
  (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": 1, "pad_token_id": 0}, indent=2))


# --------------------------------------------------------------------------------------------------- generic


def load(path: str | os.PathLike, dtype: Any = np.float32):
  """(config, params) from an HF dir of either supported architecture, chosen by config.json's model_type."""
  model_type = read_config(path).get("model_type")
  if model_type not in ("t5", "llama"):
    raise ValueError(f"{pathlib.Path(path) / CONFIG}: model_type {model_type!r} is not supported (t5, llama)")
  config, params = (load_t5 if model_type == "t5" else load_llama)(path, dtype)
  hf_tokenizer.check_vocabulary(path, config.vocab_size)
  return config, params


def save(directory: str | os.PathLike, params: Mapping[str, Any], config, max_shard_bytes: int = 5 * 2**30) -> None:
  """Exports our params to an HF dir: T5ForConditionalGeneration for a T5Config, LlamaForCausalLM otherwise."""
  from flan_jax.models.t5 import T5Config
  if isinstance(config, T5Config):
    save_t5(directory, params, config, max_shard_bytes)
  else:
    save_llama(directory, params, config, max_shard_bytes)
  if config.vocab_size >= hf_tokenizer.T5_VOCAB_SIZE:  # smaller test models read no SentencePiece vocabulary
    hf_tokenizer.write(directory)


def model_for(config):
  """Our model wrapper for a config: EncoderDecoderModel for T5Config, DecoderOnlyModel otherwise."""
  from flan_jax.models.model import DecoderOnlyModel, EncoderDecoderModel
  from flan_jax.models.t5 import T5Config
  return EncoderDecoderModel(config) if isinstance(config, T5Config) else DecoderOnlyModel(config)


def model_param_shapes(config) -> dict[str, Any]:
  """The flat {name: ShapeDtypeStruct} the model initialises for `config` (nothing is allocated)."""
  import jax
  from flan_jax.models.t5 import T5Config
  if isinstance(config, T5Config):
    batch = {"encoder_input_tokens": (1, 2), "decoder_input_tokens": (1, 2), "decoder_target_tokens": (1, 2)}
  else:
    batch = {"decoder_input_tokens": (1, 2), "decoder_target_tokens": (1, 2)}
  model = model_for(config)
  return flatten(jax.eval_shape(lambda: model.init_variables(jax.random.PRNGKey(0), batch)))


def check_against_model(params: Mapping[str, Any], config, source: str) -> None:
  """The tree must be exactly what the model initialises for `config` (names and shapes)."""
  if getattr(config, "scan_layers", False):
    raise ValueError(f"{source}: HF layouts are per layer; convert with scan_layers=False and scan afterwards")
  check_tree(model_param_shapes(config), flatten(params), source)
