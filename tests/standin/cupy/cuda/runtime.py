"""`cupy.cuda.runtime` of the CuPy stand-in (a test double, not CuPy).

Copies the CUDA runtime calls CuPy exposes: the device count (set by
MINIDL_STANDIN_DEVICES, default 2), the current device (per host thread, as
`cudaGetDevice`), and no peer access between any two devices
(`deviceCanAccessPeer` returns 0), which is what makes a kernel that touches
another device's array fail (see `cupy._ndarray.device_error`).
"""
from __future__ import annotations

from .. import _state

is_hip = False


class CUDARuntimeError(RuntimeError):
    """CuPy raises `cupy.cuda.runtime.CUDARuntimeError` for a failing runtime call."""

    def __init__(self, status: int, message: str = ""):
        self.status = status
        super().__init__(message or f"CUDA runtime error {status}")


_INVALID_DEVICE = 101   # cudaErrorInvalidDevice


def check_device(dev: int) -> int:
    """CUDA: an ordinal outside 0..count-1 is `cudaErrorInvalidDevice`."""
    if not isinstance(dev, int) or not 0 <= dev < _state.device_count:
        raise CUDARuntimeError(_INVALID_DEVICE, "cudaErrorInvalidDevice: invalid device ordinal "
                               f"{dev!r} (the stand-in has {_state.device_count} devices, "
                               "set by MINIDL_STANDIN_DEVICES)")
    return dev


def getDeviceCount() -> int:
    if _state.device_count == 0:   # CUDA on a machine without a GPU
        raise CUDARuntimeError(100, "cudaErrorNoDevice: no CUDA-capable device is detected")
    return _state.device_count


def getDevice() -> int:
    return _state.current()


def setDevice(dev: int) -> None:
    _state.set_current(check_device(int(dev)))


def deviceCanAccessPeer(dev: int, peer: int) -> int:
    """No peer access between any two devices: stricter than a machine with NVLink."""
    check_device(dev)
    check_device(peer)
    return 0


def deviceSynchronize() -> None:
    dev = _state.current()
    _state.mark_synchronized(dev)
    _state.host_sync("synchronize", d2h=False)


def getDeviceProperties(device: int) -> dict:
    check_device(device)
    return {"name": b"CuPy stand-in (CPU)", "totalGlobalMem": 16 << 30, "multiProcessorCount": 1,
            "major": 8, "minor": 0, "clockRate": 1_000_000}


def memGetInfo() -> tuple:
    return (16 << 30, 16 << 30)


def runtimeGetVersion() -> int:
    return 12000


def driverGetVersion() -> int:
    return 12000
