"""host_memory: a process that keeps freed memory faults a freed block's pages in once, not on every reuse."""
import os
import subprocess
import sys

from flan_jax import host_memory

# Allocates, touches and frees 256 MB three times (as a step's temporaries), then prints whether the setting took and
# the page faults of the last two rounds.
_PROBE = """
import resource, sys
import numpy as np
from flan_jax import host_memory
kept = host_memory.keep_freed_memory()
faults = []
for _ in range(3):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = np.ones(64 << 20, np.float32)
  del block
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, faults[1] + faults[2])
"""


def _probe(setting: str | None) -> tuple[bool, int]:
  env = {k: v for k, v in os.environ.items() if k != host_memory.ENV_VAR}
  if setting is not None:
    env[host_memory.ENV_VAR] = setting
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True, timeout=120)
  kept, faults = out.stdout.split()
  return kept == "True", int(faults)


def test_freed_blocks_are_reused_without_faulting_them_in_again():
  kept, faults = _probe(None)
  default_kept, default_faults = _probe("default")
  assert kept and not default_kept
  # glibc's defaults: each 256 MB block is mapped afresh and faulted in again (at least once per 2 MB huge page).
  assert default_faults >= 2 * (256 >> 1)
  assert faults * 10 < default_faults  # kept: the second and third rounds reuse the first round's pages
