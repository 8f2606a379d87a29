"""UL2's denoisers on token ids: measured rates and span lengths match the configuration, sentinels descend from
<extra_id_0>, filling the spans back gives the document, paradigm tokens lead, S splits a prefix, and every example
fits its feature lengths."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from flan_jax.data.rendering import denoisers as d

FIRST_SENTINEL = 32099
VOCAB = d.Vocab(FIRST_SENTINEL, 100, lambda text: [5000 + ord(c) for c in text])  # one id a character
LENGTHS = {"inputs": 512, "targets": 512}


def _documents(n: int, seed: int = 0, low: int = 2, high: int = 6000) -> list[np.ndarray]:
  rng = np.random.default_rng(seed)
  return [rng.integers(2, 32000, int(rng.integers(low, high))).astype(np.int32) for _ in range(n)]


def _examples(mixture: d.DenoiserMixture, documents, lengths=LENGTHS, seed: int = 0):
  plan = d.make_plan(mixture, lengths, VOCAB)
  out = []
  for i, doc in enumerate(documents):
    out += [(doc, idx, x, y) for idx, x, y in d.denoise_document(doc, plan, np.random.default_rng([seed, i]))]
  return plan, out


def _is_sentinel(ids: np.ndarray) -> np.ndarray:
  return ids > FIRST_SENTINEL - 100


def _fill(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """The segment back from span corruption: each sentinel of the inputs replaced by its span in the targets."""
  spans, current = {}, None
  for t in targets.tolist():
    if t > FIRST_SENTINEL - 100:
      current = spans.setdefault(t, [])
    else:
      current.append(t)
  out = []
  for t in inputs.tolist():
    out += spans.pop(t) if t in spans else [t]
  assert not spans, "a span in the targets has no sentinel in the inputs"
  return np.array(out, np.int32)


@pytest.mark.parametrize("density, mean_span", [(0.15, 3.0), (0.5, 32.0), (0.5, 3.0), (0.15, 8.0), (0.25, 12.0)])
def test_measured_rate_and_span_length_match_the_config(density, mean_span):
  config = d.DenoiserConfig("T", "span", "", noise_density=density, mean_span_length=mean_span)
  _, examples = _examples(d.DenoiserMixture((config,)), _documents(300, low=1000))
  noise = spans = total = 0
  for _, _, x, y in examples:
    sentinels = int(_is_sentinel(y).sum())
    noise += len(y) - sentinels
    spans += sentinels
    total += len(x) - sentinels + len(y) - sentinels
  assert noise / total == pytest.approx(density, rel=0.03)
  assert noise / spans == pytest.approx(mean_span, rel=0.05)


def test_sentinels_descend_from_extra_id_0_in_inputs_and_targets():
  _, examples = _examples(d.DenoiserMixture((d.R_DENOISER, d.X_DENOISER)), _documents(40))
  assert examples
  for _, _, x, y in examples:
    want = list(range(FIRST_SENTINEL, FIRST_SENTINEL - int(_is_sentinel(y).sum()), -1))
    assert x[_is_sentinel(x)].tolist() == want
    assert y[_is_sentinel(y)].tolist() == want
    assert _is_sentinel(y[:1]).all() and not _is_sentinel(x[:1]).all()  # spans follow a kept token
    assert not (_is_sentinel(y[1:]) & _is_sentinel(y[:-1])).any()  # no empty span


def test_filling_the_spans_back_gives_the_document():
  mixture = d.DenoiserMixture((d.R_DENOISER, d.X_DENOISER, d.S_DENOISER))
  plan, examples = _examples(mixture, _documents(60))
  by_doc = collections.defaultdict(list)
  for doc, idx, x, y in examples:
    body = x[len(plan.paradigm_ids[idx]):]
    by_doc[id(doc)].append((doc, _fill(body, y) if plan.denoisers[idx].kind == "span" else np.concatenate([body, y])))
  for parts in by_doc.values():
    doc = parts[0][0]
    rebuilt = np.concatenate([p for _, p in parts])
    assert rebuilt.tolist() == doc[:len(rebuilt)].tolist() and len(doc) - len(rebuilt) <= 1  # a last lone token goes


def test_paradigm_tokens_lead_the_inputs_of_their_denoiser():
  plan, examples = _examples(d.DenoiserMixture(d.U_PALM), _documents(50))
  assert {plan.denoisers[idx].paradigm for _, idx, _, _ in examples} == {"[NLU]", "[NLG]", "[S2S]"}
  for _, idx, x, _ in examples:
    assert x[:len(plan.paradigm_ids[idx])].tolist() == VOCAB.encode(plan.denoisers[idx].paradigm)
  bare = d.DenoiserConfig("R", "span", "")
  plan, examples = _examples(d.DenoiserMixture((bare,)), [np.arange(2, 102, dtype=np.int32)])
  assert examples[0][2][0] == 2 and len(plan.paradigm_ids[0]) == 0


@pytest.mark.parametrize("density", [0.5, 0.25, 0.8])
def test_s_splits_a_prefix_with_targets_around_the_density(density):
  config = d.DenoiserConfig("S", "prefix", "[S2S]", noise_density=density)
  plan, examples = _examples(d.DenoiserMixture((config,)), _documents(400, low=2000))
  shares = []
  for doc, _, x, y in examples:
    body = x[len(plan.paradigm_ids[0]):]
    assert len(body) >= 1 and len(y) >= 1 and not _is_sentinel(np.concatenate([body, y])).any()
    if len(body) + len(y) == plan.segment_lengths[0]:
      shares.append(len(y) / (len(body) + len(y)))
  assert np.mean(shares) == pytest.approx(density, abs=0.02)
  low, high = max(0.0, 2 * density - 1), min(1.0, 2 * density)
  assert min(shares) >= low - 0.01 and max(shares) <= high + 0.01 and max(shares) - min(shares) > 0.8 * (high - low)


def test_the_mixture_draws_denoisers_by_rate():
  plan, examples = _examples(d.DenoiserMixture(d.U_PALM), _documents(400, low=500, high=3000))
  counts = collections.Counter(plan.denoisers[idx].name for _, idx, _, _ in examples)
  total = sum(counts.values())
  for name, want in (("R", 0.25), ("X", 0.25), ("S", 0.5)):
    assert counts[name] / total == pytest.approx(want, abs=0.03)


@pytest.mark.parametrize("lengths", [{"inputs": 512, "targets": 512}, {"inputs": 256, "targets": 64},
                                     {"inputs": 64, "targets": 256}, {"inputs": 4096, "targets": 4096}])
def test_every_example_fits_its_lengths_and_segments_are_as_long_as_fit(lengths):
  plan, examples = _examples(d.DenoiserMixture(d.U_PALM), _documents(30, high=12000), lengths)
  for _, _, x, y in examples:
    assert len(x) + 1 <= lengths["inputs"] and len(y) + 1 <= lengths["targets"]  # + EOS
    assert int(_is_sentinel(y).sum()) <= 100
  for config, n, ids in zip(plan.denoisers, plan.segment_lengths, plan.paradigm_ids):
    assert d._fits(n, config, len(ids), lengths, 100)  # pylint: disable=protected-access
    assert not d._fits(n + 1, config, len(ids), lengths, 100)  # pylint: disable=protected-access


def test_the_same_seed_gives_the_same_examples():
  docs = _documents(20)
  mixture = d.DenoiserMixture(d.U_PALM)
  key = lambda examples: [(idx, x.tolist(), y.tolist()) for _, idx, x, y in examples]  # noqa: E731
  first = key(_examples(mixture, docs, seed=1)[1])
  assert key(_examples(mixture, docs, seed=1)[1]) == first
  assert key(_examples(mixture, docs, seed=2)[1]) != first


def test_bad_configurations_name_the_denoiser():
  with pytest.raises(ValueError, match="denoiser 'Q': kind='mask'"):
    d.DenoiserConfig("Q", kind="mask")
  with pytest.raises(ValueError, match="denoiser 'R': noise_density=1.5"):
    d.DenoiserConfig("R", noise_density=1.5)
  with pytest.raises(ValueError, match="names repeat"):
    d.DenoiserMixture((d.R_DENOISER, d.R_DENOISER))
  with pytest.raises(ValueError, match="denoiser 'R': feature lengths .* leave no room"):
    d.make_plan(d.DenoiserMixture(d.U_PALM), {"inputs": 6, "targets": 8}, VOCAB)  # '[NLU]' is 5 ids here
