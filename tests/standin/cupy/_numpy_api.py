"""The long tail of CuPy's functions, forwarded to NumPy under the stand-in's rules (not CuPy).

`cupy.<name>` for a NumPy function not written out elsewhere becomes one kernel
on the current device: its arrays must be stand-in arrays of the current device
(host arrays: TypeError; other device: ValueError), NumPy runs on the wrapped
arrays, and the result is a new array on the current device. A few families
are different, as in CuPy:

* view functions (reshape, transpose, broadcast_to, split, ...) launch nothing
  and keep the source's device when NumPy returns a view;
* functions whose output size depends on the data (nonzero, unique, one-argument
  `where`, ...) read that size on the host: a sync;
* dtype helpers (result_type, can_cast, ...) only read dtypes: no kernel.
"""
from __future__ import annotations

import functools

import numpy as np

from ._ndarray import as_views, kernel_call, ndarray, operand, out_operand, result, unwrap
from ._state import current, host_sync, launch, refuse_in_fuse

VIEW_FUNCTIONS = {
    "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "rollaxis", "squeeze", "expand_dims",
    "broadcast_to", "broadcast_arrays", "atleast_1d", "atleast_2d", "atleast_3d", "split",
    "array_split", "hsplit", "vsplit", "dsplit", "diagonal", "flip", "fliplr", "flipud", "real",
    "asfortranarray", "permute_dims", "matrix_transpose", "unstack", "rot90",
}
SYNCING_FUNCTIONS = {"nonzero", "argwhere", "flatnonzero", "unique", "extract", "compress",
                     "trim_zeros"}
DTYPE_FUNCTIONS = {"result_type", "can_cast", "promote_types", "min_scalar_type", "issubdtype",
                   "isscalar", "ndim", "shape", "size", "common_type", "iterable", "isdtype"}
BOOLEAN_ARRAY_FUNCTIONS = {"allclose", "array_equal", "array_equiv"}   # CuPy returns 0-d arrays
NOT_PROVIDED = {"save", "savez", "savez_compressed", "load", "loadtxt", "savetxt", "genfromtxt",
                "fromfile", "frombuffer", "fromiter", "memmap", "vectorize", "frompyfunc",
                "set_printoptions", "get_printoptions", "printoptions", "seterr", "geterr",
                "errstate"}


class ufunc:
    """A CuPy ufunc: one kernel; operands are stand-in arrays of the current device or scalars.

    CuPy's ufuncs take `out`, `dtype` and `casting`; a host array operand is a
    TypeError, as is any other keyword (`where=` included).
    """

    __slots__ = ("_u", "__name__", "nin", "nout", "nargs")

    def __init__(self, u: np.ufunc):
        self._u = u
        self.__name__ = u.__name__
        self.nin, self.nout, self.nargs = u.nin, u.nout, u.nargs

    def __call__(self, *args, out=None, dtype=None, casting="same_kind"):
        if self._u.signature is not None:   # matmul: not elementwise
            refuse_in_fuse(f"cupy.{self.__name__}")
        if len(args) > self.nin:
            if out is not None or len(args) != self.nin + self.nout:
                raise TypeError(f"cupy.{self.__name__}: expected {self.nin} inputs (and out=), "
                                f"found {len(args)} arguments")
            args, out = args[:self.nin], (args[self.nin] if self.nout == 1 else args[self.nin:])
        dev = current()
        where = f"cupy.{self.__name__}"
        ops = [operand(x, dev, where) for x in args]
        kw = {}
        if dtype is not None:
            kw["dtype"] = dtype
        if casting != "same_kind":
            kw["casting"] = casting
        if out is not None:
            kw["out"] = out_operand(out, dev, where)
        r = self._u(*ops, **kw)
        launch(dev)
        return out if out is not None else result(r, dev)

    def at(self, a, indices, b=None):
        """`cupy.add.at(a, indices, b)`: one scatter kernel, everything on the current device."""
        where = f"cupy.{self.__name__}.at"
        dev = current()
        target = out_operand(a, dev, where)
        idx = unwrap(indices, dev, where)
        if b is None:
            self._u.at(target, idx)
        else:
            self._u.at(target, idx, operand(b, dev, where))
        launch(dev)

    def reduce(self, a, axis=0, dtype=None, out=None, keepdims=False):
        return kernel_call(self._u.reduce, (a,),
                           dict(axis=axis, dtype=dtype, out=out, keepdims=keepdims),
                           f"cupy.{self.__name__}.reduce")

    def accumulate(self, a, axis=0, dtype=None, out=None):
        return kernel_call(self._u.accumulate, (a,), dict(axis=axis, dtype=dtype, out=out),
                           f"cupy.{self.__name__}.accumulate")

    def outer(self, a, b, **kwargs):
        return kernel_call(self._u.outer, (a, b), kwargs, f"cupy.{self.__name__}.outer")

    def __repr__(self):
        return f"<ufunc 'cupy.{self.__name__}' (stand-in)>"


def _view_function(fn, name):
    where = f"cupy.{name}"

    @functools.wraps(fn)
    def call(*args, **kwargs):
        sources = [x for x in args if isinstance(x, ndarray)]
        sources += [x for a in args if isinstance(a, (list, tuple))
                    for x in a if isinstance(x, ndarray)]
        r = fn(*unwrap(args, None, where), **kwargs)
        return as_views(r, sources, where)
    return call


def _syncing_function(fn, name):
    where = f"cupy.{name}"

    @functools.wraps(fn)
    def call(*args, **kwargs):
        host_sync(name)     # CuPy reads the output's size on the host before allocating it
        return kernel_call(fn, args, kwargs, where)
    return call


def _dtype_function(fn, name):
    where = f"cupy.{name}"

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return fn(*unwrap(args, None, where), **kwargs)
    return call


def _kernel_function(fn, name):
    where = f"cupy.{name}"
    boolean = name in BOOLEAN_ARRAY_FUNCTIONS

    @functools.wraps(fn)
    def call(*args, **kwargs):
        r = kernel_call(fn, args, kwargs, where)
        return result(np.bool_(r), current()) if boolean else r
    return call


def where(condition, x=None, y=None):
    """`cupy.where(c, x, y)` is one kernel; `cupy.where(c)` is `nonzero` (a sync)."""
    if x is None and y is None:
        host_sync("where")
        return kernel_call(np.nonzero, (condition,), {}, "cupy.where")
    return kernel_call(np.where, (condition, x, y), {}, "cupy.where")


def forward(name: str):
    """What `cupy.<name>` is in the stand-in, built from `numpy.<name>`; AttributeError if none."""
    if name.startswith("_") or name in NOT_PROVIDED or not hasattr(np, name):
        raise AttributeError(f"module 'cupy' (the test suite's CuPy stand-in) has no attribute "
                             f"{name!r}")
    obj = getattr(np, name)
    if isinstance(obj, np.ufunc):
        return ufunc(obj)
    if isinstance(obj, type) or not callable(obj):
        if type(obj).__name__ == "module":
            raise AttributeError(f"the CuPy stand-in does not provide cupy.{name}")
        return obj                       # dtypes, constants (pi, inf, newaxis, ...)
    if name in VIEW_FUNCTIONS:
        return _view_function(obj, name)
    if name in SYNCING_FUNCTIONS:
        return _syncing_function(obj, name)
    if name in DTYPE_FUNCTIONS:
        return _dtype_function(obj, name)
    return _kernel_function(obj, name)
