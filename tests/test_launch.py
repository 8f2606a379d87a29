"""Dry runs of both launchers: the slices, the job specs and the exact commands they would run."""
from __future__ import annotations

import json
import pathlib
import shlex
import subprocess
import sys

import gin
import pytest

from launch import commands, tpu_pod, xm_launch

XL_GIN = "gin_configs/runs/flan_t5_xl_flan2022.gin"


@pytest.mark.parametrize("name, chips, devices, hosts, topology, gcloud, hbm_gib", [
    ("v4-32", 16, 16, 4, "2x2x4", "v4-32", 32),
    ("v4-8", 4, 4, 1, "2x2x1", "v4-8", 32),
    ("v5e-256", 256, 256, 64, "16x16", "v5litepod-256", 16),
    ("v5litepod-8", 8, 8, 1, "2x4", "v5litepod-8", 16),
    ("v5p-128", 64, 64, 16, "4x4x4", "v5p-128", 95),
    ("v3-32", 16, 32, 4, "4x4", "v3-32", 16),
    ("v3-8", 4, 8, 1, "2x2", "v3-8", 16),
])
def test_tpu_slices(name, chips, devices, hosts, topology, gcloud, hbm_gib):
  sl = commands.parse_tpu(name)
  assert (sl.chips, sl.devices, sl.hosts, sl.topology, sl.gcloud_accelerator_type) == (
      chips, devices, hosts, topology, gcloud)
  assert sl.hbm_per_device == hbm_gib * commands.GiB
  assert sl.devices_per_host * sl.hosts == sl.devices


@pytest.mark.parametrize("bad", ["v4", "v9-8", "v4-3", "tpu-32", "v5e-12"])
def test_bad_tpu_names_are_rejected(bad):
  with pytest.raises(ValueError, match="v4-32|unknown|chips|power-of-two"):
    commands.parse_tpu(bad)


def test_sweep_is_a_product_of_named_lists():
  units = commands.sweep_units(["LEARNING_RATE=1e-3", "LEARNING_RATE=5e-4", "MIXTURE_OR_TASK_NAME='a'",
                                "MIXTURE_OR_TASK_NAME='b'"])
  assert units == [
      {"LEARNING_RATE": "1e-3", "MIXTURE_OR_TASK_NAME": "'a'"},
      {"LEARNING_RATE": "1e-3", "MIXTURE_OR_TASK_NAME": "'b'"},
      {"LEARNING_RATE": "5e-4", "MIXTURE_OR_TASK_NAME": "'a'"},
      {"LEARNING_RATE": "5e-4", "MIXTURE_OR_TASK_NAME": "'b'"},
  ]
  assert commands.sweep_units([]) == [{}]
  with pytest.raises(ValueError, match="repeats"):
    commands.sweep_units(["A=1", "A=1"])
  with pytest.raises(ValueError, match="NAME=VALUE"):
    commands.sweep_units(["just_a_value"])


def _xm_argv(*extra):
  return ["--accelerator=v4-32", f"--gin_file={XL_GIN}", "--model_dir=gs://bucket/xl/",
          "--flan_data_dir=gs://bucket/flan_data", "--tfds_data_dir=gs://bucket/tfds",
          "--gin.BATCH_SIZE=64", "--sweep", "LEARNING_RATE=1e-3", "--sweep", "LEARNING_RATE=5e-4", *extra]


def test_xm_dry_run_prints_one_job_per_work_unit(capsys):
  sys.modules.pop("xmanager", None)
  assert xm_launch.main(_xm_argv("--dry_run")) == 0
  assert "xmanager" not in sys.modules, "a dry run must not import xmanager"
  out = capsys.readouterr().out
  specs = json.loads(out[out.index("job specs:") + len("job specs:"):])
  assert specs["slice"]["hosts"] == 4 and specs["slice"]["topology"] == "2x2x4"
  assert [j["requirements"] for j in specs["jobs"]] == [{"tpu_v4": "2x2x4"}] * 2
  for i, (job, lr) in enumerate(zip(specs["jobs"], ["1e-3", "5e-4"])):
    assert job["model_dir"] == f"gs://bucket/xl/{i}"
    assert job["env"] == {"FLAN_JAX_DATA_DIR": "/gcs/bucket/flan_data", "TFDS_DATA_DIR": "gs://bucket/tfds"}
    assert job["args"] == [f"--gin_file={XL_GIN}", "--gin.BATCH_SIZE=64", f"--gin.LEARNING_RATE={lr}",
                           f'--gin.MODEL_DIR="gs://bucket/xl/{i}"']
    # The printed shell line runs exactly the spec's argv.
    line = next(l for l in out.splitlines() if l.startswith("FLAN_JAX_DATA_DIR=") and f"/xl/{i}" in l)
    assert shlex.split(line)[2:] == ["python3", "-m", "flan_jax.train", *job["args"]]


def test_xm_model_dir_binding_is_a_gin_string():
  spec = xm_launch.build(_xm_argv())
  binding = dict(commands.parse_gin_flag(a) for a in spec.jobs[1].args if a.startswith("--gin."))["MODEL_DIR"]
  gin.clear_config()
  try:
    gin.parse_config(f"MODEL_DIR = {binding}")
    assert gin.query_parameter("%MODEL_DIR") == "gs://bucket/xl/1"
  finally:
    gin.clear_config()


def test_xm_gpu_requirements_and_eval_entry():
  spec = xm_launch.build(["--accelerator=gpu:a100", "--num_hosts=2", "--gpus_per_host=4", "--entry=eval",
                          "--gin_file=e.gin", "--model_dir=gs://b/e"])
  (job,) = spec.jobs
  assert job.module == "flan_jax.eval" and job.requirements == {"a100": 4, "replicas": 2}
  assert (job.hosts, job.devices, job.model_dir) == (2, 8, "gs://b/e")


def test_xm_gpu_names_cover_every_gpu_the_plan_knows():
  assert set(xm_launch.XM_GPU_TYPES) == set(commands.GPU_HBM)
  assert set(xm_launch.VERTEX_GPU_COUNTS) <= set(commands.GPU_HBM)


def _gpu_argv(accelerator, *extra):
  return [f"--accelerator={accelerator}", "--gin_file=a.gin", "--model_dir=gs://b/m", *extra]


@pytest.mark.parametrize("argv", [
    _xm_argv(),
    _gpu_argv("gpu:a100", "--num_hosts=2"),
    _gpu_argv("gpu:h100"),
    _gpu_argv("gpu:a100", "--gpus_per_host=3"),
], ids=["tpu-slice", "two-gpu-hosts", "h100", "three-a100"])
def test_xm_refuses_what_vertex_cannot_run_and_names_tpu_pod(argv, capsys):
  sys.modules.pop("xmanager", None)
  assert xm_launch.main(argv) == 2
  assert "launch.tpu_pod" in capsys.readouterr().err
  assert "xmanager" not in sys.modules, "a refused launch must stop before importing xmanager"
  assert xm_launch.main(argv + ["--dry_run"]) == 0
  out = capsys.readouterr().out
  assert "not launchable here" in out and json.loads(out[out.index("job specs:") + 10:])["vertex_blocker"]


def test_xm_single_host_gpus_vertex_places_are_launchable(capsys):
  for accelerator, gpus in [("gpu:a100", 8), ("gpu:a100", 16), ("gpu:l4", 1), ("gpu:v100", 4), ("gpu:t4", 2)]:
    spec = xm_launch.build(_gpu_argv(accelerator, f"--gpus_per_host={gpus}"))
    assert spec.vertex_blocker == "", accelerator
  assert xm_launch.main(_gpu_argv("gpu:a100", "--dry_run")) == 0
  assert "launchable on xm_local.Vertex" in capsys.readouterr().out


def test_xm_image_installs_the_staged_tree_with_cudas_jax():
  spec = xm_launch.build(_gpu_argv("gpu:a100"))
  copy, workdir, install = spec.docker_instructions
  assert copy == "COPY flan_jax/ /flan_jax" and workdir == "WORKDIR /flan_jax"
  assert shlex.split(install) == ["RUN", "pip", "install", "-e", ".", f"jax[cuda12]=={commands.JAX_VERSION}"]


def test_xm_stages_the_committed_tree(tmp_path):
  repo = pathlib.Path(__file__).resolve().parent.parent
  source = pathlib.Path(xm_launch.stage_source(str(repo), str(tmp_path)))
  assert source == tmp_path / xm_launch.SOURCE_DIR
  committed = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True,
                             text=True, check=True)
  staged = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file() or p.is_symlink())
  assert staged == sorted(committed.stdout.split())
  assert not (source / ".venv").exists() and not (source / ".git").exists()


def test_xm_rejects_a_local_model_dir(capsys):
  assert xm_launch.main(["--accelerator=v4-8", "--gin_file=a.gin", "--model_dir=/tmp/x", "--dry_run"]) == 2
  assert "gs://" in capsys.readouterr().err


def _pod_argv(*extra):
  return ["--accelerator=v5e-16", "--zone=us-west4-a", "--name=flan-base", "--project=proj",
          "--gin_file=gin_configs/runs/flan_t5_base_flan2022.gin", "--model_dir=gs://bucket/base",
          "--gin.TRAIN_STEPS=10", *extra]


def test_tpu_pod_dry_run_creates_installs_and_starts_on_all_workers(capsys):
  assert tpu_pod.main(_pod_argv("--flan_data_dir=gs://bucket/flan_data", "--delete_after", "--dry_run")) == 0
  lines = [l for l in capsys.readouterr().out.splitlines() if not l.startswith("#")]
  argvs = [shlex.split(l) for l in lines]
  create = argvs[0]
  assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "flan-base"]
  assert {"--zone=us-west4-a", "--project=proj", "--accelerator-type=v5litepod-16",
          "--version=v2-alpha-tpuv5-lite"} <= set(create)
  assert argvs[1][:2] == ["git", "archive"]
  assert argvs[2][4] == "scp" and "flan-base:flan_jax-src.tar.gz" in argvs[2] and "--worker=all" in argvs[2]
  ssh = [a for a in argvs if a[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]]
  assert len(ssh) == 3 and all("--worker=all" in a for a in ssh)
  assert "pip install" in ssh[0][-1] and "jax[tpu]==0.10.2" in ssh[0][-1]
  assert "gcloud storage rsync -r gs://bucket/flan_data" in ssh[1][-1]
  remote = shlex.split(ssh[2][-1][len("--command="):])
  assert remote[:4] == ["cd", "flan_jax", "&&", "FLAN_JAX_DATA_DIR=$HOME/flan_data"]
  assert remote[4:] == ["python3", "-m", "flan_jax.train", "--gin_file=gin_configs/runs/flan_t5_base_flan2022.gin",
                        "--gin.TRAIN_STEPS=10", '--gin.MODEL_DIR="gs://bucket/base"']
  assert argvs[-1][4:6] == ["delete", "flan-base"]


def test_tpu_pod_without_a_data_copy_downloads_it(capsys):
  assert tpu_pod.main(_pod_argv("--dry_run")) == 0
  assert 'FLAN_JAX_DATA_DIR="$HOME/flan_data" flan-jax data download' in capsys.readouterr().out


def test_tpu_pod_gpu_hosts_get_coordinator_and_process_flags(capsys):
  assert tpu_pod.main(["--accelerator=gpu:h100", "--hosts=h0,h1,h2", "--gin_file=a.gin", "--model_dir=/shared/m",
                       "--flan_data_dir=/shared/flan_data", "--dry_run"]) == 0
  lines = [l for l in capsys.readouterr().out.splitlines() if not l.startswith("#")]
  assert len(lines) == 3
  for i, line in enumerate(lines):
    ssh, host, remote = shlex.split(line)
    assert (ssh, host) == ("ssh", f"h{i}")
    args = shlex.split(remote)
    assert args[-3:] == ["--coordinator_address=h0:8476", "--process_count=3", f"--process_index={i}"]
    assert "FLAN_JAX_DATA_DIR=/shared/flan_data" in args


def test_tpu_pod_slurm_script_takes_process_flags_from_slurm(capsys, tmp_path):
  assert tpu_pod.main(["--accelerator=gpu:a100", "--slurm", "--num_hosts=4", "--gpus_per_host=8",
                       "--gin_file=a.gin", "--model_dir=/shared/m", "--dry_run"]) == 0
  script = capsys.readouterr().out
  assert "#SBATCH --nodes=4" in script and "#SBATCH --gpus-per-node=8" in script
  srun = shlex.split(script.strip().splitlines()[-1])
  assert srun[:3] == ["srun", "bash", "-c"]
  # Run the task line as one SLURM task would, with `exec` swapped for `printf` to see its argv.
  env = {"COORDINATOR": "node7:8476", "SLURM_NTASKS": "4", "SLURM_PROCID": "2", "PATH": "/usr/bin:/bin"}
  task = srun[3].replace("exec ", "printf '%s\\n' ", 1)
  argv = subprocess.run(["bash", "-c", task], env=env, capture_output=True, text=True, check=True).stdout.split("\n")
  assert argv[:3] == ["python3", "-m", "flan_jax.train"]
  assert argv[-4:-1] == ["--coordinator_address=node7:8476", "--process_count=4", "--process_index=2"]


def test_launchers_use_the_train_entry_points_multihost_flags(capsys):
  from flan_jax import train
  with pytest.raises(SystemExit):
    train.main(["--help"])
  help_text = capsys.readouterr().out
  for flag in (commands.COORDINATOR_FLAG, commands.NUM_PROCESSES_FLAG, commands.PROCESS_ID_FLAG):
    assert flag in help_text


@pytest.mark.parametrize("argv, message", [
    (["--accelerator=v4-32", "--gin_file=a.gin", "--model_dir=gs://b/m"], "--zone"),
    (["--accelerator=v4-32", "--zone=z", "--gin_file=a.gin", "--model_dir=/local"], "gs://"),
    (["--accelerator=gpu:h100", "--gin_file=a.gin", "--model_dir=/m"], "--hosts"),
    (["--accelerator=v4-32", "--zone=z", "--gin_file=a.gin", "--model_dir=gs://b", "--gin.=1"], "NAME=VALUE"),
])
def test_tpu_pod_rejects_bad_launches(argv, message, capsys):
  assert tpu_pod.main(argv + ["--dry_run"]) == 2
  assert message in capsys.readouterr().err


# With the `launch` extra installed: the real xmanager objects a launch would hand to Vertex.

def _xm_modules():
  vertex = pytest.importorskip("xmanager.cloud.vertex")
  from xmanager import xm  # pylint: disable=import-outside-toplevel
  from xmanager.xm_local import executables  # pylint: disable=import-outside-toplevel
  return vertex, xm, executables.GoogleContainerRegistryImage(name="flan_jax", image_path="gcr.io/p/flan_jax:t")


def test_xm_objects_are_what_vertex_runs(tmp_path):
  vertex, xm, image = _xm_modules()
  from xmanager import xm_flags  # pylint: disable=import-outside-toplevel
  from xmanager.xm import utils as xm_utils  # pylint: disable=import-outside-toplevel
  spec = xm_launch.build(_gpu_argv("gpu:a100", "--gpus_per_host=4", "--flan_data_dir=gs://b/flan_data",
                                   "--sweep", "LEARNING_RATE=1e-3", "--sweep", "LEARNING_RATE=5e-4"))
  container = xm_launch.xm_packageable(spec, str(tmp_path)).executable_spec
  assert container.entrypoint == xm.ModuleName("flan_jax.train")
  assert (container.base_image, container.docker_instructions) == (spec.image, list(spec.docker_instructions))
  jobs = xm_launch.xm_jobs(spec, image)
  assert len(jobs) == 2
  for job, unit in zip(jobs, spec.jobs):
    machine = vertex.get_machine_spec(job)
    assert (machine["machine_type"], machine["accelerator_type"].name, machine["accelerator_count"]) == (
        "a2-highgpu-4g", "NVIDIA_TESLA_A100", 4)
    # Vertex hands the container exactly the spec's argv and environment.
    assert xm.merge_args(image.args, job.args).to_list(xm_utils.ARGV_ESCAPER) == list(unit.args)
    assert job.env_vars == unit.env == {"FLAN_JAX_DATA_DIR": "/gcs/b/flan_data"}
  # xm_local reads its flags (the experiment database's path) outside absl's app.run.
  assert xm_flags.DB_YAML_CONFIG_PATH.value is None


@pytest.mark.parametrize("accelerator", ["v4-32", "v5e-256", "v5p-128", "v3-8", "v6e-8"] +
                         [f"gpu:{m}" for m in sorted(commands.GPU_HBM)])
def test_xm_requirements_are_xmanager_requirements(accelerator):
  _, xm, _ = _xm_modules()
  sl = commands.parse_accelerator(accelerator, 2, 4)
  requirements = xm.JobRequirements(**xm_launch.xm_requirements(sl))
  if sl.kind == "tpu":
    assert requirements.accelerator in xm.TpuType
    assert (requirements.topology.name, requirements.topology.chip_count) == (sl.topology, sl.chips)
  else:
    assert requirements.accelerator in xm.GpuType
    assert (requirements.task_requirements[requirements.accelerator], requirements.replicas) == (4, 2)


def test_xm_vertex_blockers_follow_xmanagers_machine_choice():
  vertex, _, image = _xm_modules()
  # TPU v2/v3 map to one 'cloud-tpu' machine; later generations to nothing.
  (v3_job,) = xm_launch.xm_jobs(xm_launch.build(_gpu_argv("v3-8")), image)
  assert vertex.get_machine_spec(v3_job)["machine_type"] == "cloud-tpu"
  for tpu in ("v4-8", "v5e-8", "v5p-8", "v6e-8"):
    (tpu_job,) = xm_launch.xm_jobs(xm_launch.build(_gpu_argv(tpu)), image)
    with pytest.raises(KeyError):
      vertex.get_machine_spec(tpu_job)
  for model in commands.GPU_HBM:
    for gpus in (1, 2, 4, 8, 16):
      spec = xm_launch.build(_gpu_argv(f"gpu:{model}", f"--gpus_per_host={gpus}"))
      try:
        machine = vertex.get_machine_spec(xm_launch.xm_jobs(spec, image)[0])["machine_type"]
      except ValueError:
        machine = None
      if not spec.vertex_blocker:
        # A GPU machine, or the n1 machine Vertex takes T4 and V100 on.
        assert machine and (machine.startswith(("a2-", "g2-")) or model in ("t4", "v100")), (model, gpus, machine)
      elif model in ("a100-80gb", "h100", "h200"):
        assert machine is None or machine.startswith("n1-"), (model, gpus, machine)
