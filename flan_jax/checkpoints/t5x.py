"""Import T5X checkpoints (params, Adafactor slots and step), reading only each host's slices.

Two on-disk formats exist, and the public Flan-T5 checkpoints use the first:
* legacy: `checkpoint_N/checkpoint` is msgpack holding `{'version', 'optimizer': {'target': ..., 'state': {'step',
  'param_states'}}}`. Arrays that had partition axes are stored as one TensorStore zarr directory per array next to
  it (the msgpack holds the TensorStore spec, with a path relative to `checkpoint_N/`); the others are inline numpy.
* Orbax: `checkpoint_N/state/` is an Orbax PyTreeCheckpointHandler item (`_METADATA` lists the tree; arrays live in
  zarr stores, inside an OCDBT database when `use_ocdbt`), keyed `state.…` and `target.…` like the legacy tree.

Both are exposed as a flat `{name: StoredArray}` with names `target/encoder/layers_0/attention/query/kernel`,
`state/param_states/<param path>/v_row`, `state/step`. Nothing is read until asked: given target shardings, each
array is built with `jax.make_array_from_callback`, and the callback reads only the index a local device needs.
Our parameter tree is the `target/` subtree with the prefix dropped (we keep T5X's names and kernel layouts).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import threading
from typing import Any, Callable, Mapping

import jax
import numpy as np

from flan_jax.checkpoints import TreeMismatchError, check_tree, flatten, unflatten

Index = tuple[slice, ...]

ADAFACTOR_SLOTS = ("m", "v", "v_row", "v_col")


@dataclasses.dataclass
class StoredArray:
  """One array of a checkpoint: its global shape and dtype, and a reader for any index of it."""
  name: str
  shape: tuple[int, ...]
  dtype: np.dtype
  reader: Callable[[Index], np.ndarray]

  def read(self, index: Index | None = None) -> np.ndarray:
    index = tuple(slice(None) for _ in self.shape) if index is None else tuple(index)
    return np.asarray(self.reader(index))


def _numpy_dtype(name: str) -> np.dtype:
  if name == "bfloat16":
    return np.dtype(jax.numpy.bfloat16)
  return np.dtype(name)


class _LazyTensorStore:
  """Opens a TensorStore array on first read (thread-safe: callbacks may run concurrently)."""

  def __init__(self, spec: dict[str, Any], where: str):
    self._spec, self._where = spec, where
    self._store = None
    self._lock = threading.Lock()

  def store(self):
    import tensorstore as ts
    with self._lock:
      if self._store is None:
        try:
          self._store = ts.open(self._spec, open=True, read=True).result()
        except Exception as e:  # tensorstore raises ValueError subclasses with its own text
          raise IOError(f"{self._where}: cannot open TensorStore array: {e}") from e
      return self._store

  def __call__(self, index: Index) -> np.ndarray:
    return self.store()[index].read().result()


def find_step_dir(path: str | os.PathLike) -> pathlib.Path:
  """`path` itself if it is one T5X checkpoint step, else its `checkpoint_N` subdir with the largest N."""
  path = pathlib.Path(path)
  if (path / "checkpoint").is_file() or (path / "state").is_dir():
    return path
  steps = []
  if path.is_dir():
    for child in path.iterdir():
      match = re.fullmatch(r"checkpoint_(\d+)", child.name)
      if match and ((child / "checkpoint").is_file() or (child / "state").is_dir()):
        steps.append((int(match.group(1)), child))
  if not steps:
    raise FileNotFoundError(
        f"{path}: not a T5X checkpoint (expected a `checkpoint` msgpack file or a `state/` Orbax item, "
        f"or `checkpoint_<step>/` dirs holding one)")
  return max(steps)[1]


def _relocate_kvstore(kvstore: dict[str, Any], step_dir: pathlib.Path, where: str) -> dict[str, Any]:
  """The legacy spec's kvstore made to point into `step_dir`: relative paths are relative to it."""
  kvstore = dict(kvstore)
  rel = kvstore.get("path", "")
  if kvstore.get("driver") != "file" or os.path.isabs(rel):
    # Written elsewhere (e.g. a gcs bucket): the arrays travel with the msgpack, so look beside it.
    rel = pathlib.PurePosixPath(rel.rstrip("/")).name
  local = step_dir / rel
  if not local.is_dir():
    raise FileNotFoundError(f"{where}: array directory {local} is missing")
  return {"driver": "file", "path": str(local) + "/"}


def _legacy_arrays(step_dir: pathlib.Path) -> dict[str, StoredArray]:
  from flax import serialization
  msgpack_path = step_dir / "checkpoint"
  try:
    raw = serialization.msgpack_restore(msgpack_path.read_bytes())
  except Exception as e:
    raise ValueError(f"{msgpack_path}: not a T5X msgpack checkpoint ({e})") from e
  if not isinstance(raw, dict) or "optimizer" not in raw:
    raise ValueError(f"{msgpack_path}: no 'optimizer' entry (keys {sorted(raw) if isinstance(raw, dict) else raw!r})")
  arrays: dict[str, StoredArray] = {}

  def visit(node: Any, name: str) -> None:
    if isinstance(node, dict) and "driver" in node:
      where = f"{msgpack_path}:{name}"
      spec = dict(node)
      if "kvstore" in spec:
        spec["kvstore"] = _relocate_kvstore(spec["kvstore"], step_dir, where)
      else:  # older spec form: {'driver': 'zarr', 'path': ..., 'kvstore' absent}
        spec["kvstore"] = _relocate_kvstore({"driver": "file", "path": spec.pop("path", "")}, step_dir, where)
      meta = spec.get("metadata", {})
      if "shape" not in meta or "dtype" not in spec:
        raise ValueError(f"{where}: TensorStore spec lacks shape or dtype: {node}")
      arrays[name] = StoredArray(name, tuple(meta["shape"]), _numpy_dtype(spec["dtype"]),
                                 _LazyTensorStore(spec, where))
    elif isinstance(node, dict):
      for key, child in node.items():
        visit(child, f"{name}/{key}" if name else key)
    else:
      value = np.asarray(node)
      arrays[name] = StoredArray(name, value.shape, value.dtype, lambda index, value=value: value[index])

  visit(raw["optimizer"], "")
  return arrays


def _orbax_arrays(step_dir: pathlib.Path) -> dict[str, StoredArray]:
  import tensorstore as ts
  item = step_dir / "state"
  meta_path = item / "_METADATA"
  try:
    meta = json.loads(meta_path.read_text())
    tree = meta["tree_metadata"]
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f"{meta_path}: not an Orbax PyTree metadata file ({e})") from e
  driver = "zarr3" if meta.get("use_zarr3") else "zarr"
  base = {"driver": "file", "path": str(item) + "/"}
  names, specs = [], []
  for entry in tree.values():
    keys = [str(k["key"]) for k in entry["key_metadata"]]
    value_type = entry["value_metadata"].get("value_type")
    where = f"{meta_path}:{'/'.join(keys)}"
    if value_type not in ("jax.Array", "np.ndarray", "scalar"):
      raise ValueError(f"{where}: unsupported Orbax value type {value_type!r}")
    param_name = ".".join(keys)
    kvstore = ({"driver": "ocdbt", "base": base, "path": param_name} if meta.get("use_ocdbt")
               else {"driver": "file", "path": str(item / param_name) + "/"})
    names.append("/".join(keys))
    specs.append(({"driver": driver, "kvstore": kvstore}, where))
  # Open all stores concurrently (metadata only); reads happen later, per requested index.
  context = ts.Context()
  futures = [ts.open(spec, open=True, read=True, context=context) for spec, _ in specs]
  arrays = {}
  for name, (spec, where), future in zip(names, specs, futures):
    try:
      store = future.result()
    except Exception as e:
      raise IOError(f"{where}: cannot open TensorStore array: {e}") from e
    arrays[name] = StoredArray(name, tuple(store.shape), np.dtype(store.dtype.numpy_dtype),
                               lambda index, store=store: store[index].read().result())
  return arrays


class T5XCheckpoint:
  """One step of a T5X checkpoint in either format; see the module docstring."""

  def __init__(self, path: str | os.PathLike):
    self.dir = find_step_dir(path)
    if (self.dir / "checkpoint").is_file():
      self.format = "legacy"
      self.arrays = _legacy_arrays(self.dir)
    else:
      self.format = "orbax"
      self.arrays = _orbax_arrays(self.dir)
    if "state/step" not in self.arrays:
      raise ValueError(f"{self.dir}: T5X checkpoint has no state/step")

  @property
  def step(self) -> int:
    return int(self.arrays["state/step"].read())

  def param_shapes(self) -> dict[str, tuple[int, ...]]:
    """{'encoder/layers_0/attention/query/kernel': shape, ...}: our parameter names."""
    return {name[len("target/"):]: a.shape for name, a in self.arrays.items() if name.startswith("target/")}

  def _build(self, stored: StoredArray, sharding: jax.sharding.Sharding | None, dtype: Any) -> jax.Array:
    dtype = np.dtype(dtype) if dtype is not None else stored.dtype
    if sharding is None:
      return jax.numpy.asarray(stored.read().astype(dtype))
    return jax.make_array_from_callback(stored.shape, sharding,
                                        lambda index: stored.read(index).astype(dtype))

  def params(self, shardings: Any = None, dtype: Any = np.float32,
             expected: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Our params tree (nested dicts, T5X names), each array placed with `shardings` (a matching tree, or None).

    `expected` (a params tree of arrays or ShapeDtypeStructs, e.g. from `jax.eval_shape` of the model's init)
    makes a name or shape mismatch an error listing every difference; `dtype` None keeps the stored dtypes.
    """
    shapes = self.param_shapes()
    if expected is not None:
      check_tree(flatten(expected), shapes, f"T5X checkpoint {self.dir}")
    flat_shardings = flatten(shardings) if isinstance(shardings, Mapping) else {}
    if isinstance(shardings, Mapping):
      # Names only: a sharding tree that does not cover the checkpoint's params is the caller's mistake.
      check_tree(dict.fromkeys(flat_shardings, ()), dict.fromkeys(shapes, ()),
                 f"T5X checkpoint {self.dir} (vs shardings)")
    single = None if isinstance(shardings, Mapping) else shardings
    return unflatten({name: self._build(self.arrays["target/" + name], flat_shardings.get(name, single), dtype)
                      for name in shapes})

  def optimizer_state(self, param_shardings: Any = None) -> dict[str, Any]:
    """T5X's Adafactor state: `{'step': int32 array, 'param_states': {'<param name>': {'m','v','v_row','v_col'}}}`.

    Param names are ours (`encoder/layers_0/attention/query/kernel`), the form
    `flan_jax.optimizers.Adafactor.state_from_t5x(params, param_states, step)` takes. Slots keep T5X's shapes
    (`v_row`/`v_col` for factored kernels, `v` otherwise, shape-[1] placeholders for the unused ones). A slot shaped
    like its parameter takes the parameter's sharding; the small ones are replicated on the same mesh.
    """
    flat_shardings = flatten(param_shardings) if isinstance(param_shardings, Mapping) else {}
    single = None if isinstance(param_shardings, Mapping) else param_shardings
    slots: dict[str, dict[str, jax.Array]] = {}
    prefix = "state/param_states/"
    for name, stored in self.arrays.items():
      if not name.startswith(prefix):
        continue
      param_name, slot = name[len(prefix):].rsplit("/", 1)
      if slot not in ADAFACTOR_SLOTS:
        raise ValueError(f"{self.dir}: unexpected optimizer slot {name} (Adafactor slots are {ADAFACTOR_SLOTS})")
      sharding = flat_shardings.get(param_name, single)
      param = self.arrays.get("target/" + param_name)
      if param is None:
        raise TreeMismatchError(f"{self.dir}: optimizer slot {name} has no parameter target/{param_name}")
      if sharding is not None and stored.shape != param.shape:
        mesh = getattr(sharding, "mesh", None)
        sharding = (jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()) if mesh is not None
                    else jax.sharding.SingleDeviceSharding(jax.devices()[0]))
      slots.setdefault(param_name, {})[slot] = self._build(stored, sharding, None)
    step = self.arrays["state/step"]
    step_sharding = None
    if single is not None or flat_shardings:
      any_sharding = single or next(iter(flat_shardings.values()))
      mesh = getattr(any_sharding, "mesh", None)
      if mesh is not None:
        step_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return {"step": self._build(step, step_sharding, None), "param_states": slots}


def load_params(path: str | os.PathLike, shardings: Any = None, expected: Mapping[str, Any] | None = None,
                dtype: Any = np.float32) -> dict[str, Any]:
  """Shorthand: our params tree from a T5X checkpoint (dir of one step, or of several: the latest)."""
  return T5XCheckpoint(path).params(shardings=shardings, dtype=dtype, expected=expected)
