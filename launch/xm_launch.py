"""Launch `flan_jax.train` / `eval` / `infer` as an XManager experiment on Cloud TPU VMs or GPU hosts.

  python -m launch.xm_launch --accelerator=v4-32 --gin_file=gin_configs/runs/flan_t5_xl_flan2022.gin \\
      --model_dir=gs://my-bucket/flan_t5_xl --flan_data_dir=gs://my-bucket/flan_data \\
      --sweep LEARNING_RATE=1e-3 --sweep LEARNING_RATE=5e-4 --dry_run

Each work unit of the sweep is one job running the same entry point with its own `--gin.X=Y` bindings and
its own MODEL_DIR. `--dry_run` builds the job specs as plain dataclasses and prints them; `xmanager` (the
`launch` extra) is imported only to launch for real, so the core install never needs it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shlex
import sys
from typing import Sequence

from launch import commands

DEFAULT_IMAGE = "python:3.11"
# Vertex AI mounts Cloud Storage buckets here (Cloud Storage FUSE): files the code opens with plain
# paths, like the Flan data dir, are read through it; MODEL_DIR stays gs:// (Orbax/TensorStore speak it).
GCS_FUSE_ROOT = "/gcs"


@dataclasses.dataclass(frozen=True)
class JobSpec:
  """One work unit: what runs, where, with which resources."""
  work_unit: int
  module: str
  args: tuple[str, ...]
  env: dict[str, str]
  accelerator: str
  requirements: dict[str, str | int]
  hosts: int
  devices: int
  model_dir: str
  sweep: dict[str, str]

  def command(self) -> str:
    """The job's command line as a shell would run it, environment first."""
    env = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
    return " ".join(env + [shlex.join(["python3", "-m", self.module, *self.args])])


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
  title: str
  image: str
  slice: commands.Slice
  jobs: tuple[JobSpec, ...]

  def to_json(self) -> str:
    return json.dumps({
        "title": self.title, "image": self.image, "slice": dataclasses.asdict(self.slice),
        "jobs": [dataclasses.asdict(j) for j in self.jobs]}, indent=2)


def gcs_to_fuse(path: str) -> str:
  """gs://bucket/dir -> /gcs/bucket/dir, for files read with plain `open`."""
  return f"{GCS_FUSE_ROOT}/{path[len('gs://'):]}" if path.startswith("gs://") else path


def xm_requirements(sl: commands.Slice) -> dict[str, str | int]:
  """The `xm.JobRequirements(**...)` keywords: a TPU type with its chip grid, or a GPU type and count."""
  if sl.kind == "tpu":
    return {f"tpu_{sl.generation}": sl.topology}
  return {sl.generation.replace("-", "_"): sl.devices_per_host}


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m launch.xm_launch", description=__doc__.split("\n\n")[0],
                              epilog="Any --gin.NAME=VALUE flag is passed to every job.")
  p.add_argument("--entry", default="train", choices=sorted(commands.ENTRY_POINTS))
  p.add_argument("--gin_file", action="append", default=[], required=True, help="repeatable")
  p.add_argument("--gin_search_paths", default="", help="comma-separated")
  p.add_argument("--accelerator", required=True,
                 help="a Cloud TPU type (v4-32, v5e-256, v5p-128) or gpu:MODEL (gpu:a100, gpu:h100)")
  p.add_argument("--num_hosts", type=int, default=1, help="GPU hosts (TPU hosts follow from the topology)")
  p.add_argument("--gpus_per_host", type=int, default=8)
  p.add_argument("--model_dir", required=True, help="a bucket path, gs://BUCKET/DIR (MODEL_DIR)")
  p.add_argument("--flan_data_dir", default=None, help="the Flan data dir (gs:// read through /gcs)")
  p.add_argument("--tfds_data_dir", default=None, help="TFDS_DATA_DIR for the Flan source datasets")
  p.add_argument("--sweep", action="append", default=[], metavar="NAME=VALUE",
                 help="repeatable; values of one name make a list, names combine as a product")
  p.add_argument("--name", default="flan_jax", help="experiment title")
  p.add_argument("--image", default=DEFAULT_IMAGE, help="base Docker image the package is installed into")
  p.add_argument("--dry_run", action="store_true", help="print the job specs and commands; launch nothing")
  return p


def split_gin_flags(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  rest, bindings = [], []
  for arg in argv:
    if arg.startswith("--gin."):
      bindings.append(commands.parse_gin_flag(arg))
    else:
      rest.append(arg)
  return rest, bindings


def build(argv: Sequence[str]) -> ExperimentSpec:
  rest, bindings = split_gin_flags(argv)
  a = parser().parse_args(rest)
  if not a.model_dir.startswith("gs://"):
    raise ValueError(f"--model_dir={a.model_dir!r}: cloud jobs write MODEL_DIR to a bucket, gs://BUCKET/DIR")
  sl = commands.parse_accelerator(a.accelerator, a.num_hosts, a.gpus_per_host)
  base = commands.EntryCommand(
      entry=a.entry, gin_files=tuple(a.gin_file), gin_bindings=tuple(bindings),
      gin_search_paths=tuple(p for p in a.gin_search_paths.split(",") if p))
  env = commands.data_env(gcs_to_fuse(a.flan_data_dir) if a.flan_data_dir else None, a.tfds_data_dir)
  units = commands.sweep_units(a.sweep)
  jobs = []
  for i, unit in enumerate(units):
    model_dir = commands.unit_dir(a.model_dir, i, len(units))
    cmd = base.with_bindings(list(unit.items()) + [("MODEL_DIR", commands.gin_string(model_dir))])
    jobs.append(JobSpec(
        work_unit=i, module=commands.ENTRY_POINTS[a.entry], args=tuple(cmd.args()), env=env,
        accelerator=sl.name, requirements=xm_requirements(sl), hosts=sl.hosts, devices=sl.devices,
        model_dir=model_dir, sweep=unit))
  return ExperimentSpec(title=a.name, image=a.image, slice=sl, jobs=tuple(jobs))


def dry_run_text(spec: ExperimentSpec) -> str:
  lines = [f"experiment {spec.title!r} on {spec.slice.describe()}", f"{len(spec.jobs)} work unit(s)", ""]
  for job in spec.jobs:
    lines.append(f"# work unit {job.work_unit}: {job.sweep or 'no sweep'} -> {job.model_dir}")
    lines.append(job.command())
  return "\n".join(lines + ["", "job specs:", spec.to_json()])


def launch(spec: ExperimentSpec, repo_root: str) -> None:
  """Packages the repo into a container and adds one job per work unit (needs the `launch` extra)."""
  try:
    from xmanager import xm, xm_local  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise SystemExit(f"xmanager is not installed ({e}); pip install 'flan_jax[launch]', or use --dry_run") from e

  with xm_local.create_experiment(experiment_title=spec.title) as experiment:
    executor_spec = xm_local.Vertex.Spec()
    [executable] = experiment.package([
        xm.python_container(
            executor_spec, path=repo_root, base_image=spec.image,
            entrypoint=xm.ModuleName(spec.jobs[0].module),
            docker_instructions=["COPY . /flan_jax", "WORKDIR /flan_jax", "RUN pip install -e ."])])
    for job in spec.jobs:
      executor = xm_local.Vertex(requirements=xm.JobRequirements(**job.requirements))
      experiment.add(xm.Job(executable=executable, executor=executor, args=list(job.args), env_vars=job.env))


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    spec = build(argv)
  except ValueError as e:
    print(f"xm_launch: {e}", file=sys.stderr)
    return 2
  if "--dry_run" in argv:
    print(dry_run_text(spec))
    return 0
  launch(spec, str(pathlib.Path(__file__).resolve().parent.parent))
  return 0


if __name__ == "__main__":
  sys.exit(main())
