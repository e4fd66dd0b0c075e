"""minidl: a tiny autograd engine on NumPy or CuPy arrays, enough for AlexNet.

    import minidl as md
    x = md.Tensor(np.random.randn(2, 3), requires_grad=True)
    y = md.functions.relu(x).sum()
    y.backward()            # x.grad == (x > 0)
"""
from .backend import Device, array_module, cupy_available, get_device, to_numpy
from .autograd import Function, Tensor, as_tensor, is_grad_enabled, no_grad
from . import functions
from .functions import copy
from .gradcheck import gradcheck
from . import random
from . import cpu
from .cpu import get_num_threads, keep_freed_memory, set_num_threads

__version__ = "0.1.0"

__all__ = ["Device", "array_module", "cupy_available", "get_device", "to_numpy",
           "Function", "Tensor", "as_tensor", "is_grad_enabled", "no_grad",
           "functions", "copy", "gradcheck", "random", "cpu", "get_num_threads", "set_num_threads",
           "keep_freed_memory"]
