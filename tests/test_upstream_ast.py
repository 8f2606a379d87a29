"""Derivation of the data dir's JSON/CSV from upstream-shaped sources (flan_jax.data.files.upstream_ast).

Hand-written miniature upstream modules live in tests/fixtures/upstream/; their expected outputs are
written out by hand below. The real data dir checks the derivation at full scale: an upstream-shaped
module is rebuilt from the real templates.json (literal tables, alias statements, the no-options
loops, FewShotPattern calls with defaults left out, comprehensions) and must derive back to the
exact bytes whose sha256 MANIFEST.json records.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import pathlib

import pytest

from flan_jax.data.files import upstream_ast
from flan_jax.data.files.upstream_ast import UpstreamShapeError

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "upstream"
NO_OPTIONS_REMOVALS = ["\n\n{options_}", "\n{options_}", "{options_}", "\n\n{options_str}"]
FEWSHOT_NO_OPTIONS_REMOVALS = ["\n\n{options_}", "\n{options_}", " | {options_}", " {options_}",
                               " ({options_})", "{options_}", "\n\n{options_str}",
                               "\n{options_str}"]


def _src(relpath: str) -> tuple[str, bytes]:
  return relpath, (FIXTURES / relpath).read_bytes()


def _py(value) -> str:
  """A Python literal for a JSON value, with [input, target] pairs written as tuples."""
  if isinstance(value, dict):
    return "{\n" + "".join(f"    {json.dumps(k)}: {_py(v)},\n" for k, v in value.items()) + "}"
  if isinstance(value, list):
    if len(value) == 2 and all(isinstance(v, str) for v in value):
      return f"({json.dumps(value[0])}, {json.dumps(value[1])})"
    return "[" + ", ".join(_py(v) for v in value) + "]"
  return json.dumps(value) if not isinstance(value, bool) else repr(value)


def _candidates(lists: list[list[str]]) -> str:
  items = []
  for sub in lists:
    if len(set(sub)) == 1:
      items.append(f"[{json.dumps(sub[0])} for _ in range({len(sub)})]")
    else:
      items.append("[" + ", ".join(json.dumps(s) for s in sub) + "]")
  return "[\n    " + ",\n    ".join(items) + ",\n]"


def upstream_shaped_templates(real: dict) -> tuple[str, str]:
  """(templates.py, flan_templates_branched.py) with upstream's shape, rebuilt from templates.json."""
  fields = real["FEWSHOT_PATTERN_FIELDS"]
  lines = ['"""Templates."""', "import copy", "import dataclasses", "",
           "from flan.v2 import flan_templates_branched as flan_templates", ""]
  aliases = real["ALIASES"]
  literal = {k: v for k, v in real["PATTERNS"].items() if k not in aliases["PATTERNS"]}
  lines.append(f"PATTERNS = {_py(literal)}")
  lines += [f"PATTERNS[{json.dumps(a)}] = PATTERNS[\n    {json.dumps(t)}]"
            for a, t in aliases["PATTERNS"].items()]
  chain = "in_template" + "".join(f".replace({json.dumps(r)}, \"\")" for r in NO_OPTIONS_REMOVALS)
  lines += ["PATTERNS_NO_OPTIONS = copy.deepcopy(PATTERNS)",
            "PATTERNS_NO_OPTIONS.update(flan_templates.PATTERNS)",
            "for t_name, templates in PATTERNS_NO_OPTIONS.items():",
            "  for ti, (in_template, out_template) in enumerate(templates):",
            f"    PATTERNS_NO_OPTIONS[t_name][ti] = ({chain}, out_template)", "",
            "@dataclasses.dataclass", "class FewShotPattern:", '  """Few-shot pattern."""']
  lines += [f"  {k}: {'bool' if isinstance(v, bool) else 'str'}" + ("" if v is None else f" = {_py(v)}")
            for k, v in fields.items()]
  lines += ["", "  @property", "  def combined(self):", "    return self.inputs + self.targets", ""]
  fs_aliases = aliases["FEWSHOT_PATTERNS"]
  body = []
  for key, patterns in real["FEWSHOT_PATTERNS"].items():
    if key in fs_aliases:
      continue
    calls = []
    for p in patterns:
      # Keyword order varies upstream; defaults are mostly left out.
      args = [f"{k}={_py(v)}" for k, v in reversed(p.items()) if fields[k] is None or v != fields[k]]
      calls.append("FewShotPattern(" + ", ".join(args) + ")")
    body.append(f"    {json.dumps(key)}: [\n        " + ",\n        ".join(calls) + "],\n")
  lines.append("FEWSHOT_PATTERNS = {\n" + "".join(body) + "}")
  lines += [f"FEWSHOT_PATTERNS[{json.dumps(a)}] = FEWSHOT_PATTERNS[{json.dumps(t)}]"
            for a, t in fs_aliases.items()]
  lines += ["FEWSHOT_PATTERNS_NO_OPTIONS = copy.deepcopy(FEWSHOT_PATTERNS)",
            "for t_name, templates in FEWSHOT_PATTERNS_NO_OPTIONS.items():",
            "  for ti, few_shot_pattern in enumerate(templates):",
            "    in_template = few_shot_pattern.inputs"]
  lines += [f"    in_template = in_template.replace({json.dumps(r)}, \"\")"
            for r in FEWSHOT_NO_OPTIONS_REMOVALS]
  lines += ["    few_shot_pattern.inputs = in_template",
            "    FEWSHOT_PATTERNS_NO_OPTIONS[t_name][ti] = few_shot_pattern", ""]
  lines.append(f"INLINE_FS_PATTERNS = {_py(real['INLINE_FS_PATTERNS'])}")
  for name in ("OPT_START_STRING_CANDIDATES", "ROMAN_NUMS", "OPT_ITEM_NAME_CANDIDATES",
               "OPT_ITEM_END_STR_CANDIDATES", "DIALOG_START_STRING_CANDIDATES",
               "DIALOG_ITEM_NAME_CANDIDATES", "DIALOG_ITEM_END_STR_CANDIDATES"):
    is_lists = isinstance(real[name][0], list)
    lines.append(f"{name} = {_candidates(real[name]) if is_lists else _py(real[name])}")
  order = ["PATTERNS", "PATTERNS_NO_OPTIONS", "FEWSHOT_PATTERNS", "FEWSHOT_PATTERNS_NO_OPTIONS",
           "INLINE_FS_PATTERNS", "OPT_START_STRING_CANDIDATES", "ROMAN_NUMS",
           "OPT_ITEM_NAME_CANDIDATES", "OPT_ITEM_END_STR_CANDIDATES",
           "DIALOG_START_STRING_CANDIDATES", "DIALOG_ITEM_NAME_CANDIDATES",
           "DIALOG_ITEM_END_STR_CANDIDATES"]
  # The module assigns names in this order; the candidate lists come last upstream too.
  assert [k for k in real if k in order] == order
  branched = '"""Original FLAN templates."""\n\nPATTERNS = ' + _py(
      real["FLAN_TEMPLATES_BRANCHED_PATTERNS"]) + "\n"
  return "\n".join(lines) + "\n", branched


def _loads(data: bytes):
  text = data.decode("utf-8")
  obj = json.loads(text)
  # The data dir's format: 2-space indent, raw UTF-8, insertion order, final newline.
  assert text == json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
  return obj


def _fs(inputs, targets, **kw):
  fields = {"inputs": inputs, "targets": targets, "inputs_prefix": "", "targets_prefix": "",
            "x_y_delimiter": "\n\n", "example_separator": "\n\n\n", "final_suffix": "",
            "input_pattern": "{{inputs}}{final_suffix}", "in_template_mix": True}
  assert set(kw) <= set(fields)
  return {**fields, **kw}


def test_mini_templates_module_derives_as_computed_by_hand():
  out = _loads(upstream_ast.derive_templates(_src("flan/v2/templates.py"),
                                             _src("flan/v2/flan_templates_branched.py")))
  dialog = [["{dialog_}\nWhat comes next?\n{options_str}", "{answer}"],
            ["Continue: {dialog_}\n\n{options_str}", "{answer}"]]
  inversion = [["{answer}\nWhat was the question?", "{question}"]]
  assert out["PATTERNS"] == {
      "rte": [["{premise}\n\nQuestion with options: can we conclude \"{hypothesis}\"?\n\n{options_}",
               "{answer}"],
              ["{premise}\n{options_}\nQ: {hypothesis}", "{answer}"],
              ["Generate a hypothesis.", "{hypothesis}"]],
      "predict_next_turn_dialog": dialog,
      "cot_stream_general_input_inversion": inversion,
      "wiki_dialog": dialog,
      "cot_input_inversion_gsm8k": inversion,
  }
  # Deep copy, then the branched module's keys overwrite (rte in place, record appended), then
  # the four removals in order; "\n{options_str}" is not among them, so it survives.
  dialog_no_opt = [["{dialog_}\nWhat comes next?\n{options_str}", "{answer}"],
                   ["Continue: {dialog_}", "{answer}"]]
  assert out["PATTERNS_NO_OPTIONS"] == {
      "rte": [["{premise}\n\nCan we conclude \"{hypothesis}\"?", "{answer}"],
              ["{premise}\nIs it true?", "{answer}"]],
      "predict_next_turn_dialog": dialog_no_opt,
      "cot_stream_general_input_inversion": inversion,
      "wiki_dialog": dialog_no_opt,
      "cot_input_inversion_gsm8k": inversion,
      "record": [["{passage}\n\n{query}\n\n", "{answer}"]],
  }
  fs_dialog = [_fs("{dialog_}\n{options_str}", "{answer}", example_separator="\n\n")]
  assert out["FEWSHOT_PATTERNS"] == {
      "rte": [_fs("{premise}\n{hypothesis} | {options_}", "{answer}", inputs_prefix="Q: ",
                  targets_prefix="A: ", in_template_mix=False),
              _fs("{premise} ({options_})", "{answer}", x_y_delimiter="\n",
                  input_pattern="{{Definition}}\n\n{{inputs}}{final_suffix}")],
      "predict_next_turn_dialog": fs_dialog,
      "wiki_dialog": fs_dialog,
  }
  # All nine fields, in declaration order, whatever order the call used.
  assert all(list(p) == list(_fs("", "")) for v in out["FEWSHOT_PATTERNS"].values() for p in v)
  fs_dialog_no_opt = [_fs("{dialog_}", "{answer}", example_separator="\n\n")]
  assert out["FEWSHOT_PATTERNS_NO_OPTIONS"] == {
      "rte": [_fs("{premise}\n{hypothesis}", "{answer}", inputs_prefix="Q: ", targets_prefix="A: ",
                  in_template_mix=False),
              _fs("{premise}", "{answer}", x_y_delimiter="\n",
                  input_pattern="{{Definition}}\n\n{{inputs}}{final_suffix}")],
      "predict_next_turn_dialog": fs_dialog_no_opt,
      "wiki_dialog": fs_dialog_no_opt,
  }
  assert out["INLINE_FS_PATTERNS"] == {"natinst_v2": [[
      "{Definition}\n\nExample: {ex_input}\nOutput: {ex_output}\n{ex_explanation}\n\nNow: {input}",
      "{output}"]]}
  assert out["OPT_START_STRING_CANDIDATES"] == ["", "OPTIONS:"]
  assert out["ROMAN_NUMS"] == ["I", "II", "III"]
  assert out["OPT_ITEM_NAME_CANDIDATES"] == [
      ["\n - ", "\n - ", "\n - "], [" (i) ", " (ii) ", " (iii) "], ["\nI. ", "\nII. ", "\nIII. "],
      ["\n[a]. ", "\n[b]. ", "\n[c]. "], [" 1) ", " 2) ", " 3) "]]
  assert out["OPT_ITEM_END_STR_CANDIDATES"] == [["", "", ""], [";", ";", ";"]]
  assert out["DIALOG_START_STRING_CANDIDATES"] == ["", "CONVERSATION:Conversation:", "Convo:"]
  assert out["DIALOG_ITEM_NAME_CANDIDATES"] == [
      ["\n - "] * 4, ["\nA. ", "\nB. ", "\nA. ", "\nB. "],
      ["\nSpeaker 1) ", "\nSpeaker 2) ", "\nSpeaker 1) ", "\nSpeaker 2) "]]
  assert out["DIALOG_ITEM_END_STR_CANDIDATES"] == [[".", ".", ".", "."]]
  assert out["FLAN_TEMPLATES_BRANCHED_PATTERNS"] == {
      "rte": [["{premise}\n\nCan we conclude \"{hypothesis}\"?\n\n{options_}", "{answer}"],
              ["{premise}\n{options_}\nIs it true?", "{answer}"]],
      "record": [["{passage}\n\n{query}\n\n{options_str}\n\n", "{answer}"]],
  }
  assert out["FEWSHOT_PATTERN_FIELDS"] == {**_fs(None, None)}
  assert out["ALIASES"] == {
      "PATTERNS": {"wiki_dialog": "predict_next_turn_dialog",
                   "cot_input_inversion_gsm8k": "cot_stream_general_input_inversion"},
      "FEWSHOT_PATTERNS": {"wiki_dialog": "predict_next_turn_dialog"},
  }
  assert list(out) == [
      "PATTERNS", "PATTERNS_NO_OPTIONS", "FEWSHOT_PATTERNS", "FEWSHOT_PATTERNS_NO_OPTIONS",
      "INLINE_FS_PATTERNS", "OPT_START_STRING_CANDIDATES", "ROMAN_NUMS", "OPT_ITEM_NAME_CANDIDATES",
      "OPT_ITEM_END_STR_CANDIDATES", "DIALOG_START_STRING_CANDIDATES",
      "DIALOG_ITEM_NAME_CANDIDATES", "DIALOG_ITEM_END_STR_CANDIDATES",
      "FLAN_TEMPLATES_BRANCHED_PATTERNS", "FEWSHOT_PATTERN_FIELDS", "ALIASES"]


def test_mini_constants_modules():
  assert _loads(upstream_ast.derive_constants(_src("flan/v2/constants.py"))) == {
      "FEW_SHOT_MAX_LEN": 1920,
      "SEQUENCE_LEN": {"inputs": 2048, "targets": 512},
      "DEFAULT_OUTPUT_FEATURES": {
          "inputs": {"vocabulary": upstream_ast.T5_VOCABULARY_DESCRIPTION, "add_eos": True,
                     "required": False},
          "targets": {"vocabulary": upstream_ast.T5_VOCABULARY_DESCRIPTION, "add_eos": True}},
      "TRAIN_TASK_SUFFIXES": [""],
  }
  assert _loads(upstream_ast.derive_num_cases(_src("flan/v2/constants.py"))) == {
      "T_NAME_TO_NUM_CASES": {"rte": {"zero_shot": 2290, "x_shot": 2290, "five_shot": 2288},
                              "wsc": {"zero_shot": 500, "x_shot": 500, "five_shot": 500}}}
  t0 = _loads(upstream_ast.derive_t0_tasks(_src("flan/v2/constants_t0.py")))
  assert list(t0) == ["T0_TASK_PREFIX", "T0_TRAIN_TASK_SPLITS", "T0_TRAIN_TASK_METADATA",
                      "T0_TRAIN_TASKS_ABBREV"]
  assert t0["T0_TRAIN_TASKS_ABBREV"] == ["yelp_review_full_on_a_scale", "ag_news_classify"]
  assert t0["T0_TRAIN_TASK_METADATA"]["t0_task_adaptation:ag_news_classify"]["seq_len"] == {
      "max": 2, "mean": 2}
  niv2 = upstream_ast.derive_niv2_tasks(_src("flan/v2/constants_niv2.py"))
  assert "“the passage”".encode() in niv2  # \u escapes in the source come out as raw UTF-8
  assert _loads(niv2)["NATINST_META_DATA"]["task001_quoref_question_generation"][
      "positive_examples"]["input"] == "Passage: Oliver meets the \"Artful Dodger\"."
  mgsm = _loads(upstream_ast.derive_all_literals(_src("mgsm/exemplars.py")))
  assert list(mgsm) == ["EXEMPLAR_NUMBER_ANSWERS", "EXEMPLAR_EQUATION_SOLUTIONS", "MGSM_EXEMPLARS"]
  assert mgsm["MGSM_EXEMPLARS"]["ja"]["1"]["a"] == "答え：11"


def test_mmlu_conversion_and_its_bad_input():
  out = upstream_ast.convert_mmlu_csv(_src("mmlu/anatomy_dev.csv"))
  assert out == ('What is 2+2?,3,4,5,6,B\n'
                 '"Pick one, please",None, spaced ,"say ""hi""","two\r\nlines",D\n').encode()
  with pytest.raises(UpstreamShapeError, match=r"bad_answer_dev.csv:2: answer must be 0-3"):
    upstream_ast.convert_mmlu_csv(_src("mmlu/bad_answer_dev.csv"))
  with pytest.raises(UpstreamShapeError, match=r"bad_header_dev.csv:1: expected header"):
    upstream_ast.convert_mmlu_csv(_src("mmlu/bad_header_dev.csv"))


@pytest.mark.parametrize("name, line, message", [
    ("comprehension_filter.py", 4, "comprehension filters are not supported"),
    ("unknown_call.py", 5, "unsupported call: os.getcwd()"),
    ("loop_shape.py", 8, "expected a chain of .replace"),
    ("while_loop.py", 3, "unsupported statement (While)"),
])
def test_unexpected_shapes_are_refused_with_file_and_line(name, line, message):
  branched = ("flan_templates_branched.py", b"PATTERNS = {}\n")
  with pytest.raises(UpstreamShapeError) as e:
    upstream_ast.derive_templates(_src(f"bad/{name}"), branched)
  assert str(e.value).startswith(f"bad/{name}:{line}: ")
  assert message in str(e.value)


def test_unknown_derivation_and_arity():
  with pytest.raises(UpstreamShapeError, match="unknown derivation"):
    upstream_ast.derive("nope", [])
  with pytest.raises(UpstreamShapeError, match="takes 2 inputs"):
    upstream_ast.derive("flan_templates", [_src("flan/v2/templates.py")])


@pytest.fixture(scope="module")
def real_manifest(flan_data_dir):
  return {f["path"]: f for f in json.loads((flan_data_dir / "MANIFEST.json").read_text())["files"]}


def test_real_templates_json_invariants(flan_data_dir):
  real = json.loads((flan_data_dir / "flan" / "templates.json").read_text())
  count = lambda table: sum(len(v) for v in table.values())  # noqa: E731
  assert (len(real["PATTERNS"]), count(real["PATTERNS"])) == (120, 1290)
  assert (len(real["PATTERNS_NO_OPTIONS"]), count(real["PATTERNS_NO_OPTIONS"])) == (120, 1290)
  assert (len(real["FEWSHOT_PATTERNS"]), count(real["FEWSHOT_PATTERNS"])) == (119, 1190)
  assert (len(real["FLAN_TEMPLATES_BRANCHED_PATTERNS"]),
          count(real["FLAN_TEMPLATES_BRANCHED_PATTERNS"])) == (61, 610)
  assert len(real["ALIASES"]["PATTERNS"]) == 23
  for table, aliases in real["ALIASES"].items():
    for alias, target in aliases.items():
      assert real[table][alias] == real[table][target]
  branched = real["FLAN_TEMPLATES_BRANCHED_PATTERNS"]
  for key, templates in real["PATTERNS_NO_OPTIONS"].items():
    source = branched[key] if key in branched else real["PATTERNS"][key]
    expected = []
    for inp, tgt in source:
      for r in NO_OPTIONS_REMOVALS:
        inp = inp.replace(r, "")
      expected.append([inp, tgt])
    assert templates == expected, key
  for key, patterns in real["FEWSHOT_PATTERNS_NO_OPTIONS"].items():
    for p, original in zip(patterns, real["FEWSHOT_PATTERNS"][key], strict=True):
      inp = original["inputs"]
      for r in FEWSHOT_NO_OPTIONS_REMOVALS:
        inp = inp.replace(r, "")
      assert p == {**original, "inputs": inp}
  assert "CONVERSATION:Conversation:" in real["DIALOG_START_STRING_CANDIDATES"]
  assert [len(x) for x in real["OPT_ITEM_NAME_CANDIDATES"]] == [26] * 87
  assert [len(x) for x in real["DIALOG_ITEM_NAME_CANDIDATES"]] == [1000] * 50


def test_upstream_shaped_rebuild_of_real_templates_derives_the_manifest_bytes(
    flan_data_dir, real_manifest):
  real = json.loads((flan_data_dir / "flan" / "templates.json").read_text())
  templates_py, branched_py = upstream_shaped_templates(real)
  out = upstream_ast.derive("flan_templates", [("flan/v2/templates.py", templates_py.encode()),
                                               ("flan/v2/flan_templates_branched.py",
                                                branched_py.encode())])
  assert hashlib.sha256(out).hexdigest() == real_manifest["flan/templates.json"]["sha256"]


@pytest.mark.parametrize("kind, relpath, comprehension", [
    ("flan_t0_tasks", "flan/t0_tasks.json",
     "T0_TRAIN_TASKS_ABBREV = [\n    k.replace('t0_task_adaptation:', '') for k in "
     "T0_TRAIN_TASK_METADATA.keys()\n]\n"),
    ("flan_niv2_tasks", "flan/niv2_tasks.json", ""),
    ("flan_num_cases", "flan/num_cases.json", ""),
    ("literal_module", "eval/mgsm/exemplars.json", ""),
])
def test_literal_modules_rebuilt_from_real_files_derive_the_manifest_bytes(
    flan_data_dir, real_manifest, kind, relpath, comprehension):
  real = json.loads((flan_data_dir / relpath).read_text(encoding="utf-8"))
  derived_names = {"T0_TRAIN_TASKS_ABBREV"} if comprehension else set()
  source = '"""Upstream-shaped module."""\n' + "".join(
      f"{k} = {v!r}\n" for k, v in real.items() if k not in derived_names) + comprehension
  out = upstream_ast.derive(kind, [("module.py", source.encode())])
  assert hashlib.sha256(out).hexdigest() == real_manifest[relpath]["sha256"]


def test_real_mmlu_files_round_trip_through_the_conversion(flan_data_dir, real_manifest):
  files = sorted((flan_data_dir / "eval" / "mmlu").glob("*/*.csv"))
  assert len(files) == 114
  for path in files:
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(upstream_ast.MMLU_HEADER)
    writer.writerows(r[:-1] + [str("ABCD".index(r[-1]))] for r in rows)
    out = upstream_ast.convert_mmlu_csv((path.name, buf.getvalue().encode()))
    relpath = path.relative_to(flan_data_dir).as_posix()
    assert hashlib.sha256(out).hexdigest() == real_manifest[relpath]["sha256"], relpath
