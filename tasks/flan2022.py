"""The Flan 2022 mixtures over Muffin (Flan 2021), T0-SF, Dialog, NIv2 and CoT, with upstream's names.

Per family, the four template settings as upstream's flan/v2/mixtures.py: `flan_{zsopt,zsnoopt,fsopt,fsnoopt}`,
`t0_{...}` (caps 30,000 and 20,000 a task), `dialog_zsopt` / `dialog_fsopt` (cap 200,000; the input-inversion
bases at rate 0.3; Dialog has no NoOpt settings). Then the submixes of upstream's run_example.py:
`flan2021_submix` and `t0_submix` mix their four settings equally, `dialog_submix` its two (as
`cot_submix` / `niv2_submix`, registered with their families), and
`flan2022_submix` = flan2021 0.4, t0 0.32, niv2 0.2, cot 0.05, dialog 0.03 (upstream's file comments the
NIv2 line out; the paper's collection has it, so it is in). The paper's four-part collection (Muffin, T0-SF,
NIv2, CoT; Chung et al. 2022) is `flan2022_muffin_t0sf_niv2_cot`: the same submixes at the same weights
without Dialog, renormalised by seqio.

A mixture whose data is partly absent: `flan_jax.data.catalog.availability.resolve(name, only_available)` fails naming
every missing task and how to get it, or registers `<name>_available` with the present tasks.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from flan_jax.data.catalog import mixing

FAMILY_SETTINGS = {
    "flan": mixing.SETTINGS,
    "t0": mixing.SETTINGS,
    "dialog": tuple(s for s in mixing.SETTINGS if "noopt" not in s[0]),
}
SUBMIXES = {
    "flan2021_submix": ("flan_zsopt", "flan_fsopt", "flan_zsnoopt", "flan_fsnoopt"),
    "t0_submix": ("t0_zsopt", "t0_fsopt", "t0_zsnoopt", "t0_fsnoopt"),
    "dialog_submix": ("dialog_zsopt", "dialog_fsopt"),
}
FLAN2022_RATES = {"flan2021_submix": 0.4, "t0_submix": 0.32, "niv2_submix": 0.2, "cot_submix": 0.05,
                  "dialog_submix": 0.03}
FLAN2022 = "flan2022_submix"
PAPER_COLLECTION = "flan2022_muffin_t0sf_niv2_cot"
PAPER_PARTS = ("flan2021_submix", "t0_submix", "niv2_submix", "cot_submix")


def register_family(family: str, submixes: Mapping[str, Sequence[str]], rates: Mapping[str, float]) -> list[str]:
  """`<family>_<setting>` for the family's settings (each upstream's generate_mixture_suites)."""
  return [mixing.register_suite(f"{family}_{setting}", submixes, rates, zs, opt)
          for setting, zs, opt in FAMILY_SETTINGS[family]]


def register(muffin_bases: Sequence[str], t0_bases: Sequence[str], dialog_bases: Sequence[str],
             dialog_ii_bases: Sequence[str]) -> list[str]:
  """Registers the family settings, the submixes, flan2022_submix and the paper's collection. cot_submix
  and niv2_submix must be registered already (tasks/mixtures.py)."""
  names = register_family("flan", {"FLAN": muffin_bases}, {"FLAN": 1})
  names += register_family("t0", {"T0": t0_bases}, {"T0": 1})
  names += register_family("dialog", {"Dialog": dialog_bases, "Dialog-II": dialog_ii_bases},
                           {"Dialog": 1, "Dialog-II": mixing.INPUT_INVERSION_RATE})
  for name, parts in SUBMIXES.items():
    names.append(mixing.add_mixture(name, [(p, 1) for p in parts]))
  missing = [m for m in FLAN2022_RATES if m not in mixing.MIXTURES]
  if missing:
    raise KeyError(f"{FLAN2022}: sub-mixtures {missing} are not registered")
  names.append(mixing.add_mixture(FLAN2022, list(FLAN2022_RATES.items())))
  names.append(mixing.add_mixture(PAPER_COLLECTION, [(m, FLAN2022_RATES[m]) for m in PAPER_PARTS]))
  return names


def register_all(templates=None) -> dict[str, list[str]]:
  """Registers Muffin, T0-SF and Dialog tasks and every mixture above (CoT/NIv2 come with `import tasks`)."""
  from tasks import dialog  # pylint: disable=import-outside-toplevel
  from tasks import muffin  # pylint: disable=import-outside-toplevel
  from tasks import t0  # pylint: disable=import-outside-toplevel
  out = {"muffin": muffin.register(templates), "t0": t0.register(templates),
         "dialog": dialog.register(templates)}
  out["flan2022_mixtures"] = register(muffin.base_names(), t0.base_names(), dialog.base_names(False),
                                      dialog.base_names(True))
  return out


def tfds_specs() -> dict:
  """The TFDS datasets the Muffin, Dialog and T0-SF tasks read, as `mock_sources.mock_tfds_sources` takes them
  (`p3`: each P3 subtask's dataset -> whether it is multiple choice)."""
  from tasks import dialog, muffin, t0  # pylint: disable=import-outside-toplevel
  return {"muffin": [c.tfds for c in muffin.CONFIGS.values()], "dialog": [c.tfds for c in dialog.CONFIGS.values()],
          "p3": {st.tfds: st.multiple_choice for st in t0.subtasks()}}


def shares(mixture: str) -> dict[str, float]:
  """Each leaf task's share of the mixture's examples (rates flattened as seqio does, summing to 1)."""
  r = mixing.rates(mixture)
  total = sum(r.values())
  return {t: v / total for t, v in r.items()}
