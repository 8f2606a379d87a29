"""Gin for the entry points: external configurables and T5X-style flags (`--gin_file`, `--gin.X=Y`, ...).

Library code stays gin-free; this module registers its classes and functions under short module names
(`models.T5Config`, `optimizers.AdafactorConfig`, `partitioning.PartitionerConfig`, ...) so run configs can
bind them, and adds the repo's `gin_configs/` directory as a search path.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import logging
import os
import pathlib
from typing import Sequence

import gin
from gin import config_parser

REPO_GIN_DIR = pathlib.Path(__file__).resolve().parent.parent / "gin_configs"


class GinConfigError(ValueError):
  """A gin file or binding could not be parsed; the message names it."""


def _safe_exists(check):
  def exists(path: str) -> bool:
    try:
      return check(path)
    except (TypeError, AttributeError):
      return False
  return exists


@functools.cache
def _guard_package_resource_lookup() -> None:
  """gin also looks for 'a/b.gin' as a file of Python package `a`; a plain directory such as `runs/` (MODEL_DIR)
  in the working dir is a namespace package without a file, and gin's lookup then raises TypeError instead of
  moving on to the search paths. Treat that case as 'not found'."""
  from gin import resource_reader
  readers = gin.config._FILE_READERS  # noqa: SLF001 - gin has no public way to wrap a registered reader
  for i, (reader, exists) in enumerate(readers):
    if exists is resource_reader.system_path_file_exists:
      readers[i] = (reader, _safe_exists(exists))
  # gin logs "ERROR ... Path not found" for every include it first probes as a package resource before finding
  # it on the search paths; that probe is not an error of the user's.
  logging.getLogger().addFilter(
      lambda record: not (record.pathname.endswith(os.path.join("gin", "resource_reader.py"))
                          and record.getMessage().startswith("Path not found")))


@functools.cache
def register_configurables() -> None:
  """Registers library classes and functions with gin once per process."""
  from flan_jax import optimizers, partitioning
  from flan_jax.data.catalog import ul2r
  from flan_jax.data.files import text_sources
  from flan_jax.data.pipeline import host_batches
  from flan_jax.data.rendering import denoisers
  from flan_jax.models import model as model_lib
  from flan_jax.models import t5, decoder_only

  for cls, module in [
      (t5.T5Config, "models"), (model_lib.EncoderDecoderModel, "models"),
      (decoder_only.DecoderOnlyConfig, "models"), (model_lib.DecoderOnlyModel, "models"),
      (optimizers.AdafactorConfig, "optimizers"), (partitioning.PartitionerConfig, "partitioning"),
      (denoisers.DenoiserConfig, "ul2r"), (denoisers.DenoiserMixture, "ul2r"), (text_sources.TextFiles, "ul2r"),
      (text_sources.TfdsText, "ul2r"), (text_sources.TaskFields, "ul2r"),
  ]:
    gin.external_configurable(cls, module=module)
  gin.external_configurable(optimizers.make_schedule, module="optimizers")
  # T5X's feature-converter names make the trainer's plain input layout, so configuring one imports no seqio.
  gin.external_configurable(host_batches.get_feature_converter, module="feature_converters")
  gin.external_configurable(host_batches.enc_dec_layout, "EncDecFeatureConverter", module="feature_converters")
  gin.external_configurable(host_batches.prefix_lm_layout, "PrefixLMFeatureConverter", module="feature_converters")
  gin.external_configurable(ul2r.mixture_component, module="ul2r")
  from flan_jax import train_config  # T5X's `utils.DatasetConfig` and its siblings
  for cls in (train_config.DatasetConfig, train_config.CheckpointConfig, train_config.EvalConfig,
              train_config.SuiteEvalConfig, train_config.LogConfig):
    gin.external_configurable(cls, module="utils")


def add_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--gin_file", action="append", default=[], help="gin file (repeatable)")
  parser.add_argument("--gin_search_paths", default="", help="comma-separated dirs to find gin files in")
  parser.add_argument("--gin_bindings", action="append", default=[], help="a gin binding 'X = Y' (repeatable)")


def split_gin_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """Pulls T5X-style `--gin.X=Y` flags out of argv: (bindings 'X = Y', the remaining args)."""
  bindings, rest = [], []
  for arg in argv:
    if arg.startswith("--gin."):
      name, sep, value = arg[len("--gin."):].partition("=")
      if not sep:
        raise GinConfigError(f"flag {arg!r}: expected --gin.NAME=VALUE")
      bindings.append(f"{name} = {value}")
    else:
      rest.append(arg)
  return bindings, rest


def parse(gin_files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str] = ()) -> None:
  """Parses gin files then bindings (later wins); errors name the file or binding at fault.

  Strict about macros: one set by a binding or by a file given on the command line (not by the files those
  include, whose macros are defaults for whichever bindings want them) must be read by some binding, else it is
  most likely misspelled (`--gin.TRAIN_STEPZ=10`) and the run would silently use the default. A file's macros
  are judged by the files' bindings, so a command-line binding that overrides the binding reading one is no error.
  """
  register_configurables()
  _guard_package_resource_lookup()
  for path in [*search_paths, str(REPO_GIN_DIR), str(REPO_GIN_DIR.parent), os.getcwd()]:
    if path:
      gin.add_config_file_search_path(path)
  in_files: dict[str, str] = {}
  for f in gin_files:
    resolved = _find_gin_file(f)
    try:
      gin.parse_config_file(resolved)
    except (ValueError, IOError, SyntaxError) as e:
      raise GinConfigError(f"gin file {f}: {e}") from None
    if os.path.isfile(resolved):
      in_files.update(_macros_set_in(pathlib.Path(resolved).read_text(), lambda line, f=f: f"gin file {f}:{line}"))
  check_macros_read(in_files)
  read_by_files = macros_read()
  in_bindings: dict[str, str] = {}
  for b in bindings:
    try:
      gin.parse_config(b)
    except (ValueError, SyntaxError) as e:
      raise GinConfigError(f"gin binding `{b}`: {e}") from None
    in_bindings.update(_macros_set_in(b, lambda line, b=b: f"gin binding `{b}`"))
  try:
    gin.finalize()
  except (ValueError, TypeError) as e:
    raise GinConfigError(f"gin config: {e}") from None
  check_macros_read(in_bindings, read_by_files)


def _find_gin_file(path: str) -> str:
  """The file gin's search paths resolve `path` to (gin's own lookup, which cannot say what it found, also tries
  package resources: where no plain file matches, `path` goes to gin unchanged)."""
  prefixes = gin.config._LOCATION_PREFIXES if not os.path.isabs(path) else [""]  # noqa: SLF001
  for prefix in prefixes:
    candidate = os.path.join(prefix, path)
    if os.path.isfile(candidate):
      return candidate
  return path


def _macros_set_in(text: str, where) -> dict[str, str]:
  """{macro name: where it is set} for the macro assignments (`NAME = value`) of gin text, not its includes."""
  out = {}
  for statement in config_parser.ConfigParser(text, gin.config.ParserDelegate(skip_unknown=True)):
    if isinstance(statement, config_parser.BindingStatement) and not statement.arg_name:
      name = f"{statement.scope}/{statement.selector}" if statement.scope else statement.selector
      out[name] = where(statement.location.line_num)
  return out


def macros_read() -> set[str]:
  """The macros some binding of the parsed config reads (`%NAME`)."""
  config = gin.config._CONFIG  # noqa: SLF001 - gin has no public view of all bindings
  return {"/".join(ref.scopes) for ref in gin.config.iterate_references(config)
          if ref.configurable.selector == "gin.macro"}


def check_macros_read(set_here: dict[str, str], read_before: set[str] = frozenset()) -> None:
  """Raises GinConfigError naming each macro in `set_here` ({name: where}) that no binding reads; `read_before`:
  the macros read before the last bindings were parsed (one of those overrode the binding reading the macro)."""
  read = macros_read()
  unread = sorted(set(set_here) - read)
  if not unread:
    return
  lines = []
  for name in unread:
    close = difflib.get_close_matches(name, sorted(read), n=1, cutoff=0.6)
    if name in read_before:
      hint = " (another binding overrides the one that read it)"
    elif close:
      hint = f"; did you mean {close[0]}?"
    else:
      hint = " (is it misspelled, or meant for another config?)"
    lines.append(f"{set_here[name]}: no binding reads the macro {name}, so setting it changes nothing{hint}")
  raise GinConfigError("\n".join(lines))
