"""`cupy.lib` of the CuPy stand-in (a test double, not CuPy)."""
from . import stride_tricks

__all__ = ["stride_tricks"]
