"""Input checks shared by the image layers: one wording for one mistake."""
from __future__ import annotations

import numpy as np


def check_images(name, x):
    """Raise a ValueError naming layer `name` unless x is a float (N, C, H, W) array."""
    if x.ndim != 4:
        raise ValueError(f"{name}: expected x of shape (N, C, H, W), found shape "
                         f"{tuple(x.shape)} ({x.ndim} axes); add the missing axes, e.g. "
                         "x.reshape(1, C, H, W) for one image")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected a floating-point array, found dtype {x.dtype}; "
                         "convert first, e.g. x.astype('float32')")


def check_conv(x, W, b, pad, groups):
    """Raise a ValueError unless x, W, b fit one conv2d call (see conv.py)."""
    layer, G, p = "conv2d", groups, pad
    for name, a in (("x", x), ("W", W)) + ((("b", b),) if b is not None else ()):
        if a.dtype.kind != "f":
            raise ValueError(f"{layer}: expected a floating-point {name}, found dtype "
                             f"{a.dtype}; convert it with .astype(numpy.float32)")
    if x.ndim != 4:
        raise ValueError(f"{layer}: expected x of rank 4 (N, C, H, W), found shape "
                         f"{x.shape} (rank {x.ndim}); add a batch axis with x[None] "
                         "for a single image")
    if W.ndim != 4:
        raise ValueError(f"{layer}: expected W of rank 4 (C_out, C/groups, KH, KW), "
                         f"found shape {W.shape} (rank {W.ndim})")
    if W.dtype != x.dtype or (b is not None and b.dtype != x.dtype):
        raise ValueError(f"{layer}: expected x, W and b of one dtype, found x {x.dtype}, "
                         f"W {W.dtype}" + (f", b {b.dtype}" if b is not None else "") +
                         "; convert them to one dtype (float32 for training)")
    N, C, H, Wd = x.shape
    C_out, Cg, KH, KW = W.shape
    if C % G:
        raise ValueError(f"{layer}: expected input channels C divisible by groups={G}, "
                         f"found C={C} (x of shape {x.shape})")
    if C_out % G:
        raise ValueError(f"{layer}: expected output channels C_out divisible by "
                         f"groups={G}, found C_out={C_out} (W of shape {W.shape})")
    if Cg * G != C:
        raise ValueError(f"{layer}: expected W.shape[1] * groups == C, i.e. W of shape "
                         f"({C_out}, {C // G}, {KH}, {KW}) for x with C={C} and "
                         f"groups={G}; found W.shape[1]={Cg} ({Cg} * {G} = {Cg * G} != {C})")
    if KH > H + 2 * p or KW > Wd + 2 * p:
        raise ValueError(f"{layer}: expected a kernel no larger than the padded input, "
                         f"found kernel {KH}x{KW} for input {H}x{Wd} padded by {p} "
                         f"({H + 2 * p}x{Wd + 2 * p}); use a smaller kernel or more padding")
    if b is not None and b.shape != (C_out,):
        raise ValueError(f"{layer}: expected bias of shape ({C_out},), found {b.shape}")


def check_positive_ints(layer, **values):
    """Raise a ValueError unless every value is an int >= its minimum: values as name=(v, low)."""
    for name, (v, low) in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{layer}: expected {name} an integer >= {low}, found {v!r}")
