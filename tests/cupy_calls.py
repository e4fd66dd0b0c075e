"""The CuPy API the project calls, read from its source, and real CuPy's side of it.

    python tests/cupy_calls.py           # each CuPy name the project uses, and where

`calls()` walks the syntax trees of the project's code (minidl/, alexnet/,
benchmarks/) and finds every use of CuPy, so that a new call is covered with no
list to keep. CuPy is, in the source:

- a name bound by `import cupy [as cp]` or `from cupy[.x] import y`;
- a name, `self.` attribute or dict entry assigned such a reference
  (`_cupy = cupy`, `self.cupy, self.nccl = cupy, nccl`,
  `self.comms[d] = nccl.NcclCommunicator(...)`), in any scope of the file;
- what a function returns in any branch, or a property gives, when that is
  CuPy (`return _cupy if cuda else np`: `array_module(x)`, `device.xp`,
  `_import_cupy()`), found by name across the tree: the array module `xp` is
  CuPy on a GPU;
- what a CuPy call returns: `cupy.cuda.Device(i).use()` is `Device.use`,
  `xp.zeros(n).sum()` a method of what `cupy.zeros` returns.

Array methods called on arrays of unknown origin (`g.reshape(...)`,
`p.grad.get()`) are found by name: a method call whose name is an attribute of
an array (NumPy's ndarray or the stand-in's), on anything but a module
(`json.dumps` is not one), is `cupy.ndarray.NAME`. That over-counts (a dict's
`get`, a PIL image's `resize`), so the test holds these names to a weaker rule
(see tests/test_cupy_api.py).

Each use keeps how it was called (how many positional arguments, which
keywords), so that the call can be held to the real signature too.

`inspect_cupy(paths)` is the other side. Run as `python tests/cupy_calls.py --inspect`
in a process whose `cupy` is the installed wheel (the test starts one without
tests/standin on the path) or the stand-in (one with it first), it reads paths
as JSON on stdin and answers, for each, whether that CuPy has it, the plain name
of what it is (`cupy.zeros(n).sum` is `cupy.ndarray.sum`: the wheel's
docstrings say what a function returns), and its parameters; and NCCL's unique
id and refusals as its `cupy.cuda.nccl` gives them. No GPU is needed.
"""
from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_DIRS = ("minidl", "alexnet", "benchmarks")
ARRAY = "cupy.ndarray"


def project_files(root: Path = ROOT) -> list:
    return sorted(p for d in PROJECT_DIRS for p in (root / d).rglob("*.py"))


@dataclass(frozen=True)
class Use:
    """One use of CuPy. `path`: "cupy.cuda.Device" (a name), "cupy.cuda.Device().use" (an
    attribute of what a call returns), "cupy.ndarray.sum" (an array method found by
    name); `how`: "call", "attribute", "with" or "decorator"; for a call, how many
    positional arguments, the keyword names, and whether *args or **kwargs were passed."""
    path: str
    how: str
    where: str
    positional: int = 0
    keywords: tuple = ()
    starred: bool = False
    by_name: bool = False


# ------------------------------------------------------------------------ the source side
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


class _Source:
    """The CuPy paths of expressions in one file: its bindings, and what the functions and
    properties of the whole tree return (`returns`, `properties`, shared by all files).

    A name is looked up as Python does: the enclosing functions' own names, then the
    module's (`global` names are the module's); `self.x` in the class whose methods
    assign it; `x[k]` (any k) as one entry `x[]` beside `x`.
    """

    def __init__(self, file: Path, returns: dict, properties: dict):
        self.file, self.tree = file, ast.parse(file.read_text(), str(file))
        self.env: dict = {}                    # (scope id or None, key) -> CuPy path
        self._made: list = []
        self.imported = _imported(self.tree)
        self.functions = {f.name: f for f in ast.walk(self.tree)
                          if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
        self.returns, self.properties = returns, properties
        self.parent = {id(c): n for n in ast.walk(self.tree) for c in ast.iter_child_nodes(n)}
        self.globals = {id(f): {name for g in ast.walk(f) if isinstance(g, ast.Global)
                                for name in g.names}
                        for f in ast.walk(self.tree) if isinstance(f, _FUNCTIONS)}

    def on_module(self, node) -> bool:
        """`node` is rooted at a module this file imports (`np.zeros`, `os.path.join`)."""
        root = _root(node)
        return isinstance(root, ast.Name) and root.id in self.imported

    def _enclosing(self, node, kinds):
        while id(node) in self.parent:
            node = self.parent[id(node)]
            if isinstance(node, kinds):
                yield node

    def _scopes(self, node, key: str) -> list:
        """The scopes to look `key` up in (or to bind it in: the first), innermost first."""
        name = key.split("[")[0]
        if name.startswith("self."):
            cls = next(self._enclosing(node, ast.ClassDef), None)
            return [None if cls is None else id(cls)]
        scopes = []
        for f in self._enclosing(node, _FUNCTIONS + (ast.ClassDef,)):
            if isinstance(f, ast.ClassDef):
                continue                       # a class body's names are not its methods'
            if name in self.globals.get(id(f), ()):
                break
            scopes.append(id(f))
        return scopes + [None]

    @staticmethod
    def key(node) -> str | None:
        """The name an assignment binds: `x`, `self.x`, `x[]` / `self.x[]` for an entry."""
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id == "self":
            return f"self.{node.attr}"
        if isinstance(node, ast.Subscript):
            inner = _Source.key(node.value)
            return None if inner is None else f"{inner}[]"
        return None

    def bound(self, node) -> str | None:
        """The CuPy path a name, `self.x` or entry refers to where `node` reads it."""
        key = self.key(node)
        if key is None:
            return None
        return next((self.env[(s, key)] for s in self._scopes(node, key)
                     if (s, key) in self.env), None)

    def path(self, node) -> str | None:
        found = self.bound(node)
        if found is not None or isinstance(node, ast.Name):
            return found
        if isinstance(node, ast.Attribute):
            base = self.path(node.value)
            if base is not None:
                return f"{base}.{node.attr}"
            return None if self.on_module(node.value) else self.properties.get(node.attr)
        if isinstance(node, ast.Call):
            base = self.path(node.func)
            if base is not None:
                return f"{base}()"
            f = node.func
            if isinstance(f, ast.Name):
                return self.returns.get(f.id)            # `array_module(x)`
            if isinstance(f, ast.Attribute) and not self.on_module(f.value):
                return self.returns.get(f.attr)          # `device.zeros(...)`, not `np.zeros`
            return None
        if isinstance(node, ast.IfExp):
            return self.path(node.body) or self.path(node.orelse)
        if isinstance(node, ast.BoolOp):
            return next((p for p in map(self.path, node.values) if p), None)
        return None

    def bind(self) -> bool:
        """Bind the imports and assignments of CuPy in this file (a name's first binding in
        its scope wins, so that the walk ends); True when one was new."""
        new = False

        def put(target, value):
            nonlocal new
            key = self.key(target)
            if key is None or value is None:
                return
            scope = self._scopes(target, key)[0]
            if (scope, key) not in self.env:
                self.env[(scope, key)], new = value, True

        def assign(target, value):
            if isinstance(target, (ast.Tuple, ast.List)) and \
                    isinstance(value, (ast.Tuple, ast.List)):
                for t, v in zip(target.elts, value.elts):
                    assign(t, v)
            else:
                put(target, self.path(value))

        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "cupy":
                        put(self._import_target(a.asname or "cupy", node),
                            a.name if a.asname else "cupy")
            elif isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split(".")[0] == "cupy" and node.level == 0:
                for a in node.names:
                    put(self._import_target(a.asname or a.name, node),
                        f"{node.module}.{a.name}")
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    assign(t, node.value)
            elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                assign(node.target, node.value)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        assign(item.optional_vars, item.context_expr)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in self.functions:
                # CuPy passed to a function of this file binds its parameter
                params = self.functions[node.func.id].args
                names = params.posonlyargs + params.args
                for arg, param in zip(node.args, names):
                    if not isinstance(arg, ast.Starred):
                        put(self._param(param), self.path(arg))
                known = {a.arg: a for a in names + params.kwonlyargs}
                for kw in node.keywords:
                    if kw.arg in known:
                        put(self._param(known[kw.arg]), self.path(kw.value))
        return new

    def _param(self, arg: ast.arg) -> ast.Name:
        """A Name standing for parameter `arg`, in its function's scope."""
        node = ast.copy_location(ast.Name(id=arg.arg, ctx=ast.Store()), arg)
        self.parent[id(node)] = arg
        self._made.append(node)
        return node

    def _import_target(self, name: str, statement) -> ast.Name:
        """A Name standing where an import statement binds `name`, in that statement's scope."""
        node = ast.copy_location(ast.Name(id=name, ctx=ast.Store()), statement)
        self.parent[id(node)] = statement
        self._made.append(node)              # kept alive: its id stays its own
        return node

    def find_returns(self) -> bool:
        """Record the functions and properties here whose return is CuPy; True if new."""
        new = False
        for node in ast.walk(self.tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            is_property = any(isinstance(d, ast.Name) and d.id == "property"
                              for d in node.decorator_list)
            table = self.properties if is_property else self.returns
            if node.name in table:
                continue
            for r in ast.walk(node):
                if isinstance(r, ast.Return) and r.value is not None:
                    path = self.path(r.value)
                    if path is not None:
                        table[node.name], new = path, True
                        break
        return new


def standin_array_attributes() -> set:
    """The public attributes the stand-in's ndarray defines (CuPy's, read from its source)."""
    names = set()
    source = (ROOT / "tests" / "standin" / "cupy" / "_ndarray.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == "ndarray":
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    names.add(item.name)
                elif isinstance(item, ast.Assign):
                    names |= {t.id for t in item.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.For) and isinstance(node.target, ast.Tuple) and \
                isinstance(node.iter, ast.List):
            # `for _name, _fn in [("sum", np.sum), ...]: setattr(ndarray, _name, ...)`
            loop_name = node.target.elts[0]
            sets_it = any(isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and
                          c.func.id == "setattr" and len(c.args) > 1 and
                          isinstance(c.args[1], ast.Name) and
                          isinstance(loop_name, ast.Name) and c.args[1].id == loop_name.id
                          for c in ast.walk(node))
            if sets_it:
                names |= {e.elts[0].value for e in node.iter.elts if isinstance(e, ast.Tuple)}
        elif isinstance(node, ast.Assign):
            # `ndarray.nonzero = _nonzero`
            names |= {t.attr for t in node.targets if isinstance(t, ast.Attribute) and
                      isinstance(t.value, ast.Name) and t.value.id == "ndarray"}
    return {n for n in names if not n.startswith("_")}


def _array_attributes() -> set:
    """The public attributes of an array: NumPy's ndarray's and the stand-in's (CuPy's own,
    such as `get`)."""
    import numpy as np
    return {n for n in dir(np.ndarray) if not n.startswith("_")} | standin_array_attributes()


def _imported(tree) -> set:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _root(node):
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


def calls(files=None) -> list:
    """Every use of CuPy in `files` (default: the project's code)."""
    files = project_files() if files is None else [Path(f) for f in files]
    returns: dict = {}
    properties: dict = {}
    sources = [_Source(f, returns, properties) for f in files]
    while True:            # bindings and returns feed each other: go on until nothing is new
        changed = [s.bind() for s in sources] + [s.find_returns() for s in sources]
        if not any(changed):
            break
    array_attributes = _array_attributes()
    return [use for s in sources for use in _uses(s, array_attributes)]


def _uses(source: _Source, array_attributes: set) -> list:
    try:
        name = source.file.relative_to(ROOT)
    except ValueError:
        name = source.file
    uses = []

    def add(path, how, node, call=None, by_name=False):
        where = f"{name}:{node.lineno}"
        if call is None:
            uses.append(Use(path, how, where, by_name=by_name))
            return
        starred = any(isinstance(a, ast.Starred) for a in call.args) or \
            any(k.arg is None for k in call.keywords)
        uses.append(Use(path, how, where, sum(not isinstance(a, ast.Starred) for a in call.args),
                        tuple(k.arg for k in call.keywords if k.arg is not None), starred,
                        by_name))

    for node in ast.walk(source.tree):
        parent = source.parent.get(id(node))
        decorator = isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
            and node in parent.decorator_list
        if isinstance(node, ast.Call):
            path = source.path(node.func)
            if path is not None and path != "cupy":
                add(path, "decorator" if decorator else "call", node, node)
            elif isinstance(node.func, ast.Attribute) and node.func.attr in array_attributes:
                if not source.on_module(node.func.value) and \
                        not isinstance(_root(node.func.value), ast.Constant):
                    add(f"{ARRAY}.{node.func.attr}", "call", node, node, by_name=True)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                path = source.path(item.context_expr)
                if path is not None:
                    add(f"{path}.__enter__", "with", item.context_expr)
                    add(f"{path}.__exit__", "with", item.context_expr)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            # a name read, not called (`xp.nan`, `cupy.ndarray`, `@cupy.fuse`): the whole
            # chain only (not `cupy.cuda` of `cupy.cuda.Device`), and an attribute of CuPy,
            # not a name that holds what CuPy returned (`self.stream`)
            if isinstance(parent, ast.Attribute) or \
                    (isinstance(parent, ast.Call) and parent.func is node):
                continue
            path = source.path(node)
            if path is not None and path != "cupy" and source.bound(node) is None and \
                    not path.endswith("()"):
                add(path, "decorator" if decorator else "attribute", node)
    return uses


# ------------------------------------------------------------------------ the real side
_SIGNATURE = re.compile(r"^\s*([\w.]+)\((.*)\)\s*(?:->\s*(\S+))?\s*$")


def _split(text: str) -> list:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur] if p.strip()]


def doc_signature(doc: str) -> list | None:
    """[(name, kind, has_default)] from a signature as Cython embeds it in a docstring's
    first line ("allReduce(self, intptr_t sendbuf, ...)", "exp(x, /, out=None, *, ...)");
    None when the first line is not one."""
    m = _SIGNATURE.match((doc or "").strip().split("\n", 1)[0])
    if not m:
        return None
    params, kind = [], "POSITIONAL_OR_KEYWORD"
    for part in _split(m.group(2).replace("\\*", "*")):
        if part == "/":
            params = [(n, "POSITIONAL_ONLY", d) for n, _, d in params]
        elif part == "*":
            kind = "KEYWORD_ONLY"
        elif part.startswith("**"):
            params.append((part[2:].split()[-1], "VAR_KEYWORD", False))
        elif part.startswith("*"):
            params.append((part[1:].split()[-1], "VAR_POSITIONAL", False))
            kind = "KEYWORD_ONLY"
        else:
            declared, equals, _ = part.partition("=")
            params.append((declared.split(":")[0].split()[-1], kind, bool(equals)))
    return params[1:] if params and params[0][0] == "self" else params


def parameters(obj) -> list | None:
    """[(name, kind, has_default)] of a callable (of a class: its constructor, less self);
    Python's signature, else the one Cython embeds in the docstring; None if neither."""
    import inspect
    try:
        params = [(p.name, p.kind.name, p.default is not inspect.Parameter.empty)
                  for p in inspect.signature(obj).parameters.values()]
        return params[1:] if params and params[0][0] == "self" else params   # read off a class
    except (TypeError, ValueError):
        pass
    for doc in (getattr(obj, "__doc__", None),
                getattr(getattr(obj, "__init__", None), "__doc__", None) if isinstance(obj, type)
                else None):
        params = doc_signature(doc)
        if params is not None:
            return params
    return None


def _documented_return(obj) -> str | None:
    """The type a function's docstring says it returns: "-> T" on its signature line, a
    Google "Returns:" or a NumPy "Returns / -------" section; None when it says none."""
    doc = getattr(obj, "__doc__", None) or ""
    m = _SIGNATURE.match(doc.strip().split("\n", 1)[0])
    found = [m.group(3)] if m and m.group(3) else []
    for pattern in (r"Returns:\s*\n\s*([\w.]+)", r"Returns\s*\n\s*-+\s*\n\s*(?:\w+\s*:\s*)?([\w.]+)"):
        r = re.search(pattern, doc)
        if r:
            found.append(r.group(1))
    for name in found:
        name = name.strip("`:")
        if name in ("ndarray", "_ndarray_base", "cupy._core.core._ndarray_base"):
            return ARRAY
        return name
    see = re.search(r"seealso::\s*\n?\s*:func:`(cupy\.[\w.]+)`", doc)   # an ndarray method
    if see:
        import cupy
        target = _follow(cupy, see.group(1))
        return None if target is None or target is obj else _documented_return(target)
    return None


def _documented_attribute(cls, name: str) -> bool:
    """An instance attribute the class documents ("Attributes:" of its docstring, or of a
    base's), as CuPy's Stream documents `ptr` that its __init__ sets."""
    for klass in getattr(cls, "__mro__", ()):
        doc = klass.__doc__ or ""
        section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
        if re.search(rf"^\s*~?(?:\w+\.)?{re.escape(name)}\s*\(", section, re.M):
            return True
    return False


def _assigned(cls, name: str) -> bool:
    """An instance attribute a Python class declares (`__slots__`) or its methods assign
    (`self.ptr = ...`), as the stand-in's classes do."""
    import inspect
    for klass in getattr(cls, "__mro__", ()):
        if name in getattr(klass, "__slots__", ()):
            return True
        try:
            if re.search(rf"self\.{re.escape(name)}\s*=", inspect.getsource(klass)):
                return True
        except (OSError, TypeError):         # compiled (real CuPy), or a builtin
            pass
    return False


_MISSING, _UNKNOWN = "missing", "unknown"


def resolve(root, path: str, get_type=None):
    """Follow `path` ("cupy.cuda.get_current_stream().ptr") from the module `root`.

    Returns (status, plain, obj, rest): status "ok", "missing" (a part is not there)
    or "unknown" (what follows a call or a property that documents no type); `plain`
    the path as classes name it ("cupy.cuda.Stream.ptr"), as far as it was followed;
    `rest` what was not followed. `get_type(obj)` gives the plain path of what a call
    of `obj` returns (default: the documented return, see `_documented_return`).
    """
    import importlib
    get_type = get_type or _documented_return
    parts = path.split(".")
    obj, plain, instance = root, parts[0], False
    for i, part in enumerate(parts[1:], 1):
        call = part.endswith("()")
        name = part[:-2] if call else part
        rest = ".".join(parts[i + 1:])
        if instance:
            attr = getattr(obj, name, _MISSING)
            if attr is _MISSING:
                if _documented_attribute(obj, name) or _assigned(obj, name):
                    return ("ok" if not rest and not call else _UNKNOWN), f"{plain}.{name}", \
                        None, rest
                return _MISSING, f"{plain}.{name}", None, rest
            if isinstance(attr, property) or type(attr).__name__ in (
                    "getset_descriptor", "member_descriptor"):
                status = "ok" if not rest and not call else _UNKNOWN
                return status, f"{plain}.{name}", None, rest
            obj, plain, instance = attr, f"{plain}.{name}", False
        else:
            attr = getattr(obj, name, _MISSING)
            if attr is _MISSING and isinstance(obj, type):
                if _documented_attribute(obj, name) or _assigned(obj, name):
                    return ("ok" if not rest and not call else _UNKNOWN), f"{plain}.{name}", \
                        None, rest
                return _MISSING, f"{plain}.{name}", None, rest
            if attr is _MISSING:
                try:                         # a submodule its package does not import
                    attr = importlib.import_module(f"{plain}.{name}")
                except ImportError:
                    return _MISSING, f"{plain}.{name}", None, rest
            obj, plain = attr, f"{plain}.{name}"
        if call:
            if isinstance(obj, type):
                instance = True
            elif type(obj).__name__ == "ufunc":
                obj, plain, instance = _follow(root, ARRAY), ARRAY, True
            else:
                returned = get_type(obj)
                target = None if returned is None else _follow(root, returned)
                if target is None:
                    return _UNKNOWN, plain + "()", None, rest
                obj, plain, instance = target, returned, isinstance(target, type)
    return "ok", plain, obj, ""


def _follow(root, plain: str):
    """The object at a dotted path without calls ("cupy.cuda.Stream", "int"), or None."""
    import builtins
    if "." not in plain:
        return getattr(builtins, plain, None)
    obj = root
    for name in plain.split(".")[1:]:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def inspect_cupy(paths: list) -> dict:
    """What the importable `cupy` (the wheel, or the stand-in) says of each path:
    {"status", "plain", "rest", "parameters"}; and the facts of `cupy.cuda.nccl` that
    the stand-in models (the form of the unique id, what NcclCommunicator refuses)."""
    import warnings
    warnings.simplefilter("ignore")          # CuPy warns that it found no CUDA driver
    import cupy
    answer = {"version": cupy.__version__, "standin": bool(getattr(cupy, "__standin__", False)),
              "file": cupy.__file__, "names": {}}
    for path in paths:
        status, plain, obj, rest = resolve(cupy, path)
        entry = {"status": status, "plain": plain, "rest": rest, "parameters": None,
                 "defined_here": False}
        if status == "ok" and callable(obj):
            entry["parameters"] = parameters(obj)
            entry["defined_here"] = _defined_by_standin(obj)
        answer["names"][path] = entry
    from cupy.cuda import nccl
    answer["nccl_available"] = bool(nccl.available)
    if nccl.available:
        uid = nccl.get_unique_id()           # no GPU needed
        answer["nccl_unique_id"] = [type(uid).__name__, len(uid)]
        answer["nccl_refusals"] = nccl_refusals(nccl, int(cupy.__version__.split(".")[0]))
    return answer


def _defined_by_standin(obj) -> bool:
    """A callable the stand-in writes itself (its signature models CuPy's), not one it
    forwards from NumPy with *args, **kwargs."""
    import cupy
    if not getattr(cupy, "__standin__", False):
        return False
    module = getattr(obj, "__module__", "") or ""
    params = parameters(obj) or []
    return module.split(".")[0] == "cupy" and any(
        kind not in ("VAR_POSITIONAL", "VAR_KEYWORD") for _, kind, _ in params)


def nccl_refusals(nccl, major: int) -> list:
    """What `NcclCommunicator(2, commId, 0)` raises for ids it refuses before calling NCCL
    (no GPU needed): the other release's form, wrong lengths and types, an int no char
    holds."""
    other_form = bytes(128) if major == 13 else (1,) * 128
    out = []
    for bad in (other_form, bytes(1), (200,) * 128, (1,) * 3, [0] * 128, bytearray(128)):
        try:
            nccl.NcclCommunicator(2, bad, 0)
            out.append("accepted")
        except Exception as e:  # noqa: BLE001 (its type is the answer)
            out.append(type(e).__name__)
    return out


if __name__ == "__main__":
    if sys.argv[1:] == ["--inspect"]:
        json.dump(inspect_cupy(json.load(sys.stdin)), sys.stdout)
    else:
        for use in calls():
            print(f"{use.path:50s} {use.how:10s} {use.where}")
