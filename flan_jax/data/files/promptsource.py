"""promptsource templates (`promptsource/templates/<dataset>/[<subset>/]templates.yaml`) rendered in a sandbox.

A template is Jinja whose output is split on `|||` into the prompt and the target (each stripped); its
optional `answer_choices` is Jinja too, rendered on the same row and split on `|||` into the list the
template reads as `answer_choices`. Rendering happens in `jinja2.sandbox.SandboxedEnvironment`, so a
template cannot reach Python internals. The environment offers what promptsource's own offers: the
`zip` global and the `choice`, `most_frequent` and `highlight` filters (`choice` draws from a seeded
`random.Random`, so a row renders the same every time).

This is T0-SF's second route (tasks/t0.py): users with the raw datasets render P3's rows themselves.
P3 names a subtask `<dataset>_<subset>_<template name>` with every run of characters outside [\\w.]
replaced by `_`; `find_template` inverts that.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import os
import pathlib
import random
import re
from typing import Any, Mapping, Sequence

import jinja2
import jinja2.sandbox
import yaml

from flan_jax.data.files import data_dir as data_dir_lib

TEMPLATES_DIR = "promptsource/templates"
SEPARATOR = "|||"
_NOT_NAME = re.compile(r"[^\w.]+")


class PromptsourceError(ValueError):
  """A templates.yaml that cannot be read, or a template that fails on a row (message names both)."""


@dataclasses.dataclass(frozen=True)
class Template:
  id: str
  name: str
  jinja: str
  answer_choices: str | None
  dataset: str
  subset: str | None
  path: str
  line: int
  original_task: bool | None = None
  choices_in_prompt: bool | None = None

  @property
  def where(self) -> str:
    return f"{self.path}:{self.line} (template {self.name!r})"


@dataclasses.dataclass(frozen=True)
class Rendered:
  """A rendered row: the prompt, the target ('' when the template gives none for this row), and the
  rendered answer choices (None for templates without them)."""
  inputs: str
  targets: str
  answer_choices: list[str] | None


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
  """The (C, when built) SafeLoader that reads promptsource's `!Template` / `!TemplateMetadata` tags as mappings, with the
  line each template starts on."""


def _tagged(loader: _Loader, node: yaml.MappingNode) -> dict:
  out = loader.construct_mapping(node, deep=True)
  out["__line__"] = node.start_mark.line + 1
  return out


_Loader.add_constructor("!Template", _tagged)
_Loader.add_constructor("!TemplateMetadata", _tagged)


def templates_root() -> pathlib.Path:
  return data_dir_lib.data_file(TEMPLATES_DIR, source="promptsource")


def yaml_path(dataset: str, subset: str | None = None) -> pathlib.Path:
  rel = f"{TEMPLATES_DIR}/{dataset}/{subset}/templates.yaml" if subset else \
      f"{TEMPLATES_DIR}/{dataset}/templates.yaml"
  return data_dir_lib.data_file(rel, source="promptsource")


def load(dataset: str, subset: str | None = None) -> dict[str, Template]:
  """The templates of one dataset (and subset), by name."""
  path = yaml_path(dataset, subset)
  st = os.stat(path)
  return _load_file(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=512)
def _load_file(path: str, size: int, mtime_ns: int) -> dict[str, Template]:
  del size, mtime_ns
  try:
    with open(path, encoding="utf-8") as f:
      raw = yaml.load(f, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
  except yaml.YAMLError as e:
    mark = getattr(e, "problem_mark", None)
    line = mark.line + 1 if mark else 1
    raise PromptsourceError(f"{path}:{line}: not valid YAML: {e}") from None
  if not isinstance(raw, dict) or not isinstance(raw.get("templates"), dict):
    raise PromptsourceError(f"{path}:1: expected top-level 'dataset' and 'templates' keys")
  out = {}
  for key, t in raw["templates"].items():
    if not isinstance(t, dict) or not isinstance(t.get("jinja"), str) or "name" not in t:
      line = t.get("__line__", 1) if isinstance(t, dict) else 1
      raise PromptsourceError(f"{path}:{line}: template {key} lacks 'name' or 'jinja'")
    meta = t.get("metadata") or {}
    out[str(t["name"])] = Template(
        id=str(t.get("id", key)), name=str(t["name"]), jinja=t["jinja"],
        answer_choices=t.get("answer_choices"), dataset=str(raw.get("dataset")),
        subset=raw.get("subset"), path=path, line=t["__line__"],
        original_task=meta.get("original_task"), choices_in_prompt=meta.get("choices_in_prompt"))
  return out


def all_yaml_files() -> list[tuple[str, str | None]]:
  """(dataset, subset) of every templates.yaml in the data dir, sorted."""
  root = templates_root()
  out = []
  for p in sorted(root.rglob("templates.yaml")):
    parts = p.relative_to(root).parts[:-1]
    out.append((parts[0], parts[1] if len(parts) > 1 else None))
  return out


def p3_name(dataset: str, subset: str | None, template_name: str) -> str:
  """The P3 subtask name of a template (`super_glue_copa_exercise`, `cos_e_v1.11_i_think`)."""
  parts = [dataset] + ([subset] if subset else []) + [template_name]
  return "_".join(_NOT_NAME.sub("_", p) for p in parts)


@functools.lru_cache(maxsize=4)
def _yaml_files(root: str) -> tuple[tuple[str, str | None], ...]:
  del root  # the cache key: one listing per data dir
  return tuple(all_yaml_files())


def find_template(p3_subtask: str) -> Template:
  """The promptsource template behind a P3 subtask name, or a KeyError naming the subtask.
  Only the templates.yaml files whose `<dataset>_<subset>_` prefix the name starts with are read."""
  for dataset, subset in _yaml_files(str(templates_root())):
    prefix = p3_name(dataset, subset, "")
    if not p3_subtask.startswith(prefix):
      continue
    for name, template in load(dataset, subset).items():
      if p3_name(dataset, subset, name) == p3_subtask:
        return template
  raise KeyError(f"no promptsource template in {templates_root()} is named like P3 subtask "
                 f"{p3_subtask!r}")


# --------------------------------------------------------------------------------------------------
# Rendering.

def _most_frequent(items: Sequence[Any]) -> Any:
  """The most common item (first seen wins a tie), as promptsource's filter."""
  counts = collections.Counter(items)
  best = max(counts.values())
  return next(x for x in items if counts[x] == best)


def _environment(rng: random.Random) -> jinja2.sandbox.SandboxedEnvironment:
  env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
  env.globals["zip"] = zip
  env.filters["choice"] = lambda seq: seq[rng.randrange(len(seq))]
  env.filters["most_frequent"] = _most_frequent
  env.filters["highlight"] = lambda s: s  # promptsource's UI markup; plain text here
  return env


def render(template: Template, row: Mapping[str, Any], seed: int | str = 0) -> Rendered:
  """Renders one row; a template error becomes a PromptsourceError naming the file, line and template."""
  rng = random.Random(f"{template.id}:{seed}")
  env = _environment(rng)
  try:
    choices = None
    if template.answer_choices:
      text = env.from_string(template.answer_choices).render(**row)
      choices = [c.strip() for c in text.split(SEPARATOR)]
    out = env.from_string(template.jinja).render(**row, answer_choices=choices)
  except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError, ZeroDivisionError) as e:
    raise PromptsourceError(f"{template.where}: cannot render the row: {type(e).__name__}: {e}") from None
  parts = [p.strip() for p in out.split(SEPARATOR)]
  if len(parts) > 2:
    raise PromptsourceError(f"{template.where}: the output has {len(parts) - 1} '{SEPARATOR}' separators")
  return Rendered(parts[0], parts[1] if len(parts) == 2 else "", choices)


def p3_row(template: Template, row: Mapping[str, Any], seed: int | str = 0) -> dict[str, Any] | None:
  """The P3 features of a raw row (`inputs_pretokenized`, `targets_pretokenized`, `answer_choices`),
  or None where the template yields no prompt or no target for the row (P3 leaves such rows out)."""
  r = render(template, row, seed)
  if not r.inputs or not r.targets:
    return None
  out: dict[str, Any] = {"inputs_pretokenized": r.inputs, "targets_pretokenized": r.targets}
  if r.answer_choices is not None:
    out["answer_choices"] = r.answer_choices
  return out

