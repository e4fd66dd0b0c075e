"""`cupy.ndarray` of the CuPy stand-in: a NumPy array that lives on a device.

A stand-in for CuPy's array used by the test suite (not CuPy). It holds a NumPy
array (`_a`) and the number of the device it was allocated on (`_dev`), and
holds every operation to CuPy's rules, stricter where unsure:

* No implicit conversion to NumPy (CuPy: `__array__` raises "Implicit
  conversion to a NumPy array is not allowed"). NumPy functions and ufuncs given
  a stand-in array raise TypeError too (real CuPy dispatches some of these
  through `__array_function__`/`__array_ufunc__`; the stand-in refuses all).
  The way out is `.get()` / `cupy.asnumpy()`.
* A host `numpy.ndarray` in a device operation raises TypeError (CuPy:
  "Unsupported type <class 'numpy.ndarray'>"). Python and NumPy scalars are
  kernel arguments, allowed as in CuPy. The way in is `cupy.asarray()`.
* A kernel runs on the current device and refuses an array of another device
  (CuPy without peer access: ValueError "The device where the array resides
  (1) is different from the current device (0)"). Views (basic indexing,
  reshape, transpose, ...) launch nothing and keep their base's device.
* Reading a value on the host (`.get()`, `.item()`, `int()`, `float()`,
  `bool()`, `.tolist()`, `repr()`, ...) is a sync and is counted; `len()` and
  `.shape` are not.
"""
from __future__ import annotations

import weakref

import numpy as np

from . import _state
from ._state import current, device_op, host_sync, launch, refuse_in_fuse

_new = object.__new__
_SCALARS = (int, float, bool, complex, np.generic)
_BASIC_INDEX = (int, np.integer, slice, type(None), type(Ellipsis))

IMPLICIT_CONVERSION = ("Implicit conversion to a NumPy array is not allowed. "
                       "Please use `.get()` to construct a NumPy array explicitly.")


def device_error(found: int, cur: int) -> ValueError:
    """CuPy without peer access: a kernel on the current device touches another device's array."""
    return ValueError(
        f"The device where the array resides ({found}) is different from the current device "
        f"({cur}). Peer access is unavailable between these devices. (CuPy stand-in: run this "
        f"work inside `cupy.cuda.Device({found})`, or copy the array to device {cur} first.)")


def host_error(where: str) -> TypeError:
    """CuPy refuses a `numpy.ndarray` operand: "Unsupported type <class 'numpy.ndarray'>"."""
    return TypeError(f"Unsupported type <class 'numpy.ndarray'> in {where}: a host (NumPy) "
                     "array met a device operation. Move it to the device with "
                     "`cupy.asarray(x)` first.")


def _wrap(a: np.ndarray, dev: int, base: "ndarray | None" = None) -> "ndarray":
    """A stand-in array around NumPy array `a` on device `dev` (a view of `base` when given)."""
    r = _new(ndarray)
    r._a = a
    r._dev = dev
    r._base = base
    if base is None:
        _state.used_bytes[dev] += a.nbytes
    return r


def result(r, dev: int):
    """Wrap the NumPy result of a kernel on device `dev` (CuPy returns 0-d arrays, not scalars)."""
    if type(r) is np.ndarray:
        return _wrap(r, dev)
    if isinstance(r, np.generic):
        return _wrap(np.array(r), dev)
    if isinstance(r, (tuple, list)):
        return type(r)(result(x, dev) for x in r)
    return r


def operand(x, dev: int, where: str):
    """A ufunc operand: a stand-in array of device `dev` or a scalar (CuPy's kernel arguments)."""
    if type(x) is ndarray or isinstance(x, ndarray):
        if x._dev != dev:
            raise device_error(x._dev, dev)
        return x._a
    if isinstance(x, _SCALARS):
        return x
    if isinstance(x, np.ndarray):
        raise host_error(where)
    raise TypeError(f"Unsupported type {type(x)} in {where}: expected a cupy.ndarray or a scalar")


def unwrap(x, dev: int | None, where: str):
    """Arguments of a kernel (arrays, also in lists/tuples): check devices, give NumPy arrays.

    `dev=None` reads shapes and dtypes only (no kernel): any device is fine.
    """
    t = type(x)
    if t is ndarray or isinstance(x, ndarray):
        if dev is not None and x._dev != dev:
            raise device_error(x._dev, dev)
        return x._a
    if t is list or t is tuple:
        return t(unwrap(i, dev, where) for i in x)
    if isinstance(x, np.ndarray):
        raise host_error(where)
    return x


def out_operand(out, dev: int, where: str):
    """`out=`: a stand-in array on the current device (CuPy: a host `out` is a TypeError)."""
    if isinstance(out, tuple):
        return tuple(out_operand(o, dev, where) for o in out)
    if isinstance(out, ndarray):
        if out._dev != dev:
            raise device_error(out._dev, dev)
        return out._a
    if isinstance(out, np.ndarray):
        raise host_error(f"{where} (out=)")
    raise TypeError(f"{where}: out= must be a cupy.ndarray, found {type(out).__name__}")


FUSABLE = {np.sum, np.prod, np.max, np.min, np.amax, np.amin}   # reductions cupy.fuse takes


def kernel_call(fn, args, kwargs, where: str):
    """Run NumPy's `fn` as ONE kernel on the current device; wrap its result there."""
    if fn not in FUSABLE:
        refuse_in_fuse(where)
    dev = current()
    out = kwargs.get("out")
    if kwargs:
        kwargs = {k: (out_operand(v, dev, where) if k == "out" and v is not None
                      else unwrap(v, dev, where)) for k, v in kwargs.items()}
    r = fn(*[unwrap(x, dev, where) for x in args], **kwargs)
    launch(dev)
    if out is not None:
        return out
    return result(r, dev)


def as_views(r, sources, where: str):
    """A view function's NumPy result: a view of the source it shares memory with, else a copy."""
    if isinstance(r, (list, tuple)):
        return type(r)(as_views(x, sources, where) for x in r)
    if not isinstance(r, np.ndarray):
        r = np.asarray(r)
    for s in sources:
        if r.size == 0 or np.may_share_memory(r, s._a):
            return s._view(r)
    dev = current()          # NumPy had to copy: a copy kernel on the current device
    for s in sources:
        if s._dev != dev:
            raise device_error(s._dev, dev)
    launch(dev)
    return _wrap(r, dev)


def _is_basic(key) -> bool:
    if type(key) is tuple:
        return all(isinstance(k, _BASIC_INDEX) and type(k) is not bool for k in key)
    return isinstance(key, _BASIC_INDEX) and type(key) is not bool


def _index(key, dev: int):
    """An advanced index: arrays of device `dev`, lists (uploaded, as CuPy), basic parts."""
    if type(key) is tuple:
        return tuple(_index(k, dev) for k in key)
    if isinstance(key, ndarray):
        if key._dev != dev:
            raise device_error(key._dev, dev)
        return key._a
    if isinstance(key, np.ndarray):
        raise host_error("indexing (stricter than CuPy, which uploads it silently)")
    if isinstance(key, list):
        device_op(dev, "h2d")   # CuPy turns a list index into a device array: a transfer
        return np.asarray(unwrap(key, dev, "indexing"))
    return key


def _as_view_key(key) -> tuple:
    """A basic index that gives NumPy's view even where every part is an integer (CuPy's
    `_view_getitem` appends an Ellipsis when there is none; NumPy would give a scalar)."""
    key = key if type(key) is tuple else (key,)
    return key if any(k is Ellipsis for k in key) else key + (Ellipsis,)


def _address(a: np.ndarray) -> int:
    """The device address of a NumPy array's first element (CuPy's `data.ptr`)."""
    return a.__array_interface__["data"][0]


def _has_bool_mask(key) -> bool:
    keys = key if type(key) is tuple else (key,)
    return any(isinstance(k, ndarray) and k._a.dtype == np.bool_ for k in keys)


def _forget(ptr: int):
    """The callback that drops `ptr` from the pointer registry when its array dies."""
    def forget(ref):
        if _state.pointers.get(ptr) is ref:
            del _state.pointers[ptr]
    return forget


class _Flags:
    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, a: "ndarray"):
        self.c_contiguous = a._a.flags.c_contiguous
        self.f_contiguous = a._a.flags.f_contiguous
        self.owndata = a._base is None

    def __getitem__(self, name):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[name.upper()]

    def __repr__(self):
        return (f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}\n"
                f"  OWNDATA : {self.owndata}")


class MemoryPointer:
    """`ndarray.data`: a device pointer (`ptr`, an int), its device, and copies between pointers.

    `copy_from_device(_async)` copies raw bytes into this memory on the current device's
    stream, under the rules of `ndarray.copy()`: this memory must be the current device's
    (stricter than CUDA, which would also push into another device), and a source on another
    device must be ordered after that device's work (see `cupy.cuda`).
    """

    __slots__ = ("ptr", "device_id", "_array")

    def __init__(self, ptr: int, device_id: int, array: "ndarray"):
        self.ptr = ptr
        self.device_id = device_id
        self._array = array

    @property
    def device(self):
        from .cuda import Device
        return Device(self.device_id)

    def __int__(self):
        return self.ptr

    def _bytes(self, size: int, where: str) -> np.ndarray:
        a = self._array._a
        if not a.flags.c_contiguous or size > a.nbytes:
            raise ValueError(f"{where}: the CuPy stand-in copies {size} bytes only within one "
                             f"C-contiguous array ({a.nbytes} bytes here)")
        return a.reshape(-1).view(np.uint8)[:size]

    def copy_from_device_async(self, src: "MemoryPointer", size: int, stream=None) -> None:
        from ._copy import check_ordered
        from .cuda import get_current_stream
        dev = current()
        if self.device_id != dev:
            raise device_error(self.device_id, dev)
        stream = get_current_stream() if stream is None else stream
        if src.device_id != dev:
            check_ordered(src.device_id, dev, stream)
        self._bytes(size, "copy_from_device")[...] = src._bytes(size, "copy_from_device")
        device_op(dev, "memcpy")
        if src.device_id != dev:
            with _state._lock:
                _state.counts["peer_copy"] += 1

    def copy_from_device(self, src: "MemoryPointer", size: int) -> None:
        self.copy_from_device_async(src, size)

    def memset_async(self, value: int, size: int, stream=None) -> None:
        dev = current()
        if self.device_id != dev:
            raise device_error(self.device_id, dev)
        self._bytes(size, "memset")[...] = value
        device_op(dev, "memset")

    memset = memset_async


def _binary(ufunc, name):
    where = f"cupy.{ufunc.__name__}"
    gufunc = ufunc.signature is not None   # matmul: not elementwise, so not inside cupy.fuse

    def op(self, other):
        if gufunc:
            refuse_in_fuse(where)
        if isinstance(other, np.ndarray):
            raise host_error(where)
        if not isinstance(other, (ndarray, *_SCALARS)):
            return NotImplemented
        dev = current()
        if self._dev != dev:
            raise device_error(self._dev, dev)
        r = ufunc(self._a, operand(other, dev, where))
        launch(dev)
        return result(r, dev)

    def rop(self, other):
        if gufunc:
            refuse_in_fuse(where)
        if isinstance(other, np.ndarray):
            raise host_error(where)
        if not isinstance(other, _SCALARS):
            return NotImplemented
        dev = current()
        if self._dev != dev:
            raise device_error(self._dev, dev)
        r = ufunc(other, self._a)
        launch(dev)
        return result(r, dev)

    def iop(self, other):
        if gufunc:
            refuse_in_fuse(where)
        dev = current()
        if self._dev != dev:
            raise device_error(self._dev, dev)
        ufunc(self._a, operand(other, dev, where), out=self._a)
        launch(dev)
        return self

    op.__name__, rop.__name__, iop.__name__ = f"__{name}__", f"__r{name}__", f"__i{name}__"
    return op, rop, iop


def _unary(ufunc):
    def op(self):
        dev = current()
        if self._dev != dev:
            raise device_error(self._dev, dev)
        r = ufunc(self._a)
        launch(dev)
        return result(r, dev)
    return op


def _method(fn, name):
    """An ndarray method that is one kernel, e.g. `a.sum(axis=1)` = `cupy.sum(a, axis=1)`."""
    where = f"cupy.ndarray.{name}"

    def method(self, *args, **kwargs):
        return kernel_call(fn, (self, *args), kwargs, where)
    method.__name__ = name
    return method


class ndarray:
    """A stand-in for `cupy.ndarray`: a NumPy array that knows its device (see the module doc)."""

    __slots__ = ("_a", "_dev", "_base", "__weakref__")
    __array_priority__ = 100.0

    def __new__(cls, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("the CuPy stand-in's ndarray(...) takes shape, dtype and "
                                      "order only")
        return _wrap(np.empty(shape, dtype, order=order), current())

    def __del__(self):
        try:
            if self._base is None:
                _state.used_bytes[self._dev] -= self._a.nbytes
        except AttributeError:
            pass

    # --- refusing NumPy ----------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        # CuPy's ndarray.__array__ raises this very TypeError.
        raise TypeError(IMPLICIT_CONVERSION)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if (method == "__call__" and not kwargs and any(isinstance(x, np.generic) for x in inputs)
                and all(isinstance(x, (ndarray, *_SCALARS)) for x in inputs)):
            # a NumPy scalar on the left of an operator (`np.float32(2) * a`): CuPy runs it as
            # a kernel on the device, and so does the stand-in
            dev = current()
            r = ufunc(*[operand(x, dev, f"cupy.{ufunc.__name__}") for x in inputs])
            launch(dev)
            return result(r, dev)
        # Real CuPy runs other NumPy ufuncs on the device too; the stand-in refuses them.
        raise TypeError(f"numpy.{ufunc.__name__} received a cupy.ndarray (CuPy stand-in): use "
                        f"cupy.{ufunc.__name__} for device arrays, or `.get()` first. "
                        + IMPLICIT_CONVERSION)

    def __array_function__(self, func, types, args, kwargs):
        # Real CuPy dispatches some NumPy functions; the stand-in is stricter and refuses all.
        raise TypeError(f"numpy.{func.__name__} received a cupy.ndarray (CuPy stand-in): use "
                        f"cupy.{func.__name__} for device arrays, or `.get()` first. "
                        + IMPLICIT_CONVERSION)

    # --- what it is ----------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: _Flags(self))
    base = property(lambda self: self._base)

    @property
    def device(self):
        """The `cupy.cuda.Device` the array was allocated on."""
        from .cuda import Device
        return Device(self._dev)

    @property
    def data(self) -> MemoryPointer:
        ptr = _address(self._a)
        _state.pointers[ptr] = weakref.ref(self, _forget(ptr))   # for `cupy.standin.array_at(ptr)`
        return MemoryPointer(ptr, self._dev, self)

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return self._a.shape[0]

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))   # views: no sync (as CuPy)

    __hash__ = None

    # --- views (no kernel, the base's device) -------------------------------------------------
    def _view(self, a: np.ndarray) -> "ndarray":
        refuse_in_fuse("a view (indexing, reshape, transpose, ...)")
        return _wrap(a, self._dev, self if self._base is None else self._base)

    @property
    def T(self):
        return self._view(self._a.T)

    def transpose(self, *axes):
        return self._view(self._a.transpose(*axes))

    def swapaxes(self, a1, a2):
        return self._view(self._a.swapaxes(a1, a2))

    def squeeze(self, axis=None):
        return self._view(self._a.squeeze(axis))

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return self._view(self._a.diagonal(offset, axis1, axis2))

    def view(self, dtype=None):
        return self._view(self._a.view() if dtype is None else self._a.view(dtype))

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return as_views(self._a.reshape(shape, order=order), (self,), "cupy.ndarray.reshape")

    def ravel(self, order="C"):
        return as_views(self._a.ravel(order), (self,), "cupy.ndarray.ravel")

    @property
    def real(self):
        return self._view(self._a.real)

    @property
    def imag(self):
        return as_views(self._a.imag, (self,), "cupy.ndarray.imag")

    def __getitem__(self, key):
        if _is_basic(key):              # basic indexing: a view, CuPy launches nothing
            r = self._a[key]
            if not isinstance(r, np.ndarray):   # all integers: CuPy gives a 0-d view, not a scalar
                r = self._a[_as_view_key(key)]
            return self._view(r)
        dev = current()                 # advanced indexing: a gather kernel
        if self._dev != dev:
            raise device_error(self._dev, dev)
        if _has_bool_mask(key):         # CuPy counts the True entries on the host first
            host_sync("boolean_index")
        r = self._a[_index(key, dev)]
        launch(dev)
        return result(r, dev)

    def __setitem__(self, key, value):
        """What CuPy's `_scatter_op(..., 'update')` launches for `self[key] = value`:

        * an advanced index (integer arrays, lists): one scatter kernel; a boolean
          mask is also a sync (its True entries are counted on the host first);
        * a basic index (a view `v`) and a scalar: `v.fill(value)`, a memset for 0
          on a C-contiguous `v`, else a fill kernel;
        * a basic index and an array (leading unit dimensions dropped): nothing
          when it is `v` itself (same memory, shape and strides: the write-back
          of `x[view] += y`, whose one kernel was the in-place add), a memcpy when
          it has `v`'s layout and dtype and `v` is C-contiguous, else a copy kernel.
        """
        refuse_in_fuse("indexing")
        dev = current()
        if self._dev != dev:
            raise device_error(self._dev, dev)
        if isinstance(value, ndarray):
            if value._dev != dev:
                raise device_error(value._dev, dev)
        elif isinstance(value, np.ndarray):
            raise host_error("ndarray.__setitem__")
        elif not isinstance(value, _SCALARS):
            # stricter than CuPy, which would upload a list silently
            raise TypeError(f"cupy.ndarray.__setitem__: expected a cupy.ndarray or a scalar, found "
                            f"{type(value).__name__}; upload it with cupy.asarray() first")
        source = value._a if isinstance(value, ndarray) else value
        if not _is_basic(key):
            if _has_bool_mask(key):
                host_sync("boolean_index")
            self._a[_index(key, dev)] = source
            launch(dev)
            return
        view = self._a[_as_view_key(key)]
        if not isinstance(value, ndarray):
            view[...] = value
            if value == 0 and view.flags.c_contiguous:
                device_op(dev, "memset")
            else:
                launch(dev)
            return
        while source.ndim and source.shape[0] == 1:     # CuPy: _squeeze_leading_unit_dims
            source = source[0]
        same_layout = source.shape == view.shape and source.strides == view.strides
        if same_layout and _address(source) == _address(view):
            return                                      # the same memory: nothing to write
        view[...] = source
        if same_layout and view.flags.c_contiguous and source.dtype == view.dtype:
            device_op(dev, "memcpy")
        else:
            launch(dev)

    # --- copies and casts ----------------------------------------------------------------
    def copy(self, order="C"):
        """A copy on the CURRENT device: a memcpy when contiguous, else a copy kernel.

        From another device (CuPy: a peer memcpy on the current stream) only a
        C-contiguous array can be copied (stricter than CuPy, which would first
        run a kernel on the source device, after any event the caller recorded),
        and only once ordered after the source device's work (see `cupy.cuda`).
        """
        from ._copy import copy_array
        return copy_array(self, order)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        # CuPy: `with self.device: return self.copy()`
        from .cuda import Device
        with Device(self._dev):
            return self.copy()

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        """A cast kernel on the current device; `copy=False` with the same dtype returns self."""
        dtype = np.dtype(dtype)
        if not copy and dtype == self._a.dtype and order in ("K", "A"):
            return self
        dev = current()
        if self._dev != dev:
            raise device_error(self._dev, dev)
        kw = {} if casting is None else {"casting": casting}
        r = self._a.astype(dtype, order=order, copy=True, **kw)
        launch(dev)
        return _wrap(r, dev)

    def flatten(self, order="C"):
        return self.copy(order).reshape(-1)

    def fill(self, value):
        """CuPy: `fill(0)` of a contiguous array is a memset, anything else a kernel."""
        dev = current()
        if self._dev != dev:
            raise device_error(self._dev, dev)
        if isinstance(value, ndarray):
            value = operand(value, dev, "cupy.ndarray.fill")
        elif isinstance(value, np.ndarray):
            raise host_error("cupy.ndarray.fill")
        self._a.fill(value)
        if isinstance(value, _SCALARS) and value == 0 and self._a.flags.c_contiguous:
            device_op(dev, "memset")
        else:
            launch(dev)

    def sort(self, axis=-1):
        dev = current()
        if self._dev != dev:
            raise device_error(self._dev, dev)
        self._a.sort(axis)
        launch(dev)

    # --- to and from the host -----------------------------------------------------------------
    def get(self, stream=None, order="C", out=None, blocking=True):
        """The way out: a NumPy copy (a device-to-host transfer and a sync)."""
        host_sync("get")
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError(f"get(out=): expected a numpy.ndarray, found {type(out).__name__}")
            np.copyto(out, self._a)
            return out
        return self._a.copy(order=order)

    def set(self, arr, stream=None):
        """The way in: copy a NumPy array of the same shape and dtype into this array."""
        # CuPy: "Only numpy.ndarray can be set to cupy.ndarray"
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, found "
                            f"{type(arr).__name__}")
        if arr.shape != self._a.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self._a.shape}, new shape: {arr.shape}")
        if arr.dtype != self._a.dtype:   # CuPy: "{dtype} array cannot be set to {dtype} array"
            raise TypeError(f"{arr.dtype} array cannot be set to {self._a.dtype} array")
        if not self._a.flags.c_contiguous:
            raise RuntimeError("Cannot set to non-contiguous array")
        np.copyto(self._a, arr)
        device_op(self._dev, "h2d")

    def item(self, *args):
        host_sync("item")
        return self._a.item(*args)

    def tolist(self):
        host_sync("tolist")
        return self._a.tolist()

    def _scalar(self, kind):
        if self._a.size != 1:   # NumPy's and CuPy's errors
            if kind == "bool":
                raise ValueError("The truth value of an array with more than one element is "
                                 "ambiguous. Use a.any() or a.all()")
            raise TypeError(f"only length-1 arrays can be converted to Python scalars ({kind}(); "
                            f"shape {self._a.shape})")
        host_sync(kind)
        return self._a.reshape(()).item()

    def __int__(self):
        return int(self._scalar("int"))

    def __float__(self):
        return float(self._scalar("float"))

    def __complex__(self):
        return complex(self._scalar("complex"))

    def __bool__(self):
        return bool(self._scalar("bool"))

    def __index__(self):
        if self._a.ndim != 0 or self._a.dtype.kind not in "iub":
            raise TypeError("only integer scalar arrays can be converted to a scalar index")
        return int(self._scalar("index"))

    def __repr__(self):
        host_sync("repr")
        return repr(self._a)

    def __str__(self):
        host_sync("str")
        return str(self._a)

    def __format__(self, spec):
        host_sync("format")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __reduce__(self):
        # CuPy pickles through the host: `(array, (self.get(),))`
        from ._copy import array
        return array, (self.get(),)

    # --- arithmetic, comparisons -------------------------------------------------------------
    __neg__ = _unary(np.negative)
    __pos__ = _unary(np.positive)
    __abs__ = _unary(np.absolute)
    __invert__ = _unary(np.invert)

    __eq__ = _binary(np.equal, "eq")[0]     # `a == None` falls back to identity: False
    __ne__ = _binary(np.not_equal, "ne")[0]
    __lt__ = _binary(np.less, "lt")[0]
    __le__ = _binary(np.less_equal, "le")[0]
    __gt__ = _binary(np.greater, "gt")[0]
    __ge__ = _binary(np.greater_equal, "ge")[0]


for _name, _uf in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                   ("truediv", np.true_divide), ("floordiv", np.floor_divide),
                   ("mod", np.remainder), ("pow", np.power),
                   ("matmul", np.matmul), ("and", np.bitwise_and), ("or", np.bitwise_or),
                   ("xor", np.bitwise_xor), ("lshift", np.left_shift), ("rshift", np.right_shift)]:
    for _f in _binary(_uf, _name):
        setattr(ndarray, _f.__name__, _f)
ndarray.__divmod__, ndarray.__rdivmod__ = _binary(np.divmod, "divmod")[:2]

for _name, _fn in [("sum", np.sum), ("mean", np.mean), ("max", np.max), ("min", np.min),
                   ("argmax", np.argmax), ("argmin", np.argmin), ("any", np.any), ("all", np.all),
                   ("prod", np.prod), ("std", np.std), ("var", np.var), ("cumsum", np.cumsum),
                   ("cumprod", np.cumprod), ("clip", np.clip), ("round", np.round), ("dot", np.dot),
                   ("argsort", np.argsort), ("take", np.take), ("repeat", np.repeat),
                   ("conj", np.conj),
                   ("trace", np.trace), ("ptp", np.ptp), ("argpartition", np.argpartition),
                   ("searchsorted", np.searchsorted)]:
    setattr(ndarray, _name, _method(_fn, _name))


def _nonzero(self):
    host_sync("nonzero")      # CuPy: the output size is read on the host
    return kernel_call(np.nonzero, (self,), {}, "cupy.ndarray.nonzero")


ndarray.nonzero = _nonzero
ndarray.__module__ = "cupy"
