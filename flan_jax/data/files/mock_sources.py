"""Offline mock rows for the TFDS-backed Flan families (Muffin, T0-SF, Dialog), for tests and benchmarks.

`mock_tfds_sources` makes the given TFDS datasets readable without their prepared files: it draws rows once
per dataset, writes the prepared-version markers `tfds_source.check` looks for, points the TFDS data dir at
them and serves the rows through `tfds_source.read` / `num_examples`; on exit all of that is undone.

Rows per family:
- Muffin: `tfds.testing.mock_data` rows with the real TFDS feature specs (read through TFDS's random-access
  API, converted to what `tfds.as_numpy` yields), so a broken field mapping shows. mock_data draws random
  values, which break rows the way real data never does (labels outside the options, no '_' blank in a
  winogrande sentence, option lists of random length), so values are made valid; field names and types stay
  TFDS's. Datasets mock_data cannot build offline (`huggingface:xsum`, and FLAN versions the installed TFDS
  code no longer has: multi_news 1.0.0, winogrande 1.1.0) get hand-written rows with the same features.
- Dialog: mock_data rows given `DIALOG_TURNS` turns "turn 0", "turn 1", ... (and qrecc a turn_id past FLAN's
  filter), since mock_data draws random sequence lengths and ids.
- T0-SF: `huggingface:bigscience__p3/<subtask>` cannot be mocked offline (its builder would query the Hub), so
  its rows are hand-written with P3's features (`p3_row`).

grain's worker processes do not see the patched readers, and need not: they read the rows the input's process read,
from the file it shares with them (`flan_render.share_rows`).

`mock_niv2_tasks` is the same for the NIv2 task files the data dir lacks: an overlay data dir whose files are links
to the real ones, plus small task files for the missing tasks (their definitions from flan/niv2_tasks.json, which
also keeps their mixture rates real).

The library never imports `tasks`, so the caller names the datasets (e.g. `[c.tfds for c in
muffin.CONFIGS.values()]`). Tasks bind `tfds_source.num_examples` when they are registered, so register
them inside the context (`tasks.register_all()`, or a family's `register()`); once the context exits, the
tasks registered in it read the real sources again.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import pathlib
import shutil
import tempfile
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import readers, row_store, tfds_source

MARKER_VERSION = "1.0.0"  # the version dir marked for community datasets, which pin none
DIALOG_TURNS = 9
QRECC_TURN_ID = 7  # FLAN keeps qrecc rows with turn_id > 6
MUFFIN_IN_MEMORY: dict[str, Callable[[int], dict[str, Any]]] = {
    "huggingface:xsum": lambda i: {"document": f"Doc {i} says things.".encode(), "summary": f"Sum {i}.".encode(),
                                   "id": str(i).encode()},
    "multi_news:1.0.0": lambda i: {"document": f"News {i} ||||| more.".encode(), "summary": f"- S{i}".encode()},
    "winogrande:1.1.0": lambda i: {"sentence": f"Ann gave Bo {i} because _ was kind.".encode(),
                                   "option1": b"Ann", "option2": b"Bo", "label": i % 2},
}
# Text endings some Muffin preprocessors require of a feature (a blank, a placeholder, lettered options).
_MUFFIN_TEXT_TAILS = {"sentence": b" _ end", "query": b" @placeholder tail", "input": b" (A) a (B) b (C) c (D) d"}
_MUFFIN_OPTIONS = 4


class MockDataError(RuntimeError):
  """tfds.testing.mock_data cannot build a dataset offline; the message names it."""


def _as_numpy(value: Any) -> Any:
  """A value from a TFDS data source as `tfds.as_numpy` yields it: bytes for text, numpy scalars, and
  object arrays of bytes for text sequences; nested features (dicts, lists) converted throughout."""
  if isinstance(value, dict):
    return {k: _as_numpy(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_as_numpy(v) for v in value]
  if isinstance(value, np.ndarray) and value.ndim == 0:
    return _as_numpy(value[()])
  if isinstance(value, str):
    return value.encode()
  if isinstance(value, np.ndarray) and value.dtype.kind == "U":
    return np.array([s.encode() for s in value.tolist()], dtype=object)
  return value


def _valid_muffin_row(value: Any, key: str = "") -> Any:
  """A mock value (as_numpy form) made valid for the Muffin preprocessors: text prefixed so it is never
  empty (plus the ending its feature needs), text sequences as exactly four options, integers (labels) 1."""
  if isinstance(value, dict):
    return {k: _valid_muffin_row(v, k) for k, v in value.items()}
  if isinstance(value, list):  # nested tfds.features.Dataset
    return [_valid_muffin_row(v, key) for v in value]
  if isinstance(value, bytes):
    return b"Ww1 w2. " + value + _MUFFIN_TEXT_TAILS.get(key, b"")
  if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "SO":
    items = [b"Opt %d %s" % (i, v) for i, v in enumerate(value.tolist()[:_MUFFIN_OPTIONS])]
    return np.array(items + [b"Opt %d" % i for i in range(len(items), _MUFFIN_OPTIONS)], dtype=object)
  if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
    return np.int64(1)
  return value


def _valid_dialog_row(ex: dict[str, Any]) -> dict[str, Any]:
  """A mock wiki_dialog / qrecc row with DIALOG_TURNS turns, and a qrecc turn_id FLAN keeps."""
  ex = dict(ex)
  ex["utterances" if "utterances" in ex else "context"] = np.array(
      [b"turn %d" % i for i in range(DIALOG_TURNS)], dtype=object)
  if "turn_id" in ex:
    ex["turn_id"] = np.int32(QRECC_TURN_ID)
  return ex


def p3_row(subtask: str, multiple_choice: bool, i: int) -> dict[str, Any]:
  """Row `i` of a P3 subtask: a question naming the subtask; multiple choice answers the (i % 3)-th of three
  choices, others " answer <i>" (with the stray newlines and spaces P3 prompts carry)."""
  row = {"inputs": np.arange(3, dtype=np.int32), "targets": np.arange(2, dtype=np.int32),
         "inputs_pretokenized": f"Question {i} about {subtask}?\nPick well.\n".encode()}
  if multiple_choice:
    choices = [f"choice {j}\n" for j in range(3)]
    row["answer_choices"] = np.array([c.encode() for c in choices], dtype=object)
    row["targets_pretokenized"] = choices[i % 3].encode()
  else:
    row["targets_pretokenized"] = f" answer {i}\n".encode()
  return row


def _mock_data_rows(specs: Iterable[tfds_source.TfdsSpec], num_rows: int,
                    valid: Callable[[Any], Any]) -> dict[str, list[dict[str, Any]]]:
  """`num_rows` rows per dataset from one mock_data context, in a private data dir."""
  specs = list(specs)
  if not specs:
    return {}
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  (slow import)
  out = {}
  with tempfile.TemporaryDirectory() as scratch, tfds.testing.mock_data(num_examples=num_rows):
    for spec in specs:
      if spec.full_name in out:
        continue
      try:
        builder = tfds.builder(spec.full_name, data_dir=scratch, try_gcs=False)
        source = builder.as_data_source(split=spec.split.split("[")[0])
        out[spec.full_name] = [valid(_as_numpy(source[i])) for i in range(len(source))]
      except Exception as e:  # TFDS raises many types here; each means the same to the caller
        raise MockDataError(f"tfds.testing.mock_data cannot build {spec.full_name} offline ({type(e).__name__}: "
                            f"{e}); give it hand-written rows with its features") from e
  return out


def _draw_rows(muffin: list[tfds_source.TfdsSpec], dialog: list[tfds_source.TfdsSpec],
               p3: Mapping[tfds_source.TfdsSpec, bool], num_rows: int) -> dict[str, row_store.RowStore]:
  """The mock rows of each dataset, by `TfdsSpec.full_name` (specs differing only in split share them), held
  compactly: a benchmark's mixture mocks thousands of rows in every dataset."""
  rows = {s.full_name: [MUFFIN_IN_MEMORY[s.full_name](i) for i in range(num_rows)]
          for s in muffin if s.full_name in MUFFIN_IN_MEMORY}
  rows |= _mock_data_rows([s for s in muffin if s.full_name not in rows], num_rows, _valid_muffin_row)
  rows |= _mock_data_rows(dialog, num_rows, _valid_dialog_row)
  for spec, multiple_choice in p3.items():
    subtask = spec.name.rsplit("/", 1)[-1]
    rows[spec.full_name] = [p3_row(subtask, multiple_choice, i) for i in range(num_rows)]
  return {name: row_store.RowStore.of(r) for name, r in rows.items()}


def _write_markers(tfds_dir: pathlib.Path, specs: Iterable[tfds_source.TfdsSpec]) -> list[pathlib.Path]:
  """Writes the prepared-version markers of `specs`; returns the top-level dirs this created."""
  specs = list(specs)
  created = sorted({tfds_dir / s.relative_dir().parts[0] for s in specs} - set(tfds_dir.iterdir()))
  for spec in specs:
    version_dir = tfds_dir / spec.relative_dir() / (spec.version or MARKER_VERSION)
    version_dir.mkdir(parents=True, exist_ok=True)
    if not (version_dir / "dataset_info.json").exists():
      (version_dir / "dataset_info.json").write_text("{}")
  return created


@contextlib.contextmanager
def mock_tfds_sources(tfds_dir: str | os.PathLike, *, muffin: Iterable[tfds_source.TfdsSpec] = (),
                      dialog: Iterable[tfds_source.TfdsSpec] = (),
                      p3: Mapping[tfds_source.TfdsSpec, bool] | None = None,
                      num_rows: int = 12, isolated: bool = False) -> Iterator[dict[str, row_store.RowStore]]:
  """Serves mock rows for the given datasets from `tfds_dir` while the context is open.

  muffin / dialog: the TFDS specs the Muffin / Dialog tasks read; p3: each T0-SF subtask's spec and whether
  it is multiple choice. `isolated`: draw the rows in a spawned child process, so this one never imports
  TensorFlow (mock_data needs it; a process measuring the TF-free rendering path must not). Yields the rows by
  `TfdsSpec.full_name` (each a sequence of row dicts). On exit the readers, the TFDS data dir and the opened
  builders are as before, and the marker dirs this created under `tfds_dir` are removed.
  Datasets not given are read from the real TFDS sources (in `tfds_dir`, so they are missing).
  """
  muffin, dialog, p3 = list(muffin), list(dialog), dict(p3 or {})
  if isolated:
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
      rows = child.submit(_draw_rows, muffin, dialog, p3, num_rows).result()
  else:
    rows = _draw_rows(muffin, dialog, p3, num_rows)
  tfds_dir = pathlib.Path(tfds_dir)
  tfds_dir.mkdir(parents=True, exist_ok=True)
  created = _write_markers(tfds_dir, [*muffin, *dialog, *p3])
  real_read, real_num_examples = tfds_source.read, tfds_source.num_examples
  sizes = {name: len(r) for name, r in rows.items()}  # what registered tasks keep (and pickle), not the rows
  previous_dir = tfds_source._explicit  # pylint: disable=protected-access  (restored exactly, None included)
  live = True

  def read(spec: tfds_source.TfdsSpec) -> Iterator[tuple[int, dict[str, Any]]]:
    return enumerate(rows[spec.full_name]) if live and spec.full_name in rows else real_read(spec)

  def num_examples(spec: tfds_source.TfdsSpec) -> int:
    # Tasks registered in the context keep this function: after exit it defers to the real one.
    return sizes[spec.full_name] if live and spec.full_name in sizes else real_num_examples(spec)

  tfds_source.read, tfds_source.num_examples = read, num_examples
  tfds_source.set_tfds_data_dir(tfds_dir)
  tfds_source.clear_cache()
  try:
    yield rows
  finally:
    live = False
    tfds_source.read, tfds_source.num_examples = real_read, real_num_examples
    tfds_source.set_tfds_data_dir(previous_dir)
    tfds_source.clear_cache()
    for d in created:
      shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def mock_niv2_tasks(overlay_dir: str | os.PathLike, tasks: Iterable[str], num_rows: int = 12) -> Iterator[list[str]]:
  """Makes the data dir an overlay of the current one in which every NIv2 task of `tasks` has a task file.

  Every entry of the current data dir is linked into `overlay_dir`, except niv2/tasks/, which holds links to the
  real task files and `num_rows`-instance files for the tasks without one. Yields the mocked task names; on exit
  the data dir is the previous one again (the overlay's files stay in `overlay_dir`, the caller's to remove).
  """
  real = data_dir_lib.data_dir()
  overlay = pathlib.Path(overlay_dir)
  meta = readers.niv2_metadata()
  overlay.mkdir(parents=True, exist_ok=True)
  for entry in real.iterdir():
    if entry.name != "niv2":
      (overlay / entry.name).symlink_to(entry)
  for entry in (real / "niv2").iterdir():
    if entry.name != "tasks":
      (overlay / "niv2").mkdir(parents=True, exist_ok=True)
      (overlay / "niv2" / entry.name).symlink_to(entry)
  task_dir = overlay / readers.NIV2_TASKS_DIR
  task_dir.mkdir(parents=True, exist_ok=True)
  mocked = []
  for task in tasks:
    real_file = real / readers.NIV2_TASKS_DIR / f"{task}.json"
    if real_file.exists():
      (task_dir / real_file.name).symlink_to(real_file)
      continue
    instances = [{"id": f"{task}-{i}", "input": f"Mock input {i} of {task}.", "output": [f"mock output {i}"]}
                 for i in range(num_rows)]
    (task_dir / f"{task}.json").write_text(json.dumps({"Definition": [meta[task]["definition"]],
                                                       "Instances": instances}))
    mocked.append(task)
  previous = data_dir_lib._explicit  # pylint: disable=protected-access  (restored exactly, None included)
  data_dir_lib.set_data_dir(overlay)
  try:
    yield mocked
  finally:
    data_dir_lib.set_data_dir(previous)
