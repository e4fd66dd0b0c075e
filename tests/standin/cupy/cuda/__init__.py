"""`cupy.cuda` of the CuPy stand-in (a test double for the test suite, not CuPy).

Devices, streams and events, held to CuPy's rules:

* `Device(i)` is a context manager; the current device is per host thread and
  starts at 0 in every thread (CUDA: `cudaSetDevice` is thread-local).
* Each device has a current stream (default: its null stream), per thread.
* Ordering between devices: a copy from device S into device D (`cupy.copy(a)`,
  `a.copy()` under `Device(D)`) is a peer memcpy on D's current stream. On
  a GPU nothing orders that memcpy after the work S was given before: it runs on
  S's streams, so CuPy would silently copy half-written data. The stand-in
  refuses such a copy (RuntimeError) unless, for EVERY stream of S that was
  given work, D's stream waited on an `Event` recorded on that stream after its
  latest work (`ev.record(stream_on_S)`, then `stream_on_D.wait_event(ev)`), or
  the host waited for it since (`Device(S).synchronize()` for all of S's
  streams; `Stream.synchronize()`, `Event.synchronize()` for one). This is what
  makes the copy wait for the source GPU. Streams are independent in this
  model: stricter than the legacy null stream, which also waits for the other
  blocking streams of its device.

This package is a package (not a module) so that further CUDA modules, such as
`cupy.cuda.nccl`, can be added as files next to this one.
"""
from __future__ import annotations

import time

from .. import _state
from . import runtime
from .runtime import CUDARuntimeError, check_device


def is_available() -> bool:
    return True


def get_device_id() -> int:
    return _state.current()


class Device:
    """`cupy.cuda.Device`: a context manager that makes device `id` current in this thread."""

    __slots__ = ("id",)

    def __init__(self, device=None):
        self.id = _state.current() if device is None else int(device)
        if self.id < 0:
            raise ValueError(f"Device: expected a device number >= 0, found {device!r}")

    def __enter__(self):
        check_device(self.id)
        _state.device_stack().append(_state.current())
        _state.set_current(self.id)
        return self

    def __exit__(self, *exc):
        _state.set_current(_state.device_stack().pop())
        return False

    def use(self) -> None:
        """Make this device current in this thread (CuPy: `Device.use()`, `cudaSetDevice`)."""
        _state.set_current(check_device(self.id))

    def synchronize(self) -> None:
        """The host waits for all work given to this device (counted as a sync, not a transfer)."""
        check_device(self.id)
        _state.mark_synchronized(self.id)
        _state.host_sync("synchronize", d2h=False)

    @property
    def compute_capability(self) -> str:
        return "80"

    @property
    def mem_info(self) -> tuple:
        return runtime.memGetInfo()

    def __int__(self):
        return self.id

    __index__ = __int__

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(("cuda", self.id))

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


# --- streams and events --------------------------------------------------------------
class Stream:
    """`cupy.cuda.Stream`: belongs to the device current at its creation."""

    _null_streams: dict = {}

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self.device_id = _state.current()
        self.is_null = null
        self.ptr = 0 if null else id(self)
        self._waited = {}    # (device, stream ptr) -> that stream's latest operation waited for
        self._previous = []

    @classmethod
    def _null_of(cls, dev: int) -> "Stream":
        s = cls._null_streams.get(dev)
        if s is None:
            with Device(dev):
                s = cls._null_streams[dev] = cls(null=True)
        return s

    def _check_device(self):
        # CUDA: work submitted to a stream of another device than the current one fails.
        if self.device_id != _state.current():
            raise RuntimeError(f"Stream of device {self.device_id} used while device "
                               f"{_state.current()} is current: enter "
                               "`cupy.cuda.Device(stream's device)` first")

    def __enter__(self):
        self._check_device()
        streams = _current_streams()
        self._previous.append(streams.get(self.device_id))
        streams[self.device_id] = self
        return self

    def __exit__(self, *exc):
        _current_streams()[self.device_id] = self._previous.pop()
        return False

    def use(self) -> "Stream":
        self._check_device()
        _current_streams()[self.device_id] = self
        return self

    def wait_event(self, event: "Event") -> None:
        """Later work on this stream waits for the work `event` recorded (cudaStreamWaitEvent)."""
        if event._device is not None:   # CUDA: waiting on a never-recorded event is a no-op
            key = (event._device, event._stream)
            self._waited[key] = max(self._waited.get(key, 0), event._work)

    def record(self, event: "Event | None" = None) -> "Event":
        event = Event() if event is None else event
        event.record(self)
        return event

    def synchronize(self) -> None:
        """The host waits for the work given to this stream."""
        _state.mark_synchronized(self.device_id, self.ptr)
        _state.host_sync("synchronize", d2h=False)

    @property
    def done(self) -> bool:
        return True

    def __eq__(self, other):
        return (isinstance(other, Stream) and other.ptr == self.ptr
                and other.device_id == self.device_id)

    def __hash__(self):
        return hash((self.ptr, self.device_id))

    def __repr__(self):
        return f"<Stream {self.ptr} (device: {self.device_id})>"


def _current_streams() -> dict:
    streams = getattr(_state._tls, "streams", None)
    if streams is None:
        streams = _state._tls.streams = {}
    return streams


def get_current_stream(device_id=None) -> Stream:
    """The current stream of the current device (or `device_id`) in this thread."""
    dev = _state.current() if device_id is None else device_id
    s = _current_streams().get(dev)
    return Stream._null_of(dev) if s is None else s


class _NullStream:
    """`Stream.null`: the null stream of the device current when it is read."""

    def __get__(self, obj, cls):
        return Stream._null_of(_state.current())


Stream.null = _NullStream()


class Event:
    """`cupy.cuda.Event`: marks a point in a device's work."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self._home = _state.current()   # CUDA: an event belongs to the device current when made
        self._device = None   # the device whose work it marks
        self._stream = None   # the ptr of the stream it was recorded on
        self._work = 0        # that stream's latest operation at record time
        self._time = None

    def record(self, stream: Stream | None = None) -> None:
        stream = get_current_stream() if stream is None else stream
        if stream.device_id != self._home:
            # CUDA: cudaEventRecord of an event and a stream of two devices: an invalid handle
            raise CUDARuntimeError(400, "cudaErrorInvalidResourceHandle: an Event made on device "
                                   f"{self._home} cannot record a stream of device "
                                   f"{stream.device_id}")
        self._device = stream.device_id
        self._stream = stream.ptr
        self._work = _state.last_on.get((stream.device_id, stream.ptr), 0)
        self._time = time.perf_counter()

    def synchronize(self) -> None:
        """The host waits until the recorded work is done."""
        if self._device is not None:
            _state.mark_synchronized(self._device, self._stream, self._work)
        _state.host_sync("synchronize", d2h=False)

    @property
    def done(self) -> bool:
        return True


def get_elapsed_time(start: Event, end: Event) -> float:
    """Milliseconds between two recorded events (host time in the stand-in)."""
    if start._time is None or end._time is None:
        raise CUDARuntimeError(600, "cudaErrorNotReady: an event was not recorded")
    return (end._time - start._time) * 1e3


# --- memory pools --------------------------------------------------------------------------
class MemoryPool:
    """`cupy.cuda.MemoryPool`: reports the bytes of live arrays on the current device."""

    def __init__(self, allocator=None):
        self._limit = 0

    def used_bytes(self) -> int:
        return _state.used_bytes[_state.current()]

    def total_bytes(self) -> int:
        return self.used_bytes()

    def free_bytes(self) -> int:
        return 0

    def n_free_blocks(self) -> int:
        return 0

    def free_all_blocks(self, stream=None) -> None:
        pass

    def set_limit(self, size=None, fraction=None) -> None:
        self._limit = size or 0

    def get_limit(self) -> int:
        return self._limit


class PinnedMemoryPool:
    def free_all_blocks(self) -> None:
        pass

    def n_free_blocks(self) -> int:
        return 0


def set_allocator(allocator=None) -> None:
    pass


def set_pinned_memory_allocator(allocator=None) -> None:
    pass


__all__ = ["CUDARuntimeError", "Device", "Event", "MemoryPool", "PinnedMemoryPool", "Stream",
           "get_current_stream", "get_device_id", "get_elapsed_time", "is_available", "runtime"]
