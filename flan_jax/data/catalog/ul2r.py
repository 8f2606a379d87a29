"""UL2R tasks: a text source's documents, tokenized, cut into segments and denoised by a mixture of UL2's denoisers.

U-PaLM continues training a model on its pretraining text with a mixture of denoisers ("UL2R") before Flan
finetuning. A `Ul2rTask` is that input as a token task (`token_tasks`): the training stream reads it like a Flan
task, mixes it with others by rate, packs its examples, and renders it in the input process's child.

The training input (`pipeline.sources`) draws documents of the source (`text_sources`, read once per process) by
index, tokenizes them with the T5 vocabulary (`tokenizer`) and denoises each (`examples_of`:
`denoisers.denoise_document`) with a numpy Generator seeded by (seed, task name, epoch, document index), so an
example depends only on those; EOS is appended to both features. Segment lengths follow the stream's feature
lengths (`denoisers.make_plan`), so nothing is trimmed. A draw of the task is one document, so mixing rates count
documents.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import numpy as np

from flan_jax.data.catalog import registry, token_tasks
from flan_jax.data.files import text_sources
from flan_jax.data.rendering import denoisers as denoisers_lib
from flan_jax.data.rendering import tokenizer


@dataclasses.dataclass(frozen=True)
class Ul2rTask:
  """A token task denoising `source`'s documents with `denoisers`."""
  name: str
  source: text_sources.TextSource
  denoisers: denoisers_lib.DenoiserMixture = denoisers_lib.DenoiserMixture()

  def check_available(self) -> None:
    self.source.check_available()

  def for_child(self) -> Ul2rTask:
    return dataclasses.replace(self, source=self.source.resolve())

  def documents(self, split: str) -> list[str]:
    """The source's documents, read once per process."""
    return _documents(self.source, split)

  def examples_of(self, ids: np.ndarray, key: list[int],
                  lengths: Mapping[str, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (inputs, targets) with EOS of one tokenized document, denoised with a Generator seeded by `key`."""
    eos = np.array([tokenizer.EOS_ID], np.int32)
    rng = np.random.default_rng(key)
    return [(np.concatenate([inputs, eos]), np.concatenate([targets, eos]))
            for _, inputs, targets in denoisers_lib.denoise_document(np.asarray(ids, np.int32),
                                                                      t5_plan(self.denoisers, lengths), rng)]


@functools.lru_cache(maxsize=8)
def _documents(source: text_sources.TextSource, split: str) -> list[str]:
  return list(source.documents(split))


def t5_vocab() -> denoisers_lib.Vocab:
  """The T5 vocabulary as the denoisers use it: `<extra_id_0>` is its last id, the 100 sentinels descend from it."""
  sp = tokenizer.processor()
  first = sp.get_piece_size() - 1
  if sp.id_to_piece(first) != "\u2581<extra_id_0>":
    raise ValueError(f"the vocabulary's last piece is {sp.id_to_piece(first)!r}, not <extra_id_0>")
  return denoisers_lib.Vocab(first, tokenizer.EXTRA_IDS, sp.encode)


def t5_plan(mixture: denoisers_lib.DenoiserMixture, lengths: Mapping[str, int]) -> denoisers_lib.Plan:
  return _t5_plan(mixture, tuple(sorted(lengths.items())))


@functools.lru_cache(maxsize=64)
def _t5_plan(mixture: denoisers_lib.DenoiserMixture, lengths: tuple[tuple[str, int], ...]) -> denoisers_lib.Plan:
  return denoisers_lib.make_plan(mixture, dict(lengths), t5_vocab())


@dataclasses.dataclass(frozen=True)
class SourceRowsRate:
  """The mixing rate of a UL2R task over a Flan task's rows (`text_sources.TaskFields`): that task's number of
  examples (its row count, or FLAN's num_cases.json where the data is absent), so the mix is examples-proportional.
  Called on the UL2R task or its seqio Task, as seqio calls rates."""

  def __call__(self, task: Any) -> float:
    ul2r_task = task if isinstance(task, Ul2rTask) else token_tasks.TASKS[task.name]
    source = ul2r_task.source
    if not isinstance(source, text_sources.TaskFields):
      raise TypeError(f"task {ul2r_task.name}: SourceRowsRate needs a TaskFields source, not "
                      f"{type(source).__name__}")
    return float(registry.TASKS[source.task].num_examples())


def register(task: Ul2rTask) -> str:
  """Adds `task` to the token-task catalog and tells the catalog's mirrors (seqio, once `seqio_tasks` is imported)."""
  token_tasks.register(task)
  for mirror in registry.MIRRORS:
    mirror.add_ul2r_task(task)
  return task.name


def mixture_component(name: str, source: text_sources.TextSource,
                      denoisers: denoisers_lib.DenoiserMixture | None = None,
                      rate: float = 1.0) -> tuple[str, float]:
  """Registers a UL2R task and returns (its name, `rate`): what a run config lists in
  `utils.DatasetConfig.mixture_components` (`[@ul2r.mixture_component()]`, as gin_configs/runs/ul2r_continue.gin)."""
  if not name.startswith("ul2r_"):
    raise ValueError(f"ul2r.mixture_component.name={name!r}: UL2R task names start with 'ul2r_'")
  register(Ul2rTask(name, source, denoisers or denoisers_lib.DenoiserMixture()))
  return name, float(rate)
