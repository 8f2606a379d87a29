"""Aggregation of per-example metrics into task, category and benchmark scores, the normalized average, and the
markdown table.

Scores are percentages. A benchmark's score is the macro average over its tasks (MMLU subjects, BBH tasks, MGSM
and TyDiQA languages) of the primary metric. The normalized average (Flan paper) is the mean over the six suites
of 100 * (score - baseline) / (100 - baseline), baseline = the suite's random-guess score.
"""
from __future__ import annotations

import collections
from typing import Any

from flan_jax.evaluation import answers, mmlu
from flan_jax.evaluation.suites import NORMALIZED_SUITES, SUITES, random_baseline


def _mean(values) -> float:
  values = list(values)
  return sum(values) / len(values) if values else float("nan")


def aggregate(suite_name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
  """`records`: one per example with `task`, `answer` and `metrics` (values in [0, 1]). `no_answer` counts the
  examples whose output held no answer in the suite's format (scored wrong)."""
  suite = SUITES[suite_name]
  by_task: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
  for r in records:
    by_task[r["task"]].append(r["metrics"])
  tasks = {}
  for task, rows in by_task.items():
    tasks[task] = {m: 100.0 * _mean(row[m] for row in rows) for m in rows[0]}
    tasks[task]["count"] = len(rows)
  metric_names = list(next(iter(tasks.values()))) if tasks else [suite.primary]
  metrics = {m: _mean(t[m] for t in tasks.values()) for m in metric_names if m != "count"}
  out = {"score": metrics.get(suite.primary, float("nan")), "primary": suite.primary, "metrics": metrics,
         "baseline": random_baseline(suite_name), "count": len(records),
         "no_answer": sum(r["answer"] == answers.NO_ANSWER for r in records), "tasks": tasks}
  if suite.benchmark == "mmlu":
    cats: dict[str, list[float]] = collections.defaultdict(list)
    for task, values in tasks.items():
      cats[mmlu.CATEGORIES[task.split("/", 1)[1]]].append(values[suite.primary])
    out["categories"] = {c: _mean(v) for c, v in sorted(cats.items())}
  return out


def normalized(score: float, baseline: float) -> float:
  return 100.0 * (score - baseline) / (100.0 - baseline)


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
  present = [s for s in NORMALIZED_SUITES if s in results]
  norm = {s: normalized(results[s]["score"], results[s]["baseline"]) for s in present}
  return {"normalized": norm, "normalized_average": _mean(norm.values()) if norm else None,
          "normalized_suites": present, "normalized_complete": len(present) == len(NORMALIZED_SUITES)}


def markdown(results: dict[str, dict[str, Any]], summary: dict[str, Any]) -> str:
  lines = ["| suite | score | metric | random baseline | normalized | examples | no answer |",
           "|---|---:|---|---:|---:|---:|---:|"]
  for name, r in results.items():
    norm = summary["normalized"].get(name)
    lines.append(f"| {name} | {r['score']:.2f} | {r['primary']} | {r['baseline']:.2f} | "
                 f"{'' if norm is None else f'{norm:.2f}'} | {r['count']} | {r['no_answer']} |")
  if summary["normalized_average"] is not None:
    label = "normalized average" if summary["normalized_complete"] else (
        f"normalized average (partial: {len(summary['normalized_suites'])} of {len(NORMALIZED_SUITES)} suites)")
    lines.append(f"| **{label}** | | | | **{summary['normalized_average']:.2f}** | | |")
  for name, r in results.items():
    lines += ["", f"### {name}", ""]
    if "categories" in r:
      lines += ["| category | " + r["primary"] + " |", "|---|---:|"]
      lines += [f"| {c} | {v:.2f} |" for c, v in r["categories"].items()]
      lines.append("")
    metric_names = [m for m in next(iter(r["tasks"].values())) if m != "count"] if r["tasks"] else []
    lines.append("| task | " + " | ".join(metric_names) + " | examples |")
    lines.append("|---|" + "---:|" * (len(metric_names) + 1))
    for task, values in r["tasks"].items():
      lines.append(f"| {task} | " + " | ".join(f"{values[m]:.2f}" for m in metric_names)
                   + f" | {values['count']} |")
  return "\n".join(lines) + "\n"


def console_table(results: dict[str, dict[str, Any]], summary: dict[str, Any]) -> str:
  """The summary for a terminal: one aligned row per suite, scores rounded to one decimal."""
  rows = [("suite", "score", "normalized", "examples", "no answer")]
  for name, r in results.items():
    norm = summary["normalized"].get(name)
    rows.append((name, f"{r['score']:.1f}", "" if norm is None else f"{norm:.1f}", str(r["count"]),
                 str(r["no_answer"])))
  if summary["normalized_average"] is not None:
    partial = "" if summary["normalized_complete"] else (
        f" ({len(summary['normalized_suites'])} of {len(NORMALIZED_SUITES)} suites)")
    rows.append((f"normalized average{partial}", "", f"{summary['normalized_average']:.1f}", "", ""))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                              enumerate(zip(row, widths))).rstrip() for row in rows)
