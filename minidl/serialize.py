"""Saving state without pickle: arrays in an .npz, everything else as JSON.

``save(path, state)`` takes a nested structure of dicts and lists whose
leaves are arrays or JSON values (numbers, strings, bools, None). Arrays go
into the .npz under their path ("model/conv1.weight", "optim/velocity/3");
the structure with arrays replaced by {"__array__": key} goes in as JSON,
stored in the same .npz as a uint8 array named "__state__.json". Loading
uses ``allow_pickle=False``: a file can hold numbers, never code.

Writes are atomic: a temporary file in the same directory, flushed and
fsynced, then renamed over the target. A crash mid-write leaves the old
file intact; the temporary file a killed save leaves behind is removed by
the next save or load of the same target (once no process holds it).

``check(state, schema, path)`` is the one place a loaded state is compared
with what its reader expects (keys and types), so that an edited or foreign
file gives an error naming the entry, never a KeyError deep in the reader.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
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


def split_arrays(state):
    """(skeleton, arrays): the JSON-ready structure of `state` with each array replaced
    by a reference, and {reference: NumPy array}. What `save` writes; `join_arrays`
    puts them back together (also used to send a state between processes)."""
    arrays = {}
    return _split(state, "", arrays), arrays


def join_arrays(skeleton, arrays):
    """The state `split_arrays` took apart."""
    return _join(skeleton, arrays)


def save(path, state) -> Path:
    """Write `state` to `path` (.npz) atomically."""
    path = Path(path)
    tree, arrays = split_arrays(state)
    if _STATE_KEY in arrays:
        raise ValueError(f"serialize.save: '{_STATE_KEY}' is a reserved name")
    arrays[_STATE_KEY] = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _lock(f)                    # held while writing: a stale file is one nobody holds
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


try:
    import fcntl
except ImportError:  # Windows: no advisory locks; an old enough temporary counts as stale
    fcntl = None

STALE_SECONDS = 3600.0   # without fcntl: a temporary untouched this long is a killed save's


def _lock(f):
    if fcntl is not None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_stale_temporaries(path) -> list:
    """Delete the `.NAME.*.tmp` files that killed saves of `path` left behind.

    A save holds an exclusive lock on its temporary file while writing, so a
    temporary whose lock can be taken belongs to no live save (without fcntl:
    one not modified for STALE_SECONDS). Returns the removed paths.
    """
    path = Path(path)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{path.name}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        try:
            if fcntl is None:
                if time.time() - tmp.stat().st_mtime < STALE_SECONDS:
                    continue
                tmp.unlink()
            else:
                with open(tmp, "rb") as f:
                    try:
                        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue           # a save in progress
                    tmp.unlink()
            removed.append(tmp)
        except OSError:
            continue
    return removed


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
    if path.is_dir():
        raise IsADirectoryError(f"serialize.load: {path} is a folder, expected a .npz state file")
    remove_stale_temporaries(path)
    unreadable = (f"serialize.load: {path} is not a readable minidl state file ({{}}); it may be "
                  "truncated, edited or from another program. Use an earlier checkpoint or "
                  "start afresh.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        # NumPy's own message for object arrays suggests loading with pickle: never do that.
        why = ("it holds pickled Python objects, which minidl never writes or loads"
               if "pickle" in str(e) else f"{type(e).__name__}: {e}")
        raise ValueError(unreadable.format(why)) from None
    if _STATE_KEY not in arrays:
        raise ValueError(f"serialize.load: {path} has no '{_STATE_KEY}' entry: it was not "
                         "written by minidl.serialize.save")
    try:
        tree = json.loads(arrays.pop(_STATE_KEY).tobytes().decode())
        return join_arrays(tree, arrays)
    except (ValueError, UnicodeError, KeyError, TypeError, RecursionError) as e:
        raise ValueError(unreadable.format(f"its {_STATE_KEY} is damaged: {type(e).__name__}: "
                                           f"{e}")) from None


def _type_name(t):
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def check(state, schema, path="state", where=""):
    """Raise ValueError unless `state` has the keys and types `schema` asks for.

    schema: {key: type, tuple of types, or a nested schema dict}; extra keys are
    allowed. ints pass for floats; bools never pass for numbers. The message
    names the file, the entry, what was expected and what was found.
    """
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected {where or 'the state'} to be a dict of entries, found "
                         f"{type(state).__name__}; the file was edited or comes from another "
                         "program. Use an earlier checkpoint or start afresh.")
    for key, want in schema.items():
        name = f"{where}/{key}" if where else key
        if key not in state:
            raise ValueError(f"{path}: the entry '{name}' is missing; the file was edited or comes "
                             "from another version. Use an earlier checkpoint or start afresh.")
        value = state[key]
        if isinstance(want, dict):
            check(value, want, path, name)
            continue
        types = want if isinstance(want, tuple) else (want,)
        if float in types:
            types = types + (int,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            raise ValueError(f"{path}: the entry '{name}' should be {_type_name(want)}, found "
                             f"{type(value).__name__} {value!r:.60}; the file was edited or comes "
                             "from another version. Use an earlier checkpoint or start afresh.")
    return state


def save_module(path, module):
    """Save a Module's parameters (a state dict) atomically."""
    return save(path, {"kind": "module", "class": type(module).__name__,
                       "params": dict(module.state_dict())})


def load_module(path, module):
    state = load(path)
    module.load_state_dict(state["params"] if "params" in state else state)
    return module
