"""The report's math: outcomes through the key, bootstrap intervals, per-category splits, Cohen's and Fleiss' kappa."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from flan_jax.evaluation import preference, ratings, side_by_side
from rating_fixtures import CATEGORIES, model_of_response, write_rating_dir


def test_outcome_follows_the_sides():
  assert preference.outcome("1", {"response_1": "a", "response_2": "b"}) == "win"
  assert preference.outcome("1", {"response_1": "b", "response_2": "a"}) == "loss"
  assert preference.outcome("2", {"response_1": "b", "response_2": "a"}) == "win"
  assert preference.outcome("tie", {"response_1": "b", "response_2": "a"}) == "tie"


def test_cohen_kappa_by_hand():
  # Agree on 4 of 6 items: p_o = 2/3. Both raters: a 3/6, b 2/6, tie 1/6, so p_e = (9 + 4 + 1) / 36 = 7/18.
  # kappa = (2/3 - 7/18) / (1 - 7/18) = 5/11.
  first = ["a", "a", "b", "tie", "a", "b"]
  second = ["a", "b", "b", "tie", "a", "a"]
  assert preference.cohen_kappa(first, second) == pytest.approx(5 / 11)
  assert preference.cohen_kappa(first, first) == pytest.approx(1.0)
  assert preference.cohen_kappa(["a", "a"], ["a", "a"]) is None


def test_fleiss_kappa_by_hand():
  # 3 raters, 4 items: (a a a), (a a b), (b b tie), (tie tie tie).
  # P_i = 1, 1/3, 1/3, 1 -> P = 2/3; shares a 5/12, b 3/12, tie 4/12 -> P_e = 50/144 = 25/72;
  # kappa = (2/3 - 25/72) / (1 - 25/72) = 23/47.
  rows = [["a", "a", "a"], ["a", "a", "b"], ["b", "b", "tie"], ["tie", "tie", "tie"]]
  table = preference.fleiss_table(rows)
  assert table.tolist() == [[3, 0, 0], [2, 1, 0], [0, 2, 1], [0, 0, 3]]
  assert preference.pairwise_agreement(table) == pytest.approx(2 / 3)
  assert preference.fleiss_kappa(table) == pytest.approx(23 / 47)
  with pytest.raises(ValueError, match="same number"):
    preference.fleiss_kappa(np.array([[2, 0], [1, 2]]))


def test_agreement_uses_only_items_every_rater_rated():
  labels = {"ann": {"p0": "win", "p1": "win", "p2": "loss"}, "bo": {"p0": "win", "p1": "tie", "p3": "win"}}
  a = preference.agreement(labels)
  assert a["items"] == 2 and a["percent"] == pytest.approx(50.0) and a["kappa_kind"] == "cohen"
  assert a["kappa"] == pytest.approx(preference.cohen_kappa(["win", "win"], ["win", "tie"]))
  labels["cy"] = {"p0": "win", "p1": "tie"}
  assert preference.agreement(labels)["kappa_kind"] == "fleiss"
  assert preference.agreement({"ann": labels["ann"]}) is None
  assert preference.agreement({"ann": {"p0": "win"}, "bo": {"p1": "win"}})["items"] == 0


def test_bootstrap_interval_contains_the_point_estimate_and_narrows_with_more_items():
  rng = np.random.default_rng(5)
  config = preference.ReportConfig(resamples=2000, seed=1)
  widths = []
  for n in (20, 400):
    counts = np.eye(3, dtype=np.int64)[rng.choice(3, size=n, p=[0.5, 0.2, 0.3])]
    rates = preference.bootstrap_rates(counts, config)
    assert sum(r["rate"] for r in rates.values()) == pytest.approx(100.0)
    for o, r in rates.items():
      assert r["low"] <= r["rate"] <= r["high"], o
      assert r["rate"] == pytest.approx(100 * counts[:, preference.OUTCOMES.index(o)].mean())
    widths.append(rates["win"]["high"] - rates["win"]["low"])
    assert rates == preference.bootstrap_rates(counts, config)  # seeded
  assert widths[1] < widths[0] / 2
  all_wins = preference.bootstrap_rates(np.array([[1, 0, 0]] * 5), config)
  assert all_wins["win"] == {"rate": 100.0, "low": 100.0, "high": 100.0}


def test_bootstrap_resamples_items_not_ratings():
  # One item rated a win by 9 raters, nine items rated a loss by one rater each: half the ratings are wins, but
  # resampling items puts the heavy item in or out of a sample together, so the interval is wide.
  counts = np.array([[9, 0, 0]] + [[0, 0, 1]] * 9)
  rates = preference.bootstrap_rates(counts, preference.ReportConfig(resamples=4000, seed=0))
  assert rates["win"]["rate"] == pytest.approx(50.0)
  assert rates["win"]["low"] == 0.0 and rates["win"]["high"] > 70.0


def _rate_all(directory, rater, choose):
  for item in side_by_side.load_rating_set(directory):
    ratings.append(directory / side_by_side.RATINGS, {"item": item["id"], "rater": rater,
                                                      "choice": choose(item), "comment": "", "time": ratings.now()})


def test_report_of_a_rated_dir(tmp_path):
  write_rating_dir(tmp_path, n=12)
  models = model_of_response(tmp_path)
  items = side_by_side.load_rating_set(tmp_path)
  # ann always picks model A; bo picks Response 1 (whichever model that is) except a tie on every third item.
  _rate_all(tmp_path, "ann", lambda it: "1" if models[it["id"]]["1"] == "a" else "2")
  _rate_all(tmp_path, "bo", lambda it: "tie" if int(it["id"][1:]) % 3 == 0 else "1")
  # A re-rating replaces the earlier one: ann changes her mind on p1 to a tie.
  ratings.append(tmp_path / side_by_side.RATINGS, {"item": "p1", "rater": "ann", "choice": "tie", "comment": "",
                                                   "time": ratings.now()})
  want = collections.Counter()
  by_category: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  labels = {"ann": {}, "bo": {}}
  for it in items:
    ann = "tie" if it["id"] == "p1" else "win"
    bo = "tie" if int(it["id"][1:]) % 3 == 0 else ("win" if models[it["id"]]["1"] == "a" else "loss")
    for rater, o in (("ann", ann), ("bo", bo)):
      want[o] += 1
      by_category[it["category"]][o] += 1
      labels[rater][it["id"]] = o
  results = preference.build(tmp_path, preference.ReportConfig(resamples=500, seed=0))
  assert results["items"] == 12 and results["rated_items"] == 12 and results["ratings"] == 24
  assert results["raters"] == {"ann": 12, "bo": 12}
  for o in preference.OUTCOMES:
    assert results["overall"][o]["rate"] == pytest.approx(100 * want[o] / 24)
  assert set(results["categories"]) == set(CATEGORIES)
  for c, counts in by_category.items():
    group = results["categories"][c]
    assert group["ratings"] == sum(counts.values()) == 8 and group["items"] == 4
    for o in preference.OUTCOMES:
      assert group[o]["rate"] == pytest.approx(100 * counts[o] / 8)
  agreement = results["agreement"]
  assert agreement["items"] == 12 and agreement["kappa_kind"] == "cohen"
  ids = [it["id"] for it in items]
  assert agreement["kappa"] == pytest.approx(preference.cohen_kappa([labels["ann"][i] for i in ids],
                                                                    [labels["bo"][i] for i in ids]))
  md = preference.markdown(results)
  assert "| overall | 12 | 24 |" in md and "500 resamples" in md and "Cohen's kappa" in md
  assert all(f"| {c} | 4 | 8 |" in md for c in CATEGORIES)
  assert preference.console_table(results).splitlines()[1].startswith("overall")


def test_report_without_categories_or_ratings(tmp_path):
  write_rating_dir(tmp_path, n=4, categories=False)
  with pytest.raises(side_by_side.RunFileError, match="no ratings yet"):
    preference.build(tmp_path, preference.ReportConfig(resamples=10))
  _rate_all(tmp_path, "ann", lambda it: "tie")
  results = preference.build(tmp_path, preference.ReportConfig(resamples=10))
  assert results["categories"] == {} and results["agreement"] is None
  assert results["overall"]["tie"]["rate"] == 100.0
