"""The global random generator of minidl (dropout masks, weight init).

One NumPy Generator on the host: a seeded run is identical on the CPU and
the GPU, and its state is a JSON-serialisable dict that goes into checkpoints.
"""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the global generator; returns it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator() -> np.random.Generator:
    return _generator


def get_state() -> dict:
    """The global generator's state (a dict of ints and strings)."""
    return _generator.bit_generator.state


def set_state(state: dict) -> None:
    _generator.bit_generator.state = state
