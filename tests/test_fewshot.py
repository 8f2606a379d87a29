"""Few-shot assembly: exemplars drawn per query (never the query's own row), template filter, token pruning,
concatenation, drops; rows parsed once per process; zero-shot rendering in FLAN's source order."""
from __future__ import annotations

import collections
import dataclasses
import shutil

import pytest

from flan_jax.data.catalog import registry
from flan_jax.data.files import data_dir as data_dir_lib
from flan_jax.data.files import row_store
from flan_jax.data.rendering import fewshot, flan_render
from flan_jax.data.rendering import templates as tpl
from tests.flan_task_fixtures import hand_rows


@pytest.fixture(scope="session")
def cot_tasks():
  from tasks import cot
  cot.register()
  return cot


def _words(texts):
  return [len(t.split()) for t in texts]


def test_select_filters_template_and_prunes_by_tokens():
  cfg = fewshot.FewShotConfig(num_shots=4, prune_by_template=True, max_input_length=10)
  ex = [fewshot.Exemplar("a b", "c", 1), fewshot.Exemplar("x", "y", 0),
        fewshot.Exemplar("d e", "f g", 1), fewshot.Exemplar("h", "i", 1)]
  # "q q q": 3 tokens -> budget 7; template-1 exemplars cost 3, 4, 2: cumsum 3, 7, 9 -> first two.
  kept = fewshot.select("q q q", 1, ex, cfg, counter=_words)
  assert kept == [ex[0], ex[2]]
  assert fewshot.select("q", 2, ex, cfg, counter=_words) == []


def test_assemble_strips_trailing_spaces_only_at_the_end():
  cfg = fewshot.FewShotConfig(num_shots=2, inputs_prefix="Q: ", targets_prefix="A: ",
                              example_separator="\n\n", query_pattern="{Definition}\n\n{inputs}")
  kept = [fewshot.Exemplar("one \n", "1  ", 0), fewshot.Exemplar("two \n", "2", 0)]
  inputs, targets = fewshot.assemble("three \n", "3 ", kept, {"Definition": "Count."}, cfg)
  assert inputs == "Count.\n\nQ: one \nA: 1  \n\nQ: two \nA: 2\n\nQ: three \nA:"
  assert targets == "3 "
  strip_cfg = fewshot.FewShotConfig(num_shots=1, x_y_delimiter="", example_separator="",
                                    strip_targets=True)
  assert fewshot.assemble("x  ", "\n y \n", [], {}, strip_cfg) == ("x", "y")


def test_mix_separator_is_seeded_and_recorded(cot_tasks):
  seps = registry.mix_separators()
  assert seps["cot_gsm8k_template_mix_five_shot"] == fewshot.choose_mix_separator(
      "cot_gsm8k_template_mix_five_shot")
  assert set(seps.values()) <= set(fewshot.MIX_SEPARATOR_CHOICES)
  cot = [n for n in seps if n.startswith(("cot_", "stream_"))]  # `import tasks` may add other families
  assert len(cot) == 36  # 18 bases x (options, no options)


def _rebuild(task, n):
  """The first n examples of a few-shot task (seed 0, epoch 0, source order), rebuilt by hand from each query's
  exemplars: FLAN's pruning and formatting are written out here, not taken from the renderer."""
  src = registry.flan_source(task)
  cfg, pats = src.variant.few_shot, src.variant.patterns
  counts = fewshot.count_tokens
  examples = flan_render.FlanExamples(src.dataset, src.variant, task)
  rows = list(src.dataset.rows())
  out = []
  for pos in range(n):
    idx = pos % len(pats)
    row = rows[pos][1]
    query = tpl.fill(pats[idx][0], row) + cfg.x_y_delimiter
    cands = examples.exemplars(0, pos, idx)
    assert len(cands) <= cfg.num_shots
    if cfg.prune_by_template:
      assert all(e.template_idx == idx for e in cands)
    budget = 1920 - counts([query])[0]
    kept, total = [], 0
    for e in cands:
      total += sum(counts([e.inputs, e.targets]))
      if total > budget:
        break
      kept.append(e)
    if not kept:
      continue
    text = "".join(cfg.inputs_prefix + e.inputs + cfg.targets_prefix + e.targets +
                   cfg.example_separator for e in kept)
    text = (text + cfg.inputs_prefix + query + cfg.targets_prefix.rstrip()).rstrip(" ")
    target = tpl.fill(pats[idx][1], row)
    out.append((cfg.query_pattern.replace("{inputs}", text),
                target.strip(" \n\t\r\f\v") if cfg.strip_targets else target, len(kept)))
  return out


@pytest.mark.parametrize("task,ttype", [
    ("cot_gsm8k_template_0to10_x_shot", "fs_opt"),
    ("cot_gsm8k_template_0to10_no_opt_x_shot", "fs_noopt"),
    ("cot_gsm8k_template_mix_five_shot", "fs_opt"),
    ("stream_aqua_template_0_five_shot", "fs_opt"),
    ("cot_creak_template_1_two_shot", "fs_opt"),
    ("cot_input_inversion_qasc_template_mix_five_shot", "fs_opt"),
])
def test_few_shot_examples_match_hand_assembly(cot_tasks, task, ttype):
  src = registry.flan_source(task)
  got = []
  for ex in flan_render.render(src.dataset, src.variant, task):
    got.append(ex)
    if len(got) == 40:
      break
  want = _rebuild(task, 60)[:40]
  assert [(g["inputs"], g["targets"]) for g in got] == [(w[0], w[1]) for w in want]
  assert all(g["_template_type"] == ttype for g in got)
  assert any(w[2] > 1 for w in want)  # real multi-exemplar prompts, not degenerate ones
  if "x_shot" in task:
    assert all(not w[0].endswith(" ") for w in want)


def test_queries_without_exemplars_are_dropped_and_counted(tmp_path, flan_data_dir, cot_tasks):
  (tmp_path / "flan/cot").mkdir(parents=True)
  (tmp_path / "vocab").mkdir()
  shutil.copy(flan_data_dir / "flan/templates.json", tmp_path / "flan")
  shutil.copy(flan_data_dir / "vocab/cc_all.32000.sentencepiece.model", tmp_path / "vocab")
  long = " ".join(f"w{i}" for i in range(700))
  lines = [f"q{i} {long if i % 2 else 'short'}\t{i}\tbecause {long}" for i in range(40)]
  (tmp_path / "flan/cot/qasc_train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
  data_dir_lib.set_data_dir(tmp_path)
  try:
    task = "cot_qasc_template_mix_five_shot"
    before = registry.dropped_queries.counts.get(task, 0)
    src = registry.flan_source(task)
    kept = list(flan_render.render(src.dataset, src.variant, task))
    dropped = registry.dropped_queries.counts[task] - before
    assert dropped > 0 and len(kept) + dropped == 40
  finally:
    data_dir_lib.set_data_dir(None)


def _counting_rows(dataset, reads):
  def rows():
    reads.append(1)
    return dataset.rows()
  return rows


def _inputs(task: registry.FlanTask, dataset: registry.FlanDataset, n: int) -> list[str | None]:
  examples = flan_render.FlanExamples(dataset, task.variant, task.name)
  return [None if ex is None else ex["inputs"] for ex in map(examples.example, range(n))]


def test_rows_are_parsed_once_per_process_and_re_read_once_evicted(cot_tasks, monkeypatch):
  tasks = [registry.flan_source(f"cot_{name}_template_0_five_shot") for name in ("creak", "qasc")]
  reads: list[list] = [[], []]
  datasets = [dataclasses.replace(t.dataset, rows=_counting_rows(t.dataset, r)) for t, r in zip(tasks, reads)]
  sizes = [row_store.RowStore.of(t.dataset.rows()).nbytes for t in tasks]  # the budget is in bytes held

  def render_both() -> list[list[str | None]]:
    return [_inputs(t, d, 30) for t, d in zip(tasks, datasets)]

  monkeypatch.setattr(flan_render, "_rows_cache", flan_render._RowsCache(flan_render.ROWS_BUDGET))
  first = render_both()
  assert render_both() == first and [len(r) for r in reads] == [1, 1]  # 30 queries x 6 rows read, parsed once
  # A budget smaller than the two: the one used longest ago is evicted, and read again when next used.
  monkeypatch.setattr(flan_render, "_rows_cache", flan_render._RowsCache(max(sizes)))
  assert render_both() == first and [len(r) for r in reads] == [2, 2]
  assert _inputs(tasks[0], datasets[0], 30) == first[0] and [len(r) for r in reads] == [3, 2]
  assert _inputs(tasks[0], datasets[0], 30) == first[0] and [len(r) for r in reads] == [3, 2]


def test_rows_follow_the_data_dir(cot_tasks, flan_data_dir, tmp_path):
  """Rows kept from one data dir are not rendered once another is set (`--data_dir`, mock overlays)."""
  src = registry.flan_source("cot_strategyqa_template_0to10_zero_shot")
  assert len(list(flan_render.render(src.dataset, src.variant, src.name))) == src.num_examples() > 20
  (tmp_path / "flan/cot").mkdir(parents=True)
  shutil.copy(flan_data_dir / "flan/templates.json", tmp_path / "flan")
  (tmp_path / "flan/cot/strategyqa_train.tsv").write_text("".join(f"q{i}\tyes\tbecause\n" for i in range(20)))
  data_dir_lib.set_data_dir(tmp_path)
  try:
    examples = list(flan_render.render(src.dataset, src.variant, src.name))
    assert len(examples) == 20 == src.num_examples()
    assert "q0" in examples[0]["inputs"]
  finally:
    data_dir_lib.set_data_dir(None)


def _six_rows(task: str, monkeypatch) -> tuple[registry.FlanTask, registry.FlanDataset, list]:
  """`task` over the first 6 rows of its dataset only (in a rows cache of its own: same name, other rows)."""
  src = registry.flan_source(task)
  rows = list(src.dataset.rows())[:6]
  monkeypatch.setattr(flan_render, "_rows_cache", flan_render._RowsCache(flan_render.ROWS_BUDGET))
  return src, dataclasses.replace(src.dataset, rows=lambda: iter(rows)), rows


def test_exemplars_never_include_the_query_row(cot_tasks, monkeypatch):
  src, dataset, rows = _six_rows("cot_qasc_template_0_five_shot", monkeypatch)  # one template: no filter
  cfg, (inputs, targets) = src.variant.few_shot, src.variant.patterns[0]
  examples = flan_render.FlanExamples(dataset, src.variant, src.name, seed=4)
  assert examples.num_examples() == 6 and cfg.num_shots == 5
  for epoch in range(3):
    for p in range(6):
      # 5 shots from 6 rows: exactly the other five, each rendered from its own row.
      want = {row_id: (tpl.fill(inputs, f) + cfg.x_y_delimiter, tpl.fill(targets, f))
              for q, (row_id, f) in enumerate(rows) if q != p}
      got = examples.exemplars(epoch, p, 0)
      assert {e.key[0]: (e.inputs, e.targets) for e in got} == want and len(got) == 5, (epoch, p)


def test_exemplars_are_a_function_of_seed_task_epoch_and_position(cot_tasks):
  src = registry.flan_source("cot_gsm8k_template_0_five_shot")

  def drawn(seed: int, epoch: int, positions=range(20)) -> list[list[tuple[str, str]]]:
    examples = flan_render.FlanExamples(src.dataset, src.variant, src.name, seed)
    return [[(e.inputs, e.targets) for e in examples.exemplars(epoch, p, 0)] for p in positions]

  first = drawn(0, 0)
  assert drawn(0, 0) == first and drawn(0, 0, reversed(range(20)))[::-1] == first  # not a stream: any order
  assert len({tuple(d) for d in first}) == 20  # each position draws its own
  assert drawn(1, 0) != first and drawn(0, 1) != first
  # A shuffled epoch renders each position as the unshuffled one does: the exemplars go with the position.
  shuffled = flan_render.FlanExamples(src.dataset, src.variant, src.name, seed=0, shuffle=True)
  in_order = flan_render.FlanExamples(src.dataset, src.variant, src.name, seed=0)
  positions = [shuffled.position(0, i) for i in range(10)]
  assert positions != list(range(10))
  assert [shuffled.example(i) for i in range(10)] == [in_order.example(p) for p in positions]


def test_zero_shot_render_without_shuffle_is_flans_source_order(cot_tasks, flan_data_dir):
  src = registry.flan_source("cot_creak_template_0to10_zero_shot")
  pats = src.variant.patterns
  rows = hand_rows(flan_data_dir / "flan/cot/creak_train.tsv")
  examples = list(flan_render.render(src.dataset, src.variant, src.name))
  assert len(examples) == len(rows) // len(pats) * len(pats) == src.num_examples()
  for i, (ex, row) in enumerate(zip(examples, rows)):
    assert (ex["inputs"], ex["targets"], ex["_template_idx"]) == (
        tpl.fill(pats[i % len(pats)][0], row), tpl.fill(pats[i % len(pats)][1], row), i % len(pats)), i
  assert list(flan_render.render(src.dataset, src.variant, src.name, shard_index=1, num_shards=3)) == examples[1::3]
  shuffled = list(flan_render.render(src.dataset, src.variant, src.name, seed=2, shuffle=True))
  key = lambda ex: (ex["inputs"], ex["targets"], ex["_template_idx"])  # noqa: E731
  assert shuffled != examples and collections.Counter(map(key, shuffled)) == collections.Counter(map(key, examples))
