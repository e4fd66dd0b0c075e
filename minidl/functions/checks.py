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
