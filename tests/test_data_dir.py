import pytest

from flan_jax.data.files import data_dir


@pytest.fixture(autouse=True)
def _reset():
  # The data dir is process-wide: start from no explicit value whatever earlier tests set, and leave none behind.
  data_dir.set_data_dir(None)
  yield
  data_dir.set_data_dir(None)


def test_flag_beats_env_beats_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  monkeypatch.delenv(data_dir.ENV_VAR, raising=False)
  assert data_dir.data_dir() == tmp_path / "cache" / "flan_jax" / "flan_data"
  monkeypatch.setenv(data_dir.ENV_VAR, str(tmp_path / "env"))
  assert data_dir.data_dir() == tmp_path / "env"
  data_dir.set_data_dir(tmp_path / "flag")
  assert data_dir.data_dir() == tmp_path / "flag"


def test_missing_file_names_the_download_command(tmp_path):
  data_dir.set_data_dir(tmp_path)
  with pytest.raises(data_dir.DataMissingError, match=r"flan/cot/esnli_train.tsv.*--only cot"):
    data_dir.data_file("flan/cot/esnli_train.tsv", source="cot")


def test_relative_dir_resolves_against_the_checkout_from_a_subfolder(tmp_path, monkeypatch):
  root = data_dir.REPO_ROOT
  monkeypatch.chdir(root / "notebooks")
  relative = "tests/fixtures"  # exists under the checkout, not under notebooks/
  monkeypatch.setenv(data_dir.ENV_VAR, relative)
  assert data_dir.data_dir() == root / relative
  monkeypatch.chdir(root)
  assert data_dir.data_dir() == root / relative
  monkeypatch.chdir(tmp_path)
  (tmp_path / relative).mkdir(parents=True)
  assert data_dir.data_dir() == tmp_path / relative  # the working dir comes first
