"""`alexnet inspect`: one image through the network, layer by layer.

    alexnet inspect [IMAGE] [--save-maps DIR] [--device ...] [--columns 1|2] [--checkpoint CKPT]

The image is prepared as Section 2 says: the shorter side rescaled to 256,
the central 256x256 crop, then (as at test time, Section 4.1) the central
227x227 patch (227, not the text's 224: see `alexnet.model`). Then the mean
is subtracted. The paper subtracts the mean training image; we have no
trained mean here, so we subtract ImageNet's well-known per-channel RGB means
(123.68, 116.78, 103.94), an approximation the output says it makes. EXIF
orientation is ignored, as the 2012 tools (and ImageNet's own crops) did.

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

import numpy as np

from .model import AlexNet, AlexNetConfig, TraceRow

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
    """A Pillow-readable file as a PIL RGB image (grayscale, CMYK, palette, alpha all converted).

    Raises FileNotFoundError if there is no file, ValueError if Pillow cannot
    read it as an image.
    """
    from PIL import Image, UnidentifiedImageError
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"inspect: no image file at {path}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")           # EXIF orientation ignored on purpose
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


# ----------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------
def build_model(columns=2, devices=None, seed=0, checkpoint=None):
    """The paper's net (columns=2) or the one-column baseline, seeded, in eval mode."""
    if columns not in (1, 2):
        raise ValueError(f"inspect: expected columns 1 or 2, found {columns}")
    cfg = AlexNetConfig() if columns == 2 else AlexNetConfig().one_column()
    if isinstance(devices, str):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    if devices and len(devices) == 1:
        devices = list(devices) * columns
    model = AlexNet(cfg, devices=devices or None, seed=seed)
    if checkpoint is not None:
        from minidl import serialize
        state = serialize.load(checkpoint)
        for key in ("model", "params"):          # a training checkpoint or save_module's file
            if isinstance(state, dict) and key in state:
                state = state[key]
                break
        model.load_state_dict(state)
    return model.eval()


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
        checkpoint: a minidl.serialize file holding a "model" state dict;
            default: a fresh net initialised as Section 5 says, from `seed`.
        out: where the lines go (print by default).
    Returns:
        the `TraceRow` of every stage (with ``output``, the array).
    """
    import minidl
    img = default_image() if path is None else load_image(path)
    model = build_model(columns, devices, seed, checkpoint)
    size = model.cfg.input_size
    x = minidl.Tensor(preprocess(img, size)[None])                       # (1, 3, 227, 227)
    rows = list(model.trace(x))

    source = "built-in synthetic image" if path is None else str(path)
    weights = f"checkpoint {checkpoint}" if checkpoint else f"fresh Section 5 init, seed {seed}"
    out(f"image: {source} ({img.size[0]}x{img.size[1]}) -> shorter side {RESIZE}, "
        f"central {RESIZE}x{RESIZE}, central {size}x{size} patch")
    out(f"mean: no trained mean image available; subtracted ImageNet's RGB means "
        f"{IMAGENET_RGB_MEAN} as an approximation")
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


def activation_grid(a, pad=1):
    """(C, H, W) maps -> one 2-D image: the maps tiled in a near-square grid.

    Every map is normalised to [0, 1] on its own and enlarged by an integer
    factor so small maps (13x13, 6x6) stay visible; the gaps are NaN.
    """
    c, h, w = a.shape
    zoom = max(1, 48 // max(h, w))
    a = _normalise(a.astype(np.float32), (1, 2)).repeat(zoom, 1).repeat(zoom, 2)
    h, w = h * zoom, w * zoom
    cols = int(np.ceil(np.sqrt(c)))
    rows = int(np.ceil(c / cols))
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan, np.float32)
    for i in range(c):
        r, q = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = a[i]
    return grid


def activation_strip(v, width=64, cell=4):
    """A (F,) fc output -> a strip of F cells, `width` per row, normalised together."""
    v = _normalise(v.astype(np.float32), 0)
    rows = int(np.ceil(v.size / width))
    strip = np.full(rows * width, np.nan, np.float32)
    strip[:v.size] = v
    return strip.reshape(rows, width).repeat(cell, 0).repeat(cell, 1)


def save_activation_maps(rows: list[TraceRow], directory) -> list[Path]:
    """One PNG per stage in `directory`: conv maps as a grid, fc outputs as a strip."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    from matplotlib import colormaps
    cmap = colormaps["viridis"].with_extremes(bad="black")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, row in enumerate(rows):
        a = np.asarray(row.output)[0]                   # the one image of the batch
        image = activation_grid(a) if a.ndim == 3 else activation_strip(a.reshape(-1))
        path = directory / map_file_name(i, row)
        mpimg.imsave(path, np.ma.masked_invalid(image), cmap=cmap, vmin=0, vmax=1)
        paths.append(path)
    return paths
