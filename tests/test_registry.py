"""The plain task catalog: with FLAN_JAX_SEQIO=0 `import tasks` registers the same tasks and mixtures without seqio
or TensorFlow, with the same rates, and the training input's blocks (what a grain worker computes) hold the same
ids."""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

HEAVY_MODULES = ("tensorflow", "seqio", "jax")
MIXTURES = ("cot_submix", "niv2_submix", "cot_fsopt", "palmflan_cot_zs_opt")


def _summary() -> dict:
  """What registration and the input's first block give in this process (module-level so a child process can call
  it). The block is built as a grain worker builds it, without grain (which imports jax)."""
  import tasks  # pylint: disable=import-outside-toplevel
  from flan_jax.data.catalog import (  # pylint: disable=import-outside-toplevel
      availability, mixing, registry, token_tasks)
  from flan_jax.data.files import data_dir, tfds_source  # pylint: disable=import-outside-toplevel
  from flan_jax.data.pipeline import blocks, host_batches, schedule, sources  # pylint: disable=import-outside-toplevel
  lengths = {"inputs": 256, "targets": 64}
  rates = mixing.rates(availability.resolve("cot_submix", only_available=True))
  spec = blocks.InputSpec({t: sources.for_workers(t, "train", lengths) for t in rates},
                          schedule.Schedule.of(rates, None, seed=7, shard_index=0, num_shards=1, num_epochs=None),
                          host_batches.BatchConfig("encoder_decoder", "ffd", lengths, batch_size=8, block_size=512),
                          seed=7, shuffle=True, split="train", data_dir=str(data_dir.data_dir()),
                          tfds_data_dir=str(tfds_source.tfds_data_dir()))
  digest = hashlib.sha256()
  for name, rows in sorted(blocks.PackedBlocks(spec)[0].items()):
    digest.update(name.encode() + rows.tobytes())
  # What `import tasks` registered (other tests of the session may have added more since).
  names = sorted(n for family in tasks.REGISTERED.values() for n in family)
  return {
      "names": names,
      "unregistered": [n for n in names if n not in registry.TASKS and n not in token_tasks.TASKS
                       and n not in mixing.MIXTURES],
      "rates": {m: sorted(mixing.rates(m).items()) for m in MIXTURES},
      "stream": digest.hexdigest(), "loaded": [m for m in HEAVY_MODULES if m in sys.modules],
  }


@pytest.fixture(scope="module")
def catalog_only(flan_data_dir) -> dict:
  env = dict(os.environ, FLAN_JAX_SEQIO="0", FLAN_JAX_DATA_DIR=str(flan_data_dir))
  here = pathlib.Path(__file__).parent
  code = f"import json, sys; sys.path[:0] = [{str(here)!r}, {str(here.parent)!r}]; import test_registry; " \
         "print(json.dumps(test_registry._summary()))"
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                       check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.splitlines()[-1])


def test_catalog_only_imports_no_seqio_tf_or_jax(catalog_only):
  assert catalog_only["loaded"] == []
  assert len(catalog_only["names"]) > 18000 and "flan2022_submix" in catalog_only["names"]
  assert catalog_only["unregistered"] == []


def test_catalog_only_registers_and_streams_as_with_seqio(catalog_only):
  import seqio  # pylint: disable=import-outside-toplevel
  with_seqio = json.loads(json.dumps(_summary()))  # tuples -> lists, as the child's JSON
  for key in ("names", "rates", "stream"):
    assert catalog_only[key] == with_seqio[key], key
  # With seqio on, every catalog entry is also a seqio task / mixture.
  assert set(with_seqio["names"]) <= set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())


def test_the_catalog_never_imports_its_seqio_mirror_which_mirrors_what_came_before(flan_data_dir):
  """No import circle: the catalog registers without the seqio adapter; importing the adapter later registers what
  the catalog already holds, and everything added after it."""
  code = """
import sys
import tasks  # FLAN_JAX_SEQIO=0: the catalog alone
from flan_jax.data.catalog import availability, mixing, registry, token_tasks, ul2r
mixing.add_mixture('mirror_test_before', [('cot_gsm8k_template_0to10_zero_shot', 1.0)])
availability.resolve('cot_zsopt', only_available=True)
assert 'flan_jax.data.seqio_adapter.seqio_tasks' not in sys.modules and 'seqio' not in sys.modules
import seqio
from flan_jax.data.seqio_adapter import seqio_tasks
mixing.add_mixture('mirror_test_after', [('mirror_test_before', 1.0)])
assert seqio.get_mixture_or_task('cot_gsm8k_template_0to10_zero_shot').name
assert seqio.get_mixture_or_task('mirror_test_before').name and seqio.get_mixture_or_task('mirror_test_after').name
assert seqio.get_mixture_or_task('cot_zsopt_available').name and seqio.get_mixture_or_task('ul2r_cot').name
print('ok')
"""
  env = dict(os.environ, FLAN_JAX_DATA_DIR=str(flan_data_dir), FLAN_JAX_SEQIO="0",
             PYTHONPATH=str(pathlib.Path(__file__).resolve().parent.parent))
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_no_catalog_module_imports_the_seqio_adapter():
  import ast  # pylint: disable=import-outside-toplevel
  data = pathlib.Path(__file__).resolve().parent.parent / "flan_jax" / "data"
  modules = sorted((data / "catalog").glob("*.py")) + sorted((data / "pipeline").glob("*.py"))
  modules += [data / "rendering" / "flan_render.py", data / "rendering" / "denoisers.py",
              data / "files" / "text_sources.py"]
  assert len(modules) > 8
  for path in modules:
    tree = ast.parse(path.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module or "" for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom)}
    adapter = {"seqio_tasks", "flan_jax.data.seqio_adapter", "flan_jax.data.seqio_adapter.seqio_tasks"}
    assert not adapter & imported, path


def test_flan_source_rejects_other_tasks(flan_data_dir):
  import seqio  # pylint: disable=import-outside-toplevel
  import tasks  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  from flan_jax.data.catalog import registry  # pylint: disable=import-outside-toplevel
  name = "cot_gsm8k_template_0to10_zero_shot"
  assert registry.flan_source(name) is registry.flan_source(seqio.TaskRegistry.get(name)) is registry.TASKS[name]
  with pytest.raises(TypeError, match="no_such_task is not a Flan task"):
    registry.flan_source("no_such_task")
