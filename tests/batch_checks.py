"""One check shared by the input tests: two sequences of numpy batches are equal, feature by feature."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def assert_batches_equal(got: Sequence[Mapping[str, np.ndarray]], want: Sequence[Mapping[str, np.ndarray]]) -> None:
  assert len(got) == len(want), (len(got), len(want))
  for i, (g, w) in enumerate(zip(got, want)):
    assert g.keys() == w.keys(), i
    for k in w:
      np.testing.assert_array_equal(g[k], w[k], err_msg=f"batch {i}, feature {k}")
