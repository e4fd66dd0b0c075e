"""minidl.keep_freed_memory: a freed big array's pages are reused, not faulted in again."""
import subprocess
import sys
import textwrap

import pytest

import minidl

_CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import minidl
    kept = minidl.keep_freed_memory() if sys.argv[1] == "keep" else None
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(16 << 18, np.float32); del a          # 16 MB, once to warm up
    f0 = faults()
    for _ in range(5):
        a = np.ones(16 << 18, np.float32); del a      # the pages of each new array touched
    print(kept, (faults() - f0) / 5)
""")


def _faults_per_array(mode):
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_freed_arrays_are_reused_without_page_faults():
    kept, with_keep = _faults_per_array("keep")
    if kept == "False":                               # Linux without glibc (musl)
        pytest.skip("this C library has no mallopt")
    _, default = _faults_per_array("default")
    assert kept == "True"
    assert default >= 1          # each new 16 MB array faulted its pages in (8-4,096 faults)
    assert with_keep < 1         # the freed pages reused: no faults at all


def test_repeated_calls_and_other_platforms(monkeypatch):
    first = minidl.keep_freed_memory()
    assert minidl.keep_freed_memory() is first        # idempotent
    from minidl.cpu import memory
    monkeypatch.setattr(memory, "_kept", False)
    monkeypatch.setattr(memory, "_platform", lambda: "darwin")
    assert memory.keep_freed_memory() is False        # elsewhere: nothing, no error
