"""Muffin (Flan 2021) datasets over TFDS, as FLAN v2 registers them, in every FLAN variant.

One `MuffinConfig` per FLAN v2 Flan 2021 task config: the TFDS dataset at FLAN's version and the train split
FLAN v2 reads (v2 lifts the 30,000-example train cap, keeping only the tail FLAN reserves for validation;
para_crawl-derived and opinion_abstracts tasks keep their fixed slices), the preprocessor, the templates.json
key, postprocessor and metrics. FLAN v2's adjustments: wsc273 is dropped (no train split), lambada and
unified_qa_science_inst are added. Rows carry `_task_name` = the config name and `_task_source` = "Flan2021"
(upstream's add_source_info call swaps the two; we keep each field's meaning). Datasets with a default
builder config name it (paws_wiki/labeled_final_tokenized), so the prepared dir is known without TFDS code.

Nothing is read at registration: TFDS availability is a file-system check made when a task is built.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

from flan_jax.data.catalog import registry
from flan_jax.data.files import readers, tfds_source
from flan_jax.data.rendering import templates as tpl
from tasks import muffin_preprocessors as mp

TASK_SOURCE = "Flan2021"
MIXTURE_KEY = "FLAN"


@dataclasses.dataclass(frozen=True)
class MuffinConfig:
  name: str
  tfds: tfds_source.TfdsSpec
  preprocess: Callable[[Any], dict | None]
  pattern_key: str
  has_options: bool
  metrics: Sequence[Callable] = (mp.accuracy,)
  postprocess: Callable | None = None


def _spec(name: str, version: str | None, split: str = "train", manual: str | None = None):
  return tfds_source.TfdsSpec(name, version, split, manual)


_NLI3 = ["yes", "it is not possible to tell", "no"]
_STORY_CLOZE_MANUAL = ("Story Cloze needs a manual download: request the 2016 val/test CSVs at "
                       "https://cs.rochester.edu/nlp/rocstories/ and put them in DIR")
_NEWSROOM_MANUAL = ("Newsroom needs a manual download: get newsroom-release from "
                    "https://lil.nlp.cornell.edu/newsroom/ and put its jsonl.gz files in DIR")
_SAMSUM_MANUAL = "SAMSum needs a manual download: put corpus.7z from https://arxiv.org/src/1911.12237v2/anc in DIR"


def _configs() -> list[MuffinConfig]:
  C = MuffinConfig  # noqa: N806
  opt = dict(has_options=True)
  noopt = dict(has_options=False)
  sq = dict(metrics=(mp.squad,), postprocess=mp.qa)
  rouge = dict(metrics=(mp.rouge,))
  gem = dict(metrics=(mp.rouge,), postprocess=mp.qa)
  bleu = dict(metrics=(mp.bleu,))
  edit = dict(metrics=(mp.edit_distance,))
  f1 = dict(metrics=(mp.accuracy, mp.f1_binary), postprocess=mp.yes_no_class)
  out = [
      C("bool_q", _spec("bool_q", "1.0.0", "train[:-200]"), mp.bool_q, "bool_q", **opt),
      C("rte", _spec("super_glue/rte", "1.0.2", "train[:-200]"),
        mp.classify(["yes", "no"], premise="premise", hypothesis="hypothesis"), "rte", **opt),
      C("wsc", _spec("super_glue/wsc.fixed", "1.0.2", "train[:-50]"), mp.wsc, "wsc", **opt),
      C("wic", _spec("super_glue/wic", "1.0.2", "train[:-200]"),
        mp.classify(["different meanings", "the same meaning"], sentence1="sentence1", sentence2="sentence2",
                    word="word"), "wic", **opt),
      C("natural_questions", _spec("natural_questions_open", "1.0.0", "train[:-200]"), mp.natural_questions,
        "natural_questions", **noopt, **sq),
      C("record", _spec("super_glue/record", "1.0.2", "train[:-200]"), mp.record, "record", **noopt, **sq),
      C("trivia_qa", _spec("trivia_qa/rc", "1.1.0", "train[:-200]"), mp.trivia_qa, "trivia_qa", **noopt, **sq),
      C("arc_challenge", _spec("ai2_arc/ARC-Challenge", "1.0.0", "train[:-200]"), mp.arc, "arc", **opt),
      C("arc_easy", _spec("ai2_arc/ARC-Easy", "1.0.0", "train[:-200]"), mp.arc, "arc", **opt),
      C("math_dataset", _spec("math_dataset/algebra__linear_1d", "1.0.0", "train[:-200]"), mp.math_dataset,
        "math_dataset", **noopt),
      C("aeslc", _spec("aeslc", "1.0.0"), mp.aeslc, "aeslc", **noopt, **rouge),
      C("cnn_dailymail", _spec("cnn_dailymail", "3.4.0"), mp.cnn_dailymail, "cnn_dailymail", **noopt, **rouge),
      C("gigaword", _spec("gigaword", "1.2.0"), mp.gigaword, "gigaword", **noopt, **rouge),
      C("multi_news", _spec("multi_news", "1.0.0"), mp.rename(text="document", summary="summary"),
        "multi_news", **noopt, **rouge),
      C("newsroom", _spec("newsroom", "1.0.0", manual=_NEWSROOM_MANUAL),
        mp.rename(text="text", title="title", summary="summary"), "newsroom", **noopt, **rouge),
      C("opinion_abstracts_rotten_tomatoes", _spec("opinion_abstracts/rotten_tomatoes", "1.0.0", "train[:-600]"),
        mp.opinion_rotten_tomatoes, "opinion_abstracts_rotten_tomatoes", **noopt, **rouge),
      C("opinion_abstracts_idebate", _spec("opinion_abstracts/idebate", "1.0.0", "train[:-600]"),
        mp.opinion_idebate, "opinion_abstracts_idebate", **noopt, **rouge),
      C("coqa", _spec("coqa", "1.0.0", "train[:-100]"), mp.coqa, "coqa", **noopt, metrics=(mp.squad,)),
      C("samsum", _spec("samsum", "1.0.0", manual=_SAMSUM_MANUAL), mp.samsum, "samsum", **noopt, **rouge),
      C("xsum", _spec("huggingface:xsum", None), mp.rename(text="document", summary="summary"), "xsum",
        **noopt, **rouge),
      C("squad_v1", _spec("squad/v1.1", "3.0.0", "train[:-200]"), mp.squad_v1, "squad_v1", **noopt, **sq),
      C("squad_v2", _spec("squad/v2.0", "3.0.0", "train[:-200]"), mp.squad_v2, "squad_v2", **noopt, **sq),
      C("drop", _spec("drop", "2.0.0", "train[:-200]"), mp.drop, "drop", **noopt, **sq),
      C("quac", _spec("quac", "1.0.0", "train[:-200]"), mp.quac, "quac", **noopt, metrics=(mp.squad,)),
      C("multirc", _spec("super_glue/multirc", "1.0.2", "train[:-200]"), mp.multirc, "multirc", **opt, **f1),
      C("ag_news_subset", _spec("ag_news_subset", "1.0.0", "train[:-200]"),
        mp.classify(["World", "Sports", "Business", "Science/Tech"], title="title", text="description"),
        "ag_news_subset", **opt),
  ]
  for r in ("r1", "r2", "r3"):
    out.append(C(f"anli_{r}", _spec(f"anli/{r}", "0.1.0"),
                 mp.classify(["Yes", "It's impossible to say", "No"], context="context", hypothesis="hypothesis"),
                 "anli", **opt))
  out += [
      C("sentiment140", _spec("sentiment140", "1.0.0", "train[:-200]"), mp.sentiment140, "sentiment140", **opt),
      C("story_cloze", _spec("story_cloze/2016", "1.0.0", "validation[:-200]", manual=_STORY_CLOZE_MANUAL),
        mp.story_cloze, "story_cloze", **opt),
      C("imdb_reviews", _spec("imdb_reviews/plain_text", "1.0.0", "train[:-200]"), mp.imdb_reviews,
        "imdb_reviews", **opt),
      C("paws_wiki", _spec("paws_wiki/labeled_final_tokenized", "1.1.0"),
        mp.classify(["no", "yes"], sentence1="sentence1", sentence2="sentence2"), "paws_wiki", **opt),
      C("definite_pronoun_resolution", _spec("definite_pronoun_resolution", "1.1.0", "train[:-200]"),
        mp.definite_pronoun_resolution, "definite_pronoun_resolution", **opt),
      C("glue_mrpc", _spec("glue/mrpc", "2.0.0", "train[:-200]"),
        mp.classify(["no", "yes"], sentence1="sentence1", sentence2="sentence2"), "glue_mrpc", **opt, **f1),
      C("glue_qqp", _spec("glue/qqp", "2.0.0", "train[:-200]"), mp.glue_qqp, "glue_qqp", **opt, **f1),
      C("copa", _spec("super_glue/copa", "1.0.2", "train[:-50]"), mp.copa, "copa", **opt),
      C("winogrande", _spec("winogrande", "1.1.0", "train_xl[:-200]"), mp.winogrande, "winogrande", **opt),
      C("yelp_polarity_reviews", _spec("yelp_polarity_reviews", "0.2.0", "train[:-200]"), mp.yelp_polarity,
        "yelp_polarity_reviews", **opt),
      C("cosmos_qa", _spec("cosmos_qa", "1.0.0", "train[:-200]"), mp.cosmos_qa, "cosmos_qa", **opt),
      C("para_crawl_enes", _spec("para_crawl/enes", "1.2.0", "train[:30000]"),
        mp.translation("English", "en", "Spanish", "es"), "para_crawl", **noopt, **bleu),
      C("wmt14_enfr", _spec("wmt14_translate/fr-en", "1.0.0"), mp.translation("English", "en", "French", "fr"),
        "wmt14_enfr", **noopt, **bleu),
  ]
  for code, lang in (("de", "German"), ("tr", "Turkish"), ("cs", "Czech"), ("fi", "Finnish"),
                     ("ro", "Romanian"), ("ru", "Russian")):
    out.append(C(f"wmt16_translate_{code}en", _spec(f"wmt16_translate/{code}-en", "1.0.0"),
                 mp.translation("English", "en", lang, code), "wmt16_translate", **noopt, **bleu))
  out += [
      C("common_gen", _spec("gem/common_gen", "1.1.0", "train[:-200]"), mp.common_gen, "common_gen", **noopt, **gem),
      C("dart", _spec("gem/dart", "1.1.0", "train[:-200]"), mp.dart, "dart", **noopt, **gem),
      C("e2e_nlg", _spec("gem/e2e_nlg", "1.1.0", "train[:-200]"), mp.e2e_nlg, "e2e_nlg", **noopt, **gem),
      C("web_nlg_en", _spec("gem/web_nlg_en", "1.1.0", "train[:-200]"), mp.web_nlg_en, "web_nlg_en",
        **noopt, **gem),
      C("wiki_lingua_english_en", _spec("gem/wiki_lingua_english_en", "1.1.0"),
        mp.rename(source="source", target="target"), "wiki_lingua_english_en", **noopt, **rouge),
      # Three tasks cut disjoint slices of para_crawl/enda (train, then 200 for validation, each).
      C("true_case", _spec("para_crawl/enda", "1.2.0", "train[:30000]"), mp.true_case, "true_case",
        **noopt, **edit),
      C("fix_punct", _spec("para_crawl/enda", "1.2.0", "train[30200:60200]"), mp.fix_punct, "fix_punct",
        **noopt, **edit),
      C("word_segment", _spec("para_crawl/enda", "1.2.0", "train[60400:90400]"), mp.word_segment,
        "word_segment", **noopt, **edit),
      C("cb", _spec("super_glue/cb", "1.0.2", "train[:-50]"),
        mp.classify(["Yes", "No", "It's impossible to say"], premise="premise", hypothesis="hypothesis"),
        "cb", **opt),
      C("cola", _spec("glue/cola", "2.0.0", "train[:-200]"),
        mp.classify(["unacceptable", "acceptable"], sentence="sentence"), "cola", **opt),
      C("sst2", _spec("glue/sst2", "2.0.0", "train[:-200]"),
        mp.classify(["negative", "positive"], sentence="sentence"), "sst2", **opt),
      C("mnli_matched", _spec("glue/mnli", "2.0.0", "train[:-200]"),
        mp.classify(_NLI3, premise="premise", hypothesis="hypothesis"), "mnli", **opt),
      C("mnli_mismatched", _spec("glue/mnli", "2.0.0", "train[:-200]"),
        mp.classify(_NLI3, premise="premise", hypothesis="hypothesis"), "mnli", **opt),
      C("qnli", _spec("glue/qnli", "2.0.0", "train[:-200]"),
        mp.classify(["yes", "no"], sentence="sentence", question="question"), "qnli", **opt),
      C("wnli", _spec("glue/wnli", "2.0.0", "train[:-30]"),
        mp.classify(["no", "yes"], sentence1="sentence1", sentence2="sentence2"), "wnli", **opt),
      C("snli", _spec("snli", "1.1.0"), mp.snli, "snli", **opt),
      C("trec", _spec("trec", "1.0.0", "train[:-200]"), mp.trec, "trec", **opt),
      C("stsb", _spec("glue/stsb", "2.0.0", "train[:-100]"), mp.stsb, "stsb", **opt,
        metrics=(mp.pearson_spearman,), postprocess=mp.to_float),
      C("piqa", _spec("piqa", "1.0.0", "train[:-100]"), mp.piqa, "piqa", **opt),
      C("openbookqa", _spec("openbookqa", "0.1.0"), mp.openbookqa, "openbookqa", **opt),
      C("hellaswag", _spec("hellaswag", "1.1.0", "train[:-200]"), mp.hellaswag, "hellaswag", **opt),
      C("lambada", _spec("lambada", "1.0.0"), mp.lambada, "lambada", **noopt, postprocess=mp.take_first_word),
      C("unified_qa_science_inst", _spec("unified_qa/ai2_science_middle", "1.0.0"), mp.unified_qa_science,
        "unified_qa_science_inst", **opt, postprocess=mp.take_first_line),
  ]
  return out


CONFIGS: dict[str, MuffinConfig] = {c.name: c for c in _configs()}


def rows(config: MuffinConfig):
  """(index in the split, template fields) for each kept row; malformed rows are warned and counted."""
  where = f"tfds:{config.tfds.full_name}[{config.tfds.split}]"
  for idx, ex in tfds_source.read(config.tfds):
    try:
      fields = config.preprocess(ex)
    except mp.MalformedRow as e:
      readers.record_skip(where, idx, f"{config.name}: {e}")
      continue
    if fields is None:
      registry.filtered_rows.add(config.name)
      continue
    yield idx, fields


def dataset(config: MuffinConfig) -> registry.FlanDataset:
  """The task's FlanDataset. Its `num_rows` (used for examples-proportional mixture rates) is TFDS's
  stored split size, before the preprocessor's filters (returning None) and malformed-row skips: exact
  for the configs whose preprocessor never filters, an upper bound for the others (arc, record, aeslc,
  gigaword, snli, hellaswag, true_case, fix_punct, unified_qa_science_inst). Counting exactly would
  read every dataset; `registry.filtered_rows` reports what was dropped once one has been read."""
  return registry.FlanDataset(
      name=config.name, pattern_key=config.pattern_key, task_name=config.name, task_source=TASK_SOURCE,
      rows=functools.partial(rows, config), num_rows=functools.partial(tfds_source.num_examples, config.tfds),
      check_available=functools.partial(tfds_source.check, config.tfds), has_options=config.has_options)


def register_task(config: MuffinConfig, variants: Sequence[registry.Variant]) -> list[str]:
  """The config's task in each variant, with its postprocessor and metrics."""
  return registry.register_variants(dataset(config), variants, postprocess_fn=config.postprocess,
                                    metric_fns=config.metrics)


def base_names() -> list[str]:
  return list(CONFIGS)


def register(templates: tpl.Templates | None = None) -> list[str]:
  """Registers every Muffin task in every FLAN variant; returns the task names."""
  t = templates or tpl.load_templates()
  names = []
  for config in CONFIGS.values():
    names += register_task(config, registry.flan_variants(config.pattern_key, config.has_options,
                                                          config.name, t))
  return names
