"""`import tasks` registers every Flan task and mixture (and the UL2R tasks, `tasks/ul2r.py`): in the plain catalog
(`registry.TASKS`, `mixing.MIXTURES`, `token_tasks.TASKS`) and with seqio, unless $FLAN_JAX_SEQIO is 0 (a process
that only renders: the training input process, the data benchmark), in which case neither seqio nor TensorFlow is
imported.

Registration reads only the small metadata files of the data dir (templates.json, niv2_tasks.json,
the NIv2 split lists); data files are read when a dataset is built. After changing the data dir
(`--data_dir`), call `register_all()` again.
"""
from __future__ import annotations

from flan_jax.data.catalog import registry as _registry
from flan_jax.data.rendering import templates as _templates

if _registry.registers_with_seqio():
  # The seqio mirror of the catalog (T5X users).
  from flan_jax.data.seqio_adapter import seqio_tasks as _seqio_tasks  # noqa: F401
from tasks import cot
from tasks import flan2022
from tasks import mixtures
from tasks import niv2
from tasks import ul2r


def register_all() -> dict[str, list[str]]:
  """(Re-)registers all tasks and mixtures; returns the names by family."""
  t = _templates.load_templates()
  cot_names = cot.register(t)
  niv2_tasks = niv2.training_tasks()
  niv2_names = niv2.register(t, niv2_tasks)
  mixture_names = mixtures.register_cot(cot.base_names(False), cot.base_names(True))
  mixture_names += mixtures.register_niv2([niv2.seqio_name(t) for t in niv2_tasks])
  # Muffin, T0-SF and Dialog, and the Flan 2022 mixtures that combine all parts.
  return {"cot": cot_names, "niv2": niv2_names, "mixtures": mixture_names, **flan2022.register_all(t),
          "ul2r": ul2r.register()}


REGISTERED = register_all()
