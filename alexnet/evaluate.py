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
from minidl.backend import get_device, to_numpy


def topk_errors(scores, labels, ks=(1, 5)) -> dict:
    """Number of rows whose label is not among the k highest scores, for each k.

    Args:
        scores: (N, classes) logits or probabilities (any monotone transform).
        labels: (N,) integer class labels.
    """
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"topk_errors: expected scores (N, classes) and labels (N,), found "
                         f"{scores.shape} and {labels.shape}")
    out = {}
    for k in ks:
        k_eff = min(k, scores.shape[1])
        # the label is in the top k iff fewer than k classes score strictly higher
        higher = (scores > scores[np.arange(len(labels)), labels][:, None]).sum(axis=1)
        out[k] = int((higher >= k_eff).sum())
    return out


def predict_proba(model, x, device) -> np.ndarray:
    """Softmax probabilities (N, classes) for a batch of images, no graph kept."""
    with minidl.no_grad():
        return to_numpy(F.softmax(model(Tensor(x, device=device)), axis=1).data)


def evaluate(model, batches, device=None, ks=(1, 5), progress=False, desc="eval") -> dict:
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
        for x, y in tqdm(batches, desc=desc, leave=False, disable=not progress):
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
