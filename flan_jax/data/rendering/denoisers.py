"""UL2's denoisers on token ids, in numpy: R and X (span corruption), S (prefix LM), and a mixture of them.

A denoiser turns a segment of a document's token ids into an (inputs, targets) pair, its paradigm token (text such
as `[NLU]`, tokenized by the task's vocabulary) first in the inputs:

- span ('R', 'X'): spans covering `noise_density` of the segment, of mean length `mean_span_length`, are cut out;
  the inputs keep the rest with one sentinel where each span was, the targets spell each span after its sentinel.
  Sentinels are the vocabulary's extra ids, the first span's the highest id (T5's `<extra_id_0>` = 32099), then
  descending. As T5's `random_spans_noise_mask`, the numbers of noise tokens and spans are fixed per segment length
  (rounded from the rate and mean), the segment alternates kept and noise spans starting with a kept one, and both
  kinds of span lengths are random compositions of their totals; the configured rate and mean span length are
  therefore met exactly, up to rounding.
- prefix ('S'): the segment is cut in two at a random point; the inputs are the first part, the targets the rest.
  The targets' share of the segment is uniform around `noise_density` (over [0, 1] for the default 0.5).

Neither kind adds EOS: the caller appends it (the training stream here; seqio's `append_eos_after_trim` there), and
`segment_length` leaves room for it. Everything is a function of the ids and the numpy Generator passed in, so a
stream that seeds one Generator per document repeats exactly.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

KINDS = ("span", "prefix")
MIN_SEGMENT = 2  # a span segment needs one kept and one noise token; a prefix one a token on each side


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
  """One denoiser of a mixture; `rate` is its share of the mixture's segments (relative to the others')."""
  name: str
  kind: str = "span"
  paradigm: str = "[NLU]"
  noise_density: float = 0.15
  mean_span_length: float = 3.0
  rate: float = 1.0

  def __post_init__(self):
    where = f"denoiser {self.name!r}"
    if self.kind not in KINDS:
      raise ValueError(f"{where}: kind={self.kind!r}; choose one of {KINDS}")
    if not 0.0 < self.noise_density < 1.0:
      raise ValueError(f"{where}: noise_density={self.noise_density} must be in (0, 1)")
    if self.kind == "span" and not self.mean_span_length >= 1.0:
      raise ValueError(f"{where}: mean_span_length={self.mean_span_length} must be at least 1")
    if not (np.isfinite(self.rate) and self.rate >= 0):
      raise ValueError(f"{where}: rate={self.rate} must be finite and non-negative")


# U-PaLM's UL2R mixture (Tay et al. 2022, "Transcending Scaling Laws with 0.1% Extra Compute"): 50% S (prefix LM),
# 25% X (long spans, high rate), 25% R (T5's span corruption), with UL2's paradigm tokens. docs/ul2r.md says which
# of these numbers come from which paper, and which are reconstructed from memory of them.
R_DENOISER = DenoiserConfig("R", "span", "[NLU]", noise_density=0.15, mean_span_length=3.0, rate=0.25)
X_DENOISER = DenoiserConfig("X", "span", "[NLG]", noise_density=0.5, mean_span_length=32.0, rate=0.25)
S_DENOISER = DenoiserConfig("S", "prefix", "[S2S]", noise_density=0.5, rate=0.5)
U_PALM = (R_DENOISER, X_DENOISER, S_DENOISER)


@dataclasses.dataclass(frozen=True)
class DenoiserMixture:
  """The denoisers a UL2R task draws from, one draw per segment, by `rate`."""
  denoisers: tuple[DenoiserConfig, ...] = U_PALM

  def __post_init__(self):
    object.__setattr__(self, "denoisers", tuple(self.denoisers))  # gin gives lists
    if not self.denoisers:
      raise ValueError("a denoiser mixture needs at least one denoiser")
    names = [d.name for d in self.denoisers]
    if len(set(names)) != len(names):
      raise ValueError(f"denoiser mixture: names repeat in {names}")
    if sum(d.rate for d in self.denoisers) <= 0:
      raise ValueError(f"denoiser mixture {names}: the rates are all zero")


@dataclasses.dataclass(frozen=True)
class Vocab:
  """What a denoiser needs of the vocabulary: its first sentinel id (`<extra_id_0>`), how many sentinels there
  are (ids descend from the first), and how to tokenize a paradigm token."""
  first_sentinel: int
  num_sentinels: int
  encode: Callable[[str], Sequence[int]]


@dataclasses.dataclass(frozen=True)
class Plan:
  """A mixture made concrete for one vocabulary and one pair of feature lengths: each denoiser's paradigm ids and
  the segment length that fits its inputs and targets (EOS included) into those lengths."""
  denoisers: tuple[DenoiserConfig, ...]
  probabilities: np.ndarray
  paradigm_ids: tuple[np.ndarray, ...]
  segment_lengths: tuple[int, ...]
  first_sentinel: int
  num_sentinels: int


def span_counts(length: int, config: DenoiserConfig) -> tuple[int, int]:
  """(noise tokens, noise spans) of a span-corruption segment of `length` tokens (length >= MIN_SEGMENT)."""
  noise = min(max(round(length * config.noise_density), 1), length - 1)
  spans = min(max(round(noise / config.mean_span_length), 1), noise, length - noise)
  return noise, spans


def prefix_bounds(length: int, config: DenoiserConfig) -> tuple[int, int]:
  """The fewest and most target tokens a prefix split of `length` tokens can give (length >= MIN_SEGMENT)."""
  low, high = max(0.0, 2 * config.noise_density - 1), min(1.0, 2 * config.noise_density)
  return min(max(round(low * length), 1), length - 1), min(max(round(high * length), 1), length - 1)


def _fits(length: int, config: DenoiserConfig, extra_inputs: int, lengths: Mapping[str, int],
          num_sentinels: int) -> bool:
  """Whether every segment of `length` tokens fits (EOS appended to both features)."""
  if config.kind == "span":
    noise, spans = span_counts(length, config)
    wanted_spans = max(round(noise / config.mean_span_length), 1)
    return (wanted_spans <= num_sentinels and length - noise + spans + extra_inputs + 1 <= lengths["inputs"]
            and noise + spans + 1 <= lengths["targets"])
  fewest, most = prefix_bounds(length, config)
  return length - fewest + extra_inputs + 1 <= lengths["inputs"] and most + 1 <= lengths["targets"]


def segment_length(config: DenoiserConfig, extra_inputs: int, lengths: Mapping[str, int],
                   num_sentinels: int) -> int:
  """The longest segment whose denoised inputs and targets fit `lengths` (0 if none does). Inputs and targets
  only grow with the segment, so this is a binary search; span segments also keep to the sentinels there are."""
  low, high = 0, lengths["inputs"] + lengths["targets"]
  while low < high:
    mid = (low + high + 1) // 2
    if mid >= MIN_SEGMENT and _fits(mid, config, extra_inputs, lengths, num_sentinels):
      low = mid
    else:
      high = mid - 1
  return low


def make_plan(mixture: DenoiserMixture, lengths: Mapping[str, int], vocab: Vocab) -> Plan:
  """The mixture for these feature lengths; a denoiser that cannot fit a segment into them is an error naming it."""
  missing = [k for k in ("inputs", "targets") if k not in lengths]
  if missing:
    raise ValueError(f"denoising needs feature lengths for inputs and targets; {dict(lengths)} lacks {missing}")
  rates = np.array([d.rate for d in mixture.denoisers], np.float64)
  paradigm_ids, segments = [], []
  for d in mixture.denoisers:
    ids = np.asarray(vocab.encode(d.paradigm) if d.paradigm else [], np.int32)
    n = segment_length(d, len(ids), lengths, vocab.num_sentinels)
    if n < MIN_SEGMENT and d.rate > 0:
      raise ValueError(f"denoiser {d.name!r}: feature lengths {dict(lengths)} leave no room for a segment (its "
                       f"paradigm {d.paradigm!r} is {len(ids)} tokens, plus EOS and sentinels)")
    paradigm_ids.append(ids)
    segments.append(n)
  return Plan(mixture.denoisers, rates / rates.sum(), tuple(paradigm_ids), tuple(segments), vocab.first_sentinel,
              vocab.num_sentinels)


def _composition(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
  """`total` split into `parts` positive integers, uniformly over all such splits."""
  if parts == 1:
    return np.array([total], np.int64)
  cuts = np.sort(rng.choice(total - 1, parts - 1, replace=False)) + 1
  return np.diff(np.concatenate([[0], cuts, [total]]))


def noise_mask(length: int, config: DenoiserConfig, rng: np.random.Generator) -> np.ndarray:
  """A boolean mask of `length`: True on noise tokens, in spans as the module doc says."""
  noise, spans = span_counts(length, config)
  runs = np.empty(2 * spans, np.int64)
  runs[0::2] = _composition(length - noise, spans, rng)
  runs[1::2] = _composition(noise, spans, rng)
  return np.repeat(np.tile([False, True], spans), runs)


def corrupt_spans(tokens: np.ndarray, mask: np.ndarray, first_sentinel: int) -> tuple[np.ndarray, np.ndarray]:
  """(inputs, targets) of span corruption under `mask`: each noise span becomes one sentinel in the inputs, and
  the targets hold every span after its sentinel."""
  starts = mask & ~np.concatenate([[False], mask[:-1]])
  sentinels = (first_sentinel - np.cumsum(starts) + 1).astype(np.int32)
  inputs = np.where(starts, sentinels, tokens)[~mask | starts]
  noise = tokens[mask]
  span_offsets = np.flatnonzero(starts[mask])
  targets = np.insert(noise, span_offsets, sentinels[starts])
  return inputs.astype(np.int32), targets.astype(np.int32)


def split_prefix(tokens: np.ndarray, config: DenoiserConfig, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
  """(prefix, rest): the targets take a uniform share of the segment around `noise_density` (`prefix_bounds`)."""
  fewest, most = prefix_bounds(len(tokens), config)
  cut = len(tokens) - int(rng.integers(fewest, most + 1))
  return tokens[:cut], tokens[cut:]


def denoise_segment(tokens: np.ndarray, index: int, plan: Plan, rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
  """Denoiser `index` of `plan` on one segment: (paradigm + inputs, targets), without EOS."""
  config = plan.denoisers[index]
  if config.kind == "span":
    inputs, targets = corrupt_spans(tokens, noise_mask(len(tokens), config, rng), plan.first_sentinel)
  else:
    inputs, targets = split_prefix(tokens, config, rng)
  return np.concatenate([plan.paradigm_ids[index], inputs]).astype(np.int32), targets.astype(np.int32)


def denoise_document(tokens: np.ndarray, plan: Plan, rng: np.random.Generator
                     ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
  """(denoiser index, inputs, targets) for consecutive segments of one document: each segment draws its denoiser,
  then takes that denoiser's segment length of the tokens left (the last may be shorter; a last token alone is
  dropped). Documents are not concatenated, so no example mixes two of them; packing fills the rows."""
  tokens = np.asarray(tokens, np.int32)
  start = 0
  while len(tokens) - start >= MIN_SEGMENT:
    index = int(rng.choice(len(plan.denoisers), p=plan.probabilities))
    # A drawn denoiser has rate > 0, so `make_plan` made sure its segments hold at least MIN_SEGMENT tokens.
    segment = tokens[start:start + plan.segment_lengths[index]]
    start += len(segment)
    inputs, targets = denoise_segment(segment, index, plan, rng)
    yield index, inputs, targets
