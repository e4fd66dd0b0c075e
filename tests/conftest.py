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
