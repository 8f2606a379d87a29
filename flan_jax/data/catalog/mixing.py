"""FLAN v2 mixtures with seqio semantics: rate = min(cap, examples) per (task, variant).

Caps per submix (FLAN 30,000, T0 20,000, CoT 100,000, NIv2 5,000, Dialog 200,000; input-inversion submixes
share their parent's cap and enter at rate 0.3). Rates are callables evaluated when a mixture is built,
from counts that need no rendering (`FlanTask.num_examples`), so registering stays fast.

Mixtures are kept in `MIXTURES` (name -> [(task or mixture, rate)]) and told to the catalog's mirrors
(`registry.MIRRORS`: the seqio registries once `seqio_tasks` is imported); `rates` reads `MIXTURES`, and seqio's
registry only for mixtures registered there by other code.

Names follow upstream: `palmflan_<key>_{zs,fs}_{opt,noopt}` (one per template style),
`palmflan_<key>_zs(<zs>)_opts(<opt>)` (their combination), and a top-level override name such as
`cot_zsopt`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

from flan_jax.data.catalog import registry, token_tasks

MIXTURE_CAPS = {"FLAN": 30000, "T0": 20000, "CoT": 100000, "NIv2": 5000, "Dialog": 200000}
MIXTURE_CAPS["CoT-II"] = MIXTURE_CAPS["CoT"]
MIXTURE_CAPS["Dialog-II"] = MIXTURE_CAPS["Dialog"]
INPUT_INVERSION_RATE = 0.3
PREFIX = "palmflan"

ZS_OPT_TEMPLATES = ("{t}_template_0to10_non_deter_opt_zero_shot", "{t}_template_0to10_zero_shot")
ZS_NOOPT_TEMPLATES = ("{t}_template_0to10_no_opt_zero_shot",)
FS_OPT_TEMPLATES = ("{t}_template_mix_five_shot", "{t}_template_0to10_x_shot")
FS_NOOPT_TEMPLATES = ("{t}_template_0to10_no_opt_x_shot",)

# (name suffix, ratio zero-shot, ratio answer options), as upstream's four settings.
SETTINGS = (("zsopt", 1, 1), ("zsnoopt", 1, 0), ("fsopt", 0, 1), ("fsnoopt", 0, 0))


Rate = Any  # a number, or a callable of the task (CappedRate, or any seqio rate function)
MIXTURES: dict[str, list[tuple[str, Rate]]] = {}


def num_examples(task: Any) -> int:
  """Examples of a Flan task, given as a name, a `registry.FlanTask` or a seqio Task."""
  return (task if isinstance(task, registry.FlanTask) else registry.flan_source(task)).num_examples()


@dataclasses.dataclass(frozen=True)
class CappedRate:
  """Rate min(cap, examples of the task); callable on a FlanTask or a seqio Task, as seqio calls rates."""
  cap: int

  def __call__(self, task: Any) -> float:
    return float(min(self.cap, num_examples(task)))


def add_mixture(name: str, tasks: Sequence[str | tuple[str, Rate]], default_rate: Rate | None = None) -> str:
  """(Re-)registers a mixture of task or mixture names (at `default_rate`) or (name, rate) pairs."""
  parts = []
  for t in tasks:
    if isinstance(t, str):
      if default_rate is None:
        raise ValueError(f"mixture {name}: {t} has no rate and no default_rate is given")
      t = (t, default_rate)
    parts.append(t)
  MIXTURES[name] = parts
  for mirror in registry.MIRRORS:
    mirror.add_mixture(name, parts)
  return name


def register_capped(name: str, task_names: Sequence[str], cap: int) -> str:
  """A mixture of Flan tasks, each at rate min(cap, examples)."""
  missing = [t for t in task_names if t not in registry.TASKS]
  if missing:
    raise KeyError(f"mixture {name}: unknown tasks {missing[:5]}{'...' if len(missing) > 5 else ''}")
  return add_mixture(name, list(task_names), default_rate=CappedRate(cap))


def template_tasks(bases: Iterable[str], templates: Sequence[str], first_registered: bool) -> list[str]:
  """Task names for each base: all templates, or (zero-shot options) the first one registered
  (the non-deterministic-options variant where the task has options, else the plain one)."""
  names = registry.TASKS
  out = []
  for base in bases:
    formatted = [t.format(t=base) for t in templates]
    if first_registered:
      present = [n for n in formatted if n in names]
      if not present:
        raise KeyError(f"none of {formatted} is registered")
      out.append(present[0])
    else:
      out.extend(formatted)
  return out


def register_submix_variants(key: str, bases: Sequence[str], zs_ratio: float, opt_ratio: float,
                             cap: int | None = None) -> str:
  """The four template-style mixtures of one submix and their combination at the given ratios."""
  cap = MIXTURE_CAPS[key] if cap is None else cap
  stem = f"{PREFIX}_{key.lower()}"
  styles = {
      "zs_opt": template_tasks(bases, ZS_OPT_TEMPLATES, first_registered=True),
      "fs_opt": template_tasks(bases, FS_OPT_TEMPLATES, first_registered=False),
      "zs_noopt": template_tasks(bases, ZS_NOOPT_TEMPLATES, first_registered=False),
      "fs_noopt": template_tasks(bases, FS_NOOPT_TEMPLATES, first_registered=False),
  }
  scores = {"zs_opt": zs_ratio * opt_ratio, "fs_opt": (1 - zs_ratio) * opt_ratio,
            "zs_noopt": zs_ratio * (1 - opt_ratio), "fs_noopt": (1 - zs_ratio) * (1 - opt_ratio)}
  names = {style: register_capped(f"{stem}_{style}", tasks, cap) for style, tasks in styles.items()}
  combo = [(names[s], scores[s]) for s in ("zs_opt", "fs_opt", "zs_noopt", "fs_noopt") if scores[s] > 0]
  return add_mixture(f"{stem}_zs({zs_ratio})_opts({opt_ratio})", combo)


def register_suite(name: str, submixes: Mapping[str, Sequence[str]], rates: Mapping[str, float],
                   zs_ratio: float, opt_ratio: float) -> str:
  """Upstream's generate_mixture_suites: each submix's style combination, mixed at `rates`."""
  parts = [(register_submix_variants(key, bases, zs_ratio, opt_ratio), rates[key])
           for key, bases in submixes.items()]
  return add_mixture(name, parts)


def register_settings(family: str, submixes: Mapping[str, Sequence[str]],
                      rates: Mapping[str, float]) -> list[str]:
  """`<family>_zsopt`, `_zsnoopt`, `_fsopt`, `_fsnoopt` (e.g. cot_zsopt) and `<family>_submix`
  (zsopt and fsopt at equal weight, as the Flan 2022 collection)."""
  names = [register_suite(f"{family}_{setting}", submixes, rates, zs, opt)
           for setting, zs, opt in SETTINGS]
  names.append(add_mixture(f"{family}_submix", [(f"{family}_zsopt", 1), (f"{family}_fsopt", 1)]))
  return names


def rates(mixture: str) -> dict[str, float]:
  """Effective rate of every task of a mixture, sub-mixtures flattened as seqio's `get_rate` does
  (a sub-mixture's rate split over its tasks in proportion to their rates), in one pass."""
  parts = _parts(mixture)
  return {mixture: 1.0} if parts is None else flattened_rates(parts)


def flattened_rates(parts: Sequence[tuple[str, Rate]]) -> dict[str, float]:
  """`rates` of a mixture made of these (task or mixture, rate) parts."""
  out: dict[str, float] = {}
  for name, rate in parts:
    sub_parts = _parts(name)
    if sub_parts is None:
      out[name] = out.get(name, 0.0) + (float(rate(_task(name))) if callable(rate) else float(rate))
      continue
    sub = flattened_rates(sub_parts)
    total = sum(sub.values())
    for task, r in sub.items():
      out[task] = out.get(task, 0.0) + float(rate) * r / total
  return out


def leaves(mixture: str) -> list[str]:
  """The tasks of a task or mixture, sub-mixtures flattened, without evaluating any rate."""
  parts = _parts(mixture)
  if parts is None:
    return [mixture]
  return list(dict.fromkeys(task for name, _ in parts for task in leaves(name)))


def _parts(name: str) -> list[tuple[str, Rate]] | None:
  """A mixture's (name, rate) parts, or None for a task; unknown names raise (naming them)."""
  if name in MIXTURES:
    return MIXTURES[name]
  if name in registry.TASKS or name in token_tasks.TASKS:
    return None
  if not registry.registers_with_seqio():
    raise ValueError(f"unknown task or mixture {name!r} (seqio registration is off: ${registry.SEQIO_ENV}=0)")
  import seqio  # pylint: disable=import-outside-toplevel
  item = seqio.get_mixture_or_task(name)
  return None if isinstance(item, seqio.Task) else list(item.rate_per_task_name.items())


def _task(name: str) -> Any:
  if name in registry.TASKS:
    return registry.TASKS[name]
  if name in token_tasks.TASKS:
    return token_tasks.TASKS[name]
  import seqio  # pylint: disable=import-outside-toplevel
  return seqio.TaskRegistry.get(name)
