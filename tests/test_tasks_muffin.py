"""Every Muffin task through the full pipeline (TFDS read -> preprocess -> template -> tokenize) on
`tfds.testing.mock_data`, with the real TFDS feature specs, so a broken field mapping fails here.

mock_data draws random values, which would break rows the way real data never does (labels outside the
options, no '_' blank in a winogrande sentence, option lists of random length), so rows are normalised to
valid shapes before the preprocessors see them; field names and types stay TFDS's. Datasets mock_data
cannot build offline (`huggingface:xsum`, and the FLAN versions the installed TFDS code no longer has:
multi_news 1.0.0, winogrande 1.1.0) read hand-written in-memory rows with the same features.
"""
from __future__ import annotations

import numpy as np
import pytest
import seqio
import tensorflow_datasets as tfds

from flan_jax.data import registry
from flan_jax.data import tfds_source
from flan_jax.data import vocab
from tasks import muffin
from tasks import muffin_preprocessors as mp

IN_MEMORY = {
    "huggingface:xsum": lambda i: {"document": f"Doc {i} says things.".encode(), "summary": f"Sum {i}.".encode(),
                                   "id": str(i).encode()},
    "multi_news:1.0.0": lambda i: {"document": f"News {i} ||||| more.".encode(), "summary": f"- S{i}".encode()},
    "winogrande:1.1.0": lambda i: {"sentence": f"Ann gave Bo {i} because _ was kind.".encode(),
                                   "option1": b"Ann", "option2": b"Bo", "label": i % 2},
}
NUM_ROWS = 12


def _normalise(value, key=""):
  if isinstance(value, dict):
    return {k: _normalise(v, k) for k, v in value.items()}
  if isinstance(value, (bytes, np.bytes_)):
    s = b"Ww1 w2. " + bytes(value)
    if key == "sentence":
      s += b" _ end"
    elif key == "query":
      s += b" @placeholder tail"
    elif key == "input":
      s += b" (A) a (B) b (C) c (D) d"
    return s
  if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "SO":
    items = [b"Opt %d %s" % (i, bytes(v)) for i, v in enumerate(list(value)[:4])]
    return np.array(items + [b"Opt %d" % i for i in range(len(items), 4)], dtype=object)
  if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
    return type(value)(1)
  return value


@pytest.fixture(scope="session")
def muffin_env(tmp_path_factory, monkeypatch_session):
  tfds_dir = tmp_path_factory.mktemp("tfds")
  tfds_source.set_tfds_data_dir(tfds_dir)
  for c in muffin.CONFIGS.values():
    spec = c.tfds
    if spec.full_name in IN_MEMORY:
      d = tfds_dir / spec.relative_dir() / (spec.version or "1.0.0")
      d.mkdir(parents=True, exist_ok=True)
      (d / "dataset_info.json").write_text("{}")
      continue
    b = tfds.builder(spec.full_name, data_dir=str(tfds_dir), try_gcs=False)
    if not (tfds_dir / spec.relative_dir() / spec.version / "dataset_info.json").exists():
      (tfds_dir / spec.relative_dir() / spec.version).mkdir(parents=True, exist_ok=True)
      b.info.write_to_directory(b.data_dir)
  real_read = tfds_source.read

  def read(spec):
    if spec.full_name in IN_MEMORY:
      return enumerate(IN_MEMORY[spec.full_name](i) for i in range(NUM_ROWS))
    return ((i, _normalise(ex)) for i, ex in real_read(spec))

  monkeypatch_session.setattr(tfds_source, "read", read)
  names = muffin.register()
  with tfds.testing.mock_data(num_examples=NUM_ROWS):
    yield names
  tfds_source.set_tfds_data_dir(None)


@pytest.fixture(scope="session")
def monkeypatch_session():
  mp_ = pytest.MonkeyPatch()
  yield mp_
  mp_.undo()


def test_flan_v2_inventory():
  names = set(muffin.CONFIGS)
  assert "wsc273" not in names and {"lambada", "unified_qa_science_inst"} <= names
  assert {"mnli_matched", "mnli_mismatched", "anli_r1", "anli_r3", "story_cloze", "xsum"} <= names
  # No 30k train cap on the v2 configs: only FLAN's validation tail (or a fixed para_crawl slice) is cut.
  capped = {n for n, c in muffin.CONFIGS.items() if "[:30000]" in c.tfds.split}
  assert capped == {"para_crawl_enes", "true_case"}
  assert muffin.CONFIGS["story_cloze"].tfds.manual


def test_every_task_tokenizes(muffin_env):
  eos = vocab.get_vocabulary().eos_id
  checked = 0
  for name in muffin.CONFIGS:
    task = seqio.get_mixture_or_task(f"{name}_template_0_zero_shot")
    exs = list(task.get_dataset(sequence_length=None, split="train", shuffle=False).take(1).as_numpy_iterator())
    assert exs, f"{name}: no example from mock data"
    for ex in exs:
      assert ex["_task_name"].decode() == name and ex["_task_source"] == b"Flan2021"
      assert ex["inputs"][-1] == eos and ex["targets"][-1] == eos and len(ex["inputs"]) > 3
      assert ex["targets_pretokenized"].strip(), name
    checked += 1
  assert checked == len(muffin.CONFIGS)


@pytest.mark.parametrize("name", ["anli_r1", "squad_v1"])
def test_every_variant_renders(muffin_env, name):
  cfg = muffin.CONFIGS[name]
  ds = muffin.dataset(cfg)
  variants = registry.flan_variants(cfg.pattern_key, cfg.has_options, name)
  assert len(variants) == (24 if cfg.has_options else 23)
  for v in variants:
    out = list(registry.render(ds, v, name + v.suffix))
    assert out, f"{name}{v.suffix}: nothing rendered"
    if v.few_shot is None:
      assert len(out) == NUM_ROWS // len(v.patterns) * len(v.patterns)
      assert [o["_template_idx"] for o in out[:len(v.patterns)]] == list(range(len(v.patterns)))
    if v.template_type.endswith("noopt"):
      assert all("OPTIONS:" not in o["inputs"] for o in out)


def test_options_rendered_and_answer_among_them(muffin_env):
  ds = muffin.dataset(muffin.CONFIGS["anli_r1"])
  v = registry.flan_variants("anli", True, "anli_r1")[1]
  first = next(registry.render(ds, v, "anli_r1_template_0to10_zero_shot"))
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
