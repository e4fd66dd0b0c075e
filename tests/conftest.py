import os

import numpy as np
import pytest

import minidl


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
