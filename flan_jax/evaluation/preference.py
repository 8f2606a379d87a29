"""The side-by-side report: how often raters preferred model A to model B, with bootstrap intervals, per category,
and how much raters agreed.

Each rater's latest rating of an item is unblinded with key.json into an outcome for model A: win, tie or loss.
Rates are percentages of ratings; an item rated by several raters contributes each rating. The 95% intervals are
percentile bootstrap intervals that resample items (with all their ratings) with replacement, `resamples` times from
a seeded generator, so ratings of one item are never treated as independent evidence.

Agreement is computed on the items every rater rated, on the unblinded labels (A better, B better, tie): the
percent agreement is the mean over items of the share of rater pairs who agree; kappa is Cohen's for two raters and
Fleiss' for more (None when chance agreement is 1, i.e. every rating was the same label).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from flan_jax.evaluation import ratings as ratings_lib
from flan_jax.evaluation import side_by_side

OUTCOMES = ("win", "tie", "loss")  # for model A
UNCATEGORISED = "(none)"


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  resamples: int = 10_000
  seed: int = 0
  confidence: float = 0.95


def outcome(choice: str, sides: dict[str, str]) -> str:
  """Model A's outcome of a rating: `sides` maps response_1 / response_2 to the models "a" / "b"."""
  if choice == "tie":
    return "tie"
  return "win" if sides[f"response_{choice}"] == "a" else "loss"


def bootstrap_rates(counts: np.ndarray, config: ReportConfig) -> dict[str, dict[str, float]]:
  """`counts` [items, 3]: each item's win / tie / loss ratings. Per outcome its rate (percent of ratings) and the
  bootstrap interval over items."""
  counts = np.asarray(counts, np.int64)
  total = counts.sum()
  if total == 0:
    raise ValueError("no ratings to summarise")
  point = 100.0 * counts.sum(axis=0) / total
  rng = np.random.default_rng(config.seed)
  n = len(counts)
  chunk = max(1, 2_000_000 // n)  # bounds the [chunk, items, 3] gather
  samples = []
  for start in range(0, config.resamples, chunk):
    idx = rng.integers(0, n, size=(min(chunk, config.resamples - start), n))
    sums = counts[idx].sum(axis=1)
    samples.append(100.0 * sums / np.maximum(sums.sum(axis=1, keepdims=True), 1))
  tail = (1.0 - config.confidence) / 2
  low, high = np.quantile(np.concatenate(samples), [tail, 1.0 - tail], axis=0)
  return {o: {"rate": float(point[k]), "low": float(low[k]), "high": float(high[k])} for k, o in enumerate(OUTCOMES)}


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
  """Cohen's kappa of two raters' labels for the same items."""
  if len(first) != len(second) or not first:
    raise ValueError(f"two equally long, non-empty label lists needed, got {len(first)} and {len(second)}")
  observed = np.mean([a == b for a, b in zip(first, second)])
  labels = sorted(set(first) | set(second))
  chance = sum(first.count(k) * second.count(k) for k in labels) / len(first) ** 2
  return None if chance == 1 else float((observed - chance) / (1 - chance))


def fleiss_table(labels: Sequence[Sequence[str]]) -> np.ndarray:
  """[items, categories] counts of raters per label, from each item's labels (one per rater)."""
  names = sorted({label for row in labels for label in row})
  return np.array([[row.count(k) for k in names] for row in labels], np.int64)


def pairwise_agreement(table: np.ndarray) -> float:
  """The mean over items of the share of rater pairs who chose the same label."""
  raters = table.sum(axis=1)
  return float(np.mean((np.square(table).sum(axis=1) - raters) / (raters * (raters - 1))))


def fleiss_kappa(table: np.ndarray) -> float | None:
  """Fleiss' kappa of an [items, categories] table with the same number of raters on every item."""
  raters = table.sum(axis=1)
  if len(set(raters.tolist())) != 1 or raters[0] < 2:
    raise ValueError("Fleiss' kappa needs the same number (>= 2) of raters on every item")
  shares = table.sum(axis=0) / table.sum()
  chance = float(np.square(shares).sum())
  return None if chance == 1 else (pairwise_agreement(table) - chance) / (1 - chance)


def agreement(labels: dict[str, dict[str, str]]) -> dict[str, Any] | None:
  """`labels`: rater -> item -> label. None with fewer than two raters."""
  raters = sorted(labels)
  if len(raters) < 2:
    return None
  common = sorted(set.intersection(*(set(labels[r]) for r in raters)))
  out: dict[str, Any] = {"raters": raters, "items": len(common), "percent": None, "kappa": None,
                         "kappa_kind": "cohen" if len(raters) == 2 else "fleiss"}
  if not common:
    return out
  rows = [[labels[r][i] for r in raters] for i in common]
  table = fleiss_table(rows)
  out["percent"] = 100.0 * pairwise_agreement(table)
  if len(raters) == 2:
    out["kappa"] = cohen_kappa([r[0] for r in rows], [r[1] for r in rows])
  else:
    out["kappa"] = fleiss_kappa(table)
  return out


def build(directory: str | os.PathLike, config: ReportConfig) -> dict[str, Any]:
  """The report of a rated run dir (see side_by_side.py for its files)."""
  directory = pathlib.Path(directory)
  items = side_by_side.load_rating_set(directory)
  ids = [item["id"] for item in items]
  key = side_by_side.load_key(directory, ids)
  rated = ratings_lib.latest(ratings_lib.read(directory / side_by_side.RATINGS, set(ids)))
  if not rated:
    raise side_by_side.RunFileError(f"{directory / side_by_side.RATINGS}: no ratings yet (`flan-jax rate "
                                    f"{directory}` collects them)")
  counts = {i: np.zeros(3, np.int64) for i in ids}
  labels: dict[str, dict[str, str]] = {}
  for (item, rater), r in rated.items():
    o = outcome(r["choice"], key["items"][item])
    counts[item][OUTCOMES.index(o)] += 1
    labels.setdefault(rater, {})[item] = o
  category = {item["id"]: item.get("category") or UNCATEGORISED for item in items}
  groups = {"overall": [i for i in ids if counts[i].any()]}
  if any(item.get("category") for item in items):
    for c in sorted(set(category.values())):
      groups[c] = [i for i in groups["overall"] if category[i] == c]
  summary = {}
  for name, members in groups.items():
    rows = np.stack([counts[i] for i in members]) if members else np.zeros((0, 3), np.int64)
    summary[name] = {"items": len(members), "ratings": int(rows.sum()),
                     **(bootstrap_rates(rows, config) if members else {})}
  return {"models": key["models"], "items": len(ids), "rated_items": len(groups["overall"]),
          "ratings": len(rated), "raters": {r: len(v) for r, v in sorted(labels.items())},
          "overall": summary.pop("overall"), "categories": summary, "agreement": agreement(labels),
          "options": dataclasses.asdict(config)}


def _cell(stat: dict[str, float] | None) -> str:
  return "" if not stat else f"{stat['rate']:.1f} [{stat['low']:.1f}, {stat['high']:.1f}]"


def _rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
  groups = {"overall": results["overall"], **results["categories"]}
  return [(name, str(g["items"]), str(g["ratings"]), *(_cell(g.get(o)) for o in OUTCOMES))
          for name, g in groups.items()]


def _agreement_line(a: dict[str, Any] | None) -> str:
  if a is None:
    return "one rater: no agreement to report"
  if not a["items"]:
    return f"no item was rated by all {len(a['raters'])} raters ({', '.join(a['raters'])})"
  kappa = "n/a (every rating had the same label)" if a["kappa"] is None else f"{a['kappa']:.3f}"
  pairwise, name = ("", "Cohen's") if a["kappa_kind"] == "cohen" else ("pairwise ", "Fleiss'")
  return (f"{len(a['raters'])} raters ({', '.join(a['raters'])}) on the {a['items']} items all rated: "
          f"{a['percent']:.1f}% {pairwise}agreement, {name} kappa {kappa}")


def markdown(results: dict[str, Any]) -> str:
  opts = results["options"]
  level = f"{100 * opts['confidence']:g}%"
  lines = [f"Model A: {results['models']['a']}", "", f"Model B: {results['models']['b']}", "",
           f"{results['rated_items']} of {results['items']} items rated, {results['ratings']} ratings by "
           + ", ".join(f"{r} ({n})" for r, n in results["raters"].items()) + ".", "",
           f"Rates are percent of ratings, with {level} bootstrap intervals ({opts['resamples']} resamples of "
           f"the items, seed {opts['seed']}).", "",
           "| | items | ratings | A better | tie | B better |", "|---|---:|---:|---:|---:|---:|"]
  lines += ["| " + " | ".join(row) + " |" for row in _rows(results)]
  lines += ["", "Inter-rater agreement: " + _agreement_line(results["agreement"]) + "."]
  return "\n".join(lines) + "\n"


def console_table(results: dict[str, Any]) -> str:
  rows = [("", "items", "ratings", "A better", "tie", "B better")] + _rows(results)
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  table = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
           .rstrip() for row in rows]
  return "\n".join(table + ["agreement: " + _agreement_line(results["agreement"])])


def write(directory: str | os.PathLike, results: dict[str, Any]) -> None:
  directory = pathlib.Path(directory)
  (directory / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
  (directory / "results.md").write_text(markdown(results), encoding="utf-8")
