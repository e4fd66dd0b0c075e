"""Figures 3 and 4 of the paper (Section 6.1), as PNG files (matplotlib, Agg).

Figure 3: "96 convolutional kernels of size 11x11x3 learned by the first
convolutional layer on the 224x224x3 input images. The top 48 kernels were
learned on GPU 1 while the bottom 48 kernels were learned on GPU 2."

Figure 4: "(Left) Eight ILSVRC-2010 test images and the five labels considered
most probable by our model. The correct label is written under each image, and
the probability assigned to the correct label is also shown with a red bar (if it
happens to be in the top 5). (Right) Five ILSVRC-2010 test images in the first
column. The remaining columns show the six training images that produce feature
vectors in the last hidden layer with the smallest Euclidean distance from the
feature vector for the test image."

Here both halves of Figure 4 are one row per validation image: the image, its
top-5 bars, then its nearest training images by fc7 (4096-d) distance.
These functions take a model and arrays; `alexnet.imagenet_train.make_figures`
loads a checkpoint and a cache and calls them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minidl  # noqa: E402
from minidl import Tensor  # noqa: E402
from minidl.backend import get_device, to_numpy  # noqa: E402

from .data.augment import eval_batch, mean_chw  # noqa: E402
from .evaluate import predict_proba  # noqa: E402


# ----------------------------------------------------------------------------- Figure 3
def kernel_grid(kernels, ncols=12, pad=1) -> np.ndarray:
    """kernels (K, 3, h, w) -> one RGB image (rows*(h+pad)+pad, ncols*(w+pad)+pad, 3) in [0, 1].

    Each kernel is shown on its own scale (its min -> 0, its max -> 1), as one
    shows learned filters: their absolute sizes differ a lot between kernels.
    The gaps between kernels are white.
    """
    k = np.asarray(kernels, np.float64).transpose(0, 2, 3, 1)          # (K, h, w, 3)
    lo = k.min(axis=(1, 2, 3), keepdims=True)
    span = k.max(axis=(1, 2, 3), keepdims=True) - lo
    k = (k - lo) / np.where(span > 0, span, 1.0)
    K, h, w, _ = k.shape
    ncols = min(ncols, K)
    rows = -(-K // ncols)
    grid = np.ones((rows * (h + pad) + pad, ncols * (w + pad) + pad, 3))
    for i in range(K):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = k[i]
    return grid


def conv1_kernels(model) -> list:
    """Each column's conv1 kernels as NumPy arrays (48, 3, 11, 11) for the paper's net."""
    return [to_numpy(c.conv1.weight.data) for c in model.columns]


def plot_figure3(model, path, ncols=12) -> Path:
    """Figure 3: the conv1 kernels, one block per column (GPU 1 on top, GPU 2 below)."""
    blocks = conv1_kernels(model)
    fig, axes = plt.subplots(len(blocks), 1, figsize=(8, 2.2 * len(blocks) + 0.4), dpi=150,
                             squeeze=False)
    for i, (ax, k) in enumerate(zip(axes[:, 0], blocks)):
        ax.imshow(kernel_grid(k, ncols), interpolation="nearest")
        ax.set_axis_off()
        dev = model.columns[i].device
        ax.set_title(f"column {'AB'[i]} ({dev}): {len(k)} kernels {k.shape[2]}x{k.shape[3]}x{k.shape[1]}",
                     fontsize=9)
    fig.suptitle("Figure 3: conv1 kernels (each scaled to its own range)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- Figure 4
def input_batches(images, rows, crop, mean, batch_size):
    """(rows chunk, x (n, 3, crop, crop) float32): centre patches minus the mean patch."""
    mean_t = mean_chw(mean)
    for a in range(0, len(rows), batch_size):
        chunk = rows[a:a + batch_size]
        yield chunk, eval_batch(images, chunk, crop, mean_t=mean_t)


def fc7_features(model, images, rows, crop, mean, batch_size=64, progress=False,
                 desc="fc7 features") -> np.ndarray:
    """The last hidden layer (fc7 of both columns, 4096-d for the paper's net) of the
    centre patch of images[rows], in eval mode (no dropout) and without a graph.
    Returns float32 (len(rows), features)."""
    from .train import input_device
    device = get_device(input_device(model))
    was_training = model.training
    model.eval()
    out = []
    try:
        with minidl.no_grad():
            for _, x in tqdm(input_batches(images, rows, crop, mean, batch_size), desc=desc,
                             total=-(-len(rows) // batch_size), leave=False, disable=not progress):
                out.append(to_numpy(model.features(Tensor(x, device=device)).data).astype(np.float32))
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.cfg.fc_features), np.float32)


def nearest(queries, keys, k) -> np.ndarray:
    """Indices (Q, k) of the k rows of `keys` (M, F) closest to each query (Q, F) in
    Euclidean distance, nearest first: ||q - m||^2 = ||q||^2 - 2 q.m + ||m||^2."""
    q, m = np.asarray(queries, np.float64), np.asarray(keys, np.float64)
    d2 = (q * q).sum(1)[:, None] - 2 * q @ m.T + (m * m).sum(1)[None, :]
    k = min(k, m.shape[0])
    return np.argsort(d2, axis=1, kind="stable")[:, :k]


def class_name(words, wnids, k, width=22) -> str:
    """A short label for class k: the first synonym of its words, else its WNID."""
    name = (words[k] if words and k < len(words) and words[k] else wnids[k] if wnids else str(k))
    name = name.split(",")[0].strip()
    return name if len(name) <= width else name[:width - 1] + "~"


def class_words(wnids, words=None, devkit=None) -> list:
    """Readable names of the classes `wnids`: the cache's words, else the devkit's
    (a folder or .tar.gz), else the shipped ILSVRC-2012 list (data/synset_words.txt);
    a WNID none of them knows keeps its WNID."""
    from .data.imagenet import load_devkit
    names = list(words or [])
    if len(names) != len(wnids) or not all(names):
        table = load_devkit(devkit).words if devkit else shipped_synset_words()
        names = [(names[k] if k < len(names) and names[k] else table.get(w, w))
                 for k, w in enumerate(wnids)]
    return names


def shipped_synset_words() -> dict:
    """{WNID: words} of the 1000 ILSVRC-2012 classes, from alexnet/data/synset_words.txt."""
    path = Path(__file__).parent / "data" / "synset_words.txt"
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            wnid, _, text = line.partition(" ")
            table[wnid] = text.strip()
    return table


def plot_figure4(queries, probs, labels, neighbours, path, wnids=None, words=None) -> Path:
    """Figure 4, one row per validation image: the image, beside it its top-5 labels
    as bars (the true label in red, and named above the bars), and its nearest
    training images by last-hidden-layer distance.

    queries (Q, H, W, 3) uint8; probs (Q, classes) softmax; labels (Q,) true classes;
    neighbours (Q, k, H, W, 3) uint8, nearest first.
    """
    Q, k = len(queries), neighbours.shape[1]
    fig = plt.figure(figsize=(2.0 * (k + 2.6), 1.9 * Q + 0.5), dpi=110)
    grid = fig.add_gridspec(Q, k + 2, width_ratios=[1, 1.8] + [1] * k, wspace=0.08, hspace=0.6)
    for i in range(Q):
        ax = fig.add_subplot(grid[i, 0])
        ax.imshow(queries[i])
        ax.set_axis_off()
        if i == 0:
            ax.set_title("validation image", fontsize=9)

        top = np.argsort(-probs[i], kind="stable")[:5]
        ax = fig.add_subplot(grid[i, 1])
        colours = ["tab:red" if c == labels[i] else "tab:blue" for c in top]
        ax.barh(range(len(top)), probs[i][top], color=colours)
        for j, c in enumerate(top):                 # each name on its bar, clear of the images
            p = float(probs[i][c])
            inside = p > 0.55
            ax.text(p - 0.02 if inside else p + 0.02, j, class_name(words, wnids, int(c)),
                    va="center", ha="right" if inside else "left", fontsize=8,
                    color="white" if inside else "black")
        ax.set_yticks([])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel("softmax probability", fontsize=8)
        ax.set_title(f"true: {class_name(words, wnids, int(labels[i]), width=30)}"
                     + ("  (red: correct)" if i == 0 else ""), fontsize=8, loc="left")

        for j in range(k):
            ax = fig.add_subplot(grid[i, 2 + j])
            ax.imshow(neighbours[i, j])
            ax.set_axis_off()
            if i == 0 and j == 0:
                ax.set_title("nearest training images (fc7)", fontsize=8, loc="left")
    fig.suptitle("Figure 4: predictions and last-hidden-layer neighbours", fontsize=10)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def figure4(model, val, train, crop, mean, path, images=5, neighbours=6, max_train=2000,
            batch_size=64, seed=0, progress=False, devkit=None) -> Path:
    """Compute and draw Figure 4.

    val, train: `CacheSplit`s; crop, mean: the net's input side and the mean image it
    was trained with. images: validation images shown (drawn with `seed`);
    max_train: training images searched for neighbours (a seeded random subset:
    fc7 of all 1.2M is a full forward pass over the training set).
    devkit: where class names come from when the cache has none (`class_words`).
    """
    rng = np.random.default_rng(seed)
    q_rows = np.sort(rng.choice(val.rows, min(images, len(val.rows)), replace=False))
    t_rows = np.sort(rng.permutation(train.rows)[:max_train])
    from .train import input_device
    device = get_device(input_device(model))
    x = next(input_batches(val.images, q_rows, crop, mean, len(q_rows)))[1]
    was_training = model.training
    model.eval()
    try:
        probs = predict_proba(model, x, device)                             # (Q, classes)
    finally:
        model.train(was_training)
    fq = fc7_features(model, val.images, q_rows, crop, mean, batch_size)
    ft = fc7_features(model, train.images, t_rows, crop, mean, batch_size, progress,
                      desc="fc7 of training images")
    near = t_rows[nearest(fq, ft, neighbours)]                              # (Q, k) cache rows
    return plot_figure4(np.asarray(val.images[q_rows]), probs, val.labels[q_rows],
                        np.asarray(train.images[near.reshape(-1)]).reshape(near.shape + val.images.shape[1:]),
                        path, val.wnids, class_words(val.wnids, val.words, devkit))
