"""CoT and NIv2 mixtures: `cot_{zsopt,zsnoopt,fsopt,fsnoopt}`, `cot_submix`, and the same for `niv2_`.

CoT mixes the CoT bases at rate 1 and the input-inversion bases at 0.3 (caps 100,000 each task);
NIv2 mixes every training task at cap 5,000. Intermediate names are upstream's, e.g.
`palmflan_cot_zs(1)_opts(1)`, `palmflan_cot-ii_fs_opt`, `palmflan_niv2_zs_opt`.
"""
from __future__ import annotations

from flan_jax.data.catalog import mixing

COT_RATES = {"CoT": 1, "CoT-II": mixing.INPUT_INVERSION_RATE}
NIV2_RATES = {"NIv2": 1}


def register_cot(cot_bases: list[str], cot_ii_bases: list[str]) -> list[str]:
  return mixing.register_settings("cot", {"CoT": cot_bases, "CoT-II": cot_ii_bases}, COT_RATES)


def register_niv2(niv2_bases: list[str]) -> list[str]:
  return mixing.register_settings("niv2", {"NIv2": niv2_bases}, NIV2_RATES)
