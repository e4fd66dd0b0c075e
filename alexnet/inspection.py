"""`alexnet inspect`: one image through the network, layer by layer.

    alexnet inspect [IMAGE] [--save-maps DIR] [--device ...] [--columns 1|2] [--checkpoint CKPT]

The image is prepared as Section 2 says: the shorter side rescaled to 256,
the central 256x256 crop, then (as at test time, Section 4.1) the central
227x227 patch (227, not the text's 224: see `alexnet.model`). Then the mean
is subtracted. The paper subtracts the mean training image: with a checkpoint of
`alexnet train` that is the run's own (and the image is prepared exactly as its
cache was, at the cache's size: `preprocess_like_cache`); without one we subtract
ImageNet's well-known per-channel RGB means (123.68, 116.78, 103.94), an
approximation the output says it makes. EXIF orientation is ignored, as the 2012
tools (and ImageNet's own crops) did.

`inspect_image` runs ``model.trace(x)`` in eval mode (dropout scales by 0.5,
Section 4.2) on a freshly initialised, seeded net, or on the weights of a
checkpoint, and prints one row per stage: device, output shape, parameters,
multiply-adds, and the mean / std / fraction of zeros of the output.
With ``save_maps`` it writes every stage's activation maps as PNG grids.

Without an image it uses `default_image()`: a small procedural scene
(gradients, a disc, a box, stripes), so nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from minidl.backend import to_numpy

from .model import AlexNet, AlexNetConfig, TraceRow, _trace_row

# ImageNet's per-channel RGB means in pixel units (0..255), as published with
# the VGG/Caffe models. A stand-in for the paper's mean training image.
IMAGENET_RGB_MEAN = (123.68, 116.78, 103.94)
RESIZE = 256       # Section 2: shorter side to 256, central 256x256 crop


# ----------------------------------------------------------------------------
# The image
# ----------------------------------------------------------------------------
def default_image(width=320, height=256):
    """A deterministic synthetic scene (a PIL RGB image), the built-in input.

    Sky-to-ground gradients, a bright disc, a red box and a striped patch:
    edges, colours and textures for the first layers to respond to. Wider
    than tall, so the resize-and-crop of Section 2 has something to do.
    """
    from PIL import Image
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / (width - 1), y / (height - 1)
    img = np.empty((height, width, 3), np.float32)
    sky = v < 0.6
    img[..., 0] = np.where(sky, 90 + 100 * v, 70 + 60 * (1 - v))     # red
    img[..., 1] = np.where(sky, 140 + 80 * v, 120 + 50 * u)          # green
    img[..., 2] = np.where(sky, 230 - 60 * v, 40 + 20 * u)           # blue
    sun = (x - 0.72 * width) ** 2 + (y - 0.25 * height) ** 2 < (0.1 * height) ** 2
    img[sun] = (255, 230, 120)
    box = (np.abs(x - 0.3 * width) < 0.12 * width) & (np.abs(y - 0.68 * height) < 0.14 * height)
    img[box] = (200, 40, 40)
    stripes = (x > 0.55 * width) & (x < 0.9 * width) & (y > 0.7 * height) & (y < 0.92 * height)
    img[stripes] = np.where((((x + y) // 6) % 2 == 0)[stripes, None], 240.0, 20.0)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def load_image(path):
    """A Pillow-readable file as a PIL RGB image (grayscale, 16-bit, CMYK, palette, alpha
    all converted, as the cache converts them: `alexnet.data.prepare.to_rgb`).

    Raises FileNotFoundError if there is no file, ValueError if Pillow cannot
    read it as an image.
    """
    from PIL import Image, UnidentifiedImageError

    from .data.prepare import to_rgb
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"inspect: no image file at {path}")
    try:
        with Image.open(path) as img:
            return to_rgb(img)                  # EXIF orientation ignored on purpose
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"inspect: {path} is not an image Pillow can read ({e}). "
                         "Expected a JPEG, PNG or another format Pillow opens; "
                         "or leave IMAGE out to use the built-in image.") from e


def preprocess(img, size=227, mean=IMAGENET_RGB_MEAN):
    """Section 2's preparation: (3, size, size) float32, mean subtracted.

    Shorter side to 256 (bilinear), central 256x256 crop, central size x size
    patch, minus the per-channel `mean` (pixel units).
    """
    from PIL import Image
    w, h = img.size
    scale = RESIZE / min(w, h)
    w2, h2 = max(RESIZE, round(w * scale)), max(RESIZE, round(h * scale))
    img = img.resize((w2, h2), Image.BILINEAR)
    left, top = (w2 - RESIZE) // 2, (h2 - RESIZE) // 2
    a = np.asarray(img.crop((left, top, left + RESIZE, top + RESIZE)), dtype=np.float32)
    o = (RESIZE - size) // 2
    a = a[o:o + size, o:o + size]                            # (size, size, 3)
    a = a - np.asarray(mean, np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1))        # (3, size, size)


def preprocess_like_cache(source, size, mean):
    """The input a trained net saw at test time: the image as `alexnet prepare` stored
    it (its central square resized to the mean image's side S, bicubic:
    `alexnet.data.prepare.load_image`), then the centre size x size patch minus the
    same patch of the run's mean training image (S, S, 3), as `alexnet evaluate`'s
    centre patch. source: an image file (read exactly as prepare reads it) or a
    PIL image. Returns (3, size, size) float32."""
    from .data.augment import center_offset
    from .data.prepare import RESAMPLE, load_image as cache_image
    side = mean.shape[0]
    if size > side:
        raise ValueError(f"inspect: the net's input ({size}) is larger than its mean image "
                         f"({side}x{side}); the checkpoint is damaged")
    if isinstance(source, (str, Path)):
        a = cache_image(Path(source).read_bytes(), side)
    else:
        w, h = source.size
        s = min(w, h)
        box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
        a = np.asarray(source.resize((side, side), RESAMPLE, box=box))
    o = center_offset(side, size)
    patch = a[o:o + size, o:o + size].astype(np.float32) - mean[o:o + size, o:o + size]
    return np.ascontiguousarray(patch.transpose(2, 0, 1))          # (3, size, size)


# ----------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------
def build_model(columns=2, devices=None, seed=0, checkpoint=None):
    """The paper's net (columns=2) or the one-column baseline, seeded, in eval mode.

    checkpoint: a run folder of `alexnet train` or its checkpoint.npz (the net is
    then the one the checkpoint describes, small CPU nets included), or a file of
    `minidl.serialize.save_module` holding the paper's net.
    """
    return _build(columns, devices, seed, checkpoint)[0]


def _build(columns, devices, seed, checkpoint):
    """(the net as `build_model` makes it, the mean training image (S, S, 3) that a
    checkpoint of `alexnet train` holds, else None)."""
    if columns not in (1, 2):
        raise ValueError(f"inspect: expected columns 1 or 2, found {columns}")
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    if checkpoint is not None:
        from minidl import serialize
        path = Path(checkpoint)
        if path.is_dir():
            from .train import CHECKPOINT
            path = path / CHECKPOINT
        state = serialize.load(path)
        meta = state.get("meta") if isinstance(state, dict) else None
        if isinstance(meta, dict) and "model" in meta:     # a run of `alexnet train`
            from .imagenet_train import load_checkpoint
            model, meta = load_checkpoint(path, devices)
            return model.eval(), np.asarray(meta["mean"], np.float32)
        cfg = AlexNetConfig() if columns == 2 else AlexNetConfig().one_column()
        model = AlexNet(cfg, devices=_per_column(devices, columns), seed=seed)
        for key in ("model", "params"):          # a training checkpoint or save_module's file
            if isinstance(state, dict) and key in state:
                state = state[key]
                break
        try:
            model.load_state_dict(state)
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"inspect: {path} does not hold weights of the paper's "
                             f"{columns}-column net ({e}); give a run folder of `alexnet "
                             "train` (any net size) or its checkpoint.npz") from None
        return model.eval(), None
    cfg = AlexNetConfig() if columns == 2 else AlexNetConfig().one_column()
    return AlexNet(cfg, devices=_per_column(devices, columns), seed=seed).eval(), None


def _per_column(devices, columns):
    if devices and len(devices) == 1:
        return list(devices) * columns
    return devices or None


def trace_stages(model, x) -> list[TraceRow]:
    """`model.trace(x)` with the activation and the LRN as stages of their own.

    The model's stages are conv+ReLU, LRN+pool and fc+ReLU+dropout; here the
    net's activation and LRN are wrapped on this instance (forward reads them
    from `self`) so each call is seen: "conv1/A" is then the convolution's
    output, "relu1/A" the ReLU's, "lrn1/A" the normalised maps before "pool1/A".
    Within a stage each column runs to the end before the next starts, and the
    model reports the columns in that order, so the calls pair up in order.
    """
    seen = []                                    # (kind, input, output) in call order
    act, lrn = model.act, model._lrn
    own = {k: model.__dict__[k] for k in ("act", "_lrn") if k in model.__dict__}

    def snapshot(t):        # the next op may write into its input's memory (no_grad)
        return SimpleNamespace(data=to_numpy(t.data).copy(), device=t.device)

    def recording(kind, f):
        def g(h):
            before = snapshot(h)
            out = f(h)
            seen.append((kind, before, snapshot(out)))
            return out
        return g
    model.act, model._lrn = recording("relu", act), recording("lrn", lrn)
    rows = []

    def probe(name, t, layer=None):
        stage, _, column = name.partition("/")
        suffix = f"/{column}" if column else ""
        number = "".join(ch for ch in stage if ch.isdigit())
        if seen and seen[0][0] == "relu" and stage.startswith(("conv", "fc")):
            _, pre, post = seen.pop(0)
            rows.append(_trace_row(name, pre, layer))                 # the layer's own output
            rows.append(_trace_row(f"relu{number}{suffix}", post, None))
            if stage.startswith("fc"):                                # fc6, fc7: then dropout
                rows.append(_trace_row(f"dropout{number}{suffix}", t, None))
            return
        if seen and seen[0][0] == "lrn" and stage.startswith("pool"):
            _, _, normed = seen.pop(0)
            rows.append(_trace_row(f"lrn{number}{suffix}", normed, None))
        rows.append(_trace_row(name, t, layer))
    try:
        import minidl
        with minidl.no_grad():
            model.forward(x, probe=probe)
    finally:                                      # the model as it was
        for k in ("act", "_lrn"):
            if k in own:
                setattr(model, k, own[k])
            else:
                delattr(model, k)
    return rows


def format_table(rows: list[TraceRow], total_params: int | None = None) -> list[str]:
    """The trace as text lines: one per stage, then the totals."""
    head = ("stage", "device", "output shape", "params", "M-adds", "mean", "std", "zeros")
    cells = [(r.name, r.device, "x".join(map(str, r.shape)), f"{r.params:,}",
              f"{r.madds / 1e6:.1f}" if r.madds else "-", f"{r.mean:.4g}", f"{r.std:.4g}",
              f"{r.zeros:.1%}") for r in rows]
    params = sum(r.params for r in rows)
    madds = sum(r.madds for r in rows)
    total = ("total", "", "", f"{params:,}", f"{madds / 1e6:.1f}", "", "", "")
    widths = [max(len(c[i]) for c in [head, total, *cells]) for i in range(len(head))]
    def line(c):
        return "  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths)))
    rule = "-" * len(line(head))
    lines = [line(head), rule, *map(line, cells), rule, line(total)]
    if total_params is not None and total_params != params:
        lines.append(f"(the model holds {total_params:,} parameters; the stages list {params:,})")
    return lines


def inspect_image(path=None, columns=2, devices=None, save_maps=None, checkpoint=None, seed=0,
                  out=print) -> list[TraceRow]:
    """Run one image through AlexNet and print what every stage made of it.

    Args:
        path: an image file (anything Pillow reads); None: `default_image()`.
        columns: 2 for the paper's net, 1 for Section 3.2's one-column baseline.
        devices: one device per column ("cpu:0,cpu:1", ["cuda:0", "cuda:1"]) or
            one for all; default: every column on "cpu".
        save_maps: a directory to write one PNG of activation maps per stage.
        checkpoint: a run folder of `alexnet train` or its checkpoint.npz (its net and
            its mean training image are used), or a minidl.serialize file holding a
            "model" state dict; default: a fresh net initialised as Section 5 says,
            from `seed`.
        out: where the lines go (print by default).
    Returns:
        the `TraceRow` of every stage (with ``output``, the array).
    """
    import minidl
    img = default_image() if path is None else load_image(path)
    model, mean = _build(columns, devices, seed, checkpoint)
    size = model.cfg.input_size
    side = RESIZE if mean is None else mean.shape[0]
    if mean is None:
        x = preprocess(img, size)
    else:
        x = preprocess_like_cache(img if path is None else path, size, mean)
    rows = trace_stages(model, minidl.Tensor(x[None]))                   # (1, 3, 227, 227)

    source = "built-in synthetic image" if path is None else str(path)
    weights = f"checkpoint {checkpoint}" if checkpoint else f"fresh Section 5 init, seed {seed}"
    out(f"image: {source} ({img.size[0]}x{img.size[1]}) -> shorter side {side}, "
        f"central {side}x{side}, central {size}x{size} patch")
    if mean is None:
        out(f"mean: no trained mean image available; subtracted ImageNet's RGB means "
            f"{IMAGENET_RGB_MEAN} as an approximation")
    else:
        out(f"mean: the run's mean training image ({side}x{side}, from the checkpoint), its "
            f"central {size}x{size} patch subtracted, as `alexnet evaluate` does")
    out(f"net: {columns} column(s) on {', '.join(map(str, model.devices))}; {weights}; "
        "eval mode (dropout scales by 0.5)")
    for line in format_table(rows, model.num_parameters()):
        out(line)
    if save_maps is not None:
        paths = save_activation_maps(rows, save_maps)
        out(f"wrote {len(paths)} activation-map PNGs to {save_maps}")
    return rows


# ----------------------------------------------------------------------------
# Activation maps as PNG grids
# ----------------------------------------------------------------------------
def map_file_name(index: int, row: TraceRow) -> str:
    """'01_conv1_A.png' for the first stage, conv1 of column A."""
    return f"{index + 1:02d}_{row.name.replace('/', '_')}.png"


def _normalise(a, axes):
    """Each map scaled to [0, 1] on its own (a constant map becomes 0)."""
    lo, hi = a.min(axis=axes, keepdims=True), a.max(axis=axes, keepdims=True)
    return (a - lo) / np.where(hi > lo, hi - lo, 1)


def activation_grid(a, pad=1, normalise=True):
    """(C, H, W) maps -> one 2-D image: the maps tiled in a near-square grid.

    Every map is enlarged by an integer factor so small maps (13x13, 6x6) stay
    visible, and (normalise=True) scaled to [0, 1] on its own; the gaps are NaN.
    """
    c, h, w = a.shape
    zoom = max(1, 48 // max(h, w))
    a = a.astype(np.float32)
    if normalise:
        a = _normalise(a, (1, 2))
    a = a.repeat(zoom, 1).repeat(zoom, 2)
    h, w = h * zoom, w * zoom
    cols = int(np.ceil(np.sqrt(c)))
    rows = int(np.ceil(c / cols))
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan, np.float32)
    for i in range(c):
        r, q = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = a[i]
    return grid


def activation_strip(v, width=64, cell=4, normalise=True):
    """A (F,) fc output -> a strip of F cells, `width` per row (normalised together)."""
    v = v.astype(np.float32)
    if normalise:
        v = _normalise(v, 0)
    rows = int(np.ceil(v.size / width))
    strip = np.full(rows * width, np.nan, np.float32)
    strip[:v.size] = v
    return strip.reshape(rows, width).repeat(cell, 0).repeat(cell, 1)


def save_activation_maps(rows: list[TraceRow], directory) -> list[Path]:
    """One PNG per stage in `directory`: conv maps as a grid, fc outputs as a strip,
    titled with the stage and its output shape, with a colour bar in activation
    units (one scale for the whole stage, so maps can be compared)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps
    cmap = colormaps["viridis"].with_extremes(bad="black")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, row in enumerate(rows):
        a = np.asarray(row.output)[0]                   # the one image of the batch
        if a.ndim == 3:
            image = activation_grid(a, normalise=False)
            what = f"{a.shape[0]} maps of {a.shape[1]}x{a.shape[2]}"
        else:
            image = activation_strip(a.reshape(-1), normalise=False)
            what = f"{a.size} values, 64 per row"
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        fig, ax = plt.subplots(figsize=(7, 6.2 if a.ndim == 3 else 3.2), dpi=100)
        shown = ax.imshow(np.ma.masked_invalid(image), cmap=cmap, vmin=lo,
                          vmax=hi if hi > lo else lo + 1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{row.name}: output {'x'.join(map(str, row.shape))} ({what})", fontsize=10)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03).set_label("activation")
        path = directory / map_file_name(i, row)
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
