"""Figures as PNG files (matplotlib, Agg backend: no screen needed).

- Figure 1: training error vs epochs, ReLU (solid) vs tanh (dashed), CIFAR-10.
- Training curves: loss, top-1 and top-5 per epoch of a run.
- Figures 3 and 4 (ImageNet) live in `alexnet.figures_imagenet`.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_figure1(curves: dict, path, target=0.25, title=None, note=None) -> Path:
    """Figure 1 of the paper.

    Args:
        curves: {"relu": [err after epoch 1, 2, ...], "tanh": [...]}.
        target: the 25% training-error line.
        note: a line printed on the plot (e.g. that it is the --quick run).
    """
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    styles = {"relu": dict(ls="-", color="black", label="ReLU"),
              "tanh": dict(ls="--", color="black", label="tanh")}
    for name, errors in curves.items():
        epochs = range(1, len(errors) + 1)
        ax.plot(epochs, errors, lw=1.8, **styles.get(name, dict(label=name)))
    ax.axhline(target, color="gray", lw=0.8, ls=":")
    ax.text(ax.get_xlim()[1], target, f" {target:.0%}", va="center", ha="left", color="gray")
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Training error rate")
    ax.set_ylim(0, max(0.8, max((max(e) for e in curves.values() if e), default=0.8)))
    ax.set_title(title or "CIFAR-10, four-layer CNN: ReLU (solid) vs tanh (dashed)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if note:
        ax.text(0.98, 0.02, note, transform=ax.transAxes, ha="right", va="bottom",
                fontsize=8, color="firebrick")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_claim(name, variants: dict, path, title=None) -> Path:
    """One claim's experiment: training (solid) and test (dashed) error per epoch of each
    variant, the mean over seeds, the seeds' range shaded.

    variants: {variant: [per-seed {"train_curve": [...], "test_curve": [...]}]}.
    """
    import numpy as np
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (variant, runs) in enumerate(variants.items()):
        colour = colours[i % len(colours)]
        for key, style, what in (("train_curve", "-", "training"), ("test_curve", "--", "test")):
            n = max(len(r[key]) for r in runs)
            if n == 0:
                continue
            curves = np.full((len(runs), n), np.nan)                  # (seeds, epochs)
            for i, r in enumerate(runs):                             # a diverged run stops early
                curves[i, :len(r[key])] = r[key]
            epochs = np.arange(1, n + 1)
            ax.plot(epochs, np.nanmean(curves, 0), style, color=colour, lw=1.6,
                    label=f"{variant}, {what}")
            if len(curves) > 1:
                ax.fill_between(epochs, np.nanmin(curves, 0), np.nanmax(curves, 0),
                                color=colour, alpha=0.12)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error rate (lower is better)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or name)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# Legend names of the metrics a history holds (the top-k entries are error rates).
METRIC_NAMES = {"train_loss": "training loss", "val_loss": "validation loss",
                "test_loss": "test loss",
                "train_top1": "training top-1 error", "train_top5": "training top-5 error",
                "val_top1": "validation top-1 error", "val_top5": "validation top-5 error",
                "test_top1": "test top-1 error", "test_top5": "test top-5 error"}


def plot_training(history: list, path, title="training") -> Path:
    """Loss and top-1/top-5 error per epoch (train and, where present, validation/test)."""
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for key, style in (("train_loss", "-"), ("val_loss", "--"), ("test_loss", ":")):
        if any(key in r for r in history):
            ax1.plot(epochs, [r.get(key) for r in history], style, label=METRIC_NAMES[key])
    ax1.set_xlabel("epoch"), ax1.set_ylabel("cross-entropy loss"), ax1.legend(frameon=False)
    for key, style in (("train_top1", "-"), ("train_top5", "-"), ("val_top1", "--"),
                       ("val_top5", "--"), ("test_top1", ":"), ("test_top5", ":")):
        if any(key in r for r in history):
            ax2.plot(epochs, [r.get(key) for r in history], style, label=METRIC_NAMES[key])
    ax2.set_xlabel("epoch"), ax2.set_ylabel("error rate (lower is better)")
    ax2.set_ylim(0, 1), ax2.legend(frameon=False)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
