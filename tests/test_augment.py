"""Section 4.1 augmentation: crops, reflections, the 10 test patches, PCA colour."""
import numpy as np
import pytest

from alexnet.data.augment import (crop_flip, crop_offsets, eval_batch, mean_chw, pca_color_noise,
                                  pca_shifts, random_crop_flip, subtract_mean, ten_offsets,
                                  ten_patches, to_nchw, train_batch)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 256, 256, 3), dtype=np.uint8)
    mean = rng.uniform(0, 255, (256, 256, 3)).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return images, mean, q, np.array([0.2175, 0.0188, 0.0045])  # public ImageNet eigenvalues (pixel/255)


def test_random_crops_are_inside_and_flips_mirror(batch):
    images = batch[0]
    patches, ys, xs, flips = random_crop_flip(images, 227, np.random.default_rng(1))
    assert patches.shape == (6, 227, 227, 3) and patches.dtype == np.uint8
    for p, img, y, x, f in zip(patches, images, ys, xs, flips):
        assert 0 <= y <= 29 and 0 <= x <= 29
        window = img[y:y + 227, x:x + 227]
        np.testing.assert_array_equal(p, window[:, ::-1] if f else window)
    # over many draws every offset 0..32 of a 224 crop is used and half are flipped
    ys, xs, flips = crop_offsets(20000, 256, 224, np.random.default_rng(2))
    assert ys.min() == 0 and ys.max() == 32 and xs.min() == 0 and xs.max() == 32
    assert abs(flips.mean() - 0.5) < 0.02


def test_flip_is_a_mirror():
    img = np.arange(256 * 256 * 3, dtype=np.uint32).reshape(1, 256, 256, 3)
    a = crop_flip(img, [3], [5], [False], 200)
    b = crop_flip(img, [3], [5], [True], 200)
    np.testing.assert_array_equal(b[0], a[0][:, ::-1])
    np.testing.assert_array_equal(b[0][:, 0], img[0, 3:203, 204])


def test_ten_patches_corners_exact():
    img = np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    p = ten_patches(img, 224)
    assert p.shape == (10, 224, 224, 3)
    np.testing.assert_array_equal(p[0], img[:224, :224])
    np.testing.assert_array_equal(p[1], img[:224, 32:])
    np.testing.assert_array_equal(p[2], img[32:, :224])
    np.testing.assert_array_equal(p[3], img[32:, 32:])
    np.testing.assert_array_equal(p[4], img[16:240, 16:240])
    for k in range(5):
        np.testing.assert_array_equal(p[5 + k], p[k][:, ::-1])
    assert ten_offsets(256, 227)[4] == (14, 14, False)


def test_mean_is_cropped_and_flipped_like_the_patch(batch):
    images, mean = batch[:2]
    patches, ys, xs, flips = random_crop_flip(images, 227, np.random.default_rng(4))
    got = subtract_mean(patches, mean, ys, xs, flips)
    assert got.dtype == np.float32
    for i in range(len(images)):
        m = mean[ys[i]:ys[i] + 227, xs[i]:xs[i] + 227]
        m = m[:, ::-1] if flips[i] else m
        np.testing.assert_allclose(got[i], patches[i] - m, rtol=0, atol=1e-4)


def test_pca_noise_is_one_shift_per_image_with_the_papers_covariance(batch):
    _, _, vecs, vals = batch
    x = np.zeros((4, 5, 5, 3), np.float32)
    noisy = pca_color_noise(x, vecs, vals, np.random.default_rng(5))
    assert (noisy == noisy[:, :1, :1, :]).all()  # the same [p1 p2 p3][a l]^T on every pixel
    # the shift s = 255 P (a * l), a ~ N(0, 0.1^2 I): Cov(s) = 255^2 P diag((0.1 l)^2) P^T
    n = 40000
    shifts = pca_color_noise(np.zeros((n, 1, 1, 3), np.float32), vecs, vals,
                             np.random.default_rng(6)).reshape(n, 3).astype(np.float64)
    expected = 255.0 ** 2 * vecs @ np.diag((0.1 * vals) ** 2) @ vecs.T
    np.testing.assert_allclose(np.cov(shifts, rowvar=False), expected, rtol=0,
                               atol=0.03 * expected.max())
    assert np.abs(shifts.mean(0)).max() < 0.05 * np.sqrt(expected.max())
    # along each eigenvector the shift's std is 255 * 0.1 * lambda_i (5.5 grey levels for lambda_1)
    proj = shifts @ vecs
    np.testing.assert_allclose(proj.std(0), 255 * 0.1 * vals, rtol=0.03)


def test_pca_shift_formula():
    vecs = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])  # p1 = (0, 1, 0), p2 = (1, 0, 0), p3 = (0, 0, 1)
    s = pca_shifts(np.array([[1.0, 2.0, 3.0]]), vecs, np.array([0.5, 0.25, 0.125]), scale=1.0)
    np.testing.assert_allclose(s, [[2 * 0.25, 1 * 0.5, 3 * 0.125]])


def test_train_batch_equals_the_plain_functions(batch):
    images, mean, vecs, vals = batch
    rows = np.array([4, 0, 2, 2])
    fast = train_batch(images, rows, 227, np.random.default_rng(7), mean, vecs, vals)
    rng = np.random.default_rng(7)
    patches, ys, xs, flips = random_crop_flip(images[rows], 227, rng)
    slow = to_nchw(pca_color_noise(subtract_mean(patches, mean, ys, xs, flips), vecs, vals, rng))
    assert fast.shape == (4, 3, 227, 227) and fast.dtype == np.float32 and fast.flags.c_contiguous
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-4)
    plain = train_batch(images, rows, 224, np.random.default_rng(7))  # no mean, no colour
    p, *_ = random_crop_flip(images[rows], 224, np.random.default_rng(7))
    np.testing.assert_array_equal(plain, to_nchw(p))


def test_eval_batch_centre_and_ten(batch):
    images, mean = batch[:2]
    rows = [1, 3]
    centre = eval_batch(images, rows, 227, mean)
    c = (256 - 227) // 2
    np.testing.assert_allclose(centre, to_nchw(images[rows, c:c + 227, c:c + 227] - mean[c:c + 227, c:c + 227]),
                               atol=1e-4)
    ten = eval_batch(images, rows, 227, mean_t=mean_chw(mean), ten=True)
    assert ten.shape == (2, 10, 3, 227, 227)
    for i, r in enumerate(rows):
        expected = ten_patches(images[r], 227).astype(np.float32) - ten_patches(mean, 227)
        np.testing.assert_allclose(ten[i], expected.transpose(0, 3, 1, 2), atol=1e-4)
