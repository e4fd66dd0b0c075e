"""The CuPy the project calls is the CuPy people install, and the stand-in models it.

A conformance test against the real CuPy wheel, which installs and imports on a
machine without a GPU (the `cupy-api` extra: cupy-cuda12x and the NCCL library
`cupy.cuda.nccl` loads, nvidia-nccl-cu12; CI installs it with the README's test
command). Without the wheel these tests fail, not skip: a conformance test that
never runs proves nothing.

- tests/cupy_calls.py reads every CuPy name the project uses from the source
  (module functions, `cupy.cuda` classes and their methods, `cupy.cuda.nccl`,
  `cupy.fuse`, what calls return, array methods by name); the first tests show
  it finds each form of use, so a new call is covered without a list to keep.
- Every name is in real CuPy, and every call fits its real signature (how many
  positional arguments, which keywords, the required ones given).
- Every name is in the stand-in (tests/standin), following the CuPy version of
  the wheel (MINIDL_STANDIN_CUPY); where the stand-in writes a callable itself,
  its parameters are the real ones: the same names at the same positions, the
  real required ones required, no keyword CuPy refuses.
- NCCL's unique id has the wheel's form in the stand-in (bytes in CuPy 14, a
  tuple of ints in CuPy 13), and NcclCommunicator refuses the same ids with the
  same errors.

Real CuPy and the stand-in are both called `cupy`, so each is inspected in a
child process (`python tests/cupy_calls.py --inspect`).

Not followed, in either: what is read from a property whose type CuPy's wheel
does not document (`a.device.id`, `a.flags.c_contiguous`, `a.dtype.kind`) and
what `cupy.fuse(f)` returns: the property, and `cupy.fuse`, are checked.
Array methods found by name (a call on something the source cannot tell is an
array) are held to the weaker rule that each one the stand-in's array has is
also real CuPy's: the same name on a dict or an image (`get`, `resize`) is no
array method.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cupy_calls

ROOT = Path(__file__).resolve().parent.parent
STANDIN_DIR = ROOT / "tests" / "standin"
INSTALL = ('pip install -e ".[test,mpi,cupy-api]" (the README\'s test command: the CuPy wheel '
           "cupy-cuda12x and the NCCL library nvidia-nccl-cu12; no GPU needed)")
TIMEOUT = 120


def inspect_in_child(paths, standin_major=None):
    """tests/cupy_calls.py --inspect in a child process: the installed wheel, or (with
    `standin_major`) the stand-in following that CuPy major version."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINIDL_STANDIN_CUPY")}
    if standin_major is not None:
        env.update(PYTHONPATH=str(STANDIN_DIR), MINIDL_STANDIN_CUPY=str(standin_major))
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "cupy_calls.py"), "--inspect"],
                         input=json.dumps(sorted(paths)), capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=TIMEOUT)
    return run


@pytest.fixture(scope="module")
def uses():
    return cupy_calls.calls()


@pytest.fixture(scope="module")
def real(uses):
    run = inspect_in_child({u.path for u in uses})
    assert run.returncode == 0, (f"real CuPy could not be inspected; install it: {INSTALL}\n"
                                 f"{run.stderr[-2000:]}")
    answer = json.loads(run.stdout)
    assert not answer["standin"], f"the child imported the stand-in: {answer['file']}"
    assert answer["nccl_available"], ("real CuPy loads no NCCL library (cupy.cuda.nccl): "
                                      f"{INSTALL}")
    return answer


@pytest.fixture(scope="module")
def standin(uses, real):
    """The stand-in's answer, following the wheel's major version, for the plain name of
    each use (for one that could not be followed, its own path)."""
    major = real["version"].split(".")[0]
    paths = {standin_key(path, e) for path, e in real["names"].items()}
    run = inspect_in_child(paths, standin_major=major)
    assert run.returncode == 0, (f"the stand-in could not follow CuPy {real['version']}:\n"
                                 f"{run.stderr[-2000:]}")
    answer = json.loads(run.stdout)
    assert answer["standin"], answer["file"]
    return answer


def standin_key(path, e):
    """What the stand-in is asked about a use: the plain name real CuPy followed it to
    (`cupy.zeros().sum`: `cupy.ndarray.sum`), else the use's own path."""
    return path if e["status"] == "missing" or e["plain"].endswith("()") else e["plain"]


# ------------------------------------------------------------------------- the extractor
PLANTED = '''
import json
import cupy as cp
import numpy as np
from cupy.cuda import nccl


def module_of(x):
    return cp if x is not None else np


def make(comm_cls, uid):
    return comm_cls.NcclCommunicator(2, uid, 0)


class Group:
    def __init__(self):
        self.lib = cp
        self.comms = {}
        self.comms[0] = make(nccl, nccl.get_unique_id())

    def run(self, x):
        xp = module_of(x)
        y = xp.zeros(3, dtype=np.float32).sum(axis=0, keepdims=True)
        with self.lib.cuda.Device(1):
            self.lib.cuda.get_current_stream().synchronize()
        self.comms[0].allReduce(1, 1, 3, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 0)
        return y.reshape(1), xp.nan, json.dumps({}), x.get()


@cp.fuse(kernel_name="axpy")
def axpy(a, x, y):
    return a * x + y


def first():
    path = cp.zeros(1)
    return path


def second(path):
    return path.mkdir()
'''


def test_the_extractor_finds_each_form_of_a_cupy_use(tmp_path):
    """Imports under other names, `self.` attributes and dict entries holding CuPy, a
    function that returns the array module, CuPy passed to a function, what calls return,
    a `with` block, a decorator, array methods by name; not a module's function
    (`json.dumps`), nor a name of another function's scope (`second`'s `path`)."""
    (tmp_path / "planted.py").write_text(textwrap.dedent(PLANTED))
    found = {(u.path, u.how, u.positional, u.keywords, u.by_name)
             for u in cupy_calls.calls([tmp_path / "planted.py"])}
    assert found == {
        ("cupy.cuda.nccl.NcclCommunicator", "call", 3, (), False),
        ("cupy.cuda.nccl.get_unique_id", "call", 0, (), False),
        ("cupy.zeros", "call", 1, ("dtype",), False),
        ("cupy.zeros().sum", "call", 0, ("axis", "keepdims"), False),
        ("cupy.cuda.Device", "call", 1, (), False),
        ("cupy.cuda.Device().__enter__", "with", 0, (), False),
        ("cupy.cuda.Device().__exit__", "with", 0, (), False),
        ("cupy.cuda.get_current_stream", "call", 0, (), False),
        ("cupy.cuda.get_current_stream().synchronize", "call", 0, (), False),
        ("cupy.cuda.nccl.NcclCommunicator().allReduce", "call", 6, (), False),
        ("cupy.cuda.nccl.NCCL_FLOAT32", "attribute", 0, (), False),
        ("cupy.cuda.nccl.NCCL_SUM", "attribute", 0, (), False),
        ("cupy.nan", "attribute", 0, (), False),
        ("cupy.zeros().sum().reshape", "call", 1, (), False),
        ("cupy.ndarray.get", "call", 0, (), True),
        ("cupy.fuse", "decorator", 0, ("kernel_name",), False),
        ("cupy.zeros", "call", 1, (), False)}


def test_the_extractor_reads_the_project(uses):
    """The project's own uses: the NCCL path, the device contexts, the fused kernels and
    the array module (`xp`) of the plain path are all in."""
    paths = {u.path for u in uses}
    for expected in ("cupy.cuda.nccl.get_unique_id", "cupy.cuda.nccl.NcclCommunicator",
                     "cupy.cuda.nccl.NcclCommunicator().allReduce", "cupy.fuse",
                     "cupy.cuda.Device().__enter__", "cupy.cuda.Event().record",
                     "cupy.cuda.get_current_stream().wait_event", "cupy.zeros",
                     "cupy.lib.stride_tricks.as_strided", "cupy.ndarray.get"):
        assert expected in paths, expected
    assert len(paths) > 80 and all(p.startswith("cupy.") for p in paths)
    files = {u.where.split(":")[0] for u in uses}
    assert {"minidl/backend.py", "minidl/functions/conv.py", "alexnet/distributed.py",
            "benchmarks/gpu_check.py"} <= files


# ------------------------------------------------------------------------- real CuPy
def _where(uses, path):
    return ", ".join(sorted({u.where for u in uses if u.path == path})[:3])


def test_every_cupy_name_the_project_uses_is_in_real_cupy(uses, real):
    standin_array = {u.path for u in uses if u.by_name}
    missing = []
    for path, e in real["names"].items():
        if e["status"] != "missing":
            continue
        if path in standin_array and not _standin_array_has(path.rsplit(".", 1)[1]):
            continue       # a method of something else by that name (see the module doc)
        missing.append(f"{path} (real: {e['plain']} is not there; used at {_where(uses, path)})")
    assert not missing, f"not in real CuPy {real['version']}:\n" + "\n".join(missing)


def _standin_array_has(name):
    return name in cupy_calls.standin_array_attributes()


def _params_text(params):
    return "(" + ", ".join(n for n, _, _ in params) + ")"


def call_problems(use, params, who):
    """What a call `use` does that a callable of parameters `params` refuses."""
    if params is None:
        return []
    named = [(n, k, d) for n, k, d in params if k not in ("VAR_POSITIONAL", "VAR_KEYWORD")]
    kinds = {k for _, k, _ in params}
    positional = [n for n, k, _ in named if k in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    keywords = {n for n, k, _ in named if k in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")}
    out = []
    if "VAR_POSITIONAL" not in kinds and use.positional > len(positional):
        out.append(f"{use.positional} positional arguments, {who} takes {len(positional)}")
    for kw in use.keywords:
        if kw not in keywords and "VAR_KEYWORD" not in kinds:
            out.append(f"keyword {kw!r}, which {who} does not take")
    if not use.starred:
        given = set(positional[:use.positional]) | set(use.keywords)
        for n, k, has_default in named:
            if not has_default and n not in given:
                out.append(f"no {n!r}, which {who} requires")
    return [f"{use.where}: {use.path}: {p}; {who}'s parameters: {_params_text(params)}"
            for p in out]


def test_every_call_fits_the_real_signature(uses, real):
    """Calls whose callee the source knows (not array methods found by name)."""
    problems = []
    for use in uses:
        e = real["names"][use.path]
        if use.how in ("call", "decorator") and not use.by_name and e["status"] == "ok":
            problems += call_problems(use, e["parameters"], f"CuPy {real['version']}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------- the stand-in
def test_the_standin_has_every_name_and_the_real_signatures(uses, real, standin):
    by_name = {u.path for u in uses if u.by_name}
    problems = []
    for path, e in real["names"].items():
        if e["status"] == "missing" or path in by_name:
            continue       # by name: held to real CuPy only (see the module doc)
        mine = standin["names"][standin_key(path, e)]
        if mine["status"] == "missing":
            problems.append(f"{mine['plain']}: not in the stand-in (used at "
                            f"{_where(uses, path)})")
        elif e["status"] == "ok" and mine["defined_here"] and e["parameters"] is not None:
            problems += [f"{e['plain']}: the stand-in {p}" for p in
                         signature_problems(mine["parameters"], e["parameters"])]
    for use in uses:
        e = real["names"][use.path]
        mine = standin["names"].get(standin_key(use.path, e))
        if mine and mine["defined_here"] and use.how in ("call", "decorator") and \
                not use.by_name:
            problems += call_problems(use, mine["parameters"], "the stand-in")
    assert not problems, "\n".join(sorted(set(problems)))


def signature_problems(mine, theirs):
    """Where the stand-in's parameters `mine` let a call through that real CuPy's
    `theirs` would refuse, or would read it otherwise."""
    def positional(params):
        return [n for n, k, _ in params if k in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    kinds = {n: (k, d) for n, k, d in theirs}
    catch_all = {k for _, k, _ in theirs} & {"VAR_POSITIONAL", "VAR_KEYWORD"}
    out = []
    for i, name in enumerate(positional(mine)):
        if i >= len(positional(theirs)) and "VAR_POSITIONAL" not in catch_all:
            out.append(f"takes {name!r} as positional argument {i + 1}, CuPy has "
                       f"{len(positional(theirs))} positional parameters "
                       f"{_params_text(theirs)}")
        elif i < len(positional(theirs)) and positional(theirs)[i] != name:
            out.append(f"positional argument {i + 1} is {name!r}, CuPy's is "
                       f"{positional(theirs)[i]!r} {_params_text(theirs)}")
    for name, kind, _ in mine:
        if kind in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            continue
        if name not in kinds and "VAR_KEYWORD" not in catch_all:
            out.append(f"takes {name!r}, CuPy does not {_params_text(theirs)}")
        elif name in kinds and kinds[name][0] == "POSITIONAL_ONLY" and \
                kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY"):
            out.append(f"takes {name!r} by keyword, CuPy by position only")
    required = {n for n, k, d in mine if not d}
    for name, (kind, has_default) in kinds.items():
        if kind not in ("VAR_POSITIONAL", "VAR_KEYWORD") and not has_default and \
                name not in required and not ({k for _, k, _ in mine} &
                                              {"VAR_POSITIONAL", "VAR_KEYWORD"}):
            out.append(f"does not require {name!r}, CuPy does {_params_text(theirs)}")
    return out


def test_the_nccl_unique_id_and_its_refusals_are_the_wheels(real, standin):
    """CuPy 14: get_unique_id() gives 128 bytes; CuPy 13: a tuple of 128 ints. The stand-in,
    following the wheel's major version, gives the same form and refuses the same ids
    with the same errors before calling NCCL."""
    major = int(real["version"].split(".")[0])
    assert real["nccl_unique_id"] == [{13: "tuple"}.get(major, "bytes"), 128]
    assert standin["nccl_unique_id"] == real["nccl_unique_id"]
    assert standin["nccl_refusals"] == real["nccl_refusals"]
    assert "accepted" not in real["nccl_refusals"]
