"""FLAN's nine chain-of-thought datasets and their input-inversion twins, in every FLAN variant.

18 bases (9 CoT + 9 input inversion) x 23 variants = 414 task names. The 23 per base: 3 zero-shot
(`_template_0_zero_shot`, `_template_0to10_zero_shot`, `_template_0to10_no_opt_zero_shot`) and, for each
of the option / `_no_opt` few-shot pattern sets, 5 formatted bases (`_template_0`, `_1`, `_2`, `_mix`,
`_0to10`) plus their 5 few-shot tasks (`_five_shot`, `_two_shot`, `_one_shot`, `_mix_five_shot`,
`_0to10_x_shot`). CoT rows have no answer options, so there is no `non_deter_opt` variant.
"""
from __future__ import annotations

import functools

from flan_jax.data.catalog import registry
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import readers
from flan_jax.data.rendering import templates as tpl

# (dataset, cot_type): cot_type is "cot" for high-quality rationales, "stream" for low-quality ones.
COT_DATASETS = (
    ("gsm8k", "cot"), ("strategyqa", "cot"), ("creak", "cot"), ("qasc", "cot"), ("esnli", "cot"),
    ("ecqa", "cot"), ("sensemaking", "cot"), ("aqua", "stream"), ("qed", "stream"),
)
DOWNLOAD_SOURCE = "cot"
TASK_SOURCE = "CoT"


def tsv_path(dataset: str) -> str:
  return f"flan/cot/{dataset}_train.tsv"


def _rows(dataset: str):
  return readers.read_cot_tsv(data_dir_lib.data_file(tsv_path(dataset), source=DOWNLOAD_SOURCE))


def _num_rows(dataset: str) -> int:
  return readers.count_valid_cot_rows(data_dir_lib.data_file(tsv_path(dataset),
                                                             source=DOWNLOAD_SOURCE))


def _check(dataset: str) -> None:
  data_dir_lib.data_file(tsv_path(dataset), source=DOWNLOAD_SOURCE)


def cot_datasets() -> list[registry.FlanDataset]:
  """The 18 CoT bases: `<type>_<name>` and `<type>_input_inversion_<name>` (`_task_name` `<type>_<name>_ii`)."""
  out = []
  for name, cot_type in COT_DATASETS:
    common = dict(task_source=TASK_SOURCE, rows=functools.partial(_rows, name),
                  num_rows=functools.partial(_num_rows, name),
                  check_available=functools.partial(_check, name))
    base = f"{cot_type}_{name}"
    out.append(registry.FlanDataset(name=base, pattern_key=base, task_name=base, **common))
    ii = f"{cot_type}_input_inversion_{name}"
    out.append(registry.FlanDataset(name=ii, pattern_key=ii, task_name=f"{base}_ii", **common))
  return out


def base_names(input_inversion: bool) -> list[str]:
  return [d.name for d in cot_datasets() if ("_input_inversion_" in d.name) == input_inversion]


def register(templates: tpl.Templates | None = None) -> list[str]:
  """Registers every CoT variant; returns the task names (414)."""
  t = templates or tpl.load_templates()
  names = []
  for d in cot_datasets():
    names += registry.register_variants(d, registry.flan_variants(d.pattern_key, d.has_options,
                                                                  d.name, t))
  return names
