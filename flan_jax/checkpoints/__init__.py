"""Checkpoints: our Orbax format (`manager`), importers from T5X (`t5x`) and Hugging Face (`hf`), `convert`.

Our dirs are read only through `loader` (steps checked against the manifests `integrity` writes at commit, falling
back past damaged ones), written by one trainer at a time (`lock`), and inspected with `flan-jax checkpoints` (`cli`).

The importers share one rule: a checkpoint whose parameter names or shapes differ from what the model expects is
refused with `TreeMismatchError`, whose message lists every missing name, unexpected name and shape mismatch.
"""
from __future__ import annotations

from typing import Any, Mapping


class TreeMismatchError(ValueError):
  """Parameter names or shapes of a checkpoint differ from the model's."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """Nested dicts -> {'a/b/c': leaf}."""
  flat: dict[str, Any] = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      flat.update(flatten(value, name + "/"))
    else:
      flat[name] = value
  return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """{'a/b/c': leaf} -> nested dicts."""
  tree: dict[str, Any] = {}
  for name, value in flat.items():
    *parents, last = name.split("/")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[last] = value
  return tree


def _shape(value: Any) -> tuple[int, ...]:
  return tuple(int(d) for d in (value.shape if hasattr(value, "shape") else value))


def check_tree(expected: Mapping[str, Any], found: Mapping[str, Any], source: str) -> None:
  """Raises TreeMismatchError unless both flat trees have the same names and shapes.

  Leaves may be arrays, ShapeDtypeStructs or shape tuples. `source` names the checkpoint in the message.
  """
  missing = sorted(set(expected) - set(found))
  unexpected = sorted(set(found) - set(expected))
  shapes = sorted(
      (name, _shape(expected[name]), _shape(found[name]))
      for name in set(expected) & set(found)
      if _shape(expected[name]) != _shape(found[name])
  )
  if not (missing or unexpected or shapes):
    return
  lines = [f"{source} does not match the model's parameters:"]
  if missing:
    lines.append(f"  missing from the checkpoint ({len(missing)}): " + ", ".join(missing))
  if unexpected:
    lines.append(f"  unexpected in the checkpoint ({len(unexpected)}): " + ", ".join(unexpected))
  for name, want, got in shapes:
    lines.append(f"  shape mismatch {name}: model {list(want)}, checkpoint {list(got)}")
  raise TreeMismatchError("\n".join(lines))
