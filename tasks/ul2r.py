"""UL2R tasks over text this project can read without downloading: U-PaLM's mixture of denoisers on documents.

- `ul2r_cot_<dataset>`: each CoT dataset's rows (question, rationale, answer) as documents, and `ul2r_cot`, their
  examples-proportional mixture: the plain text the Flan data dir holds (the tiny CPU run continues on it).
- `ul2r_c4`: C4 English (TFDS `c4/en:3.0.1`, T5's pretraining text), where prepared in the TFDS data dir.

Registering reads nothing; a task whose data is absent fails at its first draw naming how to get it (or is left out
with ONLY_AVAILABLE_DATA). Other text goes through `flan_jax.data.catalog.ul2r.mixture_component` in a run config
(gin_configs/runs/ul2r_continue.gin) or `ul2r.register` in a module of your own.
"""
from __future__ import annotations

from flan_jax.data.catalog import mixing, ul2r
from flan_jax.data.files import text_sources
from tasks import cot

COT_FIELDS = ("question", "chain_of_thought", "answer")


def register() -> list[str]:
  """Registers the UL2R tasks and mixtures with the default (U-PaLM) denoisers; returns their names."""
  cot_tasks = []
  for dataset, cot_type in cot.COT_DATASETS:
    source = text_sources.TaskFields(f"{cot_type}_{dataset}_template_0to10_zero_shot", COT_FIELDS)
    cot_tasks.append(ul2r.register(ul2r.Ul2rTask(f"ul2r_cot_{dataset}", source)))
  mixture = mixing.add_mixture("ul2r_cot", [(name, ul2r.SourceRowsRate()) for name in cot_tasks])
  c4 = ul2r.register(ul2r.Ul2rTask("ul2r_c4", text_sources.TfdsText()))
  return [*cot_tasks, mixture, c4]
