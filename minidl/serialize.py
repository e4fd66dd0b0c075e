"""Saving state without pickle: arrays in an .npz, everything else as JSON.

``save(path, state)`` takes a nested structure of dicts and lists whose
leaves are arrays or JSON values (numbers, strings, bools, None). Arrays go
into the .npz under their path ("model/conv1.weight", "optim/velocity/3");
the structure with arrays replaced by {"__array__": key} goes in as JSON,
stored in the same .npz as a uint8 array named "__state__.json". Loading
uses ``allow_pickle=False``: a file can hold numbers, never code.

Writes are atomic: a temporary file in the same directory, flushed and
fsynced, then renamed over the target. A crash mid-write leaves the old
file intact.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .backend import is_cupy_array, to_numpy

_STATE_KEY = "__state__.json"


def _split(obj, prefix, arrays):
    if isinstance(obj, np.ndarray) or is_cupy_array(obj):
        key = prefix or "array"
        arrays[key] = to_numpy(obj)
        if arrays[key].dtype.hasobject:
            raise TypeError(f"serialize.save: the array at '{key}' holds Python objects; "
                            "only numeric arrays can be stored (no pickle)")
        return {"__array__": key}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"serialize.save: dict keys must be strings, found {k!r} at '{prefix}'")
            out[k] = _split(v, f"{prefix}/{k}" if prefix else k, arrays)
        return out
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}/{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"serialize.save: cannot store {type(obj).__name__} at '{prefix}'; "
                    "expected arrays, dicts, lists, numbers, strings, bools or None")


def _join(obj, arrays):
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        return {k: _join(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, arrays) for v in obj]
    return obj


def save(path, state) -> Path:
    """Write `state` to `path` (.npz) atomically."""
    path = Path(path)
    arrays = {}
    tree = _split(state, "", arrays)
    if _STATE_KEY in arrays:
        raise ValueError(f"serialize.save: '{_STATE_KEY}' is a reserved name")
    arrays[_STATE_KEY] = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path):
    """Read a state written by `save` (arrays come back as NumPy arrays)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"serialize.load: no file at {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"serialize.load: {path} is not a readable minidl state file ({e}); "
                         "it may be truncated or from another program. Use an earlier "
                         "checkpoint or start afresh.") from e
    if _STATE_KEY not in arrays:
        raise ValueError(f"serialize.load: {path} has no '{_STATE_KEY}' entry: it was not "
                         "written by minidl.serialize.save")
    tree = json.loads(arrays.pop(_STATE_KEY).tobytes().decode())
    return _join(tree, arrays)


def save_module(path, module):
    """Save a Module's parameters (a state dict) atomically."""
    return save(path, {"kind": "module", "class": type(module).__name__,
                       "params": dict(module.state_dict())})


def load_module(path, module):
    state = load(path)
    module.load_state_dict(state["params"] if "params" in state else state)
    return module
