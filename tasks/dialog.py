"""Dialog: wiki_dialog and qrecc (next-turn prediction) and their input-inversion twins, in every FLAN variant.

Sources (read-only TFDS, FLAN's versions): `wiki_dialog/OQ:1.0.0` (the default config, named so the prepared
dir is known without TFDS code) and `q_re_cc:1.0.0`. Task Master, the third upstream dialog set, is not in
FLAN's release (legal constraints), so it is not here either.

FLAN's preprocessing, re-expressed:
- wiki_dialog: drop the first utterance (the assistant's introduction); qrecc: keep rows with turn_id > 6
  and read `context`. Then pick an answer turn at an odd index 2k+1, k uniform in [0, min(turns // 2, 20)),
  and keep the turns before it as the dialog. Upstream draws k with unseeded TF randomness; we draw it from
  a `random.Random` keyed by (dataset, row index), so a row always picks the same turn.
- `dialog_`, deterministic: "DIALOG:\\n" + turns joined by "\\n- " + "\\n- ".
- `dialog_`, non-deterministic (the `_template_0to10_non_deter_opt_zero_shot` task, as upstream): a start
  string, per-turn speaker names and end strings drawn from templates.json's DIALOG_START_STRING_CANDIDATES,
  DIALOG_ITEM_NAME_CANDIDATES and DIALOG_ITEM_END_STR_CANDIDATES (in that order), each turn written as
  name + turn + end, then the next speaker's name to prompt the reply. Drawn from a `random.Random` keyed by
  (dataset, row index).
Rows too short to hold a dialog and an answer are malformed (warned and counted); qrecc's turn filter is
FLAN's own and only counted. Rows carry `_task_name` = the dataset (input inversion: `<dataset>_ii`) and
`_task_source` = "Dialog".
"""
from __future__ import annotations

import dataclasses
import functools
import random
from typing import Any, Callable, Iterator

from flan_jax.data.catalog import registry
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import readers, tfds_source
from flan_jax.data.rendering import templates as tpl
from tasks import muffin_preprocessors as mp

TASK_SOURCE = "Dialog"
MIXTURE_KEY = "Dialog"
MIXTURE_KEY_II = "Dialog-II"
MAX_ANSWER_PAIRS = 20
QRECC_MIN_TURN_ID = 6
NON_DETER_SUFFIX = "_template_0to10_non_deter_opt_zero_shot"


@dataclasses.dataclass(frozen=True)
class DialogConfig:
  name: str
  tfds: tfds_source.TfdsSpec
  extract: Callable[[Any], list[str] | None]  # raw example -> all turns (None: filtered by FLAN)


def wiki_dialog_turns(ex: Any) -> list[str]:
  return mp.texts(mp.field(ex, "utterances"))[1:]


def qrecc_turns(ex: Any) -> list[str] | None:
  if int(mp.field(ex, "turn_id")) <= QRECC_MIN_TURN_ID:
    return None
  return mp.texts(mp.field(ex, "context"))


CONFIGS = {
    "wiki_dialog": DialogConfig("wiki_dialog", tfds_source.TfdsSpec("wiki_dialog/OQ", "1.0.0"), wiki_dialog_turns),
    "qrecc": DialogConfig("qrecc", tfds_source.TfdsSpec("q_re_cc", "1.0.0"), qrecc_turns),
}


def pick_turn(turns: list[str], rng: random.Random) -> tuple[list[str], str]:
  """(dialog so far, answer turn): the answer at index 2k+1, k uniform in [0, min(len // 2, 20))."""
  pairs = min(len(turns) // 2, MAX_ANSWER_PAIRS)
  if pairs < 1:
    raise mp.MalformedRow(f"{len(turns)} turn(s): need at least 2 for a dialog and its next turn")
  idx = 2 * rng.randrange(pairs) + 1
  return turns[:idx], turns[idx]


def format_dialog(turns: list[str]) -> str:
  return "DIALOG:\n" + "\n- ".join(turns) + "\n- "


@dataclasses.dataclass(frozen=True)
class DialogFormats:
  start_strings: list[str]
  item_names: list[list[str]]
  item_end_strs: list[list[str]]


def dialog_formats() -> DialogFormats:
  path = data_dir_lib.data_file(tpl.TEMPLATES_JSON, source="flan")
  raw = readers.load_json_cached(path)
  try:
    return DialogFormats(raw["DIALOG_START_STRING_CANDIDATES"], raw["DIALOG_ITEM_NAME_CANDIDATES"],
                         raw["DIALOG_ITEM_END_STR_CANDIDATES"])
  except KeyError as e:
    raise readers.DataFormatError(f"{path}:1: missing top-level key {e.args[0]!r}") from None


def format_dialog_random(turns: list[str], formats: DialogFormats, rng: random.Random) -> str:
  start = formats.start_strings[rng.randrange(len(formats.start_strings))]
  names = formats.item_names[rng.randrange(len(formats.item_names))]
  ends = formats.item_end_strs[rng.randrange(len(formats.item_end_strs))]
  if len(turns) + 1 > min(len(names), len(ends) + 1):
    raise mp.MalformedRow(f"{len(turns)} turns exceed the {len(names) - 1} speaker labels of the formats")
  return start + "".join(n + t + e for n, t, e in zip(names, turns, ends)) + names[len(turns)]


def rows(config: DialogConfig, randomized: bool) -> Iterator[tuple[int, dict[str, str]]]:
  """(row index, {dialog_, answer}) for each kept row; malformed rows are warned and counted."""
  where = f"tfds:{config.tfds.full_name}[{config.tfds.split}]"
  formats = dialog_formats() if randomized else None
  for idx, ex in tfds_source.read(config.tfds):
    try:
      turns = config.extract(ex)
      if turns is None:
        registry.filtered_rows.add(config.name)
        continue
      dialog, answer = pick_turn(turns, random.Random(f"turn:{config.name}:{idx}"))
      text = format_dialog_random(dialog, formats, random.Random(f"format:{config.name}:{idx}")) \
          if randomized else format_dialog(dialog)
    except mp.MalformedRow as e:
      readers.record_skip(where, idx, f"{config.name}: {e}")
      continue
    yield idx, {"dialog_": text, "answer": answer}


def datasets(config: DialogConfig, input_inversion: bool, randomized: bool) -> registry.FlanDataset:
  name = f"{config.name}_input_inversion" if input_inversion else config.name
  return registry.FlanDataset(
      name=name, pattern_key=name, task_name=f"{config.name}_ii" if input_inversion else config.name,
      task_source=TASK_SOURCE, rows=functools.partial(rows, config, randomized),
      num_rows=functools.partial(tfds_source.num_examples, config.tfds),
      check_available=functools.partial(tfds_source.check, config.tfds))


def base_names(input_inversion: bool) -> list[str]:
  return [f"{n}_input_inversion" if input_inversion else n for n in CONFIGS]


def register(templates: tpl.Templates | None = None) -> list[str]:
  """Registers the four dialog bases in every FLAN variant (24 each: the 23 of a task without options
  plus the non-deterministic dialog-format task); returns the task names."""
  t = templates or tpl.load_templates()
  names = []
  for config in CONFIGS.values():
    for ii in (False, True):
      plain = datasets(config, ii, randomized=False)
      names += registry.register_variants(plain, registry.flan_variants(plain.pattern_key, False, plain.name, t))
      non_deter = registry.Variant(NON_DETER_SUFFIX, tuple(t.zero_shot(plain.pattern_key, options=True)),
                                   tpl.ZS_OPT)
      names += registry.register_variants(datasets(config, ii, randomized=True), [non_deter])
  return names
