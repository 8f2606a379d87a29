"""Collectives and per-device memory of the compiled training step on data-parallel, FSDP and model-parallel
meshes of 8 simulated CPU devices, against an analytic minimum and `flan-jax plan`'s estimate.

  python benchmarks/sharding_cost.py                       # Flan-T5 small as runs/flan_t5_small_flan2022.gin
  python benchmarks/sharding_cost.py --gin.ACTIVATION_DTYPE="'float32'" --gin.DROPOUT_RATE=0.0
  python benchmarks/sharding_cost.py --model tiny --meshes dp --batch 16 --lengths 512,128

A compile-time analysis (`flan_jax.sharding_cost`): the step is lowered and compiled, never run or timed, so the
figures do not depend on the machine's load. Collectives: how XLA's SPMD partitioner splits the trainer's step;
"moved" is what one device sends by the ring algorithm (all-reduce 2(n-1)/n x bytes, all-gather (n-1)/n x the
gathered bytes, reduce-scatter (n-1) x the scattered piece). Memory: XLA:CPU's buffer assignment for one device
(arguments + outputs - donated + temporaries), which differs from an accelerator's where the notes say.
"""
from __future__ import annotations

import os

# 8 host devices, set before jax is imported (the CPU backend reads the flag when it starts).
_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=8".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import sys  # noqa: E402
from typing import Sequence  # noqa: E402

import jax  # noqa: E402

from flan_jax import gin_utils, sharding_cost  # noqa: E402


def _lengths(text: str) -> dict[str, int]:
  parts = text.split(",")
  if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
    raise argparse.ArgumentTypeError(f"{text!r} is not INPUTS,TARGETS (two positive integers, e.g. 2048,512)")
  return {"inputs": int(parts[0]), "targets": int(parts[1])}


def _meshes(text: str) -> list[str]:
  names = [n.strip() for n in text.split(",") if n.strip()]
  if not names or any(n not in sharding_cost.MESH_NAMES for n in names):
    raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated subset of "
                                     f"{','.join(sharding_cost.MESH_NAMES)}")
  return names


def _positive(text: str) -> int:
  if not text.isdigit() or int(text) < 1:
    raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
  return int(text)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              epilog="--gin.NAME=VALUE flags override the model's gin config, as in flan-jax train.")
  p.add_argument("--model", default="small", choices=sorted(sharding_cost.MODELS),
                 help="small: runs/flan_t5_small_flan2022.gin; tiny: models/flan_t5_tiny.gin (compiles fast)")
  p.add_argument("--batch", type=_positive, default=None, help="global batch (default: the config's BATCH_SIZE)")
  p.add_argument("--lengths", type=_lengths, default=None,
                 help="INPUTS,TARGETS feature lengths (default: the config's TASK_FEATURE_LENGTHS)")
  p.add_argument("--meshes", type=_meshes, default=list(sharding_cost.MESH_NAMES), help="dp,fsdp,mp (default: all)")
  p.add_argument("--model_parallel", type=_positive, default=4, help="the 'model' axis of the mp mesh (default 4)")
  return p


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    bindings, rest = gin_utils.split_gin_flags(argv)
  except gin_utils.GinConfigError as e:
    print(f"sharding_cost: {e}", file=sys.stderr)
    return 2
  args = _parser().parse_args(rest)
  if jax.device_count() != 8:
    print(f"sharding_cost: needs 8 devices, jax sees {jax.device_count()} (XLA_FLAGS={os.environ.get('XLA_FLAGS')})",
          file=sys.stderr)
    return 2
  try:
    setup = sharding_cost.load_setup(args.model, args.batch, args.lengths, bindings)
    cases = [sharding_cost.mesh_case(name, args.model_parallel) for name in args.meshes]
    reports = [sharding_cost.analyze(setup, case) for case in cases]
  except ValueError as e:  # gin's messages go on for lines: the first says what is wrong
    print(f"sharding_cost: {str(e).splitlines()[0]}", file=sys.stderr)
    return 2
  cfg = setup.model.config
  print(f"model {args.model}: {reports[0].estimate.param_count:,} parameters, {cfg.dtype} activations, remat "
        f"{cfg.remat_policy}, dropout {cfg.dropout_rate}; compiled for 8 CPU devices")
  print("moved = bytes one device sends by the ring algorithm: all-reduce 2(n-1)/n x result, all-gather (n-1)/n x "
        "result, reduce-scatter (n-1) x result. Minimum: gradients summed over 'data' once (all-reduce; reduce-"
        "scatter where FSDP splits them), FSDP parameters gathered once, and per layer the Megatron activation "
        "all-reduces over 'model' (forward: attention out, MLP wo, embeddings; backward: q/k/v, wi, LM head)")
  for note in sharding_cost.cpu_caveats(setup):
    print(f"note: {note}")
  for r in reports:
    print(sharding_cost.format_report(r, setup))
  return 0


if __name__ == "__main__":
  sys.exit(main())
