"""What `flan-jax train` is given, grouped as T5X groups it: the dataset, checkpointing, evaluation, logging.

Gin binds these at the entry point only (`gin_configs/runs/finetune.gin` maps T5X's macros onto them:
`utils.DatasetConfig.mixture_or_task_name = %MIXTURE_OR_TASK_NAME`, ...); the library takes them as plain values.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """The training input (T5X's `utils.DatasetConfig` fields, plus flan_jax's).

  mixture_components: (task or mixture, rate) pairs registered as `mixture_or_task_name`.
  only_available: leave out the tasks whose data is absent (each component separately, so their rates keep their
    meaning), said in one line per part; off, a missing part fails before any compile, naming it.
  input_workers: grain worker processes that render, tokenize and pack the input (0: in the training process); the
    batches are the same for any number.
  """
  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  batch_size: int
  module: Any = None
  mixture_components: Sequence[tuple[str, float]] | None = None
  shuffle: bool = True
  use_cached: bool = False
  only_available: bool = False
  input_workers: int = 2


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """Saves every `period` steps (and at the end, and on SIGTERM), keeping the newest `keep` (None: all); a run with
  no checkpoint in MODEL_DIR starts from `initial_path` ('auto' tells ours, T5X's and HF's apart)."""
  period: int = 1000
  keep: int | None = None
  initial_path: str | None = None
  initial_format: str = "auto"


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Teacher-forced metrics on the first `steps` batches of a held-out mixture every `period` steps (0: never)."""
  period: int = 0
  mixture_or_task_name: str | None = None
  mixture_components: Sequence[tuple[str, float]] | None = None
  split: str = "validation"
  steps: int = 10


@dataclasses.dataclass(frozen=True)
class SuiteEvalConfig:
  """The paper's suites (e.g. 'mmlu_direct,bbh_direct') every `period` steps (0: never), at most `limit` examples
  per task; scores go to the metrics as `eval/<suite>`, outputs to `MODEL_DIR/eval_suites/step_<N>/`."""
  suites: str | None = None
  period: int = 0
  limit: int | None = 20
  batch_size: int = 8
  max_input_length: int = 2048
  max_decode_length: int | None = None


@dataclasses.dataclass(frozen=True)
class LogConfig:
  """A console line every `period` steps (metrics.jsonl and TensorBoard get every step). MFU is measured against
  `peak_flops_per_device`, else the fixed peak of the device kind (`metrics_writer.PEAK_FLOPS`)."""
  period: int = 1
  peak_flops_per_device: float | None = None
