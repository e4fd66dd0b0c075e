"""CIFAR-10 loading on synthetic batches written in the official format.

No network and no real data: every batch here is a small pickled dict with
bytes keys, protocol 2, uint8 data (N, 3072), as the official files are.
"""
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error

import numpy as np
import pytest

from alexnet.data import cifar10 as C

N = 20  # images per synthetic batch: 2 per class
pytestmark = pytest.mark.filterwarnings("ignore:.*not the official archive")
NAMES = ["airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------- fixtures --

def write_batch(path, data, labels, extra=None):
    d = {b"batch_label": b"synthetic", b"labels": [int(v) for v in labels],
         b"data": data, b"filenames": [b"img%d.png" % i for i in range(len(labels))]}
    d.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def write_meta(path, names=NAMES):
    with open(path, "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names],
                     b"num_cases_per_batch": N, b"num_vis": 3072}, f, protocol=2)


def make_batches(parent, seed=0):
    """parent/cifar-10-batches-py with 5 training batches and a test batch.

    Returns (dir, {name: (data (N, 3072), labels (N,))}).
    """
    rng = np.random.default_rng(seed)
    d = parent / C.BATCHES_DIR
    d.mkdir(parents=True)
    written = {}
    for name in C.TRAIN_BATCHES + (C.TEST_BATCH,):
        data = rng.integers(0, 256, (N, 3072), dtype=np.uint8)
        labels = rng.permutation(np.arange(N) % 10)
        write_batch(d / name, data, labels)
        written[name] = (data, labels)
    write_meta(d / C.META)
    (d / "readme.html").write_text("<html>the official archive has one too</html>")
    return d, written


@pytest.fixture
def batches(tmp_path):
    return make_batches(tmp_path / "src")


def make_archive(path, batches_dir, extra=()):
    """A .tar.gz laid out like cifar-10-python.tar.gz, plus extra TarInfo members."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(batches_dir, arcname=C.BATCHES_DIR)
        for info, payload in extra:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def member(name, type=tarfile.REGTYPE, payload=b"x", linkname=""):
    info = tarfile.TarInfo(name)
    info.type = type
    info.linkname = linkname
    info.size = len(payload) if type == tarfile.REGTYPE else 0
    return info, (payload if type == tarfile.REGTYPE else None)


# ----------------------------------------------------------------- loading --

def test_load_directory_shapes_layout_and_order(batches):
    d, written = batches
    for root in (d, d.parent):  # the batches dir itself, or a directory holding it
        data = C.load_cifar10(root)
        assert data.x_train.shape == (5 * N, 3, 32, 32) and data.x_train.dtype == np.uint8
        assert data.x_test.shape == (N, 3, 32, 32) and data.x_test.dtype == np.uint8
        assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
        assert data.label_names == tuple(NAMES)
        # training batches in file order 1..5, labels with their images
        np.testing.assert_array_equal(
            data.y_train, np.concatenate([written[b][1] for b in C.TRAIN_BATCHES]))
        np.testing.assert_array_equal(data.y_test, written[C.TEST_BATCH][1])
        # a row is the R plane, then G, then B, each 32 rows of 32 pixels
        row = written["data_batch_2"][0][3]
        img = data.x_train[N + 3]
        for c, h, w in [(0, 0, 0), (0, 0, 31), (0, 1, 0), (1, 0, 0), (2, 31, 31), (1, 17, 5)]:
            assert img[c, h, w] == row[c * 1024 + h * 32 + w]
    assert "uint8[100, 3, 32, 32]" in repr(data)


def test_default_root_from_env_then_cwd(batches, tmp_path, monkeypatch):
    d, _ = batches
    monkeypatch.setenv(C.ENV_VAR, str(d.parent))
    assert C.find_cifar10() == d
    monkeypatch.delenv(C.ENV_VAR)
    monkeypatch.chdir(tmp_path)
    os.rename(d.parent, tmp_path / "data")
    assert C.find_cifar10().resolve() == (tmp_path / "data" / C.BATCHES_DIR).resolve()


def py2_numpy1_pickle(data, labels):
    """A batch byte for byte as Python 2 + NumPy 1 pickled the official files:
    str as SHORT_BINSTRING/BINSTRING, ints as BININT*, numpy.core module names."""
    def s(b):
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def i(v):
        return b"K" + bytes([v]) if v < 256 else b"M" + struct.pack("<H", v)

    array = (b"cnumpy.core.multiarray\n_reconstruct\n" b"cnumpy\nndarray\n"
             + i(0) + b"\x85" + s(b"b") + b"\x87R"                     # _reconstruct(ndarray, (0,), 'b')
             + b"(" + i(1) + i(data.shape[0]) + i(data.shape[1]) + b"\x86"  # (1, shape,
             + b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R"      #  dtype('u1', 0, 1)
             + b"(" + i(3) + s(b"|") + b"NNN" + b"J\xff\xff\xff\xff" * 2 + i(0) + b"tb"
             + b"\x89" + s(data.tobytes()) + b"tb")                   #  False, raw) BUILD
    label_list = b"](" + b"".join(i(int(v)) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + array + s(b"labels") + label_list + b"u."


def test_python2_numpy1_pickles_load(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (N, 3072), dtype=np.uint8)
    labels = np.arange(N) % 10
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_numpy1_pickle(data, labels))
    x, y = C.load_batch(path)
    np.testing.assert_array_equal(x.reshape(N, 3072), data)
    np.testing.assert_array_equal(y, labels)


# ----------------------------------------------------------- preprocessing --

def test_mean_image_and_preprocess_are_exact(batches):
    data = C.load_cifar10(batches[0])
    mean = C.mean_image(data.x_train)
    assert mean.shape == (3, 32, 32) and mean.dtype == np.float32
    # the slow obvious way: exact integer sums, one division, one rounding
    ref = np.empty((3, 32, 32))
    for c in range(3):
        for h in range(32):
            for w in range(32):
                ref[c, h, w] = sum(int(v) for v in data.x_train[:, c, h, w]) / len(data.x_train)
    np.testing.assert_array_equal(mean, ref.astype(np.float32))
    x = C.preprocess(data.x_test, mean)
    assert x.shape == (N, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(x, data.x_test.astype(np.float32) - ref.astype(np.float32))
    # pixel units, no scaling: the centred training set has mean ~0, range ~+-255
    xt = C.preprocess(data.x_train, mean)
    assert abs(xt.mean(axis=0)).max() < 1e-4 and xt.max() > 100
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        C.preprocess(data.x_test.reshape(N, 3072), mean)


def test_subset_is_class_balanced_and_seeded(batches):
    data = C.load_cifar10(batches[0])
    sub = data.subset(50, 10, seed=3)
    assert np.bincount(sub.y_train, minlength=10).tolist() == [5] * 10
    assert np.bincount(sub.y_test, minlength=10).tolist() == [1] * 10
    again = data.subset(50, 10, seed=3)
    np.testing.assert_array_equal(sub.x_train, again.x_train)
    assert not np.array_equal(data.subset(50, seed=4).x_train, sub.x_train)
    assert len(data.subset(50).y_test) == N  # test set kept whole by default
    counts = np.bincount(data.subset(23, seed=0).y_train, minlength=10)
    assert counts.sum() == 23 and counts.min() == 2 and counts.max() == 3
    idx = C.balanced_indices(data.y_train, 30, 0)
    assert (np.diff(idx) > 0).all()  # file order kept
    with pytest.raises(ValueError, match="class 1 has 1 items"):
        C.balanced_indices(np.array([0, 0, 0, 0, 1]), 4)
    with pytest.raises(ValueError, match="1..20"):
        data.subset(50, 21)


# ----------------------------------------------------------------- archive --

def test_archive_by_path_in_root_and_to_extract_to(batches, tmp_path):
    d, written = batches
    expected = C.load_cifar10(d)
    archive = make_archive(tmp_path / C.ARCHIVE_NAME, d)
    # given by path: extracted next to it
    data = C.load_cifar10(archive, allow_unofficial=True)
    assert (tmp_path / C.BATCHES_DIR / C.META).is_file()
    np.testing.assert_array_equal(data.x_train, expected.x_train)
    np.testing.assert_array_equal(data.y_test, expected.y_test)
    # found in a root directory, extracted into a given directory
    root = tmp_path / "root"
    root.mkdir()
    os.rename(archive, root / C.ARCHIVE_NAME)
    out = tmp_path / "cache"
    assert C.find_cifar10(root, extract_to=out, allow_unofficial=True) == out / C.BATCHES_DIR
    assert C.find_cifar10(root, extract_to=out) == out / C.BATCHES_DIR  # reused
    assert not [p for p in out.iterdir() if p.name.startswith(".cifar10-extract")]


def test_archive_skips_stray_files_outside_the_batches_dir(batches, tmp_path):
    archive = make_archive(tmp_path / "a.tar.gz", batches[0], [member("README")])
    C.extract_archive(archive, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [C.BATCHES_DIR]


@pytest.mark.parametrize("evil", [
    member("../evil"),
    member("cifar-10-batches-py/../../evil"),
    member("/tmp/evil_absolute_cifar10_test"),
    member("cifar-10-batches-py/data_batch_1", tarfile.SYMTYPE, linkname="/etc/passwd"),
    member("cifar-10-batches-py/evil", tarfile.LNKTYPE, linkname="cifar-10-batches-py/test_batch"),
    member("cifar-10-batches-py/evil", tarfile.CHRTYPE),
    member("cifar-10-batches-py/evil", tarfile.FIFOTYPE),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "device", "fifo"])
def test_archive_with_unsafe_member_is_refused(batches, tmp_path, evil):
    archive = make_archive(tmp_path / "x.tar.gz", batches[0], [evil])
    out = tmp_path / "deep" / "out"
    with pytest.raises(C.UnsafeArchiveError, match="refusing"):
        C.load_cifar10(archive, extract_to=out, allow_unofficial=True)
    assert not (tmp_path / "deep" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not os.path.lexists("/tmp/evil_absolute_cifar10_test")
    assert list(out.iterdir()) == []  # nothing extracted, temp dir gone


def test_truncated_or_incomplete_archive(batches, tmp_path):
    archive = make_archive(tmp_path / C.ARCHIVE_NAME, batches[0])
    blob = archive.read_bytes()
    archive.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(C.CIFAR10FormatError, match="truncated or corrupted"):
        C.load_cifar10(archive, allow_unofficial=True)
    (batches[0] / C.TEST_BATCH).unlink()
    make_archive(archive, batches[0])
    with pytest.raises(C.CIFAR10FormatError, match="test_batch"):
        C.load_cifar10(archive, allow_unofficial=True)
    assert not (tmp_path / C.BATCHES_DIR).exists()


# ------------------------------------------------- corrupt and foreign files --

def test_truncated_batch_file_names_the_file_and_the_fix(batches):
    d, _ = batches
    path = d / "data_batch_3"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(C.CIFAR10FormatError) as e:
        C.load_cifar10(d)
    msg = str(e.value)
    assert str(path) in msg and "truncated or corrupted" in msg and "Delete" in msg
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(C.CIFAR10FormatError, match="data_batch_3"):
        C.load_cifar10(d)


@pytest.mark.parametrize("data, labels, match", [
    (np.zeros((N, 3000), np.uint8), list(range(10)) * 2, r"uint8 \(N, 3072\)"),
    (np.zeros((N, 3072), np.float32), list(range(10)) * 2, r"uint8 \(N, 3072\)"),
    (np.zeros((N, 3072), np.uint8), list(range(10)), "20 images but 10 labels"),
    (np.zeros((N, 3072), np.uint8), list(range(1, 11)) * 2, r"labels must be in 0..9"),
    (np.zeros((N, 3072), np.uint8), [-1] * N, r"labels must be in 0..9"),
])
def test_batch_with_wrong_shape_or_labels(tmp_path, data, labels, match):
    path = tmp_path / "data_batch_1"
    write_batch(path, data, labels)
    with pytest.raises(C.CIFAR10FormatError, match=match):
        C.load_batch(path)


def test_meta_without_ten_names(batches):
    write_meta(batches[0] / C.META, NAMES[:9])
    with pytest.raises(C.CIFAR10FormatError, match="label_names"):
        C.load_cifar10(batches[0])


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload, refused", [
    ("os.system", "system"),
    (np.array([1, 2], dtype=object), "not a plain number type"),
    (np.int64(3), "multiarray.scalar"),
    (eval, ".eval'"),  # __builtin__.eval at protocol 2
])
def test_pickle_asking_for_a_foreign_object_is_refused(batches, tmp_path, payload, refused):
    d, _ = batches
    marker = tmp_path / "side_effect_happened"
    evil = RunsACommand(marker) if isinstance(payload, str) else payload
    path = d / "data_batch_1"
    write_batch(path, np.zeros((N, 3072), np.uint8), [0] * N, {b"x": evil})
    with pytest.raises(C.UnsafePickleError) as e:
        C.load_cifar10(d)
    msg = str(e.value)
    assert refused in msg and "not a genuine CIFAR-10 batch" in msg and str(path) in msg
    assert not marker.exists()


# ---------------------------------------------------------------- download --

class FakeResponse(io.BytesIO):
    def __init__(self, blob):
        super().__init__(blob)
        self.headers = {"Content-Length": str(len(blob))}


def fake_opener(blob, calls):
    def urlopen(url, timeout=None):
        calls.append(url)
        return FakeResponse(blob)
    return urlopen


def test_download_md5_mismatch_deletes_the_file(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(C, "_urlopen", fake_opener(b"<html>captive portal</html>", calls))
    root = tmp_path / "data"
    with pytest.raises(C.ChecksumError, match=C.ARCHIVE_MD5):
        C.load_cifar10(root, download=True, progress=False)
    assert calls == [C.ARCHIVE_URL]
    assert list(root.iterdir()) == []  # neither the archive nor a .part file


def test_download_verifies_then_extracts(batches, tmp_path, monkeypatch):
    blob = make_archive(tmp_path / "served.tar.gz", batches[0]).read_bytes()
    calls = []
    monkeypatch.setattr(C, "_urlopen", fake_opener(blob, calls))
    monkeypatch.setattr(C, "ARCHIVE_MD5", hashlib.md5(blob).hexdigest())
    root = tmp_path / "data"
    with pytest.raises(C.CIFAR10NotFound):
        C.load_cifar10(root)  # never downloads unless asked
    assert calls == []
    data = C.load_cifar10(root, download=True, progress=False)
    assert len(calls) == 1 and data.x_train.shape == (5 * N, 3, 32, 32)
    assert (root / C.ARCHIVE_NAME).read_bytes() == blob
    C.load_cifar10(root, download=True)
    assert len(calls) == 1  # found on disk the second time


def test_missing_data_message_says_where_to_put_the_files(tmp_path, monkeypatch):
    root = tmp_path / "nothing"
    with pytest.raises(C.CIFAR10NotFound) as e:
        C.load_cifar10(root)
    msg = str(e.value)
    assert str(root.resolve() / C.ARCHIVE_NAME) in msg
    assert str(root.resolve() / C.BATCHES_DIR) in msg
    assert C.ARCHIVE_URL in msg and "download=True" in msg and "make_cifar10" not in msg
    assert isinstance(e.value, FileNotFoundError)

    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(C, "_urlopen", offline)
    with pytest.raises(C.CIFAR10NotFound) as e:
        C.load_cifar10(root, download=True, progress=False)
    msg = str(e.value)
    assert "Downloading it failed" in msg and str(root.resolve() / C.ARCHIVE_NAME) in msg
    assert [p for p in root.iterdir()] == []


def test_incomplete_directory_lists_missing_files(batches):
    (batches[0] / C.TEST_BATCH).unlink()
    with pytest.raises(C.CIFAR10NotFound, match="lacks test_batch"):
        C.load_cifar10(batches[0])


def test_extraction_is_safe_without_tarfile_data_filter(batches, tmp_path, monkeypatch):
    # Pythons before 3.11.4 / 3.12 have no extraction filters: our own checks must do.
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    good = make_archive(tmp_path / "good.tar.gz", batches[0])
    assert C.load_cifar10(good, allow_unofficial=True).x_train.shape == (5 * N, 3, 32, 32)
    bad = make_archive(tmp_path / "bad.tar.gz", batches[0], [member("../evil")])
    with pytest.raises(C.UnsafeArchiveError):
        C.extract_archive(bad, tmp_path / "out")
    assert not (tmp_path / "evil").exists()
