"""Strict gin: a macro set on the command line or in a given file that no binding reads is an error."""
from __future__ import annotations

import gin
import pytest

from flan_jax import gin_utils, train  # noqa: F401  (registers train with gin)

GIN = "tests/fixtures/tiny_t5_test.gin"


@pytest.fixture(autouse=True)
def _clear():
  gin.clear_config()
  yield
  gin.clear_config()


def _parse(*bindings: str, files=(GIN,)) -> None:
  gin_utils.parse(list(files), ["MODEL_DIR = 'never_written'", *bindings])


@pytest.mark.parametrize("binding", ["TRAIN_STEPZ = 10", "TRAIN_STEP = 20"])
def test_a_misspelled_macro_is_an_error_with_did_you_mean(binding):
  with pytest.raises(gin_utils.GinConfigError, match=rf"gin binding `{binding}`: no binding reads the macro "
                                                     r"TRAIN_STEP.?, so setting it changes nothing; did you mean "
                                                     r"TRAIN_STEPS\?"):
    _parse(binding)


def test_a_macro_whose_reader_is_overridden_says_so():
  with pytest.raises(gin_utils.GinConfigError, match="TRAIN_STEPS .*another binding overrides the one that read it"):
    _parse("TRAIN_STEPS = 4", "train.train_steps = 3")
  gin.clear_config()
  _parse("train.train_steps = 3")  # the file's TRAIN_STEPS was read by the file's bindings: fine


def test_macros_of_given_files_are_checked_but_not_those_of_their_includes(tmp_path):
  run = tmp_path / "run.gin"
  run.write_text(f"include '{gin_utils.REPO_GIN_DIR.parent / GIN}'\nLEARNING_RATE = 0.1\nLEARNING_RATES = 0.2\n")
  with pytest.raises(gin_utils.GinConfigError, match=rf"gin file {run}:3: no binding reads the macro LEARNING_RATES"
                                                     r".*did you mean LEARNING_RATE\?"):
    _parse(files=[str(run)])


def test_every_shipped_run_config_passes():
  for recipe in ("flan_t5_tiny_cpu", "flan_t5_small_flan2022", "flan_t5_xxl_flan2022"):
    gin.clear_config()
    gin_utils.parse([f"runs/{recipe}.gin"], ["MODEL_DIR = 'never_written'"])
