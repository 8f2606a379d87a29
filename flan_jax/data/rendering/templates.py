"""FLAN v2 prompt templates (flan/templates.json) and how upstream fills them in, byte for byte.

- `fill(pattern, features)`: FLAN's `format_from_feature_dictionary`: every `{word}` is replaced by the
  feature of that name (a missing feature is an error naming the pattern); other braces stay literal.
- `FewShotPattern`: the nine dataclass fields of upstream's FewShotPattern plus its combined views.
- Options: `format_options` (deterministic `OPTIONS:\n- a\n- b`) and `format_options_random` (random start
  string, item markers and end string from the OPT_* candidates; when the markers are distinct after
  stripping, i.e. letters or numbers, the answer becomes the marker of the matching option).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import random
import re
from typing import Any, Mapping, Sequence

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import readers

TEMPLATES_JSON = "flan/templates.json"
_FIELD_RE = re.compile(r"({\w*})")

ZS_OPT = "zs_opt"
ZS_NOOPT = "zs_noopt"
FS_OPT = "fs_opt"
FS_NOOPT = "fs_noopt"
TEMPLATE_TYPES = (ZS_OPT, ZS_NOOPT, FS_OPT, FS_NOOPT)


class TemplateError(KeyError):
  """A template names a feature the example lacks, or a pattern key is unknown."""

  def __str__(self) -> str:
    return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class FewShotPattern:
  inputs: str
  targets: str
  inputs_prefix: str = ""
  targets_prefix: str = ""
  x_y_delimiter: str = "\n\n"
  example_separator: str = "\n\n\n"
  final_suffix: str = ""
  input_pattern: str = "{{inputs}}{final_suffix}"
  in_template_mix: bool = True

  @property
  def combined_inputs_w_target_prefix(self) -> str:
    return self.inputs_prefix + self.inputs + self.x_y_delimiter + self.targets_prefix

  @property
  def combined_targets_wo_target_prefix(self) -> str:
    return self.targets + self.example_separator

  @property
  def query_pattern(self) -> str:
    """The pattern wrapped around the assembled few-shot inputs (`{inputs}` + final suffix)."""
    return self.input_pattern.format(final_suffix=self.final_suffix)


@dataclasses.dataclass(frozen=True)
class Templates:
  """The parsed templates.json of one data dir."""
  patterns: Mapping[str, list[tuple[str, str]]]
  patterns_no_options: Mapping[str, list[tuple[str, str]]]
  fewshot_patterns: Mapping[str, list[FewShotPattern]]
  fewshot_patterns_no_options: Mapping[str, list[FewShotPattern]]
  inline_fs_patterns: Mapping[str, list[tuple[str, str]]]
  opt_start_strings: list[str]
  opt_item_names: list[list[str]]
  opt_item_end_strs: list[list[str]]

  def zero_shot(self, key: str, options: bool = True) -> list[tuple[str, str]]:
    table = self.patterns if options else self.patterns_no_options
    return _lookup(table, key, "PATTERNS" if options else "PATTERNS_NO_OPTIONS")

  def few_shot(self, key: str, options: bool = True) -> list[FewShotPattern]:
    table = self.fewshot_patterns if options else self.fewshot_patterns_no_options
    return _lookup(table, key, "FEWSHOT_PATTERNS" if options else "FEWSHOT_PATTERNS_NO_OPTIONS")

  def inline(self, key: str) -> list[tuple[str, str]]:
    return _lookup(self.inline_fs_patterns, key, "INLINE_FS_PATTERNS")


def _lookup(table: Mapping[str, Any], key: str, table_name: str):
  try:
    return table[key]
  except KeyError:
    raise TemplateError(f"no {table_name} entry {key!r} in {TEMPLATES_JSON}") from None


def _pairs(path, table: str, raw: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
  out = {}
  for key, pats in raw.items():
    if not all(isinstance(p, list) and len(p) == 2 for p in pats):
      raise readers.DataFormatError(f"{path}: {table}[{key!r}] must hold [inputs, targets] pairs")
    out[key] = [(p[0], p[1]) for p in pats]
  return out


def _fewshot(path, table: str, raw: Mapping[str, Any]) -> dict[str, list[FewShotPattern]]:
  fields = {f.name for f in dataclasses.fields(FewShotPattern)}
  out = {}
  for key, pats in raw.items():
    try:
      out[key] = [FewShotPattern(**{k: v for k, v in p.items() if k in fields}) for p in pats]
    except TypeError as e:
      raise readers.DataFormatError(f"{path}: {table}[{key!r}]: {e}") from None
  return out


@functools.lru_cache(maxsize=4)
def _load(path: str, size: int, mtime_ns: int) -> Templates:
  del size, mtime_ns
  raw = readers.load_json(path)
  try:
    return Templates(
        patterns=_pairs(path, "PATTERNS", raw["PATTERNS"]),
        patterns_no_options=_pairs(path, "PATTERNS_NO_OPTIONS", raw["PATTERNS_NO_OPTIONS"]),
        fewshot_patterns=_fewshot(path, "FEWSHOT_PATTERNS", raw["FEWSHOT_PATTERNS"]),
        fewshot_patterns_no_options=_fewshot(path, "FEWSHOT_PATTERNS_NO_OPTIONS",
                                             raw["FEWSHOT_PATTERNS_NO_OPTIONS"]),
        inline_fs_patterns=_pairs(path, "INLINE_FS_PATTERNS", raw["INLINE_FS_PATTERNS"]),
        opt_start_strings=list(raw["OPT_START_STRING_CANDIDATES"]),
        opt_item_names=[list(x) for x in raw["OPT_ITEM_NAME_CANDIDATES"]],
        opt_item_end_strs=[list(x) for x in raw["OPT_ITEM_END_STR_CANDIDATES"]],
    )
  except KeyError as e:
    raise readers.DataFormatError(f"{path}:1: missing top-level key {e.args[0]!r}") from None


def load_templates() -> Templates:
  """The templates of the current data dir (parsed once per file version)."""
  path = data_dir_lib.data_file(TEMPLATES_JSON, source="flan")
  st = os.stat(path)
  return _load(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _parts(pattern: str) -> tuple[tuple[bool, str], ...]:
  return tuple((p[0] == "{" and p[-1] == "}", p[1:-1] if p[0] == "{" and p[-1] == "}" else p)
               for p in _FIELD_RE.split(pattern) if p)


def fill(pattern: str, features: Mapping[str, Any]) -> str:
  """Fills `{name}` fields from `features` (non-strings via str()), like FLAN's formatter."""
  out = []
  for is_field, text in _parts(pattern):
    if is_field:
      try:
        value = features[text]
      except KeyError:
        raise TemplateError(f"template {pattern!r} needs feature {text!r}; the example has "
                            f"{sorted(features)}") from None
      out.append(value if isinstance(value, str) else str(value))
    else:
      out.append(text)
  return "".join(out)


def format_options(options: Sequence[str]) -> str:
  """FLAN's deterministic `options_` string."""
  return "OPTIONS:\n- " + "\n- ".join(options)


def format_options_random(options: Sequence[str], answer: str, templates: Templates,
                          rng: random.Random) -> tuple[str, str]:
  """(options_, answer): FLAN's non-deterministic options formatting, drawn from `rng`.

  Draw order (start string, item names, end strings) follows upstream. When the stripped item names
  are all distinct (letters / numbers / roman numerals) and the stripped answer matches a stripped
  option, the answer becomes that option's stripped marker.
  """
  if len(options) > 26:
    raise ValueError(f"at most 26 options can be formatted, got {len(options)}")
  start = templates.opt_start_strings[rng.randrange(len(templates.opt_start_strings))]
  names = templates.opt_item_names[rng.randrange(len(templates.opt_item_names))][:len(options)]
  ends = templates.opt_item_end_strs[rng.randrange(len(templates.opt_item_end_strs))]
  body = "".join(n + o + e for n, o, e in zip(names, options, ends))
  stripped_names = [_tf_strip(n) for n in names]
  match = [i for i, o in enumerate(options) if _tf_strip(o) == _tf_strip(answer)]
  if match and len(set(stripped_names)) == len(stripped_names):
    answer = stripped_names[match[0]]
  return start + body, answer


_ASCII_WS = " \t\n\v\f\r"


def _tf_strip(s: str) -> str:
  """tf.strings.strip: ASCII whitespace only."""
  return s.strip(_ASCII_WS)


def tf_strip(s: str) -> str:
  return _tf_strip(s)


def strip_trailing_spaces(s: str) -> str:
  """TF RE2 `" *$"` -> "": spaces (only) at the very end of the string."""
  return s.rstrip(" ")
