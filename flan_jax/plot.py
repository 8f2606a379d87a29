"""`flan-jax plot RUN_DIR [RUN_DIR ...]`: training loss per target token and evaluation scores over steps, as a PNG.

Reads each run's `metrics.jsonl` (written by `flan-jax train`): the left panel is `train/loss` (the mean loss per
non-padding target token, what the console prints) and, where the run evaluated a held-out mixture, `eval/loss`;
the right panel, when any run has them, the evaluation suites' scores (`eval/<suite>`, percent). One line per run,
labelled by its directory name.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Sequence

METRICS_FILE = "metrics.jsonl"
TRAIN_LOSS = "train/loss"
EVAL_LOSS = "eval/loss"


def read_metrics(run_dir: pathlib.Path) -> list[dict]:
  """The rows of a run's metrics.jsonl; a line that is not JSON fails naming file and line."""
  path = run_dir / METRICS_FILE
  if not path.is_file():
    raise ValueError(f"{path}: no metrics here (RUN_DIR is the MODEL_DIR a `flan-jax train` wrote)")
  rows = []
  for number, line in enumerate(path.read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{number}: not JSON ({e.msg})") from None
  return rows


def series(rows: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
  points = [(int(r["step"]), float(r[key])) for r in rows if key in r and "step" in r]
  return [s for s, _ in points], [v for _, v in points]


def suite_keys(rows: Sequence[dict]) -> list[str]:
  """The evaluation suites' score keys (`eval/mmlu_direct`, ..., `eval/normalized_average`)."""
  from flan_jax.evaluation.suites import SUITES  # pylint: disable=import-outside-toplevel
  names = set(SUITES) | {"normalized_average"}
  return sorted({k for r in rows for k in r if k.startswith("eval/") and k[len("eval/"):] in names})


def plot(run_dirs: Sequence[pathlib.Path], output: pathlib.Path) -> pathlib.Path:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  runs = {d: read_metrics(d) for d in run_dirs}
  if not any(series(rows, TRAIN_LOSS)[0] for rows in runs.values()):
    raise ValueError(f"no {TRAIN_LOSS} in {', '.join(str(d / METRICS_FILE) for d in run_dirs)}")
  suites = sorted({k for rows in runs.values() for k in suite_keys(rows)})
  fig, axes = plt.subplots(1, 2 if suites else 1, figsize=(11 if suites else 6, 3.6), squeeze=False)
  loss_ax = axes[0][0]
  for run_dir, rows in runs.items():
    loss_ax.plot(*series(rows, TRAIN_LOSS), label=f"{run_dir.name} train")
    steps, values = series(rows, EVAL_LOSS)
    if steps:
      loss_ax.plot(steps, values, marker="o", linestyle="--", label=f"{run_dir.name} eval")
  loss_ax.set(xlabel="step", ylabel="loss per target token", title="loss")
  loss_ax.legend(fontsize="small")
  if suites:
    score_ax = axes[0][1]
    for run_dir, rows in runs.items():
      for key in suites:
        steps, values = series(rows, key)
        if steps:
          score_ax.plot(steps, values, marker="o", label=f"{run_dir.name} {key[len('eval/'):]}")
    score_ax.set(xlabel="step", ylabel="score (%)", title="evaluation suites")
    score_ax.legend(fontsize="small")
  fig.tight_layout()
  output.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(output, dpi=110)
  plt.close(fig)
  return output


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="flan-jax plot", description=__doc__.split("\n\n")[0],
                                   epilog=__doc__.split("\n\n", 1)[1])
  parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", type=pathlib.Path)
  parser.add_argument("--output", type=pathlib.Path, default=None,
                      help="the PNG to write (default: RUN_DIR/loss.png of the first run)")
  args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
  try:
    out = plot(args.run_dirs, args.output or args.run_dirs[0] / "loss.png")
  except ValueError as e:
    print(f"flan-jax plot: {e}", file=sys.stderr)
    return 1
  print(f"flan-jax plot: wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
