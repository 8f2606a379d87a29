"""Mixtures kept in `mixing.MIXTURES`: rates flattened as seqio's own Mixture computes them, leaves, bad input."""
from __future__ import annotations

import pytest
import seqio

from flan_jax.data.catalog import mixing, registry


@pytest.fixture(scope="module")
def registered(flan_data_dir):
  import tasks
  return tasks.REGISTERED


def _seqio_rates(name: str) -> dict[str, float]:
  """Effective task rates by seqio's own Mixture.get_rate, sub-mixtures normalised as seqio samples them."""
  item = seqio.get_mixture_or_task(name)
  if isinstance(item, seqio.Task):
    return {name: 1.0}
  out: dict[str, float] = {}
  for part, rate in item._task_to_rate.items():  # pylint: disable=protected-access
    if part in seqio.MixtureRegistry.names():
      sub = _seqio_rates(part)
      for task, r in sub.items():
        out[task] = out.get(task, 0.0) + float(rate) * r / sum(sub.values())
    else:
      out[part] = out.get(part, 0.0) + item.get_rate(seqio.TaskRegistry.get(part))
  return out


@pytest.mark.parametrize("name", ["cot_submix", "niv2_fsopt", "palmflan_cot_zs(1)_opts(1)"])
def test_rates_equal_seqio_mixture_rates(registered, name):
  ours, theirs = mixing.rates(name), _seqio_rates(name)
  assert ours.keys() == theirs.keys()
  assert all(ours[t] == pytest.approx(theirs[t], rel=1e-12) for t in ours)


def test_capped_rate_is_min_of_cap_and_examples(registered):
  task = registry.TASKS["cot_gsm8k_template_0to10_zero_shot"]
  n = task.num_examples()
  assert mixing.CappedRate(n + 5)(task) == n and mixing.CappedRate(3)(task.name) == 3.0
  assert mixing.CappedRate(3)(seqio.TaskRegistry.get(task.name)) == 3.0


def test_leaves_flatten_without_evaluating_rates(registered, monkeypatch):
  def refuse(task):
    raise AssertionError("a rate was evaluated")
  monkeypatch.setitem(mixing.MIXTURES, "test_leaves_mix", [("cot_submix", refuse), ("cot_gsm8k_template_0_zero_shot",
                                                                                   refuse)])
  leaves = mixing.leaves("test_leaves_mix")
  assert leaves[-1] == "cot_gsm8k_template_0_zero_shot" and len(leaves) == len(set(leaves))
  assert set(leaves[:-1]) == set(mixing.rates("cot_submix"))
  assert mixing.leaves("cot_gsm8k_template_0_zero_shot") == ["cot_gsm8k_template_0_zero_shot"]


def test_bad_mixtures_are_named(registered):
  with pytest.raises(ValueError, match="test_norate: cot_gsm8k_template_0_zero_shot has no rate"):
    mixing.add_mixture("test_norate", ["cot_gsm8k_template_0_zero_shot"])
  with pytest.raises(KeyError, match="unknown tasks"):
    mixing.register_capped("test_unknown", ["no_such_task_anywhere"], 10)
  with pytest.raises(ValueError, match="no_such_mixture_anywhere"):
    mixing.rates("no_such_mixture_anywhere")
