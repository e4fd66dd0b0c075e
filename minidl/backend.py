"""Devices and array modules: the ONLY file in minidl that imports cupy.

A `Device` names where a tensor's array lives:

    Device("cpu")      NumPy (the default)
    Device("cpu:0")    NumPy too, but a *distinct* virtual device: arrays on
    Device("cpu:1")    cpu:0 and cpu:1 may not meet in one op. This lets the
                       two-GPU split of the paper (Section 3.2) be run and
                       tested on any laptop, transfers and all.
    Device("cuda:N")   CuPy on GPU N; work for it runs inside
                       `cupy.cuda.Device(N)`, so arrays are allocated there.

`array_module(x)` returns `numpy` or `cupy` for an array, so one code path
serves both: `xp = array_module(x); xp.maximum(x, 0)`.
"""
from __future__ import annotations

import re
import threading

import numpy as np

_cupy = None          # the module, once imported
_cupy_error = None    # why it could not be imported


def _import_cupy():
    """Import cupy on first use; remember the failure so we can explain it."""
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            import cupy  # noqa: PLC0415  (the one place cupy is imported)
            _cupy = cupy
        except Exception as e:  # ImportError, or a CUDA library that fails to load
            _cupy_error = e
    return _cupy


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    cp = _import_cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def cuda_device_count() -> int:
    """How many CUDA devices CuPy sees (0 without CuPy or a GPU)."""
    return _cupy.cuda.runtime.getDeviceCount() if cupy_available() else 0


_SPEC = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


class Device:
    """Where arrays live: ``cpu``, virtual ``cpu:N``, or ``cuda:N``.

    Two devices are equal when kind and index match; ``cpu`` (index None) is
    its own device, distinct from ``cpu:0``.
    """

    __slots__ = ("kind", "index")

    def __init__(self, spec="cpu"):
        if isinstance(spec, Device):
            self.kind, self.index = spec.kind, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"Device: expected a string such as 'cpu', 'cpu:1' or 'cuda:0', "
                            f"found {type(spec).__name__} {spec!r}")
        m = _SPEC.match(spec.strip().lower())
        if m is None:
            raise ValueError(f"Device: expected 'cpu', 'cpu:N' or 'cuda:N', found {spec!r}")
        self.kind = m.group(1)
        self.index = None if m.group(2) is None else int(m.group(2))
        if self.kind == "cuda":
            if self.index is None:
                self.index = 0
            self._check_cuda()

    def _check_cuda(self):
        cp = _import_cupy()
        if cp is None:
            raise RuntimeError(
                f"Device('{self}'): CuPy is not importable ({_cupy_error!r}). "
                "Install the GPU extra, e.g. `pip install -e .[gpu]` (CUDA 12) or "
                "`.[gpu-cuda13]`, or use Device('cpu').")
        try:
            n = cp.cuda.runtime.getDeviceCount()
        except Exception as e:
            raise RuntimeError(f"Device('{self}'): CuPy found no usable CUDA GPU ({e}). "
                               "Use Device('cpu') instead.") from e
        if self.index >= n:
            raise RuntimeError(f"Device('{self}'): this machine has {n} CUDA device(s), "
                               f"numbered 0..{n - 1}. Pick one of those, or a virtual 'cpu:N'.")

    # --- what it is ---------------------------------------------------------
    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def xp(self):
        """The array module of this device: numpy or cupy."""
        return _cupy if self.kind == "cuda" else np

    def __repr__(self):
        return f"Device('{self}')"

    def __str__(self):
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = Device(other)
            except (ValueError, RuntimeError):
                return False
        return isinstance(other, Device) and (self.kind, self.index) == (other.kind, other.index)

    def __hash__(self):
        return hash((self.kind, self.index))

    # --- where work runs ----------------------------------------------------
    def __enter__(self):
        """Enter ``cupy.cuda.Device(index)`` for a GPU; nothing for the CPU."""
        ctx = _cupy.cuda.Device(self.index) if self.kind == "cuda" else None
        if ctx is not None:
            ctx.__enter__()
        _contexts().append(ctx)
        return self

    def __exit__(self, *exc):
        ctx = _contexts().pop()
        if ctx is not None:
            ctx.__exit__(*exc)
        return False

    # --- work on this device -------------------------------------------------
    # The one mechanism by which work for a device runs in its context: the
    # autograd engine enters a Function's device for forward and backward and a
    # tensor's device for its gradient sum; everything else that makes or
    # changes an array of a device (initial values, casts, loading, optimizer
    # state) goes through the three methods below, which enter it themselves.
    def put(self, array, dtype=None):
        """Return `array` as an array of this device (a copy only when needed).

        From another GPU this is a peer copy that first waits for the work
        queued on the source GPU (CuPy does not order that for you: the copy
        is issued on this device's stream, the source's kernels sit on the
        source's stream)."""
        if self.kind == "cuda":
            if is_cupy_array(array) and array.device.id != self.index:
                array = _peer_copy(array, self.index)
            with _cupy.cuda.Device(self.index):
                return _cupy.asarray(array, dtype=dtype)
        if is_cupy_array(array):
            array = array.get()
        return np.asarray(array, dtype=dtype)

    def zeros(self, shape, dtype=np.float32):
        """A new zero array on this device."""
        with self:
            return self.xp.zeros(shape, dtype)

    def run(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) inside this device's context (allocations, kernels)."""
        with self:
            return fn(*args, **kwargs)


def _peer_copy(array, dst):
    """A copy of the CuPy array `array` on GPU `dst`, ordered after the source
    GPU's queued work: an event recorded on the source's current stream, which
    the destination's current stream waits for before the copy."""
    with _cupy.cuda.Device(array.device.id):
        array = _cupy.ascontiguousarray(array)    # a peer copy moves one contiguous block
        ready = _cupy.cuda.Event()
        ready.record()
    with _cupy.cuda.Device(dst):
        _cupy.cuda.get_current_stream().wait_event(ready)
        return _cupy.copy(array)


_local = threading.local()


def _contexts() -> list:
    """This thread's stack of entered device contexts (CuPy's is per thread too)."""
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def get_device(device) -> Device:
    """Accept a Device or its spec string."""
    return device if isinstance(device, Device) else Device(device)


def is_cupy_array(x) -> bool:
    if _cupy is None:  # cupy not imported yet: an array of it can only come from the user
        if not type(x).__module__.startswith("cupy") or _import_cupy() is None:
            return False
    return isinstance(x, _cupy.ndarray)


def array_module(x):
    """numpy or cupy, whichever owns `x` (a Tensor's ``.data`` or a raw array)."""
    if not isinstance(x, np.ndarray) and hasattr(x, "device") and hasattr(x, "creator"):
        x = x.data  # a Tensor
    return _cupy if is_cupy_array(x) else np


def to_numpy(x):
    """A NumPy copy/view of an array from either backend."""
    return x.get() if is_cupy_array(x) else np.asarray(x)


def device_of_array(x) -> Device:
    """The natural device of a raw array: ``cuda:N`` for CuPy, ``cpu`` for NumPy."""
    if is_cupy_array(x):
        return Device(f"cuda:{x.device.id}")
    return Device("cpu")
