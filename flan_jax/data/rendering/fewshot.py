"""Few-shot assembly as FLAN v2 does it: template filter, length pruning, concatenation.

Upstream zips each query with the next `num_shots` exemplars of a repeated, shuffled and templated copy of the train
split; `flan_render` draws them per query from a generator keyed by the query's position, so any example renders on
its own. Choosing what to keep is `select`, the assembly of one example is `assemble`; `FewShotConfig` holds the
knobs FLAN's `register_few_shot_version_of_task` takes.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Callable, Hashable, MutableMapping, Sequence

from flan_jax.data.rendering import templates as templates_lib
from flan_jax.data.rendering import tokenizer

FEW_SHOT_MAX_LEN = 1920
MIX_SEPARATOR_CHOICES = ("\n", "\n\n", "\n\n\n")


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
  num_shots: int
  x_y_delimiter: str = "\n\n"
  inputs_prefix: str = ""
  targets_prefix: str = ""
  example_separator: str = "\n\n\n"
  query_pattern: str = "{inputs}"
  prune_by_template: bool = False
  strip_targets: bool = False
  max_input_length: int = FEW_SHOT_MAX_LEN


@dataclasses.dataclass(frozen=True)
class Exemplar:
  inputs: str  # with the x/y delimiter appended
  targets: str
  template_idx: int
  key: Hashable = None  # identifies (row, template) for the token-count cache


def choose_mix_separator(task_name: str, seed: int = 0) -> str:
  """The example separator of a `_template_mix_five_shot` task: a seeded choice per task.

  Upstream draws it with Python's unseeded `random` at import; we draw it from a generator seeded by
  the task name, so every process agrees. `registry.mix_separators()` records the choices.
  """
  return random.Random(f"mix_separator:{seed}:{task_name}").choice(MIX_SEPARATOR_CHOICES)


def count_tokens(texts: Sequence[str]) -> list[int]:
  """Token counts with the T5 vocabulary, without EOS, as FLAN's `get_fewshot_num_tokens` (from the word memo:
  re-counting exemplars is nearly free)."""
  return tokenizer.word_pieces().count(texts)


def _fits_without_tokenizing(texts: Sequence[str], budget: int) -> bool:
  # An ASCII string of n characters never tokenizes to more than n + 1 pieces (SentencePiece only
  # merges characters, plus at most one leading "▁"), so a cheap sum settles most cases.
  return all(t.isascii() for t in texts) and sum(len(t) + 1 for t in texts) <= budget


def select(query_inputs: str, query_template: int, exemplars: Sequence[Exemplar],
           cfg: FewShotConfig, query_key: Hashable = None,
           cache: MutableMapping[Hashable, tuple[int, int]] | None = None,
           counter: Callable[[Sequence[str]], list[int]] = count_tokens) -> list[Exemplar]:
  """The exemplars FLAN keeps for a query: same template (if `prune_by_template`), then the longest
  prefix whose running sum of tokens(x_k) + tokens(y_k) stays <= max_input_length - tokens(x_query).

  `cache` maps an exemplar key to its (tokens(x), tokens(y)); a query's inputs equal the inputs of
  the exemplar with the same key, so its count is shared.
  """
  if cfg.prune_by_template:
    exemplars = [e for e in exemplars if e.template_idx == query_template]
  if not exemplars:
    return []
  texts = [query_inputs] + [s for e in exemplars for s in (e.inputs, e.targets)]
  if _fits_without_tokenizing(texts, cfg.max_input_length):
    return list(exemplars)
  cache = {} if cache is None else cache
  todo = [] if query_key in cache else [query_inputs]
  todo_keys = []
  for e in exemplars:
    if e.key is None or e.key not in cache:
      todo_keys.append(e)
      todo += [e.inputs, e.targets]
  counts = counter(todo) if todo else []
  if query_key in cache:
    query_count = cache[query_key][0]
    pos = 0
  else:
    query_count = counts[0]
    pos = 1
  local = {}
  for e in todo_keys:
    local[id(e)] = (counts[pos], counts[pos + 1])
    pos += 2
    if e.key is not None:
      cache[e.key] = local[id(e)]
  budget = cfg.max_input_length - query_count
  kept, total = [], 0
  for e in exemplars:
    nx, ny = local[id(e)] if id(e) in local else cache[e.key]
    total += nx + ny
    if total > budget:
      break
    kept.append(e)
  return kept


def assemble(query_inputs: str, query_targets: str, kept: Sequence[Exemplar],
             query_features: dict, cfg: FewShotConfig) -> tuple[str, str]:
  """(inputs, targets) of a few-shot example, as seqio's fewshot_preprocessor + FLAN's clean-up.

  Exemplars are `inputs_prefix + x + targets_prefix + y + example_separator`, then the query
  `inputs_prefix + x + targets_prefix.rstrip()`; trailing spaces are removed only at the very end of
  the string; then the query pattern (`{inputs}` + final suffix, or e.g. `{Definition}\\n\\n{inputs}`)
  wraps it. Targets are the query's, stripped of surrounding whitespace if `strip_targets`.
  """
  shots = "".join(cfg.inputs_prefix + e.inputs + cfg.targets_prefix + e.targets + cfg.example_separator
                  for e in kept)
  inputs = shots + cfg.inputs_prefix + query_inputs + cfg.targets_prefix.rstrip()
  inputs = templates_lib.strip_trailing_spaces(inputs)
  targets = templates_lib.tf_strip(query_targets) if cfg.strip_targets else query_targets
  features = dict(query_features)
  features["inputs"] = inputs
  features["targets"] = targets
  return templates_lib.fill(cfg.query_pattern, features), targets
