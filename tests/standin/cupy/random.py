"""`cupy.random` of the CuPy stand-in (a test double, not CuPy), backed by NumPy's Generator.

Every draw is one kernel and its result lives on the current device. As in
CuPy, the module-level functions use one `RandomState` per device
(`get_random_state()`), and `seed()` seeds the current device's. A
`RandomState` or `Generator` keeps its state on the device it was made on;
using it while another device is current raises ValueError (its state would be
read by a kernel on another device, as in CuPy without peer access). The
streams of numbers differ from real CuPy's; only shapes, dtypes and devices match.
"""
from __future__ import annotations

import numpy as np

from ._ndarray import _wrap, device_error, out_operand, unwrap
from ._state import current, launch


def _size(size):
    if size is None or isinstance(size, tuple):
        return size
    return tuple(size) if isinstance(size, list) else (int(size),)


class _DeviceGenerator:
    """What RandomState and Generator share: a NumPy generator pinned to a device."""

    def __init__(self, seed=None):
        self._device = current()
        self._g = np.random.default_rng(seed)

    def _draw(self, make, *params):
        """Run `make(numpy_generator, *params)` as one kernel on the current device."""
        dev = current()
        if dev != self._device:
            raise device_error(self._device, dev)
        r = make(self._g, *unwrap(params, dev, "cupy.random"))
        launch(dev)
        return None if r is None else _wrap(np.asarray(r), dev)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return self._draw(lambda g, lo, hi: g.uniform(lo, hi, _size(size)).astype(dtype),
                          low, high)

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return self._draw(lambda g, m, s: g.normal(m, s, _size(size)).astype(dtype),
                          loc, scale)


class RandomState(_DeviceGenerator):
    """`cupy.random.RandomState(seed)`."""

    def seed(self, seed=None):
        self._g = np.random.default_rng(seed)

    def rand(self, *size, dtype=float):
        return self.random_sample(size or None, dtype)

    def randn(self, *size, dtype=float):
        return self.standard_normal(size or None, dtype)

    def random_sample(self, size=None, dtype=float):
        return self._draw(lambda g: g.random(_size(size), dtype=dtype))

    random = random_sample

    def standard_normal(self, size=None, dtype=float):
        return self._draw(lambda g: g.standard_normal(_size(size), dtype=dtype))

    def randint(self, low, high=None, size=None, dtype=int):
        return self._draw(lambda g: g.integers(low, high, _size(size), dtype=dtype))

    def permutation(self, x):
        if isinstance(x, (int, np.integer)):
            return self._draw(lambda g: g.permutation(int(x)))
        return self._draw(lambda g, a: g.permutation(a), x)

    def shuffle(self, a):
        out = out_operand(a, current(), "cupy.random.shuffle")
        self._draw(lambda g: g.shuffle(out))

    def choice(self, a, size=None, replace=True, p=None):
        return self._draw(lambda g, a_, p_: g.choice(a_, _size(size), replace, p_), a, p)


class Generator(_DeviceGenerator):
    """`cupy.random.Generator` as made by `cupy.random.default_rng(seed)`."""

    def _into(self, r, out):
        if out is None:
            return r
        dev = current()
        out_operand(out, dev, "cupy.random.Generator")[...] = r._a
        return out

    def random(self, size=None, dtype=np.float64, out=None):
        size = out.shape if out is not None else size
        return self._into(self._draw(lambda g: g.random(_size(size), dtype=dtype)), out)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        size = out.shape if out is not None else size
        return self._into(self._draw(lambda g: g.standard_normal(_size(size), dtype=dtype)), out)

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return self._draw(lambda g: g.integers(low, high, _size(size), dtype=dtype,
                                               endpoint=endpoint))


def default_rng(seed=None) -> Generator:
    return Generator(seed)


_states: dict = {}


def get_random_state() -> RandomState:
    """The current device's RandomState (CuPy keeps one per device)."""
    dev = current()
    rs = _states.get(dev)
    if rs is None:
        rs = _states[dev] = RandomState()
    return rs


def set_random_state(rs: RandomState) -> None:
    _states[current()] = rs


def reset_states() -> None:
    _states.clear()


def seed(seed=None) -> None:
    get_random_state().seed(seed)


def rand(*size, dtype=float):
    return get_random_state().rand(*size, dtype=dtype)


def randn(*size, dtype=float):
    return get_random_state().randn(*size, dtype=dtype)


def random_sample(size=None, dtype=float):
    return get_random_state().random_sample(size, dtype)


random = ranf = sample = random_sample


def uniform(low=0.0, high=1.0, size=None, dtype=float):
    return get_random_state().uniform(low, high, size, dtype)


def normal(loc=0.0, scale=1.0, size=None, dtype=float):
    return get_random_state().normal(loc, scale, size, dtype)


def standard_normal(size=None, dtype=float):
    return get_random_state().standard_normal(size, dtype)


def randint(low, high=None, size=None, dtype=int):
    return get_random_state().randint(low, high, size, dtype)


def permutation(x):
    return get_random_state().permutation(x)


def shuffle(a):
    get_random_state().shuffle(a)


def choice(a, size=None, replace=True, p=None):
    return get_random_state().choice(a, size, replace, p)

