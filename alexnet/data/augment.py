"""Data augmentation, Section 4.1, on the 256x256 uint8 cache.

(a) "extracting random 224x224 patches (and their horizontal reflections) from the
    256x256 images ... At test time, the network makes a prediction by extracting
    five 224x224 patches (the four corner patches and the center patch) as well
    as their horizontal reflections (hence ten patches in all)".
(b) "to each training image, we add multiples of the found principal components,
    with magnitudes proportional to the corresponding eigenvalues times a random
    variable drawn from a Gaussian with mean zero and standard deviation 0.1":

        I_xy += [p1 p2 p3] [a1*l1, a2*l2, a3*l3]^T,   a_i ~ N(0, 0.1), one draw per image and use.

Plus Section 2's mean subtraction: the training set's 256x256 mean image is cropped
(and flipped) exactly like the patch, as the 2012 code did.

Units: the cache and the network's input are pixel values 0..255 (minus the mean).
`eigvals` are those of the RGB covariance of pixel/255 (values in [0, 1]), the
convention of public ImageNet code (l1 ~ 0.2): alpha*lambda is not scale-free
(lambda scales with units squared), and in 0..255 units it would shift colours by
thousands. So the shift is computed in [0, 1] units and multiplied by `scale` (255).

Two ways to the same numbers: small functions that read like the paper (NHWC,
used by tests as the reference), and `train_batch` / `eval_batch`, which write
float32 NCHW batches for the network in one pass per image (what the loader runs).
Both draw from `rng` in the same order: crop rows, crop columns, flips, alphas.
"""
from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- the paper, plainly


def crop_offsets(n, full, size, rng):
    """Random patch positions and reflections for n images: ys (n,), xs (n,) in
    [0, full - size] and flips (n,) bool (a fair coin)."""
    ys = rng.integers(0, full - size + 1, n)
    xs = rng.integers(0, full - size + 1, n)
    flips = rng.random(n) < 0.5
    return ys, xs, flips


def crop_flip(images, ys, xs, flips, size):
    """images (N, H, W, C) -> (N, size, size, C): image i's patch at (ys[i], xs[i]),
    mirrored left-right where flips[i]."""
    out = np.empty((len(images), size, size, images.shape[-1]), images.dtype)
    for i, (y, x, f) in enumerate(zip(ys, xs, flips)):
        patch = images[i, y:y + size, x:x + size]
        out[i] = patch[:, ::-1] if f else patch
    return out


def random_crop_flip(images, size, rng):
    """Random size x size patches of images (N, 256, 256, 3) and their horizontal
    reflections (Section 4.1a). Returns (patches (N, size, size, 3), ys, xs, flips);
    the positions are needed to crop the mean image like the patch."""
    ys, xs, flips = crop_offsets(len(images), images.shape[1], size, rng)
    return crop_flip(images, ys, xs, flips, size), ys, xs, flips


def subtract_mean(patches, mean, ys, xs, flips):
    """patches (N, S, S, 3) minus the mean image (256, 256, 3) cropped and flipped like
    each patch -> float32 (N, S, S, 3) (Section 2: "subtracting the mean activity
    over the training set from each pixel")."""
    size = patches.shape[1]
    means = crop_flip(np.broadcast_to(mean, (len(patches),) + mean.shape), ys, xs, flips, size)
    return patches.astype(np.float32) - means


def pca_shifts(alphas, eigvecs, eigvals, scale=255.0):
    """The colour shift of each image, (N, 3): scale * [p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T.

    alphas (N, 3); eigvecs (3, 3), eigenvector i in column i; eigvals (3,) of the
    covariance of pixel/255 values; scale: a full-scale pixel in the images' units.
    """
    return scale * (alphas * eigvals) @ np.asarray(eigvecs).T


def pca_color_noise(images, eigvecs, eigvals, rng, std=0.1, scale=255.0):
    """Section 4.1b on float images (N, H, W, 3): one alpha ~ N(0, std) triple per
    image, the same shift added to every pixel. Returns a new float32 array."""
    alphas = rng.normal(0.0, std, (len(images), 3))
    shifts = pca_shifts(alphas, eigvecs, eigvals, scale).astype(np.float32)
    return images + shifts[:, None, None, :]


def to_nchw(images):
    """(N, H, W, C) -> float32 (N, C, H, W), contiguous: the network's layout."""
    return np.ascontiguousarray(np.asarray(images, np.float32).transpose(0, 3, 1, 2))


def center_offset(full, size):
    return (full - size) // 2


def ten_offsets(full, size):
    """The 10 test patches as (y, x, flip): top-left, top-right, bottom-left,
    bottom-right, centre, then the same five mirrored."""
    e, c = full - size, center_offset(full, size)
    five = [(0, 0), (0, e), (e, 0), (e, e), (c, c)]
    return [(y, x, False) for y, x in five] + [(y, x, True) for y, x in five]


def ten_patches(image, size):
    """image (H, W, 3) -> (10, size, size, 3): 4 corners + centre and their reflections."""
    ys, xs, flips = zip(*ten_offsets(image.shape[0], size))
    return crop_flip(np.broadcast_to(image, (10,) + image.shape), ys, xs, flips, size)


# --------------------------------------------------------------------------- fused, for the loader


def _patch_into(dst, image, mean_chw, y, x, flip, size, shift=None):
    """dst (3, S, S) float32 <- (image patch - mean patch) + shift, transposed to CHW.

    One strided pass reads the uint8 patch (already in CHW order through a view),
    subtracts the mean patch and writes float32; the colour shift is one more pass.
    """
    patch = image[y:y + size, x:x + size].transpose(2, 0, 1)  # (3, S, S) view of HWC
    if mean_chw is not None:
        m = mean_chw[:, y:y + size, x:x + size]
        if flip:
            patch, m = patch[:, :, ::-1], m[:, :, ::-1]
        np.subtract(patch, m, out=dst)
    else:
        dst[...] = patch[:, :, ::-1] if flip else patch
    if shift is not None:
        dst += shift[:, None, None]


def mean_chw(mean):
    """The mean image (256, 256, 3) as contiguous float32 (3, 256, 256), or None."""
    return None if mean is None else np.ascontiguousarray(np.asarray(mean, np.float32).transpose(2, 0, 1))


def train_batch(images, rows, size, rng, mean=None, eigvecs=None, eigvals=None, std=0.1,
                scale=255.0, out=None, mean_t=None, part=slice(None)):
    """A training batch: random patch + reflection, minus the mean patch, plus PCA colour.

    images: (M, 256, 256, 3) uint8 (the cache, memory-mapped); rows (N,): which images.
    mean: (256, 256, 3) mean image or None; eigvecs/eigvals: the RGB PCA or None (no
    colour noise); std: of the alphas. out: optional (N, 3, size, size) float32 to fill.
    mean_t: `mean_chw(mean)` if the caller keeps it (saves a transpose per batch).
    part: build only the images rows[part] (one process's share of a batch, see
    alexnet.distributed); the draws are still those of the whole batch, so the
    shares of several processes put together are the batch of one.
    Returns out: float32 (N, 3, size, size), equal to
    to_nchw(pca_color_noise(subtract_mean(*random_crop_flip(images[rows], size, rng)), ...)).
    """
    n = len(rows)
    ys, xs, flips = crop_offsets(n, images.shape[1], size, rng)
    shifts = None
    if eigvecs is not None:
        shifts = pca_shifts(rng.normal(0.0, std, (n, 3)), eigvecs, eigvals, scale).astype(np.float32)
    mean_t = mean_chw(mean) if mean_t is None else mean_t
    keep = range(n)[part]
    out = np.empty((len(keep), 3, size, size), np.float32) if out is None else out
    for j, i in enumerate(keep):
        _patch_into(out[j], images[rows[i]], mean_t, ys[i], xs[i], flips[i], size,
                    None if shifts is None else shifts[i])
    return out


def eval_batch(images, rows, size, mean=None, ten=False, out=None, mean_t=None):
    """A test batch: the centre patch (N, 3, size, size), or with ten=True the 10
    patches of `ten_offsets` (N, 10, 3, size, size); minus the mean patch, float32."""
    n, full = len(rows), images.shape[1]
    c = center_offset(full, size)
    offsets = ten_offsets(full, size) if ten else [(c, c, False)]
    shape = (n, len(offsets), 3, size, size)
    out = np.empty(shape, np.float32) if out is None else out.reshape(shape)
    mean_t = mean_chw(mean) if mean_t is None else mean_t
    for i, r in enumerate(rows):
        image = images[r]
        for k, (y, x, f) in enumerate(offsets):
            _patch_into(out[i, k], image, mean_t, y, x, f, size)
    return out if ten else out[:, 0]
