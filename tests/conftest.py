"""Shared fixtures, and the one switch that picks which CuPy the device tests run on.

MINIDL_TEST_CUPY=standin  the CuPy stand-in of tests/standin (CuPy's rules on the
                          CPU, stricter where unsure; see tests/standin/README.md).
                          The default when CuPy with a GPU is not importable.
MINIDL_TEST_CUPY=real     the installed CuPy and its GPUs; the default when present.

With the stand-in, tests/standin goes first on sys.path (and on PYTHONPATH, for
the CLI runs in subprocesses) before minidl imports cupy, which it does lazily.
MINIDL_STANDIN_DEVICES sets how many devices the stand-in has (default 2),
MINIDL_STANDIN_CUPY the CuPy major version it follows where CuPy's API changed
(14, the default, or 13).
"""
import os
import sys

_STANDIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin")
COUNTING_NEEDS_STANDIN = ("counts kernels, transfers and syncs: only the CuPy stand-in can count "
                          "them (MINIDL_TEST_CUPY=standin); real CuPy cannot")


def _real_cupy_with_gpu():
    """(True, None) when the installed CuPy imports and sees a GPU, else (False, why)."""
    try:
        import cupy
        if getattr(cupy, "__standin__", False):
            return False, "the stand-in is already on sys.path"
        n = cupy.cuda.runtime.getDeviceCount()
        return (n > 0), (None if n > 0 else "CuPy sees no GPU")
    except Exception as e:  # ImportError, or a CUDA library that fails to load
        return False, repr(e)


def _choose_cupy():
    asked = os.environ.get("MINIDL_TEST_CUPY", "").strip().lower()
    if asked not in ("", "standin", "real"):
        raise RuntimeError(f"MINIDL_TEST_CUPY: expected 'standin' or 'real', found {asked!r}")
    if asked == "real" or asked == "":
        usable, why = _real_cupy_with_gpu()
        if usable:
            return "real"
        if asked == "real":
            raise RuntimeError(f"MINIDL_TEST_CUPY=real, but CuPy with a GPU is not usable here "
                               f"({why}). Unset it to run the device tests on the CuPy stand-in.")
        # a CuPy without a GPU: forget it, the stand-in takes its place
        for name in [m for m in sys.modules
                     if m == "cupy" or m.startswith(("cupy.", "cupyx", "cupy_backends"))]:
            del sys.modules[name]
    sys.path.insert(0, _STANDIN_DIR)
    inherited = [p for p in [os.environ.get("PYTHONPATH")] if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([_STANDIN_DIR] + inherited)
    import cupy
    assert cupy.__standin__, cupy.__file__
    return "standin"


CUPY_MODE = _choose_cupy()
os.environ["MINIDL_TEST_CUPY"] = CUPY_MODE
STANDIN = CUPY_MODE == "standin"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import minidl  # noqa: E402


def pytest_report_header(config):
    return f"cupy: {CUPY_MODE} (MINIDL_TEST_CUPY)"


class CupyCounters:
    """Read the stand-in's counters: `c.read()` (a dict, see `cupy.standin.counters`),
    `c["kernels"]`, `c.kernels(device)`, `c.reset()`, and `with c.count() as n:` for one block."""

    def __init__(self):
        import cupy
        self._standin = cupy.standin
        self.reset()

    def reset(self):
        self._standin.reset()

    def read(self) -> dict:
        return self._standin.counters()

    def __getitem__(self, key):
        return self.read()[key]

    def kernels(self, device=None) -> int:
        c = self.read()
        return c["kernels"] if device is None else c["kernels_per_device"][device]

    def count(self):
        return self._standin.count()


@pytest.fixture(autouse=True)
def _cuda_device_zero_after_each_test():
    """A test that leaves another CUDA device current (e.g. by an error inside a context) would
    change the next test's device: every test starts on device 0, as a fresh thread does."""
    yield
    cupy = sys.modules.get("cupy")
    if cupy is not None and cupy.cuda.runtime.getDevice() != 0:
        cupy.cuda.Device(0).use()


@pytest.fixture(scope="session")
def cupy_mode():
    """'standin' or 'real': which CuPy the device tests run on."""
    return CUPY_MODE


@pytest.fixture
def cupy_counters():
    """The stand-in's counters, reset; a test asserting counts skips on real CuPy (which
    cannot count)."""
    if not STANDIN:
        pytest.skip(COUNTING_NEEDS_STANDIN)
    return CupyCounters()


@pytest.fixture
def cupy_devices():
    """`need(n)`: this test needs n CUDA devices. The stand-in gets n (restored afterwards;
    0 is a machine without a GPU); real CuPy skips when the machine has another number."""
    import cupy
    previous = cupy.standin.device_count() if STANDIN else None

    def need(n):
        if STANDIN:
            cupy.standin.set_device_count(n)
        elif n == 0:
            pytest.skip("needs a machine without a GPU, which real CuPy cannot pretend to be")
        elif cupy.cuda.runtime.getDeviceCount() < n:
            pytest.skip(f"needs {n} GPUs, this machine has {cupy.cuda.runtime.getDeviceCount()}")
        return n

    yield need
    if STANDIN:
        cupy.standin.set_device_count(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_minidl():
    minidl.random.manual_seed(0)
    yield


def session_processes(sid):
    """Live processes (not zombies) of session `sid`, read from /proc (Linux)."""
    left = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().split(")")[-1].split()
                if int(fields[3]) == sid and fields[0] != "Z":
                    left.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return left
