"""notebooks/quickstart.ipynb runs top to bottom on CPU (install cell a no-op here), and is committed without outputs."""
from __future__ import annotations

import json
import os
import pathlib

import nbclient
import nbformat
import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def test_committed_without_outputs():
  nb = json.loads(NOTEBOOK.read_text())
  for cell in nb["cells"]:
    if cell["cell_type"] == "code":
      assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.slow
def test_quickstart_runs_top_to_bottom(tmp_path, flan_data_dir):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  env_backup = dict(os.environ)
  # One CPU device for the kernel (the test session simulates 8) and the repo on its path; the kernel's own
  # inline matplotlib backend turns the plot into an image/png output.
  os.environ["XLA_FLAGS"] = ""
  os.environ.pop("MPLBACKEND", None)
  os.environ["PYTHONPATH"] = os.pathsep.join([str(NOTEBOOK.parent.parent), os.environ.get("PYTHONPATH", "")])
  # As a user runs it: the kernel in notebooks/, the data dir given relative to the checkout as the README does.
  os.environ["FLAN_JAX_DATA_DIR"] = os.path.relpath(flan_data_dir, NOTEBOOK.parent.parent)
  try:
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
  finally:
    os.environ.clear()
    os.environ.update(env_backup)
  text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
  assert "mixtures," in text and "=== example 0" in text
  assert "transformers greedy decode:" in text and "32100 tokens" in text
  assert f"data dir: {os.path.normpath(flan_data_dir)}\n" in text
  assert "loss per target token:" in text
  assert "image/png" in json.dumps([c.get("outputs", []) for c in nb.cells])
