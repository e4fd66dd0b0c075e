"""Top-1 and top-5 error (Section 6), with the centre patch or the 10-patch average.

"top-5 error rate is the fraction of test images for which the correct
label is not among the five labels considered most probable by the model."
At test time (Section 4.1) the network "extracts five 224x224 patches (the
four corner patches and the center patch) as well as their horizontal
reflections (hence ten patches in all), and averag[es] the predictions made
by the network's softmax layer on the ten patches".
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

import minidl
from minidl import Tensor, functions as F
from minidl.backend import array_module, get_device, to_numpy


class NonFiniteScores(ValueError):
    """The scores hold NaN or infinity (a diverged or damaged net)."""


def check_finite(scores):
    """Raise NonFiniteScores if a row of (N, classes) host scores is NaN or infinite.

    An evaluation reports it instead of a number: 100% error would hide that the
    net itself is broken (and a NaN compared naively would even count as right)."""
    bad = ~np.isfinite(scores).all(axis=1)
    if bad.any():
        raise NonFiniteScores(f"the net's scores are NaN or infinite for {int(bad.sum())} of "
                              f"{len(bad)} images: its weights have diverged or are damaged, so "
                              "no error rate can be given. Use an earlier checkpoint, or train "
                              "again with a lower learning rate.")
    return scores


def topk_wrong(scores, labels, ks=(1, 5)) -> dict:
    """{k: how many rows' label is not among the k highest scores}, each a 0-d array on
    the scores' device: no host sync, so a training step can count without waiting.

    Ties count against the label: it is in the top k only if fewer than k other
    classes score at least as high, so a net whose scores are all equal is wrong on
    every image (not right on every one, as "fewer than k score higher" would say).
    A NaN counts as at least as high as anything (``not other < label's score``), so
    a NaN row is never counted correct. With k >= classes every finite row is right.

    Args:
        scores: (N, classes) logits or probabilities (any monotone transform).
        labels: (N,) integer class labels, on the same device.
    """
    xp = array_module(scores)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"topk_errors: expected scores (N, classes) and labels (N,), found "
                         f"{scores.shape} and {labels.shape}")
    own = xp.take_along_axis(scores, labels[:, None], axis=1)         # (N, 1)
    # the classes scoring at least as high as the label, the label not counted (a NaN
    # label score is not equal to itself: every class counts, the row is wrong)
    rivals = (~(scores < own)).sum(axis=1) - (own == own)[:, 0]       # (N,)
    return {k: (rivals >= min(k, scores.shape[1])).sum() for k in ks}


def topk_errors(scores, labels, ks=(1, 5)) -> dict:
    """`topk_wrong` read on the host: {k: int}."""
    return {k: int(e) for k, e in topk_wrong(np.asarray(scores), np.asarray(labels), ks).items()}


def predict_proba(model, x, device) -> np.ndarray:
    """Softmax probabilities (N, classes) for a batch of images, no graph kept; NaN or
    infinite outputs raise NonFiniteScores (`check_finite`)."""
    with minidl.no_grad():
        return check_finite(to_numpy(F.softmax(model(Tensor(x, device=device)), axis=1).data))


def evaluate(model, batches, device=None, ks=(1, 5), progress=False, desc="eval",
             total=None) -> dict:
    """Loss and top-k error of `model` (put in eval mode) over (x, y) batches.

    `batches` yields (x (N, 3, S, S), y (N,)) or (x (N, P, 3, S, S), y) with P
    patches per image, whose softmax outputs are averaged (the 10-patch test).
    Returns {"loss": mean cross-entropy, "top1": error, "top5": error, "n": images}.
    """
    from .train import input_device
    device = get_device(device or input_device(model))
    was_training = model.training
    model.eval()
    n, loss_sum, errors = 0, 0.0, {k: 0 for k in ks}
    try:
        for x, y in tqdm(batches, desc=desc, total=total, leave=False, disable=not progress):
            y = np.asarray(y)
            if x.ndim == 5:                                   # (N, P, 3, S, S): average P patches
                N, P = x.shape[:2]
                p = predict_proba(model, x.reshape((N * P,) + x.shape[2:]), device)
                p = p.reshape(N, P, -1).mean(axis=1)
            else:
                p = predict_proba(model, x, device)
            loss_sum += float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-30)).sum())
            for k, e in topk_errors(p, y, ks).items():
                errors[k] += e
            n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate: the batches were empty")
    return {"loss": loss_sum / n, **{f"top{k}": e / n for k, e in errors.items()}, "n": n}


# Position of the centre patch among the 10 (alexnet.data.augment.ten_offsets: the four
# corners, the centre, then the same five reflected).
CENTRE = 4


def evaluate_ten(model, batches, device=None, ks=(1, 5), progress=False, desc="eval",
                 total=None) -> dict:
    """Centre-patch and 10-patch errors from one pass over 10-patch batches.

    `batches` yields (x (N, 10, 3, S, S), y (N,)) in `ten_offsets` order. The
    network sees all ten patches once; the centre patch's softmax gives the
    footnote's single-patch numbers, the mean of the ten softmaxes Section 4.1's.
    Returns {"centre": {"loss", "top1", "top5", "n"}, "ten": {...}}.
    """
    from .train import input_device
    device = get_device(device or input_device(model))
    was_training = model.training
    model.eval()
    n = 0
    sums = {name: {"loss": 0.0, **{k: 0 for k in ks}} for name in ("centre", "ten")}
    try:
        for x, y in tqdm(batches, desc=desc, total=total, leave=False, disable=not progress):
            y = np.asarray(y)
            if x.ndim != 5 or x.shape[1] != 10:
                raise ValueError(f"evaluate_ten: expected x of shape (N, 10, 3, S, S), found {x.shape}")
            N = x.shape[0]
            p = predict_proba(model, x.reshape((N * 10,) + x.shape[2:]), device)
            p = p.reshape(N, 10, -1)                                    # (N, 10, classes)
            for name, q in (("centre", p[:, CENTRE]), ("ten", p.mean(axis=1))):
                s = sums[name]
                s["loss"] += float(-np.log(np.maximum(q[np.arange(N), y], 1e-30)).sum())
                for k, e in topk_errors(q, y, ks).items():
                    s[k] += e
            n += N
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate_ten: the batches were empty")
    return {name: {"loss": s["loss"] / n, **{f"top{k}": s[k] / n for k in ks}, "n": n}
            for name, s in sums.items()}


def evaluate_split(model, split, crop, mean, patches="both", batch_size=128, workers=2,
                   device=None, ks=(1, 5), progress=True, desc="evaluate") -> dict:
    """Top-k errors of `model` on a cache split (every usable image once), batched
    through the loader's worker processes.

    split:   a `CacheSplit` (alexnet.data.prepare.open_split).
    crop:    the net's input side; mean: the mean image the net was trained with.
    patches: "1" (centre patch), "10" (10-patch average) or "both" (one 10-patch
             pass gives both). batch_size counts network inputs: a 10-patch batch
             holds batch_size // 10 images.
    Returns {"centre": {...}} and/or {"ten": {...}}, each {"loss", "top1", "top5", "n"}.
    """
    from .data.loader import Loader
    if patches not in ("1", "10", "both"):
        raise ValueError(f"patches must be '1', '10' or 'both', found {patches!r}")
    ten = patches != "1"
    images = max(1, batch_size // 10) if ten else batch_size
    with Loader(split, images, train=False, crop=crop, workers=workers, mean=mean,
                ten=ten) as loader:
        if not ten:
            r = evaluate(model, loader.epoch(0), device, ks, progress, desc, total=len(loader))
            return {"centre": r}
        result = evaluate_ten(model, loader.epoch(0), device, ks, progress, desc,
                              total=len(loader))
    if patches == "10":
        del result["centre"]
    return result
