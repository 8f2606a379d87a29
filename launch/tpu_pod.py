"""Run an entry point on a Cloud TPU VM slice (or a set of GPU hosts) without XManager: plain gcloud / ssh.

  python -m launch.tpu_pod --accelerator=v4-32 --name=flan-xl --zone=us-central2-b \\
      --gin_file=gin_configs/runs/flan_t5_xl_flan2022.gin --model_dir=gs://my-bucket/flan_t5_xl \\
      --flan_data_dir=gs://my-bucket/flan_data --dry_run

On TPU the steps are: create the slice, copy this source tree to every worker, install it with jax[tpu],
fetch the Flan data dir, then start the same command on all workers at once (`--worker=all`); each
worker is one jax process and `jax.distributed.initialize()` finds the others through the TPU runtime.
On GPU hosts (`--accelerator=gpu:h100 --hosts=a,b`) each host gets the coordinator / process flags of
`flan_jax.train`; with `--slurm` an sbatch script is printed instead and jax reads the SLURM_* variables.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import subprocess
import sys
from typing import Sequence

from launch import commands

SOURCE_ARCHIVE = "flan_jax-src.tar.gz"
REMOTE_DIR = "flan_jax"
REMOTE_DATA_DIR = "$HOME/flan_data"


@dataclasses.dataclass(frozen=True)
class Step:
  """One command of the launch: what it does and the argv to run (`local` steps run here, others too)."""
  what: str
  argv: tuple[str, ...]

  def shell(self) -> str:
    return shlex.join(self.argv)


def _gcloud_tpu(verb: str, name: str | None, zone: str, project: str | None, *rest: str) -> tuple[str, ...]:
  argv = ["gcloud", "compute", "tpus", "tpu-vm", verb] + ([name] if name else []) + [f"--zone={zone}"]
  if project:
    argv.append(f"--project={project}")
  return tuple(argv + list(rest))


def _remote(command: commands.EntryCommand, env: dict[str, str]) -> str:
  """The command a worker runs; env values are double-quoted so `$HOME` expands on the worker."""
  prefix = " ".join(f'{k}="{v}"' for k, v in env.items())
  return f"cd {REMOTE_DIR} && {prefix + ' ' if prefix else ''}{shlex.join(command.argv())}"


def tpu_steps(a: argparse.Namespace, sl: commands.Slice, command: commands.EntryCommand) -> list[Step]:
  tpu = lambda verb, *rest: _gcloud_tpu(verb, a.name, a.zone, a.project, *rest)  # noqa: E731
  ssh_all = lambda cmd: tpu("ssh", "--worker=all", f"--command={cmd}")  # noqa: E731
  create = ["--accelerator-type=" + sl.gcloud_accelerator_type, f"--version={a.runtime_version or sl.runtime_version}"]
  if a.spot:
    create.append("--spot")
  install = (f"mkdir -p {REMOTE_DIR} && tar -xzf {SOURCE_ARCHIVE} -C {REMOTE_DIR} && "
             f"pip install -q 'jax[tpu]=={commands.JAX_VERSION}' && pip install -q -e ./{REMOTE_DIR}")
  steps = [
      Step(f"create the {sl.describe()}", tpu("create", *create)),
      Step("archive this source tree (committed files)",
           ("git", "archive", "--format=tar.gz", f"--output={SOURCE_ARCHIVE}", "HEAD")),
      Step("copy it to every worker", _gcloud_tpu(
          "scp", None, a.zone, a.project, SOURCE_ARCHIVE, f"{a.name}:{SOURCE_ARCHIVE}", "--worker=all")),
      Step("install it on every worker", ssh_all(install)),
  ]
  env = commands.data_env(None, a.tfds_data_dir)
  if a.flan_data_dir:
    steps.append(Step("copy the Flan data dir to every worker", ssh_all(
        f'mkdir -p "{REMOTE_DATA_DIR}" && gcloud storage rsync -r {shlex.quote(a.flan_data_dir)} "{REMOTE_DATA_DIR}"')))
  else:
    steps.append(Step("download the Flan data dir on every worker", ssh_all(
        f'FLAN_JAX_DATA_DIR="{REMOTE_DATA_DIR}" flan-jax data download')))
  env = {"FLAN_JAX_DATA_DIR": REMOTE_DATA_DIR, **env}
  steps.append(Step(f"start on all {sl.hosts} worker(s) at once", ssh_all(_remote(command, env))))
  if a.delete_after:
    steps.append(Step("delete the slice", tpu("delete", "--quiet")))
  return steps


def gpu_steps(a: argparse.Namespace, sl: commands.Slice, command: commands.EntryCommand) -> list[Step]:
  """One ssh per host; the first host is the coordinator. The source must already be installed there."""
  hosts = [h for h in a.hosts.split(",") if h]
  coordinator = f"{hosts[0]}:{a.coordinator_port}"
  env = commands.data_env(a.flan_data_dir, a.tfds_data_dir)
  steps = []
  for i, host in enumerate(hosts):
    cmd = command.with_flags([f"{commands.COORDINATOR_FLAG}={coordinator}",
                              f"{commands.NUM_PROCESSES_FLAG}={len(hosts)}", f"{commands.PROCESS_ID_FLAG}={i}"])
    steps.append(Step(f"process {i} of {len(hosts)} on {host}", ("ssh", host, _remote(cmd, env))))
  return steps


def slurm_script(a: argparse.Namespace, sl: commands.Slice, command: commands.EntryCommand) -> str:
  """An sbatch script, one task per node: the first node coordinates, and each task passes its SLURM_PROCID
  and SLURM_NTASKS as the entry point's process flags (expanded per task by the inner shell)."""
  env = commands.data_env(a.flan_data_dir, a.tfds_data_dir)
  lines = ["#!/bin/bash", f"#SBATCH --job-name={a.name}", f"#SBATCH --nodes={sl.hosts}",
           "#SBATCH --ntasks-per-node=1", f"#SBATCH --gpus-per-node={sl.devices_per_host}", "set -euo pipefail"]
  lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
  lines.append(f'export COORDINATOR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):{a.coordinator_port}"')
  task = (shlex.join(command.argv()) + f' {commands.COORDINATOR_FLAG}="$COORDINATOR"'
          f' {commands.NUM_PROCESSES_FLAG}="$SLURM_NTASKS" {commands.PROCESS_ID_FLAG}="$SLURM_PROCID"')
  lines.append("srun bash -c " + shlex.quote("exec " + task))
  return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m launch.tpu_pod", description=__doc__.split("\n\n")[0],
                              epilog="Any --gin.NAME=VALUE flag is passed to the entry point.")
  p.add_argument("--entry", default="train", choices=sorted(commands.ENTRY_POINTS))
  p.add_argument("--gin_file", action="append", default=[], required=True, help="repeatable")
  p.add_argument("--gin_search_paths", default="")
  p.add_argument("--accelerator", required=True, help="v4-32, v5e-256, ... or gpu:MODEL with --hosts")
  p.add_argument("--name", default="flan-jax", help="the TPU VM name (or SLURM job name)")
  p.add_argument("--zone", default=None, help="the TPU zone, e.g. us-central2-b (TPU only, required)")
  p.add_argument("--project", default=None)
  p.add_argument("--runtime_version", default=None, help="TPU VM software version (default: per generation)")
  p.add_argument("--spot", action="store_true", help="create a Spot TPU slice")
  p.add_argument("--delete_after", action="store_true", help="delete the slice when the command ends")
  p.add_argument("--hosts", default="", help="GPU: comma-separated host names; the first coordinates")
  p.add_argument("--gpus_per_host", type=int, default=8)
  p.add_argument("--num_hosts", type=int, default=0, help="GPU with --slurm: number of nodes")
  p.add_argument("--coordinator_port", type=int, default=8476)
  p.add_argument("--slurm", action="store_true", help="GPU: print an sbatch script instead of ssh commands")
  p.add_argument("--model_dir", required=True, help="MODEL_DIR (gs://... for a TPU slice)")
  p.add_argument("--flan_data_dir", default=None, help="TPU: gs:// copy of the data dir; GPU: its path on the hosts")
  p.add_argument("--tfds_data_dir", default=None)
  p.add_argument("--dry_run", action="store_true", help="print the commands; run nothing")
  return p


def build(argv: Sequence[str]) -> tuple[argparse.Namespace, commands.Slice, commands.EntryCommand]:
  rest, bindings = [], []
  for arg in argv:
    (bindings.append(commands.parse_gin_flag(arg)) if arg.startswith("--gin.") else rest.append(arg))
  a = parser().parse_args(rest)
  if a.accelerator.startswith("gpu:"):
    n_hosts = a.num_hosts if a.slurm else len([h for h in a.hosts.split(",") if h])
    if n_hosts < 1:
      raise ValueError("GPU launches need --hosts=a,b,... (or --slurm --num_hosts=N)")
    sl = commands.gpu_slice(a.accelerator.split(":", 1)[1], n_hosts, a.gpus_per_host)
  else:
    sl = commands.parse_tpu(a.accelerator)
    if not a.zone:
      raise ValueError(f"--zone is required to create a TPU slice ({sl.gcloud_accelerator_type})")
    if not a.model_dir.startswith("gs://"):
      raise ValueError(f"--model_dir={a.model_dir!r}: every TPU worker writes there, so it must be gs://BUCKET/DIR")
  command = commands.EntryCommand(
      entry=a.entry, gin_files=tuple(a.gin_file),
      gin_search_paths=tuple(p for p in a.gin_search_paths.split(",") if p),
      gin_bindings=tuple(bindings)).with_bindings([("MODEL_DIR", commands.gin_string(a.model_dir))])
  return a, sl, command


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    a, sl, command = build(argv)
  except ValueError as e:
    print(f"tpu_pod: {e}", file=sys.stderr)
    return 2
  if sl.kind == "gpu" and a.slurm:
    script = slurm_script(a, sl, command)
    print(script, end="")
    return 0
  steps = tpu_steps(a, sl, command) if sl.kind == "tpu" else gpu_steps(a, sl, command)
  for i, step in enumerate(steps, 1):
    print(f"# {i}. {step.what}\n{step.shell()}", flush=True)
    if not a.dry_run:
      subprocess.run(step.argv, check=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
