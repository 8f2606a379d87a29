"""Every Muffin task through preprocess -> template in every FLAN variant, on the mock rows of
`flan_jax.data.files.mock_sources` (`tfds.testing.mock_data` with the real TFDS feature specs, made valid; hand-written
rows with the same features where mock_data cannot build offline), so a broken field mapping fails here; a
representative sample goes on through seqio tokenization. Rendering runs in plain Python (`flan_render.render`);
only the sample builds tf.data.
"""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import seqio

from flan_jax.data.catalog import registry
from flan_jax.data.files import mock_sources, readers
from flan_jax.data.rendering import flan_render
from flan_jax.data.rendering import templates as tpl
from flan_jax.data.seqio_adapter import vocab
from tasks import muffin
from tasks import muffin_preprocessors as mp

NUM_ROWS = 12
FEW_SHOT_QUERIES = 2  # few-shot variants: the first queries show exemplar assembly works
# Tokenized through seqio: options classification, extractive QA, nested features, a community dataset,
# translation, a dataset with a manual download step, and a few-shot variant.
TOKENIZE_SAMPLE = ("anli_r1_template_0to10_zero_shot", "squad_v1_template_0_zero_shot",
                   "openbookqa_template_0to10_no_opt_zero_shot", "xsum_template_0_zero_shot",
                   "wmt16_translate_deen_template_0to10_zero_shot", "story_cloze_template_0_zero_shot",
                   "cosmos_qa_template_1_two_shot")


@pytest.fixture(scope="module")  # module: the mock readers must not leak into other test files
def muffin_env(tmp_path_factory):
  with mock_sources.mock_tfds_sources(tmp_path_factory.mktemp("tfds"), num_rows=NUM_ROWS,
                                      muffin=[c.tfds for c in muffin.CONFIGS.values()]):
    yield muffin.register()


def _problems(config: muffin.MuffinConfig) -> list[str]:
  """Renders every FLAN variant of `config`; returns what went wrong (rows skipped as malformed or
  dropped, missing template fields, wrong template rotation, options text in no-options variants)."""
  out = []
  ds = muffin.dataset(config)
  where = f"tfds:{config.tfds.full_name}[{config.tfds.split}]"
  before = readers.skipped_rows().get(where, 0)
  for v in registry.flan_variants(config.pattern_key, config.has_options, config.name):
    task = config.name + v.suffix
    stream = flan_render.render(ds, v, task)
    try:
      got = list(itertools.islice(stream, FEW_SHOT_QUERIES) if v.few_shot else stream)
    except tpl.TemplateError as e:
      out.append(f"{task}: {e}")
      continue
    n = len(v.patterns)
    want = FEW_SHOT_QUERIES if v.few_shot else NUM_ROWS // n * n
    if len(got) != want:
      out.append(f"{task}: {len(got)} examples from {NUM_ROWS} rows, expected {want}")
      continue
    if not v.few_shot and [g["_template_idx"] for g in got[:n]] != list(range(n)):
      out.append(f"{task}: templates not applied round-robin")
    if v.template_type.endswith("noopt") and any("OPTIONS:" in g["inputs"] for g in got):
      out.append(f"{task}: options rendered in a no-options variant")
    if any(not g["inputs"].strip() or not g["targets"].strip() for g in got):
      out.append(f"{task}: empty inputs or targets")
  skipped = readers.skipped_rows().get(where, 0) - before
  if skipped:
    out.append(f"{config.name}: {skipped} rows skipped as malformed")
  return out


def test_flan_v2_inventory():
  names = set(muffin.CONFIGS)
  assert "wsc273" not in names and {"lambada", "unified_qa_science_inst"} <= names
  assert {"mnli_matched", "mnli_mismatched", "anli_r1", "anli_r3", "story_cloze", "xsum"} <= names
  # No 30k train cap on the v2 configs: only FLAN's validation tail (or a fixed para_crawl slice) is cut.
  capped = {n for n, c in muffin.CONFIGS.items() if "[:30000]" in c.tfds.split}
  assert capped == {"para_crawl_enes", "true_case"}
  assert muffin.CONFIGS["story_cloze"].tfds.manual


def test_every_task_every_variant_renders(muffin_env):
  registered = set(muffin_env)
  problems, checked = [], 0
  for config in muffin.CONFIGS.values():
    variants = registry.flan_variants(config.pattern_key, config.has_options, config.name)
    assert {config.name + v.suffix for v in variants} <= registered
    problems += _problems(config)
    checked += len(variants)
  assert not problems, "\n".join(problems)
  assert checked == len(registered) > 1500


def test_broken_field_mapping_is_caught(muffin_env):
  # A preprocessor reading a feature the dataset lacks skips every row (warned, counted) ...
  wrong_feature = dataclasses.replace(
      muffin.CONFIGS["rte"], preprocess=mp.classify(["yes", "no"], premise="premise", hypothesis="hypo"))
  assert any("rows skipped as malformed" in p for p in _problems(wrong_feature))
  # ... and one emitting a field under another name than the templates read fails to render.
  wrong_field = dataclasses.replace(muffin.CONFIGS["drop"], preprocess=mp.rename(passage="passage",
                                                                                  question="question",
                                                                                  answer="answer"))
  assert any("needs feature 'context'" in p for p in _problems(wrong_field))


@pytest.mark.parametrize("name", ["anli_r1", "squad_v1"])
def test_variant_inventory(muffin_env, name):
  cfg = muffin.CONFIGS[name]
  variants = registry.flan_variants(cfg.pattern_key, cfg.has_options, name)
  assert len(variants) == (24 if cfg.has_options else 23)
  assert sum(v.random_options for v in variants) == (1 if cfg.has_options else 0)


def test_sample_tokenizes(muffin_env):
  eos = vocab.get_vocabulary().eos_id
  for name in TOKENIZE_SAMPLE:
    base = name.split("_template_")[0]
    task = seqio.get_mixture_or_task(name)
    assert task.postprocessor is muffin.CONFIGS[base].postprocess
    assert list(task.metric_fns) == list(muffin.CONFIGS[base].metrics)
    exs = list(task.get_dataset(sequence_length=None, split="train", shuffle=False).take(2).as_numpy_iterator())
    assert len(exs) == 2, f"{name}: no examples from mock rows"
    for ex in exs:
      assert ex["_task_name"].decode() == base and ex["_task_source"] == b"Flan2021"
      assert ex["inputs"][-1] == eos and ex["targets"][-1] == eos and len(ex["inputs"]) > 3
      decoded = vocab.get_vocabulary().decode(ex["targets"].tolist())
      assert decoded.split() == ex["targets_pretokenized"].decode().split()  # SentencePiece folds spaces
    if registry.flan_source(task).variant.few_shot is not None:
      cfg = registry.flan_source(task).variant.few_shot
      assert exs[0]["_template_type"] == b"fs_opt"
      assert exs[0]["inputs_pretokenized"].decode().count(cfg.example_separator) >= cfg.num_shots


def test_options_rendered_and_answer_among_them(muffin_env):
  ds = muffin.dataset(muffin.CONFIGS["anli_r1"])
  v = registry.flan_variants("anli", True, "anli_r1")[1]
  first = next(flan_render.render(ds, v, "anli_r1_template_0to10_zero_shot"))
  assert first["_template_idx"] == 0
  assert "OPTIONS:\n- Yes\n- It's impossible to say\n- No" in first["inputs"]
  assert first["targets"] == "It's impossible to say"  # normalised label 1


def test_preprocessors_on_hand_rows():
  assert mp.wsc({"text": b"Bob told Tom he was late .", "span1_text": b"Bob", "span2_text": b"he",
                 "span2_index": 3, "label": 1})["context"] == "Bob told Tom *he* was late ."
  w = mp.winogrande({"sentence": b"Ann thanked Bo because _ helped.", "option1": b"Ann", "option2": b"Bo",
                     "label": 1})
  assert w["context"] == "Ann thanked Bo because " and w["answer"] == "Bo helped."
  assert mp.story_cloze({"context": b"c", "endings": [b"a", b"b"], "label": 2})["answer"] == "b"
  assert mp.gigaword({"document": b"x UNK y", "summary": b"s"}) is None
  assert mp.lambada({"passage": b" the cat sat "}) == {"sentence": "the cat", "answer": "sat"}
  u = mp.unified_qa_science({"input": b"Which? \\n (A) one (B) two (C) three (D) four", "output": b"two"})
  assert u["question"] == "Which?" and u["options"] == ["one", "two", "three", "four"]
  assert mp.record({"query": b"@placeholder won .", "entities": [b"A", b"B"], "answers": [b"B"],
                    "passage": b"P\n@highlight\nH"})["answer"] == "B won ."
  with pytest.raises(mp.MalformedRow, match="label 5 outside"):
    mp.classify(["a", "b"], x="x")({"x": b"t", "label": 5})
  with pytest.raises(mp.MalformedRow, match="missing feature premise"):
    mp.copa({"choice1": b"a", "choice2": b"b", "label": 0})


def test_metrics_hand_computed():
  assert mp.accuracy(["a", "b"], ["a", "c"]) == {"accuracy": 50.0}
  assert mp.squad([["The cat", "a cat"]], ["cat"])["em"] == 100.0
  r = mp.rouge(["the cat sat"], ["the cat"])
  assert r["rouge1"] == pytest.approx(100 * 0.8) and r["rouge2"] == pytest.approx(100 * 2 / 3)
  assert mp.bleu(["a b c d e"], ["a b c d e"])["bleu"] == pytest.approx(100.0)
  assert mp.edit_distance(["a b c"], ["a c"]) == {"mean_edit": 1.0}
  assert mp.f1_binary([1, 0, 1], [1, 1, 0])["f1"] == pytest.approx(50.0)
