"""`flan-jax convert`: T5X or Hugging Face checkpoints into our checkpoint dir, and ours out to Hugging Face.

  flan-jax convert --from hf  SRC --to DIR          # HF T5/Flan-T5 or LLaMA dir -> our dir
  flan-jax convert --from t5x SRC --to DIR          # T5X checkpoint (legacy or Orbax; a step dir or its parent)
  flan-jax convert --from ours SRC --to hf DIR      # our dir (latest step, or --step N) -> HF dir
  flan-jax convert --from t5x SRC --to hf DIR       # any source converts to either target

`--to DIR` is short for `--to ours DIR`. Our dir is `model.json` (`flan_jax.models.spec`) plus a
`flan_jax.checkpoints.manager.Checkpointer` step 0 holding params only, the layout `infer`, `eval` and
`INITIAL_CHECKPOINT_PATH` read. An HF dir is `config.json` plus safetensors that `from_pretrained` loads.

A T5X checkpoint carries no model config (T5X keeps it in gin), so it is read off the parameter shapes: vocab and
embedding size, layer counts, heads (from the relative-position table), head_dim, mlp_dim, a tied or separate head.
What shapes cannot tell is T5 v1.1's defaults (gated-GELU, 128 max distance); `--model_json FILE` gives the whole
spec instead (a `model.json` as written by `flan_jax.models.spec`). Either way the checkpoint must match the model
exactly: a difference in names or shapes is refused with a list of what is missing, unexpected and mis-shaped.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import sys
from typing import Any, Sequence

import numpy as np

from flan_jax.checkpoints import check_tree, flatten, hf, t5x, unflatten

SOURCES = ("hf", "t5x", "ours")
TARGETS = ("ours", "hf")


def t5_config_from_t5x_shapes(shapes: dict[str, tuple[int, ...]], where: str):
  """Our T5Config read off a T5X checkpoint's parameter shapes (T5 v1.1 defaults for what shapes do not show)."""
  from flan_jax.models.t5 import T5Config

  def shape(name: str) -> tuple[int, ...]:
    if name not in shapes:
      raise ValueError(f"{where}: no parameter {name}; is this a T5 encoder-decoder checkpoint?")
    return shapes[name]

  vocab, emb = shape("token_embedder/embedding")
  heads, buckets = shape("encoder/relpos_bias/rel_embedding")
  joined = shape("encoder/layers_0/attention/query/kernel")[1]
  layers = lambda stack: len({m.group(1) for n in shapes for m in [re.match(rf"{stack}/layers_(\d+)/", n)] if m})
  gated = "encoder/layers_0/mlp/wi_0/kernel" in shapes
  mlp_dim = shape(f"encoder/layers_0/mlp/{'wi_0' if gated else 'wi'}/kernel")[1]
  if joined % heads:
    raise ValueError(f"{where}: query width {joined} is not a multiple of {heads} heads")
  return T5Config(vocab_size=vocab, emb_dim=emb, num_heads=heads, num_encoder_layers=layers("encoder"),
                  num_decoder_layers=layers("decoder"), head_dim=joined // heads, mlp_dim=mlp_dim,
                  mlp_activations=("gelu", "linear") if gated else ("relu",), dropout_rate=0.0,
                  logits_via_embedding="decoder/logits_dense/kernel" not in shapes,
                  relative_attention_num_buckets=buckets)


def _model_from_json(path: str):
  from flan_jax.models import spec
  source = pathlib.Path(path)
  try:
    data = json.loads(source.read_text())
  except FileNotFoundError:
    raise FileNotFoundError(f"{source}: --model_json file not found")
  except json.JSONDecodeError as e:
    raise ValueError(f"{source}:{e.lineno}: invalid JSON: {e.msg}") from e
  return spec.build_model(data, source=str(source))


def load_source(kind: str, src: str, *, step: int | None = None, model_json: str | None = None):
  """(model, params as numpy/jax arrays) from a source checkpoint."""
  if kind == "hf":
    config, params = hf.load(src)
    model = _model_from_json(model_json) if model_json else hf.model_for(config)
    if model_json:
      hf.check_against_model(params, model.config, f"HF checkpoint {src} (vs {model_json})")
    return model, params
  if kind == "t5x":
    ckpt = t5x.T5XCheckpoint(src)
    if model_json:
      model = _model_from_json(model_json)
    else:
      model = hf.model_for(t5_config_from_t5x_shapes(ckpt.param_shapes(), str(ckpt.dir)))
    expected = hf.model_param_shapes(model.config)
    return model, ckpt.params(expected=unflatten(expected))
  if kind == "ours":
    from flan_jax.checkpoints import loader
    model, params, _ = loader.load_model(src, step)
    return model, params
  raise ValueError(f"unknown source format {kind!r}; one of {SOURCES}")


def write_ours(directory: str, model, params) -> None:
  """Our checkpoint dir: model.json and Checkpointer step 0 with params only."""
  import jax
  from flan_jax.checkpoints.manager import Checkpointer
  from flan_jax.models import spec
  target = pathlib.Path(directory)
  if target.exists() and any(target.iterdir()):
    raise FileExistsError(f"{target}: not empty; convert into a new directory")
  check_tree(hf.model_param_shapes(model.config), flatten(params), "converted params")
  spec.save_spec(target, model)
  with Checkpointer(target, async_save=False) as ckpt:
    ckpt.save(0, params=jax.tree.map(lambda x: jax.numpy.asarray(x, np.float32), params), force=True)
    ckpt.wait_until_finished()


def write_hf(directory: str, model, params) -> None:
  target = pathlib.Path(directory)
  if target.exists() and any(target.iterdir()):
    raise FileExistsError(f"{target}: not empty; export into a new directory")
  hf.save(target, jax_to_numpy(params), model.config)


def jax_to_numpy(params: Any) -> Any:
  return unflatten({name: np.asarray(value) for name, value in flatten(params).items()})


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="flan-jax convert", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="\n\n".join(__doc__.split("\n\n")[1:3]))
  p.add_argument("--from", dest="source", required=True, choices=SOURCES, help="format of SRC")
  p.add_argument("src", metavar="SRC", help="the checkpoint to convert (a directory)")
  p.add_argument("--to", dest="to", required=True, nargs="+", metavar="[FORMAT] DIR",
                 help=f"output: DIR (our format) or FORMAT DIR with FORMAT in {TARGETS}")
  p.add_argument("--step", type=int, default=None, help="step to read from our checkpoint dir (default: latest)")
  p.add_argument("--model_json", default=None,
                 help="model.json spec to use instead of reading the config off the source")
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
  if len(args.to) == 1:
    fmt, out = "ours", args.to[0]
  elif len(args.to) == 2 and args.to[0] in TARGETS:
    fmt, out = args.to
  else:
    print(f"flan-jax convert: --to takes DIR or FORMAT DIR with FORMAT in {TARGETS}, got {args.to}",
          file=sys.stderr)
    return 2
  try:
    model, params = load_source(args.source, args.src, step=args.step, model_json=args.model_json)
    if fmt == "ours":
      write_ours(out, model, params)
    else:
      write_hf(out, model, params)
  except (ValueError, FileNotFoundError, FileExistsError, IOError) as e:
    print(f"flan-jax convert: {e}", file=sys.stderr)
    return 1
  n = sum(int(np.prod(np.shape(v))) for v in flatten(params).values())
  print(f"converted {args.source} {args.src} -> {fmt} {os.fspath(out)}: {type(model.config).__name__}, "
        f"{len(flatten(params))} arrays, {n:,} parameters")
  return 0


if __name__ == "__main__":
  sys.exit(main())
