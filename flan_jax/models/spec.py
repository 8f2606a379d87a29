"""`model.json`: the JSON description that rebuilds a model (kind, config fields, loss options).

Checkpoint dirs carry it so `infer`/`eval` rebuild the network without gin:
`{"kind": "encoder_decoder" | "decoder_only", "config": {...T5Config or DecoderOnlyConfig fields...},
  "z_loss": 1e-4, "label_smoothing": 0.0, "loss_normalizing_factor": null | number | "NUM_REAL_TARGET_TOKENS" ...}`
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib

from flan_jax.models import losses
from flan_jax.models.decoder_only import DecoderOnlyConfig
from flan_jax.models.model import DecoderOnlyModel, EncoderDecoderModel
from flan_jax.models.t5 import T5Config

SPEC_FILENAME = "model.json"
_KINDS = {
    "encoder_decoder": (EncoderDecoderModel, T5Config),
    "decoder_only": (DecoderOnlyModel, DecoderOnlyConfig),
}


def model_spec(model: EncoderDecoderModel | DecoderOnlyModel) -> dict:
  """A JSON-able dict from which `build_model` rebuilds an equal model."""
  kind = next((k for k, (cls, _) in _KINDS.items() if type(model) is cls), None)
  if kind is None:
    raise TypeError(f"no model spec for {type(model).__name__}")
  config = dataclasses.asdict(model.config)
  config = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
  factor = model.loss_normalizing_factor
  if isinstance(factor, losses.LossNormalizingFactor):
    factor = factor.name
  return {"kind": kind, "config": config, "z_loss": model.z_loss, "label_smoothing": model.label_smoothing,
          "loss_normalizing_factor": factor}


def build_model(spec: dict, source: str = "model spec") -> EncoderDecoderModel | DecoderOnlyModel:
  """Rebuilds a model from `model_spec` output; `source` names where the spec came from in errors."""
  if not isinstance(spec, dict):
    raise ValueError(f"{source}: expected a JSON object, got {type(spec).__name__}")
  unknown = set(spec) - {"kind", "config", "z_loss", "label_smoothing", "loss_normalizing_factor"}
  if unknown:
    raise ValueError(f"{source}: unknown keys {sorted(unknown)}")
  kind = spec.get("kind")
  if kind not in _KINDS:
    raise ValueError(f"{source}: 'kind' must be one of {sorted(_KINDS)}, got {kind!r}")
  model_cls, config_cls = _KINDS[kind]
  config = dict(spec.get("config") or {})
  fields = {f.name for f in dataclasses.fields(config_cls)}
  bad = set(config) - fields
  if bad:
    raise ValueError(f"{source}: config fields {sorted(bad)} are not {config_cls.__name__} fields")
  config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
  try:
    cfg = config_cls(**config)
    return model_cls(cfg, z_loss=spec.get("z_loss", 1e-4), label_smoothing=spec.get("label_smoothing", 0.0),
                     loss_normalizing_factor=spec.get("loss_normalizing_factor"))
  except (TypeError, ValueError) as e:
    raise ValueError(f"{source}: {e}") from e


def save_spec(directory: str | os.PathLike, model: EncoderDecoderModel | DecoderOnlyModel) -> pathlib.Path:
  """Writes `<directory>/model.json` (creating the directory) and returns its path."""
  path = pathlib.Path(directory) / SPEC_FILENAME
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(model_spec(model), indent=1, sort_keys=True) + "\n")
  return path


def load_model(directory: str | os.PathLike) -> EncoderDecoderModel | DecoderOnlyModel:
  path = pathlib.Path(directory) / SPEC_FILENAME
  if not path.exists():
    raise FileNotFoundError(f"{path}: no model spec (a flan_jax checkpoint dir has one; `flan-jax convert` writes it)")
  try:
    spec = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
  return build_model(spec, source=str(path))
