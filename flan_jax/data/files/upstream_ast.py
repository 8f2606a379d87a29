"""Derives the data dir's JSON/CSV files from upstream sources, without importing or executing them.

Upstream keeps some data in Python modules (FLAN's templates and constants, MGSM's exemplars). Each
module is parsed with `ast`; literals are read as literals, and the few values upstream builds with
code (template aliases, the deep-copy + `str.replace` loops that strip options, `FewShotPattern(...)`
instances, list comprehensions over `range`/`ROMAN_NUMS`/`dict.keys()`) are re-derived by a tiny
evaluator that accepts only those forms. Anything else is refused with an `UpstreamShapeError`
naming the file and line, so a changed upstream shape can never be silently misread.

Outputs follow the data dir's README: UTF-8 JSON, 2-space indent, keys in upstream order, newline at
the end; MMLU CSVs rewritten minimally quoted with LF line ends.
"""
from __future__ import annotations

import ast
import copy
import csv
import io
import json
from typing import Any, Callable

# Removals applied by upstream's no-options loops are read from the source; these are the
# descriptive stand-ins for values that are objects upstream (the T5 default vocabulary).
T5_VOCABULARY_DESCRIPTION = "T5 default vocabulary (vocab/cc_all.32000.sentencepiece.model)"
MMLU_HEADER = ["question", "choice0", "choice1", "choice2", "choice3", "answer"]


class UpstreamShapeError(ValueError):
  """An upstream file does not have the shape the derivation relies on."""


class _Unbound(UpstreamShapeError):
  """A name that has no top-level assignment (yet)."""


class _Pattern:
  """A `FewShotPattern` instance: its fields in declaration order (mutable, like the dataclass)."""

  def __init__(self, fields: dict[str, Any]):
    self.fields = fields


class _Module:
  """A parsed upstream module whose top-level names are evaluated on first use."""

  def __init__(self, filename: str, source: str):
    self.filename = filename
    self.source = source
    try:
      self.tree = ast.parse(source, filename=filename)
    except SyntaxError as e:
      raise UpstreamShapeError(f"{filename}:{e.lineno}: not valid Python: {e.msg}") from e
    self.assignments: dict[str, ast.Assign] = {}
    for stmt in self.tree.body:
      if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
          and isinstance(stmt.targets[0], ast.Name)):
        self.assignments[stmt.targets[0].id] = stmt
    self._values: dict[str, Any] = {}
    self._pending: set[str] = set()

  def fail(self, node: ast.AST, message: str) -> UpstreamShapeError:
    segment = ast.get_source_segment(self.source, node) or type(node).__name__
    segment = " ".join(segment.split())
    if len(segment) > 100:
      segment = segment[:97] + "..."
    line = getattr(node, "lineno", "?")
    return UpstreamShapeError(f"{self.filename}:{line}: {message}: {segment}")

  def get(self, name: str, calls: dict[str, Callable] | None = None) -> Any:
    if name not in self._values:
      if name not in self.assignments:
        raise _Unbound(f"{self.filename}: no top-level assignment to {name}")
      if name in self._pending:
        raise self.fail(self.assignments[name], f"{name} refers to itself")
      self._pending.add(name)
      evaluator = _Evaluator(self, lambda n: self.get(n, calls), calls or {})
      self._values[name] = evaluator.eval(self.assignments[name].value)
    return self._values[name]


def _dotted(node: ast.AST) -> str | None:
  if isinstance(node, ast.Name):
    return node.id
  if isinstance(node, ast.Attribute):
    base = _dotted(node.value)
    return f"{base}.{node.attr}" if base else None
  return None


class _Evaluator:
  """Evaluates the expression forms upstream uses for data, and refuses every other form."""

  def __init__(self, module: _Module, lookup: Callable[[str], Any], calls: dict[str, Callable],
               classes: dict[str, dict[str, Any]] | None = None):
    self.module = module
    self.lookup = lookup
    self.calls = calls
    self.classes = {} if classes is None else classes

  def eval(self, node: ast.AST, local: dict[str, Any] | None = None) -> Any:
    local = local or {}
    ev = lambda n: self.eval(n, local)  # noqa: E731
    if isinstance(node, ast.Constant):
      if isinstance(node.value, (str, int, float, bool)) or node.value is None:
        return node.value
      raise self.module.fail(node, "unsupported constant")
    if isinstance(node, ast.List):
      return [ev(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
      return tuple(ev(e) for e in node.elts)
    if isinstance(node, ast.Dict):
      if any(k is None for k in node.keys):
        raise self.module.fail(node, "dict unpacking (**) is not supported")
      return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Name):
      if node.id in local:
        return local[node.id]
      try:
        return self.lookup(node.id)
      except _Unbound as e:
        raise self.module.fail(node, f"{node.id} is not assigned before this point") from e
    if isinstance(node, ast.BinOp):
      left, right = ev(node.left), ev(node.right)
      if isinstance(node.op, ast.Add) and type(left) is type(right) and isinstance(left, (str, int)):
        return left + right
      if isinstance(node.op, ast.Mod) and type(left) is int and type(right) is int:
        return left % right
      raise self.module.fail(node, "only str + str, int + int and int % int are supported")
    if isinstance(node, ast.Compare):
      if len(node.ops) != 1 or not isinstance(node.ops[0], ast.Eq):
        raise self.module.fail(node, "only a single == comparison is supported")
      return ev(node.left) == ev(node.comparators[0])
    if isinstance(node, ast.IfExp):
      return ev(node.body) if ev(node.test) else ev(node.orelse)
    if isinstance(node, ast.ListComp):
      return self._list_comp(node, local)
    if isinstance(node, ast.Attribute):
      base = ev(node.value)
      if isinstance(base, _Module):
        return base.get(node.attr)
      raise self.module.fail(node, "attribute access is only supported on imported upstream modules")
    if isinstance(node, ast.Subscript):
      container, key = ev(node.value), ev(node.slice)
      if isinstance(container, dict) and key in container:
        return container[key]
      raise self.module.fail(node, "subscript of an unknown key")
    if isinstance(node, ast.Call):
      return self._call(node, local)
    raise self.module.fail(node, f"unsupported expression ({type(node).__name__})")

  def _list_comp(self, node: ast.ListComp, local: dict[str, Any]) -> list:
    if len(node.generators) != 1:
      raise self.module.fail(node, "only single-loop list comprehensions are supported")
    gen = node.generators[0]
    if gen.ifs or gen.is_async:
      raise self.module.fail(node, "comprehension filters are not supported")
    names = [gen.target] if isinstance(gen.target, ast.Name) else (
        list(gen.target.elts) if isinstance(gen.target, ast.Tuple) else [])
    if not names or not all(isinstance(n, ast.Name) for n in names):
      raise self.module.fail(node, "comprehension target must be a name or a tuple of names")
    iterable = self.eval(gen.iter, local)
    if not isinstance(iterable, (list, tuple, range)):
      raise self.module.fail(gen.iter, "comprehension must iterate over a list, tuple or range")
    out = []
    for item in iterable:
      scope = dict(local)
      if isinstance(gen.target, ast.Name):
        scope[gen.target.id] = item
      else:
        if not isinstance(item, (list, tuple)) or len(item) != len(names):
          raise self.module.fail(gen.target, "cannot unpack comprehension item")
        scope.update({n.id: v for n, v in zip(names, item)})
      out.append(self.eval(node.elt, scope))
    return out

  def _call(self, node: ast.Call, local: dict[str, Any]) -> Any:
    name = _dotted(node.func)
    method = node.func.attr if isinstance(node.func, ast.Attribute) else None
    known = (name in self.calls or name in self.classes or name in _BUILTINS
             or method in _METHODS)
    if not known or any(k.arg is None for k in node.keywords):
      raise self.module.fail(node, "unsupported call")
    args = [self.eval(a, local) for a in node.args]
    kwargs = {k.arg: self.eval(k.value, local) for k in node.keywords}
    if name in self.calls:
      return self.calls[name](self.module, node, args, kwargs)
    if name in self.classes:
      return _construct(self.module, node, self.classes[name], args, kwargs)
    if name == "copy.deepcopy" and len(args) == 1 and not kwargs:
      return copy.deepcopy(args[0])
    if name == "range" and 1 <= len(args) <= 2 and not kwargs and all(type(a) is int for a in args):
      return range(*args)
    if name == "ord" and len(args) == 1 and isinstance(args[0], str) and len(args[0]) == 1:
      return ord(args[0])
    if name in ("chr", "str") and len(args) == 1 and type(args[0]) is int and not kwargs:
      return chr(args[0]) if name == "chr" else str(args[0])
    if method in _METHODS and name not in _BUILTINS and not kwargs:
      receiver = self.eval(node.func.value, local)
      if isinstance(receiver, str) and method in ("lower", "upper") and not args:
        return getattr(receiver, method)()
      if (isinstance(receiver, str) and method == "replace" and len(args) == 2
          and all(isinstance(a, str) for a in args)):
        return receiver.replace(*args)
      if isinstance(receiver, dict) and method == "keys" and not args:
        return list(receiver.keys())
    raise self.module.fail(node, "unsupported arguments or receiver")


_BUILTINS = {"copy.deepcopy", "range", "ord", "chr", "str"}
_METHODS = {"lower", "upper", "replace", "keys"}


def _construct(module: _Module, node: ast.Call, fields: dict[str, Any], args: list,
               kwargs: dict[str, Any]) -> _Pattern:
  names = list(fields)
  if len(args) > len(names):
    raise module.fail(node, "too many positional arguments")
  given = dict(zip(names, args))
  for key, value in kwargs.items():
    if key not in fields or key in given:
      raise module.fail(node, f"unknown or repeated field {key!r}")
    given[key] = value
  out = {}
  for key in names:
    if key in given:
      out[key] = given[key]
    elif fields[key] is _REQUIRED:
      raise module.fail(node, f"required field {key!r} is missing")
    else:
      out[key] = fields[key]
  return _Pattern(out)


_REQUIRED = object()


def _dataclass_fields(module: _Module, node: ast.ClassDef) -> dict[str, Any]:
  if not any(_dotted(d) in ("dataclasses.dataclass", "dataclass") for d in node.decorator_list):
    raise module.fail(node, "only @dataclasses.dataclass classes are supported")
  fields: dict[str, Any] = {}
  for stmt in node.body:
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
      if stmt.value is None:
        fields[stmt.target.id] = _REQUIRED
      elif isinstance(stmt.value, ast.Constant):
        fields[stmt.target.id] = stmt.value.value
      else:
        raise module.fail(stmt, "dataclass defaults must be literals")
    elif isinstance(stmt, ast.FunctionDef):
      continue  # Properties and methods are behaviour, not data.
    elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
      continue  # Docstring.
    else:
      raise module.fail(stmt, "unsupported statement in dataclass body")
  return fields


def _replace_chain(module: _Module, node: ast.AST, base: str) -> list[str]:
  """The strings removed by `base.replace(a, "").replace(b, "")...`, in application order."""
  removals: list[str] = []
  while isinstance(node, ast.Call):
    f = node.func
    if not (isinstance(f, ast.Attribute) and f.attr == "replace" and len(node.args) == 2
            and not node.keywords and all(isinstance(a, ast.Constant) for a in node.args)
            and isinstance(node.args[0].value, str) and node.args[1].value == ""):
      raise module.fail(node, "expected a chain of .replace(STRING, \"\") calls")
    removals.append(node.args[0].value)
    node = f.value
  if not (isinstance(node, ast.Name) and node.id == base):
    raise module.fail(node, f"the replace chain must start from {base}")
  return removals[::-1]


def _is_name(node: ast.AST, name: str | None = None) -> bool:
  return isinstance(node, ast.Name) and (name is None or node.id == name)


def _strip_loop(module: _Module, node: ast.For) -> tuple[str, str | None, list[str]]:
  """Matches upstream's no-options loops; returns (dict name, field or None for pairs, removals).

  for K, V in D.items():
    for I, (A, B) in enumerate(V):  D[K][I] = (A.replace(..., "")..., B)
  or
    for I, P in enumerate(V):  T = P.f; T = T.replace(..., ""); ...; P.f = T; D[K][I] = P
  """
  bad = lambda n: module.fail(n, "unsupported loop shape")  # noqa: E731
  t = node.target
  if not (isinstance(t, ast.Tuple) and len(t.elts) == 2 and all(_is_name(e) for e in t.elts)
          and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Attribute)
          and node.iter.func.attr == "items" and _is_name(node.iter.func.value)
          and not node.iter.args and len(node.body) == 1 and not node.orelse):
    raise bad(node)
  dict_name, key, values = node.iter.func.value.id, t.elts[0].id, t.elts[1].id
  inner = node.body[0]
  if not (isinstance(inner, ast.For) and not inner.orelse and isinstance(inner.iter, ast.Call)
          and _is_name(inner.iter.func, "enumerate") and len(inner.iter.args) == 1
          and _is_name(inner.iter.args[0], values) and isinstance(inner.target, ast.Tuple)
          and len(inner.target.elts) == 2 and _is_name(inner.target.elts[0])):
    raise bad(inner)
  index, item = inner.target.elts[0].id, inner.target.elts[1]

  def is_slot(target: ast.AST) -> bool:  # D[K][I]
    return (isinstance(target, ast.Subscript) and _is_name(target.slice, index)
            and isinstance(target.value, ast.Subscript) and _is_name(target.value.value, dict_name)
            and _is_name(target.value.slice, key))

  body = inner.body
  if isinstance(item, ast.Tuple):
    if not (len(item.elts) == 2 and all(_is_name(e) for e in item.elts) and len(body) == 1
            and isinstance(body[0], ast.Assign) and len(body[0].targets) == 1
            and is_slot(body[0].targets[0]) and isinstance(body[0].value, ast.Tuple)
            and len(body[0].value.elts) == 2 and _is_name(body[0].value.elts[1], item.elts[1].id)):
      raise bad(inner)
    return dict_name, None, _replace_chain(module, body[0].value.elts[0], item.elts[0].id)
  if not (_is_name(item) and len(body) >= 3 and all(isinstance(s, ast.Assign) for s in body)
          and all(len(s.targets) == 1 for s in body)):
    raise bad(inner)
  first, *steps, store, put = body
  if not (_is_name(first.targets[0]) and isinstance(first.value, ast.Attribute)
          and _is_name(first.value.value, item.id)):
    raise bad(first)
  temp, field = first.targets[0].id, first.value.attr
  removals = []
  for step in steps:
    if not _is_name(step.targets[0], temp):
      raise bad(step)
    chain = _replace_chain(module, step.value, temp)
    if len(chain) != 1:
      raise bad(step)
    removals += chain
  if not (isinstance(store.targets[0], ast.Attribute) and _is_name(store.targets[0].value, item.id)
          and store.targets[0].attr == field and _is_name(store.value, temp)):
    raise bad(store)
  if not (is_slot(put.targets[0]) and _is_name(put.value, item.id)):
    raise bad(put)
  return dict_name, field, removals


def _strip(text: str, removals: list[str]) -> str:
  for r in removals:
    text = text.replace(r, "")
  return text


def _to_json(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_to_json(v) for v in value]
  if isinstance(value, _Pattern):
    return _to_json(value.fields)
  return value


def dump_json(obj: Any) -> bytes:
  """The data dir's JSON format: UTF-8, 2-space indent, insertion order, final newline."""
  return (json.dumps(_to_json(obj), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _decode(name: str, data: bytes) -> str:
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise UpstreamShapeError(f"{name}: not UTF-8 (byte {e.start})") from e


def derive_templates(templates_py: tuple[str, bytes], branched_py: tuple[str, bytes]) -> bytes:
  """flan/templates.json from FLAN's `templates.py` and `flan_templates_branched.py`."""
  branched = _Module(branched_py[0], _decode(*branched_py))
  branched_patterns = copy.deepcopy(branched.get("PATTERNS"))  # as written, before upstream strips it
  module = _Module(templates_py[0], _decode(*templates_py))
  env: dict[str, Any] = {}
  classes: dict[str, dict[str, Any]] = {}
  aliases: dict[str, dict[str, str]] = {}
  branched_module_name = branched_py[0].rsplit("/", 1)[-1].removesuffix(".py")

  def lookup(name: str) -> Any:
    if name not in env:
      raise _Unbound(f"{module.filename}: {name} is used before it is assigned")
    return env[name]

  evaluator = _Evaluator(module, lookup, {}, classes)
  for stmt in module.tree.body:
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
      continue  # Docstring.
    if isinstance(stmt, ast.Import):
      continue  # copy / dataclasses: the forms that use them are matched explicitly.
    if isinstance(stmt, ast.ImportFrom):
      for alias in stmt.names:
        if alias.name == branched_module_name:
          env[alias.asname or alias.name] = branched
      continue
    if isinstance(stmt, ast.ClassDef):
      classes[stmt.name] = _dataclass_fields(module, stmt)
      continue
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
      target = stmt.targets[0]
      if isinstance(target, ast.Name):
        env[target.id] = evaluator.eval(stmt.value)
        continue
      value = stmt.value
      if (isinstance(target, ast.Subscript) and _is_name(target.value)
          and isinstance(target.slice, ast.Constant) and isinstance(value, ast.Subscript)
          and _is_name(value.value, target.value.id) and isinstance(value.slice, ast.Constant)):
        table = lookup(target.value.id)
        if value.slice.value not in table:
          raise module.fail(stmt, "alias of an unknown key")
        table[target.slice.value] = table[value.slice.value]  # shared, as upstream
        aliases.setdefault(target.value.id, {})[target.slice.value] = value.slice.value
        continue
      raise module.fail(stmt, "unsupported assignment")
    if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Attribute) and stmt.value.func.attr == "update"
        and _is_name(stmt.value.func.value) and len(stmt.value.args) == 1
        and not stmt.value.keywords):
      target_dict, other = lookup(stmt.value.func.value.id), evaluator.eval(stmt.value.args[0])
      if not isinstance(target_dict, dict) or not isinstance(other, dict):
        raise module.fail(stmt, ".update() needs two dicts")
      target_dict.update(other)  # shares the other module's lists, as upstream does
      continue
    if isinstance(stmt, ast.For):
      dict_name, field, removals = _strip_loop(module, stmt)
      table = lookup(dict_name)
      for k, templates in table.items():
        for i, item in enumerate(templates):
          if field is None:
            if not (isinstance(item, tuple) and len(item) == 2):
              raise module.fail(stmt, f"{dict_name}[{k!r}][{i}] is not an (input, target) pair")
            table[k][i] = (_strip(item[0], removals), item[1])
          else:
            if not isinstance(item, _Pattern) or field not in item.fields:
              raise module.fail(stmt, f"{dict_name}[{k!r}][{i}] has no field {field!r}")
            item.fields[field] = _strip(item.fields[field], removals)
            table[k][i] = item
      continue
    raise module.fail(stmt, f"unsupported statement ({type(stmt).__name__})")

  if len(classes) != 1:
    raise UpstreamShapeError(f"{module.filename}: expected exactly one pattern dataclass, "
                             f"found {sorted(classes)}")
  out = {k: v for k, v in env.items() if not isinstance(v, _Module)}
  out["FLAN_TEMPLATES_BRANCHED_PATTERNS"] = branched_patterns
  fields = next(iter(classes.values()))
  out["FEWSHOT_PATTERN_FIELDS"] = {k: None if v is _REQUIRED else v for k, v in fields.items()}
  out["ALIASES"] = aliases
  return dump_json(out)


def _seqio_feature(module: _Module, node: ast.Call, args: list, kwargs: dict) -> dict:
  if args or "vocabulary" not in kwargs or set(kwargs) - {"vocabulary", "add_eos", "required"}:
    raise module.fail(node, "expected seqio.Feature(vocabulary=..., add_eos=..., required=...)")
  return kwargs


def _t5_vocabulary(module: _Module, node: ast.Call, args: list, kwargs: dict) -> str:
  if args or kwargs:
    raise module.fail(node, "expected t5.data.get_default_vocabulary() without arguments")
  return T5_VOCABULARY_DESCRIPTION


_CONSTANT_CALLS = {"seqio.Feature": _seqio_feature,
                   "t5.data.get_default_vocabulary": _t5_vocabulary}


def _named(source: tuple[str, bytes], names: list[str],
           calls: dict[str, Callable] | None = None) -> bytes:
  module = _Module(source[0], _decode(*source))
  return dump_json({name: module.get(name, calls) for name in names})


def derive_constants(constants_py: tuple[str, bytes]) -> bytes:
  """flan/constants.json: FEW_SHOT_MAX_LEN, SEQUENCE_LEN and the two re-derived constants."""
  return _named(constants_py, ["FEW_SHOT_MAX_LEN", "SEQUENCE_LEN", "DEFAULT_OUTPUT_FEATURES",
                               "TRAIN_TASK_SUFFIXES"], _CONSTANT_CALLS)


def derive_num_cases(constants_py: tuple[str, bytes]) -> bytes:
  return _named(constants_py, ["T_NAME_TO_NUM_CASES"])


def derive_t0_tasks(constants_t0_py: tuple[str, bytes]) -> bytes:
  return _named(constants_t0_py, ["T0_TASK_PREFIX", "T0_TRAIN_TASK_SPLITS",
                                  "T0_TRAIN_TASK_METADATA", "T0_TRAIN_TASKS_ABBREV"])


def derive_niv2_tasks(constants_niv2_py: tuple[str, bytes]) -> bytes:
  return _named(constants_niv2_py, ["NATINST_META_DATA"])


def derive_all_literals(module_py: tuple[str, bytes]) -> bytes:
  """Every top-level name of a pure-data module (MGSM's exemplars.py), in source order."""
  module = _Module(module_py[0], _decode(*module_py))
  for stmt in module.tree.body:
    docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
    if not (docstring or isinstance(stmt, (ast.Import, ast.ImportFrom)) or (
        isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and _is_name(stmt.targets[0]))):
      raise module.fail(stmt, "a pure-data module may only assign names")
  return dump_json({name: module.get(name) for name in module.assignments})


def convert_mmlu_csv(source: tuple[str, bytes]) -> bytes:
  """A re-exported MMLU CSV (header, answers 0-3) -> the canonical hendrycks layout (A-D)."""
  name, data = source
  reader = csv.reader(io.StringIO(_decode(name, data), newline=""))
  out = io.StringIO(newline="")
  writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
  header = next(reader, None)
  if header != MMLU_HEADER:
    raise UpstreamShapeError(f"{name}:1: expected header {','.join(MMLU_HEADER)}, got {header}")
  for row in reader:
    line = reader.line_num
    if len(row) != len(MMLU_HEADER):
      raise UpstreamShapeError(f"{name}:{line}: expected {len(MMLU_HEADER)} columns, got {len(row)}")
    if row[-1] not in ("0", "1", "2", "3"):
      raise UpstreamShapeError(f"{name}:{line}: answer must be 0-3, got {row[-1]!r}")
    writer.writerow(row[:-1] + ["ABCD"[int(row[-1])]])
  return out.getvalue().encode("utf-8")


# kind -> (number of upstream inputs, function of those inputs). Used by the manifest's `derive`.
DERIVATIONS: dict[str, tuple[int, Callable[..., bytes]]] = {
    "flan_templates": (2, derive_templates),
    "flan_constants": (1, derive_constants),
    "flan_num_cases": (1, derive_num_cases),
    "flan_t0_tasks": (1, derive_t0_tasks),
    "flan_niv2_tasks": (1, derive_niv2_tasks),
    "literal_module": (1, derive_all_literals),
    "mmlu_csv": (1, convert_mmlu_csv),
}


def derive(kind: str, inputs: list[tuple[str, bytes]]) -> bytes:
  """Runs derivation `kind` on its upstream inputs, each given as (display name, bytes)."""
  if kind not in DERIVATIONS:
    raise UpstreamShapeError(f"unknown derivation {kind!r}; known: {', '.join(DERIVATIONS)}")
  arity, fn = DERIVATIONS[kind]
  if len(inputs) != arity:
    raise UpstreamShapeError(f"derivation {kind!r} takes {arity} inputs, got {len(inputs)}")
  return fn(*inputs)
