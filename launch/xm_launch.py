"""Launch `flan_jax.train` / `eval` / `infer` as an XManager experiment on Vertex AI.

  python -m launch.xm_launch --accelerator=gpu:a100 --gpus_per_host=8 \\
      --gin_file=gin_configs/runs/flan_t5_base_flan2022.gin --model_dir=gs://my-bucket/flan_t5_base \\
      --flan_data_dir=gs://my-bucket/flan_data --sweep LEARNING_RATE=1e-3 --sweep LEARNING_RATE=5e-4 --dry_run

Each work unit of the sweep is one job running the same entry point with its own `--gin.X=Y` bindings and
its own MODEL_DIR. `--dry_run` builds the job specs as plain dataclasses and prints them; `xmanager` (the
`launch` extra) is imported only to launch for real, so the core install never needs it.

What xmanager 0.8.5's Vertex executor (`xm_local.Vertex`) can run, read from its source: one host of A100, L4,
V100 or T4 GPUs. Of TPUs it maps only v2/v3 (to one 'cloud-tpu' machine), no v4 / v5e / v5p / v6e slice, so
this launcher sends every TPU run to `launch.tpu_pod`; it has no machine for H100 / H200 / A100-80GB either, and
it hands every replica the same flags where each host of a multi-host run needs its own --process_index. Those
launches stop, naming `launch.tpu_pod`, which runs them; their dry runs still print the specs.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
from typing import Any, Sequence

from launch import commands

DEFAULT_IMAGE = "python:3.11"
# Vertex AI mounts Cloud Storage buckets here (Cloud Storage FUSE): files the code opens with plain
# paths, like the Flan data dir, are read through it; MODEL_DIR stays gs:// (Orbax/TensorStore speak it).
GCS_FUSE_ROOT = "/gcs"
# The staged source tree's directory in the image build context, and the image's working directory.
SOURCE_DIR = "flan_jax"

# xmanager's names (`xm.ResourceType`, the `xm.JobRequirements` keywords) for the GPU models plan.GPU_HBM knows.
XM_GPU_TYPES = {"a100": "a100", "a100-80gb": "a100_80gib", "h100": "h100", "h200": "h200", "l4": "l4_24th",
                "v100": "v100", "t4": "t4"}
# GPUs per host that xmanager 0.8.5's Vertex executor finds a machine for (cloud/vertex.py, get_machine_spec):
# a2-highgpu machines for A100, g2-standard for L4 (exact counts), and an n1-standard machine for any other
# GPU, which Vertex pairs with T4 and V100 only.
VERTEX_GPU_COUNTS = {"a100": (1, 2, 4, 8, 16), "l4": (1, 2, 4, 8), "v100": (1, 2, 4, 8), "t4": (1, 2, 4)}


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
  docker_instructions: tuple[str, ...]
  slice: commands.Slice
  jobs: tuple[JobSpec, ...]
  vertex_blocker: str

  def to_json(self) -> str:
    return json.dumps({
        "title": self.title, "image": self.image, "docker_instructions": list(self.docker_instructions),
        "slice": dataclasses.asdict(self.slice), "jobs": [dataclasses.asdict(j) for j in self.jobs],
        "vertex_blocker": self.vertex_blocker}, indent=2)


def gcs_to_fuse(path: str) -> str:
  """gs://bucket/dir -> /gcs/bucket/dir, for files read with plain `open`."""
  return f"{GCS_FUSE_ROOT}/{path[len('gs://'):]}" if path.startswith("gs://") else path


def xm_requirements(sl: commands.Slice) -> dict[str, str | int]:
  """The `xm.JobRequirements(**...)` keywords: a TPU type with its chip grid, or a GPU type with its count per
  host and, past one host, the hosts as replicas."""
  if sl.kind == "tpu":
    return {f"tpu_{sl.generation}": sl.topology}
  requirements: dict[str, str | int] = {XM_GPU_TYPES[sl.generation]: sl.devices_per_host}
  if sl.hosts > 1:
    requirements["replicas"] = sl.hosts
  return requirements


def vertex_blocker(sl: commands.Slice) -> str:
  """Why xmanager 0.8.5's Vertex executor cannot run this slice; empty when it can."""
  if sl.kind == "tpu":
    return (f"xmanager's Vertex executor maps only TPU v2/v3 (to one 'cloud-tpu' machine), no v4/v5e/v5p/v6e "
            f"slice; run {sl.name} with python -m launch.tpu_pod")
  if sl.hosts > 1:
    return (f"{sl.hosts} hosts: xmanager's Vertex executor gives every replica the same flags, and each host needs "
            "its own --process_index; run multi-host GPU jobs with python -m launch.tpu_pod --hosts=... (or --slurm)")
  counts = VERTEX_GPU_COUNTS.get(sl.generation, ())
  if sl.devices_per_host not in counts:
    known = "; ".join(f"{m}: {', '.join(map(str, c))}" for m, c in VERTEX_GPU_COUNTS.items())
    return (f"xmanager's Vertex executor has no machine for {sl.devices_per_host} x {sl.generation} (GPUs per host "
            f"it places: {known}); run it with python -m launch.tpu_pod")
  return ""


def docker_instructions(sl: commands.Slice) -> tuple[str, ...]:
  """Installs the staged source tree; GPU images add jax's CUDA plugin at the version setup.py pins."""
  cuda = f" 'jax[cuda12]=={commands.JAX_VERSION}'" if sl.kind == "gpu" else ""
  return (f"COPY {SOURCE_DIR}/ /{SOURCE_DIR}", f"WORKDIR /{SOURCE_DIR}", f"RUN pip install -e .{cuda}")


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m launch.xm_launch", description=__doc__.split("\n\n")[0],
                              epilog="Any --gin.NAME=VALUE flag is passed to every job.")
  p.add_argument("--entry", default="train", choices=sorted(commands.ENTRY_POINTS))
  p.add_argument("--gin_file", action="append", default=[], required=True, help="repeatable")
  p.add_argument("--gin_search_paths", default="", help="comma-separated")
  p.add_argument("--accelerator", required=True,
                 help="gpu:MODEL (gpu:a100, gpu:l4), or a Cloud TPU type (v4-32, v5e-256) for a dry run")
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
  return ExperimentSpec(title=a.name, image=a.image, docker_instructions=docker_instructions(sl), slice=sl,
                        jobs=tuple(jobs), vertex_blocker=vertex_blocker(sl))


def dry_run_text(spec: ExperimentSpec) -> str:
  vertex = f"not launchable here: {spec.vertex_blocker}" if spec.vertex_blocker else "launchable on xm_local.Vertex"
  lines = [f"experiment {spec.title!r} on {spec.slice.describe()}", f"{len(spec.jobs)} work unit(s); {vertex}", ""]
  for job in spec.jobs:
    lines.append(f"# work unit {job.work_unit}: {job.sweep or 'no sweep'} -> {job.model_dir}")
    lines.append(job.command())
  return "\n".join(lines + ["", "job specs:", spec.to_json()])


def stage_source(repo_root: str, dest: str) -> str:
  """Extracts the committed tree (`git archive HEAD`, what launch.tpu_pod ships too) into dest/flan_jax, so the
  image gets neither the venv nor caches nor uncommitted edits."""
  out = os.path.join(dest, SOURCE_DIR)
  os.mkdir(out)
  archive = subprocess.run(["git", "-C", repo_root, "archive", "--format=tar", "HEAD"], check=True,
                           capture_output=True).stdout
  subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
  return out


def _xm() -> tuple[Any, Any]:
  """xmanager's `xm` and `xm_local`, with absl flags at their defaults: xm_local reads some (its database path)
  and `python -m launch.xm_launch` does not go through absl's app.run."""
  try:
    from absl import flags  # pylint: disable=import-outside-toplevel
    from xmanager import xm, xm_local  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise SystemExit(f"xmanager is not installed ({e}); pip install 'flan_jax[launch]', or use --dry_run") from e
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  return xm, xm_local


def xm_packageable(spec: ExperimentSpec, source: str) -> Any:
  """The container every work unit runs: the staged tree at `source` installed into the base image, its
  entrypoint `python -m <entry module>` followed by each job's args."""
  xm, xm_local = _xm()
  return xm.python_container(
      xm_local.Vertex.Spec(), entrypoint=xm.ModuleName(spec.jobs[0].module), path=source, base_image=spec.image,
      docker_instructions=list(spec.docker_instructions))


def xm_jobs(spec: ExperimentSpec, executable: Any) -> list[Any]:
  """One `xm.Job` per work unit, on a Vertex executor with the spec's requirements."""
  xm, xm_local = _xm()
  return [xm.Job(executable=executable, executor=xm_local.Vertex(requirements=xm.JobRequirements(**job.requirements)),
                 args=list(job.args), env_vars=dict(job.env)) for job in spec.jobs]


def launch(spec: ExperimentSpec, repo_root: str) -> None:
  """Packages the committed tree into one image and adds a work unit per job (needs the `launch` extra)."""
  _, xm_local = _xm()
  with tempfile.TemporaryDirectory() as staging:
    packageable = xm_packageable(spec, stage_source(repo_root, staging))
    with xm_local.create_experiment(experiment_title=spec.title) as experiment:
      [executable] = experiment.package([packageable])
      for job in xm_jobs(spec, executable):
        experiment.add(job)


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
  if spec.vertex_blocker:
    print(f"xm_launch: {spec.vertex_blocker}", file=sys.stderr)
    return 2
  launch(spec, str(pathlib.Path(__file__).resolve().parent.parent))
  return 0


if __name__ == "__main__":
  sys.exit(main())
