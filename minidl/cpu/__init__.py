"""The CPU fast path: speed for NumPy arrays, beside the plain ops of minidl.functions.

One switch and one set of knobs (plan.py):

    import minidl
    minidl.cpu.enabled()                                   # on by default; MINIDL_CPU_FAST=0: off
    minidl.cpu.use_fast_path(False)                        # the plain path from now on
    with minidl.cpu.use_fast_path(plan=minidl.cpu.Plan(conv_schedule="chunks")):
        pass                                               # other knobs, inside the block only

One file per idea: conv.py (the convolution in cache-sized blocks),
pool.py + pool_kernels.py (compiled pooling loops), lrn.py (LRN a few images
at a time), elementwise.py and linear.py (ReLU, tanh and fully connected
layers over threads), layout.py (CHWN activations), parallel.py (the
threads), memory.py (scratch arrays, malloc's freed memory).
"""
from .plan import Plan, current_plan, enabled, plan_for, use_fast_path
from .parallel import available_cores, get_num_threads, set_num_threads
from .memory import clear_workspaces, keep_freed_memory

__all__ = ["Plan", "current_plan", "enabled", "plan_for", "use_fast_path",
           "available_cores", "get_num_threads", "set_num_threads",
           "clear_workspaces", "keep_freed_memory"]
