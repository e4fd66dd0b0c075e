"""CIFAR-10 in its official python format, loaded safely (the data of Figure 1).

Section 3.1 of the paper trains a four-layer convolutional net on CIFAR-10 to
compare ReLU with tanh (Figure 1). This module finds the official files,
downloads and verifies them only when asked, extracts the archive safely,
reads the pickled batches without unpickling arbitrary objects, checks their
shapes and labels, and does the one piece of preprocessing cuda-convnet did:
subtract the training set's mean image.

The official files (https://www.cs.toronto.edu/~kriz/cifar.html)::

    cifar-10-python.tar.gz                 MD5 c58f30108f718f92721af3b95e74349a
      cifar-10-batches-py/data_batch_1..5  10000 training images each
      cifar-10-batches-py/test_batch       10000 test images
      cifar-10-batches-py/batches.meta     label_names: the 10 class names

Each batch is a pickled dict: ``data`` a uint8 array (10000, 3072) whose row is
one 32x32 image stored as its R, G and B planes (1024 values each, row-major),
and ``labels`` a list of 10000 ints in 0..9.

Layout of what :func:`load_cifar10` returns: images are **NCHW uint8**
``(N, 3, 32, 32)``, channels in RGB order, because the nets are NCHW; the row of
the file is reshaped, never transposed, so the arrays are views of what was read.
Labels are int64 ``(N,)``. Order is the files' order: data_batch_1..5, then test.

Typical use::

    data = load_cifar10()                       # $ALEXNET_DATA or ./data
    data = data.subset(5000, 1000, seed=0)      # --quick: 500 / 100 per class
    mean = mean_image(data.x_train)             # (3, 32, 32) float32
    x = preprocess(data.x_train[:128], mean)    # (128, 3, 32, 32) float32
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .archive import bounded_members, member_problem

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
ALL_FILES = TRAIN_BATCHES + (TEST_BATCH, META)

NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)  # C, H, W
ROW_SIZE = 3 * 32 * 32  # 3072 bytes per image in a batch file

# The official batches are about 31 MB each (45 MB when re-pickled by Python 3),
# 178 MB in all. A member larger than MAX_MEMBER_BYTES, an archive whose kept
# members add up to more than MAX_TOTAL_BYTES or that lists more than
# MAX_MEMBERS entries is not CIFAR-10: refusing it bounds the disk and the time
# a hostile archive can take.
MAX_MEMBER_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 320 * 2**20
MAX_MEMBERS = 64
# Images in one batch file: the official ones hold 10,000.
MAX_BATCH_IMAGES = 10000

ENV_VAR = "ALEXNET_DATA"

# Replaced by the tests so that nothing touches the network.
_urlopen = urllib.request.urlopen


class CIFAR10Error(Exception):
    """Base class of every error this module raises on purpose."""


class CIFAR10NotFound(CIFAR10Error, FileNotFoundError):
    """No CIFAR-10 files where we looked, and none could be downloaded."""


class CIFAR10FormatError(CIFAR10Error, ValueError):
    """A file exists but is not a valid CIFAR-10 batch (corrupt, truncated, foreign)."""


class UnsafeArchiveError(CIFAR10Error, ValueError):
    """The archive holds a member we refuse to extract (path escape, link, device)."""


class ChecksumError(CIFAR10Error, ValueError):
    """An archive does not have the published MD5."""


class UnsafePickleError(CIFAR10FormatError, pickle.UnpicklingError):
    """A batch file asked the unpickler for an object outside the allowed few."""


# ----------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class CIFAR10:
    """CIFAR-10 in memory.

    x_train: (50000, 3, 32, 32) uint8, NCHW, RGB, pixel values 0..255
    y_train: (50000,) int64 in 0..9
    x_test:  (10000, 3, 32, 32) uint8
    y_test:  (10000,) int64
    label_names: the 10 class names, index = label ("airplane", ..., "truck")
    """
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    label_names: tuple[str, ...]

    def __repr__(self) -> str:
        return (f"CIFAR10(x_train={self.x_train.dtype}{list(self.x_train.shape)}, "
                f"x_test={self.x_test.dtype}{list(self.x_test.shape)}, "
                f"label_names={list(self.label_names)})")

    def subset(self, n_train: int, n_test: int | None = None, seed: int = 0) -> "CIFAR10":
        """A class-balanced subset, for ``--quick`` runs.

        Keeps n_train training images (n_train // 10 per class, the remainder
        spread over randomly chosen classes) and n_test test images (all of
        them when None). The images keep their order in the files; the draw
        depends only on the labels and the seed.
        """
        rng = np.random.default_rng(seed)
        tr = balanced_indices(self.y_train, n_train, rng)
        te = (np.arange(len(self.y_test)) if n_test is None
              else balanced_indices(self.y_test, n_test, rng))
        return CIFAR10(self.x_train[tr], self.y_train[tr],
                       self.x_test[te], self.y_test[te], self.label_names)


def balanced_indices(labels: np.ndarray, n: int,
                     rng: np.random.Generator | int = 0) -> np.ndarray:
    """Sorted indices of n items with every class as equally represented as possible.

    labels: (N,) ints in 0..K-1. Each of the K classes present gets n // K
    items; n % K classes, chosen at random, get one more. Raises ValueError if
    a class has too few items.
    """
    rng = np.random.default_rng(rng)
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    n = int(n)
    if not 0 < n <= len(labels):
        raise ValueError(f"subset size must be in 1..{len(labels)}, got {n}")
    per_class = np.full(len(classes), n // len(classes))
    per_class[rng.choice(len(classes), n % len(classes), replace=False)] += 1
    picked = []
    for c, k in zip(classes, per_class):
        members = np.flatnonzero(labels == c)
        if k > len(members):
            raise ValueError(f"class {c} has {len(members)} items, a balanced subset "
                             f"of {n} needs {k}; ask for at most "
                             f"{counts.min() * len(classes)}")
        picked.append(rng.choice(members, k, replace=False))
    return np.sort(np.concatenate(picked))


# ----------------------------------------------------------------------------
# Preprocessing (what cuda-convnet's CIFAR data provider did)
# ----------------------------------------------------------------------------

def mean_image(x_train: np.ndarray) -> np.ndarray:
    """The training set's per-pixel mean image: (N, 3, 32, 32) uint8 -> (3, 32, 32) float32.

    Section 2 ("subtracting the mean activity over the training set from each
    pixel"); for CIFAR-10 cuda-convnet kept one mean per pixel and channel
    (``data_mean`` in its batches.meta). Summed in float64, so the result is
    the exact mean rounded once to float32.
    """
    if x_train.ndim != 4 or x_train.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images (N, 3, 32, 32), got shape {x_train.shape}")
    return x_train.mean(axis=0, dtype=np.float64).astype(np.float32)


def preprocess(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Centre images on the training mean: (N, 3, 32, 32) uint8 -> float32, x - mean.

    No other scaling: values stay in pixel units (about -130..+130), as
    cuda-convnet fed them (``data - data_mean`` as float32), so learning rates
    and init scales from its configs and the paper apply unchanged. Cheap
    enough to apply per mini-batch; the whole training set as float32 is 614 MB.
    """
    if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images (N, 3, 32, 32), got shape {x.shape}")
    if mean.shape != IMAGE_SHAPE:
        raise ValueError(f"expected a mean image (3, 32, 32), got shape {mean.shape}")
    return x.astype(np.float32) - mean.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------
# Reading the pickled batches without trusting them
# ----------------------------------------------------------------------------
# Unpickling runs whatever callables the file names (os.system included), so a
# downloaded pickle must not be loaded with pickle.load. The official batches
# were written by Python 2 and NumPy 1: dicts, lists, str (bytes here), ints,
# and numpy arrays, which pickle as _reconstruct(ndarray, ...) plus a dtype.
# Files re-pickled by Python 3 at protocol 2 (our make_cifar10.py) also write
# bytes as _codecs.encode(text, "latin1"). Those globals are all we allow, each
# through a wrapper that only accepts the harmless uses.

# ndarray.__reduce__ names NumPy's own reconstructor: numpy.core.multiarray
# in NumPy 1, numpy._core.multiarray in NumPy 2. Taking it from there avoids
# importing the deprecated numpy.core alias under NumPy 2.
_reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]


class _ArrayStub:
    """What the unpickler builds for an ndarray: it checks the state pickle hands
    it (version, shape, dtype, fortran order, raw bytes) and only then becomes a
    real array (`_arrays_from_stubs`).

    numpy's own reconstructor would allocate an uninitialised array of any
    shape the file names, and its __setstate__ accepts foreign buffers; here the
    shape must be 1-D or 2-D, the bytes exactly shape x itemsize long, so an
    array can be no larger than the file it came from.
    """

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise UnsafePickleError("an array's state is not (version, shape, dtype, order, data)")
        _, shape, dtype, fortran, raw = state
        if (not isinstance(shape, tuple) or not 1 <= len(shape) <= 2
                or not all(isinstance(d, int) and d >= 0 for d in shape)):
            raise UnsafePickleError(f"array shape {shape!r:.80} is not 1-D or 2-D")
        if not isinstance(dtype, np.dtype) or not isinstance(raw, (bytes, bytearray)):
            raise UnsafePickleError("an array's data is not a dtype and a byte string")
        if len(raw) != int(np.prod(shape)) * dtype.itemsize:
            raise UnsafePickleError(f"an array of shape {shape} {dtype} needs "
                                    f"{int(np.prod(shape)) * dtype.itemsize} bytes, the file "
                                    f"holds {len(raw)}")
        a = np.frombuffer(bytes(raw), dtype).reshape(shape, order="F" if fortran else "C")
        self.array = a


def _safe_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"array subtype {subtype!r} is not numpy.ndarray")
    if shape != (0,):  # ndarray.__reduce__ always writes (0,); the real shape comes in BUILD
        raise UnsafePickleError(f"array reconstructed with shape {shape!r:.80}, not (0,)")
    return _ArrayStub()


def _arrays_from_stubs(obj):
    """Replace every _ArrayStub in a loaded dict/list by its checked array."""
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise UnsafePickleError("an array without its data")
        return obj.array
    if isinstance(obj, dict):
        return {k: _arrays_from_stubs(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_arrays_from_stubs(v) for v in obj]
    return obj


def _safe_dtype(spec, align=False, copy=False):
    if isinstance(spec, bytes):
        spec = spec.decode("ascii")
    if not isinstance(spec, str):
        raise UnsafePickleError(f"dtype spec {spec!r} is not a string")
    dt = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dt.kind not in "biuf":  # no object, void/structured, string or datetime arrays
        raise UnsafePickleError(f"dtype {spec!r} is not a plain number type")
    return dt


def _latin1_encode(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with {encoding!r} is not how bytes pickle")
    return text.encode("latin1")


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,   # NumPy 1
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,  # NumPy 2
    ("numpy", "ndarray"): np.ndarray,  # only passed to _safe_reconstruct, never called
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _latin1_encode,  # bytes in a Python 3 protocol-2 pickle
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that hands out only the globals in _ALLOWED_GLOBALS."""

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load the global '{module}.{name}': a genuine CIFAR-10 "
                f"batch holds only dicts, lists, strings, ints and numpy arrays") from None

    def persistent_load(self, pid):
        raise UnsafePickleError("refused a persistent id: not a genuine CIFAR-10 batch")


def _what_to_do(path: Path) -> str:
    target = path.parent if path.parent.name == BATCHES_DIR else path
    return (f"Delete {target} and put a fresh copy there: extract the official "
            f"{ARCHIVE_NAME} again, or download it with load_cifar10(download=True) "
            f"(delete an old archive first if it may be the damaged one).")


def _unpickle(path: Path) -> dict:
    """Read one batch file as a dict with str keys, refusing foreign objects."""
    try:
        with open(path, "rb") as f:
            obj = _arrays_from_stubs(_RestrictedUnpickler(f, encoding="bytes").load())
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}. This is not a genuine CIFAR-10 batch file; "
                                f"nothing in it was run. {_what_to_do(path)}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, OverflowError, MemoryError, UnicodeError) as e:
        raise CIFAR10FormatError(
            f"{path}: cannot be read as a CIFAR-10 batch ({type(e).__name__}: {e}); "
            f"the file is truncated or corrupted. {_what_to_do(path)}") from None
    if not isinstance(obj, dict):
        raise CIFAR10FormatError(f"{path}: expected a pickled dict, found "
                                 f"{type(obj).__name__}. {_what_to_do(path)}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def load_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (images (N, 3, 32, 32) uint8, labels (N,) int64), validated.

    Expects ``data`` uint8 (N, 3072) and ``labels`` N ints in 0..9.
    """
    path = Path(path)
    d = _unpickle(path)
    data, labels = d.get("data"), d.get("labels")
    bad = _what_to_do(path)
    if not isinstance(data, np.ndarray) or labels is None:
        raise CIFAR10FormatError(f"{path}: expected keys 'data' (a numpy array) and 'labels', "
                                 f"found keys {sorted(map(str, d))}. {bad}")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_SIZE or not len(data):
        raise CIFAR10FormatError(f"{path}: expected 'data' uint8 (N, {ROW_SIZE}), found "
                                 f"{data.dtype} {data.shape}. {bad}")
    if len(data) > MAX_BATCH_IMAGES or data.nbytes > path.stat().st_size:
        raise CIFAR10FormatError(f"{path}: expected at most {MAX_BATCH_IMAGES} images of "
                                 f"{ROW_SIZE} bytes stored in the file, found {len(data)} in a "
                                 f"file of {path.stat().st_size} bytes. {bad}")
    if not isinstance(labels, (list, np.ndarray)) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        raise CIFAR10FormatError(f"{path}: expected 'labels' a list of ints. {bad}")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(data):
        raise CIFAR10FormatError(f"{path}: {len(data)} images but {len(y)} labels. {bad}")
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise CIFAR10FormatError(f"{path}: labels must be in 0..{NUM_CLASSES - 1}, found "
                                 f"{y.min()}..{y.max()}. {bad}")
    return data.reshape(len(data), *IMAGE_SHAPE), y  # rows are R, G, B planes: NCHW as is


def load_label_names(path: str | os.PathLike) -> tuple[str, ...]:
    """batches.meta -> the 10 class names, as str."""
    path = Path(path)
    names = _unpickle(path).get("label_names")
    if (not isinstance(names, list) or len(names) != NUM_CLASSES
            or not all(isinstance(n, (bytes, str)) for n in names)):
        raise CIFAR10FormatError(f"{path}: expected 'label_names', a list of {NUM_CLASSES} "
                                 f"names, found {names!r:.200}. {_what_to_do(path)}")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)


def load_batches_dir(batches_dir: str | os.PathLike) -> CIFAR10:
    """Load an extracted cifar-10-batches-py directory."""
    d = Path(batches_dir)
    missing = [f for f in ALL_FILES if not (d / f).is_file()]
    if missing:
        raise CIFAR10NotFound(f"{d} lacks {', '.join(missing)}; a complete "
                              f"{BATCHES_DIR} holds {', '.join(ALL_FILES)}. {_what_to_do(d / META)}")
    label_names = load_label_names(d / META)
    train = [load_batch(d / f) for f in TRAIN_BATCHES]
    x_test, y_test = load_batch(d / TEST_BATCH)
    return CIFAR10(x_train=np.concatenate([x for x, _ in train]),  # (50000, 3, 32, 32)
                   y_train=np.concatenate([y for _, y in train]),
                   x_test=x_test, y_test=y_test, label_names=label_names)


# ----------------------------------------------------------------------------
# Extracting the archive safely
# ----------------------------------------------------------------------------

def _checked_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """The members to extract: regular files directly under cifar-10-batches-py/.

    Raises UnsafeArchiveError on any member with an absolute path, a '..'
    component, or that is a link, device or fifo, and (`bounded_members`) on an
    archive of more than MAX_MEMBERS members, MAX_MEMBER_BYTES per member or
    MAX_TOTAL_BYTES in all. Safe members elsewhere (a stray top-level README,
    say) are skipped.
    """
    keep, seen = [], set()
    for m in bounded_members(tar, archive, MAX_MEMBERS, MAX_MEMBER_BYTES, MAX_TOTAL_BYTES,
                             UnsafeArchiveError, "the official CIFAR-10 archive"):
        where = f"{archive}: member {m.name!r}"
        problem = member_problem(m)
        if problem:
            raise UnsafeArchiveError(f"{where} is {problem}; refusing to extract. "
                                     f"This is not the official archive: delete it.")
        parts = [q for q in m.name.split("/") if q not in ("", ".")]
        if m.isdir() or len(parts) != 2 or parts[0] != BATCHES_DIR:
            continue
        if parts[1] in seen:
            raise UnsafeArchiveError(f"{where} appears twice; refusing to extract.")
        seen.add(parts[1])
        keep.append(m)
    return keep


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Extract cifar-10-python.tar.gz; returns the cifar-10-batches-py directory.

    dest: the directory to put cifar-10-batches-py in (default: next to the
    archive). Members are checked by :func:`_checked_members` and, where
    Python has it, extracted with tarfile's 'data' filter as well. Extraction
    goes to a temporary directory that is renamed into place only when
    complete, so an interrupted run leaves no half-extracted directory behind.
    """
    archive = Path(archive)
    dest = Path(dest) if dest is not None else archive.parent
    target = dest / BATCHES_DIR
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".cifar10-extract-", dir=dest))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = _checked_members(tar, archive)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # Python < 3.11.4 etc.: our own checks above are the filter
                    tar.extractall(tmp, members=members)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise CIFAR10FormatError(
                f"{archive}: cannot be read as a .tar.gz archive ({type(e).__name__}: {e}); "
                f"it is truncated or corrupted. Delete it and download it again "
                f"(load_cifar10(download=True)).") from None
        got = tmp / BATCHES_DIR
        missing = [f for f in ALL_FILES if not (got / f).is_file()]
        if missing:
            raise CIFAR10FormatError(f"{archive}: has no {BATCHES_DIR}/{', '.join(missing)}; "
                                     f"it is not the official CIFAR-10 python archive.")
        if target.exists():  # a previous, incomplete or foreign copy: ours is complete
            shutil.rmtree(target)
        os.replace(got, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------
# Downloading (only when asked)
# ----------------------------------------------------------------------------

def file_md5(path: str | os.PathLike) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_archive(dest_dir: str | os.PathLike, url: str | None = None,
                     md5: str | None = None, progress: bool = True) -> Path:
    """Download the official archive into dest_dir and verify its MD5.

    Streams to a temporary file in dest_dir, checks the published MD5, and only
    then renames it to cifar-10-python.tar.gz; on a mismatch or an interrupted
    download the partial file is removed and ChecksumError / the network error
    is raised. Returns the archive's path.
    """
    from tqdm import tqdm
    url = url or ARCHIVE_URL
    md5 = md5 or ARCHIVE_MD5
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / ARCHIVE_NAME
    fd, tmp_name = tempfile.mkstemp(prefix=ARCHIVE_NAME + ".", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"downloading {ARCHIVE_NAME}", disable=not progress) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        if h.hexdigest() != md5:
            raise ChecksumError(
                f"{url} gave a file with MD5 {h.hexdigest()}, but the official archive's "
                f"published MD5 is {md5}; the download is corrupted or not the official "
                f"file, and was deleted. Try again, or download it yourself and put it "
                f"at {final}.")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


# ----------------------------------------------------------------------------
# Finding the data
# ----------------------------------------------------------------------------

def default_root() -> Path:
    """$ALEXNET_DATA if set, else ./data."""
    return Path(os.environ.get(ENV_VAR) or "data")


def _not_found_message(root: Path, reason: str = "") -> str:
    root = root.resolve()
    return (f"CIFAR-10 not found under {root}.{' ' + reason if reason else ''}\n"
            f"Put the official python version of CIFAR-10 ({ARCHIVE_URL}, "
            f"MD5 {ARCHIVE_MD5}) in one of these places:\n"
            f"  - the archive as it is:  {root / ARCHIVE_NAME}\n"
            f"  - or extracted:          {root / BATCHES_DIR}/ "
            f"(holding {', '.join(ALL_FILES)})\n"
            f"or download it with load_cifar10(download=True); choose another "
            f"directory with root=... or the {ENV_VAR} environment variable.")


def check_official(archive: Path, allow_unofficial: bool = False) -> Path:
    """Refuse a local archive whose MD5 is not the official one, unless allowed.

    A renamed, re-packed or tampered archive is not the data Figure 1 was
    measured on; `allow_unofficial` (the CLI's --allow-unofficial-archive)
    accepts it knowingly, after a warning. Its members are checked either way.
    """
    digest = file_md5(archive)
    if digest == ARCHIVE_MD5:
        return archive
    what = (f"{archive} has MD5 {digest}, but the official {ARCHIVE_NAME} has {ARCHIVE_MD5}: "
            f"it is damaged, re-packed or not the official archive")
    if not allow_unofficial:
        raise ChecksumError(f"{what}. Delete it and download the official one "
                            f"(load_cifar10(download=True)), or accept it knowingly with "
                            f"allow_unofficial=True (alexnet figure1 --allow-unofficial-archive).")
    import warnings
    warnings.warn(f"{what}; using it as asked (allow_unofficial)", stacklevel=2)
    return archive


def find_cifar10(root: str | os.PathLike | None = None, download: bool = False,
                 extract_to: str | os.PathLike | None = None,
                 progress: bool = True, allow_unofficial: bool = False) -> Path:
    """Locate (extracting or downloading if needed) the cifar-10-batches-py directory.

    root may be:
      - a cifar-10-batches-py directory (anything holding batches.meta);
      - a directory holding cifar-10-batches-py/ or cifar-10-python.tar.gz;
      - the path of the archive itself (any name ending in .tar.gz / .tgz / .tar).
    None means $ALEXNET_DATA, else ./data. An archive is extracted into
    extract_to (default: the archive's directory). With download=True and
    nothing found, the official archive is downloaded into root (extract_to if
    root is a file), verified and extracted. Raises CIFAR10NotFound otherwise.
    A local archive must have the official MD5 (`check_official`) unless
    `allow_unofficial`.
    """
    root = Path(root) if root is not None else default_root()
    if root.is_file():
        have_dir = Path(extract_to or root.parent) / BATCHES_DIR
        if (have_dir / META).is_file():
            return have_dir  # extracted on an earlier run
        return extract_archive(check_official(root, allow_unofficial), extract_to)
    if (root / META).is_file():
        return root
    if (root / BATCHES_DIR / META).is_file():
        return root / BATCHES_DIR
    if extract_to is not None and (Path(extract_to) / BATCHES_DIR / META).is_file():
        return Path(extract_to) / BATCHES_DIR
    if (root / ARCHIVE_NAME).is_file():
        return extract_archive(check_official(root / ARCHIVE_NAME, allow_unofficial),
                               extract_to or root)
    if not download:
        raise CIFAR10NotFound(_not_found_message(root))
    try:
        archive = download_archive(root, progress=progress)
    except (urllib.error.URLError, OSError) as e:  # no network, proxy, DNS, disk
        raise CIFAR10NotFound(_not_found_message(
            root, f"Downloading it failed ({type(e).__name__}: {e}).")) from e
    return extract_archive(archive, extract_to or root)


def load_cifar10(root: str | os.PathLike | None = None, download: bool = False,
                 extract_to: str | os.PathLike | None = None,
                 progress: bool = True, allow_unofficial: bool = False) -> CIFAR10:
    """Find (see :func:`find_cifar10`), validate and load CIFAR-10.

    Returns CIFAR10 with x_train (50000, 3, 32, 32) uint8 NCHW RGB, y_train
    (50000,) int64, x_test (10000, 3, 32, 32), y_test (10000,), label_names.
    """
    return load_batches_dir(find_cifar10(root, download, extract_to, progress, allow_unofficial))
