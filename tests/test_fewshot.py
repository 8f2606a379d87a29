"""Few-shot assembly: exemplar stream, template filter, token pruning, concatenation, drops."""
from __future__ import annotations

import random
import shutil

import pytest

from flan_jax.data import data_dir as data_dir_lib
from flan_jax.data import fewshot
from flan_jax.data import registry
from flan_jax.data import templates as tpl


@pytest.fixture(scope="session")
def cot_tasks():
  from tasks import cot
  cot.register()
  return cot


def _words(texts):
  return [len(t.split()) for t in texts]


def test_shuffle_buffer_is_a_seeded_permutation():
  a = list(fewshot.shuffle_buffer(range(100), 10, random.Random(3)))
  b = list(fewshot.shuffle_buffer(range(100), 10, random.Random(3)))
  c = list(fewshot.shuffle_buffer(range(100), 10, random.Random(4)))
  assert a == b != c and sorted(a) == list(range(100)) and a != list(range(100))


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
  """The first n examples of a few-shot task, rebuilt by hand from the exemplar batches."""
  src = registry.flan_source(task)
  cfg, pats = src.variant.few_shot, src.variant.patterns
  counts = fewshot.count_tokens
  batches = registry._exemplar_batches(src.dataset, src.variant, 0, {}, tpl.load_templates())
  rows = list(src.dataset.rows())
  out = []
  for pos in range(n):
    idx = pos % len(pats)
    row = rows[pos][1]
    query = tpl.fill(pats[idx][0], row) + cfg.x_y_delimiter
    cands = [e() for e in next(batches)]
    if cfg.prune_by_template:
      cands = [e for e in cands if e.template_idx == idx]
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
  for ex in registry.render(src.dataset, src.variant, task):
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
    kept = list(registry.render(src.dataset, src.variant, task))
    dropped = registry.dropped_queries.counts[task] - before
    assert dropped > 0 and len(kept) + dropped == 40
  finally:
    data_dir_lib.set_data_dir(None)


def test_memoized_token_counts_equal_sentencepiece_on_real_rows(flan_data_dir):
  from flan_jax.data import vocab
  sp = vocab.get_vocabulary().tokenizer
  texts = []
  for name in ("gsm8k", "aqua", "ecqa"):
    with open(flan_data_dir / f"flan/cot/{name}_train.tsv", encoding="utf-8") as f:
      for line in list(f)[:400]:
        texts += [c.replace("\\n", "\n") for c in line.rstrip("\n").split("\t")]
  # Whitespace runs, leading/trailing space, tabs and CRs, sentinels inside words, control characters
  # (deleted by the normalizer: not word-countable), and non-ASCII text.
  texts += ["  a \t b\r\nc  ", "x<extra_id_0>y <extra_id_1> z", "a\x0bb c", "a\x0cb", "caf\u00e9 na\u00efve",
            "\u3000lead", "a\u00a0b", "", " ", "Q: 1+1?\n\nA: 2.\n\n\n"]
  counter = fewshot._TokenCounter(max_words=500)  # small, so the memo is cleared on the way
  got = []
  for i in range(0, len(texts), 7):
    got += counter(texts[i:i + 7])
  assert got == [len(ids) for ids in sp.encode(texts)]
  assert counter(["a\x0bb"]) == [len(sp.encode("a\x0bb"))] != [len(sp.encode("a b"))]


def _counting_rows(dataset, reads):
  def rows():
    reads.append(1)
    return dataset.rows()
  return rows


def test_exemplar_rows_are_parsed_once_per_stream_and_examples_unchanged(cot_tasks, monkeypatch):
  import dataclasses
  import itertools
  import seqio
  src = registry.flan_source(seqio.TaskRegistry.get("cot_creak_template_0to10_x_shot"))
  n = 3 * src.dataset.num_rows() // 25 + 40  # ~3 exemplar epochs: 25 rows read a query

  def first(max_rows):
    reads: list = []
    ds = dataclasses.replace(src.dataset, rows=_counting_rows(src.dataset, reads))
    cache = registry._ExemplarRowCache(max_rows)
    monkeypatch.setattr(registry, "_exemplar_rows", cache)
    out = [ex["inputs"] for ex in itertools.islice(registry.render(ds, src.variant, src.name), n)]
    return out, len(reads), cache.reserved

  cached, cached_reads, held = first(registry.EXEMPLAR_CACHE_ROWS)
  plain, plain_reads, _ = first(0)  # no budget: every epoch re-reads the file, as before the cache
  assert cached == plain and len(plain) == n
  assert plain_reads >= 4 and cached_reads == 2  # the queries' pass + the exemplars' first epoch
  assert held == 0  # the stream released its rows when rendering ended
