"""`flan-jax <command> ...`: one console script dispatching to each entry point's own `main(argv)`."""
from __future__ import annotations

import importlib
import sys

from flan_jax import host_memory

COMMANDS = {
    "data": ("flan_jax.data.cli", "build, inspect, download and verify the Flan data"),
    "convert": ("flan_jax.checkpoints.convert", "convert checkpoints between T5X, Hugging Face and ours"),
    "checkpoints": ("flan_jax.checkpoints.cli", "list a checkpoint dir's steps, verify them against their manifests"),
    "train": ("flan_jax.train", "finetune a model (gin-configured, T5X-style flags)"),
    "eval": ("flan_jax.eval", "run the paper's evaluation suites on a checkpoint"),
    "infer": ("flan_jax.infer", "decode or score with a checkpoint"),
    "plan": ("flan_jax.plan", "per-device memory estimate for a gin config and mesh"),
    "plot": ("flan_jax.plot", "a PNG of training loss and evaluation scores over steps, for one or more runs"),
    "rate": ("flan_jax.rate", "a local page for rating two models' outputs side by side (eval open-ended)"),
}
MODEL_COMMANDS = ("train", "eval", "infer")  # run XLA steps again and again: freed host memory is kept for them


def usage() -> str:
  lines = ["usage: flan-jax <command> [args...]", "", "commands:"]
  lines += [f"  {name:<11} {help_}" for name, (_, help_) in COMMANDS.items()]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help"):
    print(usage())
    return 0 if argv else 2
  command, rest = argv[0], argv[1:]
  if command not in COMMANDS:
    print(f"flan-jax: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
    return 2
  if command in MODEL_COMMANDS:
    host_memory.keep_freed_memory()  # before JAX starts its threads
  module = importlib.import_module(COMMANDS[command][0])
  return int(module.main(rest) or 0)


if __name__ == "__main__":
  sys.exit(main())
