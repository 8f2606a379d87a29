"""benchmarks/protocol.py with fake sides and a fake clock: alternation, medians, ratios, the load verdict."""
from __future__ import annotations

import importlib.util
import os
import pathlib
import sys

import pytest

PATH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "protocol.py"
_spec = importlib.util.spec_from_file_location("benchmark_protocol", PATH)
protocol = sys.modules["benchmark_protocol"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(protocol)


class Clock:
  """A perf_counter that moves only when a fake side works."""

  def __init__(self):
    self.now = 0.0

  def __call__(self) -> float:
    return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
  fake = Clock()
  monkeypatch.setattr(protocol.time, "perf_counter", fake)
  return fake


def test_interleaved_alternates_after_one_warmup_each(capsys):
  calls = []
  figures = {"a": iter([0.0, 10.0, 11.0, 12.0]), "b": iter([0.0, 5.0, 4.0, 6.0])}

  def side(name):
    def measure():
      calls.append(name)
      return next(figures[name])
    return measure

  result = protocol.interleaved({"a": side("a"), "b": side("b")}, rounds=3, unit="tokens/s")
  assert calls == ["a", "b"] * 4  # the warm-up pair, then three rounds
  assert result == {"a": [10.0, 11.0, 12.0], "b": [5.0, 4.0, 6.0]}  # the warm-up figures are dropped
  out = capsys.readouterr().out.splitlines()
  assert out[0].startswith("warm-up (compile + first call, excluded): a ")
  assert out[1:] == ["round 1: a 10.00 tokens/s, b 5.00 tokens/s", "round 2: a 11.00 tokens/s, b 4.00 tokens/s",
                     "round 3: a 12.00 tokens/s, b 6.00 tokens/s"]


def test_interleaved_refuses_fewer_than_three_rounds():
  with pytest.raises(ValueError, match="at least 3 rounds"):
    protocol.interleaved({"a": lambda: 1.0, "b": lambda: 1.0}, rounds=2, unit="x")


def test_rate_and_warmup_time_from_the_clock(clock, capsys):
  a_seconds = iter([7.0, 2.0, 2.0, 2.0])  # the first call compiles

  def a():
    clock.now += next(a_seconds)

  def b():
    clock.now += 4.0

  result = protocol.interleaved({"a": protocol.rate(a, 8.0), "b": protocol.rate(b, 8.0)}, rounds=3, unit="tokens/s")
  assert result == {"a": [4.0, 4.0, 4.0], "b": [2.0, 2.0, 2.0]}
  assert capsys.readouterr().out.splitlines()[0] == "warm-up (compile + first call, excluded): a 7.00s, b 4.00s"


def test_summary_medians_and_ratio_spread(capsys):
  figures = {"jax": [10.0, 12.0, 11.0, 13.0], "torch": [5.0, 6.0, 4.0, 5.0]}
  s = protocol.summary(figures, "jax", "torch", "tokens/s")
  assert s.median_a == pytest.approx(11.5) and s.median_b == pytest.approx(5.0)
  assert s.ratios == pytest.approx([2.0, 2.0, 2.75, 2.6])
  assert s.ratio_median == pytest.approx(2.3)
  assert (s.ratio_min, s.ratio_max) == pytest.approx((2.0, 2.75))
  assert capsys.readouterr().out.strip() == (
      "median: jax 11.50 tokens/s, torch 5.00 tokens/s; ratio jax/torch per round 2.00 2.00 2.75 2.60, "
      "median 2.30x (spread 2.00-2.75x)")


@pytest.mark.parametrize("load,cores,comparable", [(1.5, 2, False), (0.61, 2, False), (0.2, 2, True),
                                                    (0.6, 2, True), (4.0, 16, True), (5.0, 16, False)])
def test_header_verdict_scales_with_cores(monkeypatch, capsys, load, cores, comparable):
  monkeypatch.setattr(protocol, "load_average", lambda: load)
  assert protocol.header(cores) is comparable
  out = capsys.readouterr().out
  assert out.startswith(f"load average at start: {load:.2f} on {cores} cores\n")
  line = (f"NOT COMPARABLE (load {load:.2f} above {0.3 * cores:.1f} on {cores} cores; "
          "run through ../shared/tools/quiet)")
  assert (line in out) is not comparable


def test_footer_prints_end_load_and_repeats_the_verdict(monkeypatch, capsys):
  monkeypatch.setattr(protocol, "load_average", lambda: 1.75)
  assert protocol.footer(comparable=True) == 1.75
  assert capsys.readouterr().out == "load average at end: 1.75\n"
  protocol.footer(comparable=False)
  assert "NOT COMPARABLE" in capsys.readouterr().out


def test_use_cores_sets_xla_threads_unless_the_user_did(monkeypatch):
  monkeypatch.delitem(sys.modules, "jax", raising=False)
  monkeypatch.delenv("PJRT_NPROC", raising=False)
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  protocol.use_cores(3)
  assert os.environ["PJRT_NPROC"] == "3"
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=true"
  monkeypatch.setenv("PJRT_NPROC", "1")
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
  protocol.use_cores(3)
  assert os.environ["PJRT_NPROC"] == "1"
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type="


def test_use_cores_refuses_after_jax_is_imported(monkeypatch):
  monkeypatch.setitem(sys.modules, "jax", object())
  with pytest.raises(RuntimeError, match="before jax is imported"):
    protocol.use_cores(2)


def test_print_threads_names_both_counts_and_the_flags(monkeypatch, capsys):
  monkeypatch.setattr(protocol, "xla_pool_threads", lambda: 2)
  monkeypatch.setenv("PJRT_NPROC", "2")
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
  protocol.print_threads(2)
  assert capsys.readouterr().out == ("threads: XLA intra-op pool 2 (PJRT_NPROC=2, "
                                     "XLA_FLAGS='--xla_cpu_multi_thread_eigen=true'), torch 2\n")
  protocol.print_threads(None)
  assert "torch" not in capsys.readouterr().out


def test_xla_pool_threads_counts_threads_by_name(tmp_path):
  for tid, name in enumerate(["python", "tf_XLAEigen", "tf_XLAEigen", "pt_main_thread", "tf_XLAEigen"]):
    (tmp_path / str(tid)).mkdir()
    (tmp_path / str(tid) / "comm").write_text(name + "\n")
  assert protocol.xla_pool_threads(str(tmp_path)) == 3


def test_xla_pool_threads_sees_the_running_pool():
  import jax  # pylint: disable=import-outside-toplevel
  jax.devices()  # the CPU client starts its intra-op pool
  assert protocol.xla_pool_threads() >= 1


def _pid_side(offset: int):
  """An `Isolated` factory: measures report the process they ran in."""
  return (lambda: float(os.getpid() + offset)), os.getpid()


def _failing_side():
  raise ValueError("cannot build this side")


def test_isolated_sides_run_in_their_own_processes(monkeypatch):
  monkeypatch.syspath_prepend(str(PATH.parent))  # the child imports `protocol` by this name, and this module
  import protocol as importable  # pylint: disable=import-outside-toplevel
  side = importable.Isolated(_pid_side, 0)
  try:
    assert side.info != os.getpid()
    assert side() == side() == float(side.info)
    assert len(side.cpu) == 2 and all(user >= 0 and system >= 0 for user, system in side.cpu)
  finally:
    side.close()
  with pytest.raises(RuntimeError, match="cannot build this side"):
    importable.Isolated(_failing_side)
