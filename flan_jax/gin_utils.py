"""Gin for the entry points: external configurables and T5X-style flags (`--gin_file`, `--gin.X=Y`, ...).

Library code stays gin-free; this module registers its classes and functions under short module names
(`models.T5Config`, `optimizers.AdafactorConfig`, `partitioning.PartitionerConfig`, ...) so run configs can
bind them, and adds the repo's `gin_configs/` directory as a search path.
"""
from __future__ import annotations

import argparse
import functools
import logging
import os
import pathlib
from typing import Sequence

import gin

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
  from flan_jax.data import feature_converters
  from flan_jax.models import model as model_lib
  from flan_jax.models import t5, decoder_only

  for cls, module in [
      (t5.T5Config, "models"), (model_lib.EncoderDecoderModel, "models"),
      (decoder_only.DecoderOnlyConfig, "models"), (model_lib.DecoderOnlyModel, "models"),
      (optimizers.AdafactorConfig, "optimizers"), (partitioning.PartitionerConfig, "partitioning"),
      (feature_converters.EncDecFeatureConverter, "feature_converters"),
      (feature_converters.PrefixLMFeatureConverter, "feature_converters"),
  ]:
    gin.external_configurable(cls, module=module)
  gin.external_configurable(optimizers.make_schedule, module="optimizers")
  gin.external_configurable(feature_converters.get_feature_converter, module="feature_converters")


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
  """Parses gin files then bindings (later wins); errors name the file or binding at fault."""
  register_configurables()
  _guard_package_resource_lookup()
  for path in [*search_paths, str(REPO_GIN_DIR), str(REPO_GIN_DIR.parent), os.getcwd()]:
    if path:
      gin.add_config_file_search_path(path)
  for f in gin_files:
    try:
      gin.parse_config_file(f)
    except (ValueError, IOError, SyntaxError) as e:
      raise GinConfigError(f"gin file {f}: {e}") from None
  for b in bindings:
    try:
      gin.parse_config(b)
    except (ValueError, SyntaxError) as e:
      raise GinConfigError(f"gin binding `{b}`: {e}") from None
  try:
    gin.finalize()
  except (ValueError, TypeError) as e:
    raise GinConfigError(f"gin config: {e}") from None
