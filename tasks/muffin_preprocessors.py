"""Per-dataset preprocessors of the Muffin (Flan 2021) datasets, plus their postprocessors and metrics.

A preprocessor maps one raw TFDS example (numpy values, as `tfds.as_numpy` yields them) to the fields
FLAN's templates read: classification and multiple-choice tasks get an `options` list and the `answer`
string among them. It returns None for rows upstream's filters drop (counted by the caller), and raises
`MalformedRow` for rows that lack what the mapping needs (warned and counted by the caller).
The mappings follow FLAN's task configs (field names, option strings, text clean-ups).
"""
from __future__ import annotations

import collections
import functools
import math
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from flan_jax.evaluation import answers as answers_lib

Example = Mapping[str, Any]
Fields = dict[str, Any]


class MalformedRow(ValueError):
  """A raw example lacks a field (or value) the mapping needs."""


def text(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray) and value.shape == ():
    return text(value.item())
  if isinstance(value, str):
    return value
  raise MalformedRow(f"expected a string, got {type(value).__name__}")


def texts(value: Any) -> list[str]:
  return [text(v) for v in list(value)]


def field(ex: Example, *path: str) -> Any:
  cur: Any = ex
  for key in path:
    try:
      cur = cur[key]
    except (KeyError, TypeError, IndexError):
      raise MalformedRow(f"missing feature {'/'.join(path)}") from None
  return cur


def pick(options: Sequence[str], label: Any) -> str:
  i = int(label)
  if not 0 <= i < len(options):
    raise MalformedRow(f"label {i} outside the {len(options)} options")
  return options[i]


def numbered_items(items: Sequence[str]) -> str:
  return "\n".join(f"{i}. {item}" for i, item in enumerate(items, start=1))


# The factories below return functools.partials of module-level functions rather than closures, so a task's rows
# callable pickles (by reference): the training input process receives the tasks it renders that way.

def classify(options: Sequence[str], label_key: str = "label", **copy: str) -> Callable[[Example], Fields]:
  """A fixed-options classifier: `copy` maps output field -> raw feature."""
  return functools.partial(_classify, tuple(options), label_key, copy)


def _classify(options: tuple[str, ...], label_key: str, copy: Mapping[str, str], ex: Example) -> Fields:
  out = {k: text(field(ex, v)) for k, v in copy.items()}
  out["options"] = list(options)
  out["answer"] = pick(out["options"], field(ex, label_key))
  return out


def rename(**copy: str) -> Callable[[Example], Fields]:
  return functools.partial(_rename, copy)


def _rename(copy: Mapping[str, str], ex: Example) -> Fields:
  return {k: text(field(ex, v)) for k, v in copy.items()}


# ---------------------------------------------------------------------------------------------- QA


def natural_questions(ex):
  ans = texts(field(ex, "answer"))
  if not ans:
    raise MalformedRow("no answer")
  return {"question": text(field(ex, "question")) + "?", "answer": ans[0], "answers": ans}


def trivia_qa(ex):
  return {"question": text(field(ex, "question")), "answer": text(field(ex, "answer", "normalized_value")),
          "answers": texts(field(ex, "answer", "normalized_aliases"))}


def record(ex):
  query = text(field(ex, "query"))
  if "@placeholder" not in query:
    raise MalformedRow("query has no @placeholder")
  left, right = query.split("@placeholder")[:2]
  opts = [e + right for e in texts(field(ex, "entities"))]
  answers = [a + right for a in texts(field(ex, "answers"))]
  if not answers:
    return None  # upstream takes answers[0]; rows without answers (test split) cannot be used
  return {"answer": answers[0], "answer_full_str": answers[0],
          "passage": text(field(ex, "passage")).split("\n@highlight")[0], "query": left.strip(" \t\n\r\f\v"),
          "answers": answers, "options_str": "OPTIONS:\n- " + "\n- ".join(opts), "options": opts}


def arc(ex):
  opts = texts(field(ex, "choices", "text"))
  if len(opts) != 4:
    return None  # FLAN keeps 4-option questions only
  return {"question": text(field(ex, "question")), "options": opts, "answer": pick(opts, field(ex, "answerKey"))}


def squad_v1(ex):
  ans = texts(field(ex, "answers", "text"))
  if not ans:
    raise MalformedRow("no answer")
  return {"title": text(field(ex, "title")).replace("_", " "), "context": text(field(ex, "context")),
          "question": text(field(ex, "question")), "answer": ans[0], "answers": ans}


def squad_v2(ex):
  ans = texts(field(ex, "answers", "text"))
  if bool(field(ex, "is_impossible")) or not ans:
    ans = ["unanswerable"]
  return {"title": text(field(ex, "title")).replace("_", " "), "context": text(field(ex, "context")),
          "question": text(field(ex, "question")), "answer": ans[0], "answers": ans}


def drop(ex):
  a = text(field(ex, "answer"))
  return {"context": text(field(ex, "passage")), "question": text(field(ex, "question")), "answer": a,
          "answers": [a]}


def quac(ex):
  def clean(s):
    return s.replace("CANNOTANSWER", "").strip(" \t\n\r\f\v")
  return {"title": clean(text(field(ex, "title"))), "background": clean(text(field(ex, "background"))),
          "context": clean(text(field(ex, "context"))), "question": clean(text(field(ex, "question"))),
          "answer": clean(text(field(ex, "orig_answer", "text")))}


def coqa(ex):
  return {"text": text(field(ex, "story")), "numbered_questions": numbered_items(texts(field(ex, "questions"))),
          "numbered_answers": numbered_items(texts(field(ex, "answers", "input_text")))}


def bool_q(ex):
  opts = ["no", "yes"]
  return {"title": text(field(ex, "title")), "text": text(field(ex, "passage")),
          "question": text(field(ex, "question")), "options": opts, "answer": opts[int(bool(field(ex, "answer")))]}


def multirc(ex):
  opts = ["no", "yes"]
  return {"paragraph": text(field(ex, "paragraph")), "question": text(field(ex, "question")),
          "response": text(field(ex, "answer")), "options": opts, "answer": pick(opts, field(ex, "label"))}


def unified_qa_science(ex):
  inp = text(field(ex, "input")).replace("\\n", "\n")
  if "(D)" not in inp or "(E)" in inp:
    return None  # FLAN keeps exactly-four-option questions
  if not all(m in inp for m in ("(A)", "(B)", "(C)")):
    raise MalformedRow("options (A)-(D) not all present")
  strip = lambda s: s.strip(" \t\n\r\f\v")  # noqa: E731
  opts = [strip(inp.split("(A)")[1].split("(B)")[0]), strip(inp.split("(B)")[1].split("(C)")[0]),
          strip(inp.split("(C)")[1].split("(D)")[0]), strip(inp.split("(D)")[1])]
  return {"question": strip(inp.split("(A)")[0]), "options": opts,
          "answer": text(field(ex, "output")).replace("\\n", "\n")}


def lambada(ex):
  passage = text(field(ex, "passage")).strip(" \t\n\r\f\v")
  last = passage.split(" ")[-1]
  return {"sentence": passage[:len(passage) - len(last) - 1], "answer": last}


def math_dataset(ex):
  return {"question": text(field(ex, "question")), "answer": text(field(ex, "answer"))}


# -------------------------------------------------------------------------------- summarization


def aeslc(ex):
  body, subject = text(field(ex, "email_body")), text(field(ex, "subject_line"))
  if not (body + subject).replace("\n", " "):
    return None
  return {"body": body.replace("\n", " "), "subject": subject.replace("\n", "")}


def cnn_dailymail(ex):
  article = text(field(ex, "article"))
  for sep in ("2013 . ", "2014 . ", "2012 . ", ") -- "):
    article = article.split(sep)[-1]
  highlights = text(field(ex, "highlights")).replace(" .", ".").replace("\n", " ")
  return {"text": article, "highlights": highlights}


def gigaword(ex):
  doc, summary = text(field(ex, "document")), text(field(ex, "summary"))
  if "UNK" in doc + summary or "#" in doc + summary:
    return None  # FLAN drops rows with UNK tokens or hashtags
  return {"text": doc, "summary": summary}


def opinion_rotten_tomatoes(ex):
  critics = texts(field(ex, "_critics", "value"))
  if not critics:
    raise MalformedRow("no critic reviews")
  return {"critic_consensus": text(field(ex, "_critic_consensus")),
          "movie": text(field(ex, "_movie_name")).replace("_", " "), "first_review": critics[0],
          "numbered_reviews": numbered_items(critics[:10])}


def opinion_idebate(ex):
  return {"claim": text(field(ex, "_claim")), "debate_name": text(field(ex, "_debate_name")),
          "argument_sentences": numbered_items(texts(field(ex, "_argument_sentences", "value"))[:10])}


def samsum(ex):
  dialogue = re.sub(r"<.*>", " ", text(field(ex, "dialogue")).replace("\r\n", "\n"))
  return {"summary": text(field(ex, "summary")), "dialogue": dialogue}


# ------------------------------------------------------------------------------------ generation


def _gem_refs(ex) -> list[str]:
  return texts(field(ex, "references")) + [text(field(ex, "target"))]


def common_gen(ex):
  concepts = texts(field(ex, "concepts"))
  return {"concepts": ", ".join(concepts), "concepts_newline": "\n".join(concepts),
          "target": text(field(ex, "target")), "answers": _gem_refs(ex)}


def dart(ex):
  triples = texts(field(ex, "tripleset"))
  return {"tripleset": re.sub(r"\[(.*?)\]", "", "; ".join(triples)), "tripleset_newline": "\n".join(triples),
          "target": text(field(ex, "target")), "answers": _gem_refs(ex)}


def e2e_nlg(ex):
  mr = text(field(ex, "meaning_representation")).replace("[", " = ").replace("]", "")
  return {"meaning_representation": mr, "target": text(field(ex, "target")), "answers": _gem_refs(ex)}


def web_nlg_en(ex):
  s = "; ".join(texts(field(ex, "input"))).replace("_", " ").replace(" | ", ", ")
  return {"input_string": s, "target": text(field(ex, "target")), "answers": _gem_refs(ex)}


def translation(lang1: str, key1: str, lang2: str, key2: str) -> Callable[[Example], Fields]:
  return functools.partial(_translation, lang1, key1, lang2, key2)


def _translation(lang1: str, key1: str, lang2: str, key2: str, ex: Example) -> Fields:
  return {"lang1": lang1, "lang2": lang2, "sent1": text(field(ex, key1)), "sent2": text(field(ex, key2))}


def true_case(ex):
  t = text(field(ex, "en"))
  return None if t.lower() == t else {"lower": t.lower(), "answer": t}


def fix_punct(ex):
  t = text(field(ex, "en"))
  stripped = re.sub(r"[^\w\s]", "", t)
  return None if stripped == t else {"no_punct": stripped, "answer": t}


def word_segment(ex):
  t = text(field(ex, "en"))
  return {"no_space": t.replace(" ", ""), "answer": t}


# ------------------------------------------------------------------------------- classification


def wsc(ex):
  words = text(field(ex, "text")).split(" ")
  i = int(field(ex, "span2_index"))
  if not 0 <= i < len(words):
    raise MalformedRow(f"span2_index {i} outside the text")
  span2 = text(field(ex, "span2_text"))
  marked = " ".join(words[:i] + ["X"] + words[i + 1:]).replace(" X ", f" *{span2}* ")
  opts = ["no", "yes"]
  return {"context": marked, "text1": text(field(ex, "span1_text")), "text2": span2, "options": opts,
          "answer": pick(opts, field(ex, "label"))}


def copa(ex):
  opts = [text(field(ex, "choice1")), text(field(ex, "choice2"))]
  return {"premise": text(field(ex, "premise")), "question": text(field(ex, "question")), "options": opts,
          "answer": pick(opts, field(ex, "label"))}


def winogrande(ex):
  sentence = text(field(ex, "sentence"))
  if "_" not in sentence:
    raise MalformedRow("sentence has no '_' blank")
  context, rest = sentence.split("_")[:2]
  opts = [text(field(ex, "option1")) + rest, text(field(ex, "option2")) + rest]
  return {"context": context, "options": opts, "answer": pick(opts, field(ex, "label"))}


def story_cloze(ex):
  opts = texts(field(ex, "endings"))
  return {"context": text(field(ex, "context")), "options": opts, "answer": pick(opts, int(field(ex, "label")) - 1)}


def sentiment140(ex):
  opts = ["negative", "positive"]
  return {"text": text(field(ex, "text")), "options": opts,
          "answer": opts[int(int(field(ex, "polarity")) in (3, 4))]}


def imdb_reviews(ex):
  opts = ["negative", "positive"]
  return {"text": text(field(ex, "text")).replace("<br />", "\n"), "options": opts,
          "answer": pick(opts, field(ex, "label"))}


def yelp_polarity(ex):
  opts = ["negative", "positive"]
  t = text(field(ex, "text")).replace('\\""', '"').replace("\\n", " ")
  return {"text": t, "options": opts, "answer": pick(opts, field(ex, "label"))}


def definite_pronoun_resolution(ex):
  opts = texts(field(ex, "candidates"))
  return {"sentence": text(field(ex, "sentence")), "pronoun": text(field(ex, "pronoun")), "options": opts,
          "answer": pick(opts, field(ex, "label"))}


def glue_qqp(ex):
  opts = ["no", "yes"]
  return {"question1": text(field(ex, "question1")).replace('""', "'"),
          "question2": text(field(ex, "question2")).replace('""', "'"), "options": opts,
          "answer": pick(opts, field(ex, "label"))}


def cosmos_qa(ex):
  opts = [text(field(ex, f"answer{i}")) for i in range(4)]
  return {"context": text(field(ex, "context")), "question": text(field(ex, "question")), "options": opts,
          "answer": pick(opts, field(ex, "label"))}


def snli(ex):
  if int(field(ex, "label")) not in (0, 1, 2):
    return None  # unlabelled pairs (label -1)
  return classify(["yes", "it is not possible to tell", "no"], premise="premise",
                  hypothesis="hypothesis")(ex)


def stsb(ex):
  label = float(field(ex, "label"))
  return {"sentence1": text(field(ex, "sentence1")), "sentence2": text(field(ex, "sentence2")),
          "options": ["0", "1", "2", "3", "4", "5"], "answer": str(int(round(label))), "answer_float": label}


def piqa(ex):
  opts = [text(field(ex, "sol1")), text(field(ex, "sol2"))]
  return {"goal": text(field(ex, "goal")), "options": opts, "answer": pick(opts, field(ex, "label"))}


def openbookqa(ex):
  q = field(ex, "question")
  opts = [text(field(q, f"choice_{c}")) for c in "ABCD"]
  return {"question": text(field(q, "stem")), "fact": text(field(ex, "fact1")), "options": opts,
          "answer": pick(opts, field(ex, "answerKey"))}


def hellaswag(ex):
  label = int(field(ex, "label"))
  if label not in (0, 1, 2, 3):
    return None  # unlabelled rows
  context = re.sub(r"\[header\]\s", "", text(field(ex, "context")))
  context = re.sub(r"\[.*?\]\s", "\n", context)
  opts = [re.sub(r"\[.*?\]\s", "", e) for e in texts(field(ex, "endings"))]
  return {"context": context, "options": opts, "activity_label": text(field(ex, "activity_label")),
          "answer": pick(opts, label)}


def trec(ex):
  return classify(["description", "entity", "abbreviation", "human", "numeric", "location"],
                  label_key="label-coarse", text="text")(ex)


# ----------------------------------------------------------------------- postprocessors, metrics


def take_first_word(output: str, example=None, is_target=False) -> str:
  del example, is_target
  words = output.strip().split()
  return words[0] if words else ""


def take_first_line(output: str, example=None, is_target=False) -> str:
  del example, is_target
  return output.strip().split("\n")[0]


def qa(answer: str, example=None, is_target=False):
  """Targets become all reference answers (from the `answers` field) for max-over-references metrics."""
  if is_target and example is not None and "answers" in example:
    return [text(a) for a in example["answers"]]
  return answer


def yes_no_class(answer: str, example=None, is_target=False) -> int:
  del example, is_target
  return {"no": 0, "yes": 1}.get(answer.strip(), -1)


def to_float(answer: str, example=None, is_target=False) -> float:
  del example, is_target
  try:
    return float(answer)
  except ValueError:
    return math.nan


def _refs(t) -> list[str]:
  return list(t) if isinstance(t, (list, tuple)) else [t]


def accuracy(targets, predictions) -> dict[str, float]:
  n = len(targets)
  return {"accuracy": 100.0 * sum(t == p for t, p in zip(targets, predictions)) / max(n, 1)}


def squad(targets, predictions) -> dict[str, float]:
  """SQuAD EM and token F1, each the max over reference answers."""
  n = max(len(targets), 1)
  em = sum(answers_lib.exact_match(p, _refs(t)) for t, p in zip(targets, predictions))
  f1 = sum(answers_lib.token_f1(p, _refs(t)) for t, p in zip(targets, predictions))
  return {"em": 100.0 * em / n, "f1": 100.0 * f1 / n}


def f1_binary(targets, predictions) -> dict[str, float]:
  tp = sum(t == 1 and p == 1 for t, p in zip(targets, predictions))
  fp = sum(t != 1 and p == 1 for t, p in zip(targets, predictions))
  fn = sum(t == 1 and p != 1 for t, p in zip(targets, predictions))
  return {"f1": 100.0 * 2 * tp / max(2 * tp + fp + fn, 1)}


def pearson_spearman(targets, predictions) -> dict[str, float]:
  t, p = np.asarray(targets, float), np.nan_to_num(np.asarray(predictions, float))
  if len(t) < 2 or t.std() == 0 or p.std() == 0:
    return {"pearson": 0.0, "spearman": 0.0}
  rank = lambda x: np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)  # noqa: E731
  return {"pearson": 100.0 * float(np.corrcoef(t, p)[0, 1]),
          "spearman": 100.0 * float(np.corrcoef(rank(t), rank(p))[0, 1])}


def _tokens(s: str) -> list[str]:
  return re.findall(r"\w+", s.lower())


def _ngrams(tokens: Sequence[str], n: int) -> collections.Counter:
  return collections.Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
  prev = [0] * (len(b) + 1)
  for x in a:
    cur = [0]
    for j, y in enumerate(b):
      cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
    prev = cur
  return prev[-1]


def _f(overlap: int, n_pred: int, n_ref: int) -> float:
  if overlap == 0:
    return 0.0
  p, r = overlap / n_pred, overlap / n_ref
  return 2 * p * r / (p + r)


def rouge(targets, predictions) -> dict[str, float]:
  """ROUGE-1/2/L F-measures (lower-cased word tokens), each the max over references, averaged."""
  scores = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
  for t, p in zip(targets, predictions):
    pt = _tokens(p)
    best = {k: 0.0 for k in scores}
    for ref in _refs(t):
      rt = _tokens(ref)
      for n in (1, 2):
        a, b = _ngrams(pt, n), _ngrams(rt, n)
        best[f"rouge{n}"] = max(best[f"rouge{n}"], _f(sum((a & b).values()), sum(a.values()), sum(b.values())))
      best["rougeL"] = max(best["rougeL"], _f(_lcs(pt, rt), len(pt), len(rt)))
    for k in scores:
      scores[k] += best[k]
  n = max(len(targets), 1)
  return {k: 100.0 * v / n for k, v in scores.items()}


def bleu(targets, predictions) -> dict[str, float]:
  """Corpus BLEU-4 with brevity penalty over whitespace/punctuation tokens (first reference)."""
  match, total = [0] * 4, [0] * 4
  ref_len = pred_len = 0
  for t, p in zip(targets, predictions):
    pt, rt = re.findall(r"\w+|[^\w\s]", p), re.findall(r"\w+|[^\w\s]", _refs(t)[0])
    pred_len, ref_len = pred_len + len(pt), ref_len + len(rt)
    for n in range(1, 5):
      a, b = _ngrams(pt, n), _ngrams(rt, n)
      match[n - 1] += sum((a & b).values())
      total[n - 1] += sum(a.values())
  if pred_len == 0 or min(match) == 0:
    return {"bleu": 0.0}
  log_p = sum(math.log(m / t) for m, t in zip(match, total)) / 4
  bp = 1.0 if pred_len > ref_len else math.exp(1 - ref_len / pred_len)
  return {"bleu": 100.0 * bp * math.exp(log_p)}


def edit_distance(targets, predictions) -> dict[str, float]:
  """Mean word-level Levenshtein distance."""
  total = 0
  for t, p in zip(targets, predictions):
    a, b = _refs(t)[0].split(), p.split()
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
      cur = [i]
      for j, y in enumerate(b, start=1):
        cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
      prev = cur
    total += prev[-1]
  return {"mean_edit": total / max(len(targets), 1)}
