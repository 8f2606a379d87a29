"""Read-only access to prepared TFDS datasets: never downloads, never builds, never waits on the network.

The TFDS data dir comes from `--tfds_data_dir` (`set_tfds_data_dir`), then `$TFDS_DATA_DIR`, then TFDS's
default `~/tensorflow_datasets`. A dataset is present when `<dir>/<name>[/<config>]/<version>/dataset_info.json`
exists; that is decided on the file system alone, so a missing dataset (including `huggingface:` community
datasets, whose builders would otherwise query the Hub) fails at once with the command or manual step that
prepares it. Present datasets are opened with `tfds.builder_from_directory`, which reads files only.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import re
from typing import Any, Iterator

import numpy as np

from flan_jax.data.files import data_dir as data_dir_lib

ENV_VAR = "TFDS_DATA_DIR"
HF_PREFIX = "huggingface:"
_NAME_RE = re.compile(r"^(huggingface:)?[\w.-]+(/[\w.-]+)?$")
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")

_explicit: pathlib.Path | None = None


class TfdsMissingError(data_dir_lib.DataMissingError):
  """A TFDS dataset is not prepared in the TFDS data dir; the message says how to prepare it."""


def set_tfds_data_dir(path: str | os.PathLike | None) -> None:
  """Sets the TFDS data dir from a `--tfds_data_dir` flag; None falls back to $TFDS_DATA_DIR."""
  global _explicit
  _explicit = pathlib.Path(path).expanduser() if path else None


def tfds_data_dir() -> pathlib.Path:
  if _explicit is not None:
    return _explicit
  env = os.environ.get(ENV_VAR)
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path("~/tensorflow_datasets").expanduser()


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
  """One TFDS dataset at a pinned version and the split expression a task reads.

  name: `dataset` or `dataset/config` (or `huggingface:dataset`); version: `X.Y.Z`, or None for
  community datasets (the newest prepared version is used). manual: the manual download step,
  for datasets whose TFDS builder needs files placed in `--manual_dir` first.
  """
  name: str
  version: str | None
  split: str = "train"
  manual: str | None = None

  def __post_init__(self):
    if not _NAME_RE.match(self.name):
      raise ValueError(f"bad TFDS dataset name {self.name!r}")
    if self.version is not None and not _VERSION_RE.match(self.version):
      raise ValueError(f"bad TFDS version {self.version!r} for {self.name}")

  @property
  def full_name(self) -> str:
    return f"{self.name}:{self.version}" if self.version else self.name

  @property
  def is_community(self) -> bool:
    return self.name.startswith(HF_PREFIX)

  def relative_dir(self) -> pathlib.Path:
    """Where TFDS keeps the dataset under the data dir, up to (not including) the version."""
    name = self.name.removeprefix(HF_PREFIX)
    if self.is_community:
      # TFDS names community builders after the Hub id with '/' -> '__' (e.g. bigscience__p3).
      parts = name.split("/")
      return pathlib.Path(parts[0]).joinpath(*parts[1:])
    return pathlib.Path(*name.split("/"))


def prepared_dir(spec: TfdsSpec, data_dir: pathlib.Path | None = None) -> pathlib.Path | None:
  """The prepared version dir of `spec`, or None; file-system checks only."""
  base = (data_dir or tfds_data_dir()) / spec.relative_dir()
  if spec.version is not None:
    d = base / spec.version
    return d if (d / "dataset_info.json").is_file() else None
  if not base.is_dir():
    return None
  found = sorted((p.parent for p in base.glob("*/dataset_info.json")), key=lambda p: _version_key(p.name))
  found += sorted((p.parent for p in base.glob("*/*/dataset_info.json")),
                  key=lambda p: _version_key(p.name))
  return found[-1] if found else None


def _version_key(v: str) -> tuple[int, ...]:
  return tuple(int(x) for x in v.split(".")) if _VERSION_RE.match(v) else (-1,)


def how_to_prepare(spec: TfdsSpec, data_dir: pathlib.Path | None = None) -> str:
  """The command (and manual step, if any) that prepares `spec` in the TFDS data dir."""
  d = data_dir or tfds_data_dir()
  if spec.is_community:
    return (f"on a machine with network, run `tfds build {spec.name} --data_dir {d}` (or load it once "
            f"with tfds.load('{spec.name}', data_dir='{d}')), then copy {d / spec.relative_dir()} here")
  cmd = f"tfds build {spec.full_name} --data_dir {d}"
  if spec.manual:
    return f"{spec.manual}; then run `{cmd} --manual_dir DIR`"
  return f"on a machine with network run `{cmd}`, then copy {d / spec.relative_dir() / str(spec.version)} here"


def check(spec: TfdsSpec, data_dir: pathlib.Path | None = None) -> pathlib.Path:
  """The prepared dir of `spec`, or a TfdsMissingError naming how to prepare it (never blocks)."""
  found = prepared_dir(spec, data_dir)
  if found is None:
    d = data_dir or tfds_data_dir()
    raise TfdsMissingError(
        f"TFDS dataset {spec.full_name} is not prepared in {d} (from --tfds_data_dir, then ${ENV_VAR}, "
        f"then ~/tensorflow_datasets; datasets are never downloaded here): {how_to_prepare(spec, d)}")
  return found


@functools.lru_cache(maxsize=256)
def _builder(spec: TfdsSpec, data_dir: str, prepared: str):
  """A builder reading the prepared files. Built-in datasets use their code builder (which reads
  prepared files and, for versions the installed code no longer has, falls back to the files alone);
  community datasets use the files alone, so the Hub is never queried."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  (slow import)
  if spec.is_community:
    return tfds.builder_from_directory(prepared)
  return tfds.builder(spec.full_name, data_dir=data_dir, try_gcs=False)


def builder(spec: TfdsSpec):
  prepared = check(spec)
  return _builder(spec, str(tfds_data_dir()), str(prepared))


def num_examples(spec: TfdsSpec) -> int:
  """Examples in `spec.split` (slices such as `train[:-200]` resolved) from dataset_info.json.

  These are the rows TFDS stores, counted before any task's own filters (FLAN drops e.g. gigaword rows
  with UNK, ARC questions without four options, unlabelled SNLI pairs) or malformed-row skips: knowing
  those needs a full read, so callers that use this as a task size get an upper bound.
  """
  b = builder(spec)
  return int(b.info.splits[spec.split].num_examples)


class TfdsFormatError(ValueError):
  """A prepared TFDS file cannot be read; the message names the file and record."""


def read(spec: TfdsSpec) -> Iterator[tuple[int, dict[str, Any]]]:
  """(index within the split, example) in file order, read-only, with values as `tfds.as_numpy` gives them
  (bytes for text, numpy scalars and arrays); a sequence of sequences comes as a list of arrays.

  Records are decoded by TFDS's numpy parser, so reading imports no TensorFlow (the input process renders
  TFDS-backed tasks without it). TFRecord files are read record by record (framing checked, CRCs not);
  ArrayRecord files through TFDS's data source. A truncated or undecodable record raises TfdsFormatError naming
  the file and record.
  """
  from tensorflow_datasets.core import file_adapters  # pylint: disable=import-outside-toplevel  (slow import)
  b = builder(spec)
  features = b.info.features
  if b.info.file_format == file_adapters.FileFormat.ARRAY_RECORD:
    source = b.as_data_source(split=spec.split)
    for i in range(len(source)):
      yield i, _like_as_numpy(source[i], features)
    return
  if b.info.file_format != file_adapters.FileFormat.TFRECORD:
    raise TfdsFormatError(f"{spec.full_name}: prepared as {b.info.file_format.value}; only tfrecord and "
                          "array_record are read (prepare it with --file_format=tfrecord)")
  index = 0
  for instruction in b.info.splits[spec.split].file_instructions:
    path = pathlib.Path(b.data_dir) / instruction.filename  # absolute names stay absolute
    end = None if instruction.take == -1 else instruction.skip + instruction.take
    for record_no, record in enumerate(_tfrecords(path)):
      if record_no < instruction.skip:
        continue
      if end is not None and record_no >= end:
        break
      try:
        example = features.deserialize_example_np(record)
      except Exception as e:  # protobuf and TFDS raise several types for a bad record; each means the same
        raise TfdsFormatError(f"{path}: record {record_no}: cannot decode ({type(e).__name__}: {e})") from None
      yield index, _like_as_numpy(example, features)
      index += 1


_TFRECORD_HEADER = 12  # uint64 length + uint32 masked CRC of it; the data is followed by its uint32 CRC


def _tfrecords(path: pathlib.Path) -> Iterator[bytes]:
  with open(path, "rb") as f:
    record_no = 0
    while header := f.read(_TFRECORD_HEADER):
      if len(header) < _TFRECORD_HEADER:
        raise TfdsFormatError(f"{path}: record {record_no}: truncated header")
      size = int.from_bytes(header[:8], "little")
      data = f.read(size + 4)
      if len(data) < size + 4:
        raise TfdsFormatError(f"{path}: record {record_no}: truncated ({len(data)} of {size + 4} bytes)")
      yield data[:size]
      record_no += 1


def _like_as_numpy(value: Any, feature: Any) -> Any:
  """A value from TFDS's numpy parser in the types `tfds.as_numpy` yields: numpy scalars of the feature's
  dtype (bytes for text), numpy arrays for sequences of scalars."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  if isinstance(feature, tfds.features.FeaturesDict):
    return {k: _like_as_numpy(value[k], f) for k, f in feature.items()}
  if isinstance(feature, tfds.features.Sequence):
    return _sequence_as_numpy(value, feature.feature)
  return np.asarray(value, feature.np_dtype)[()]


def _sequence_as_numpy(value: Any, feature: Any) -> Any:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  if isinstance(feature, tfds.features.FeaturesDict):  # a sequence of dicts arrives as a dict of sequences
    return {k: _sequence_as_numpy(value[k], f) for k, f in feature.items()}
  if isinstance(feature, tfds.features.Sequence):
    return [_sequence_as_numpy(v, feature.feature) for v in value]
  return np.asarray(value, feature.np_dtype)


def clear_cache() -> None:
  """Forgets opened builders (after the TFDS data dir changes)."""
  _builder.cache_clear()
