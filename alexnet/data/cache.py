"""The prepared cache on disk: what its manifest promises, checked whenever it is opened.

    CACHE/manifest.json      classes, settings, per split counts, and for every array
                             its file, shape, dtype and CRC-32 checksums ("arrays")
    CACHE/{split}_images.npy (N, S, S, 3) uint8; {split}_labels.npy (N,) int64
    CACHE/mean.npy, pca.npz  the training set's mean image and RGB PCA
    (alexnet/data/prepare.py writes them; its docstring lists every file.)

**Written once.** `alexnet prepare` builds into CACHE/.build/ and `commit` moves the
finished files into place with renames, the manifest last. A file in the cache is
never opened for writing again: a run that has the old images mapped keeps reading
them (the kernel keeps a renamed-over file until its last user closes it), and
notices the new manifest at its next epoch (`alexnet.imagenet_train`). A reader
sees the old cache or the new one, never a mix: `open_split` reads the manifest
again after opening the arrays and starts over if it changed.

**Checked when opened** (`open_split`), always: the manifest's entries; each array's
header, shape, dtype and length against the manifest; as many image rows as labels
as the split's count; labels in -1..classes-1; the mean and the PCA present (when
asked for) and of the right shape. The checksums (CRC-32: 0.2-0.3 s per GiB of one
core on a 2-core Xeon, from memory, `python -m benchmarks.bench_data`; a disk adds its
read time) of the labels, the mean and the PCA are checked at every open (ImageNet's
labels are 10 MB: milliseconds), those of the images when their file is at most
`VERIFY_AT_OPEN` (1 GiB: a fraction of a second), so ILSVRC's 252 GB of training
images are checked by `alexnet prepare --verify CACHE` (`verify`), which checks
everything and names the damaged rows.

A cache written before the checksums (version 1) is refused with what to do:
`alexnet prepare --verify CACHE` checks its counts, shapes and dtypes and records
the checksums of its arrays as they are (`upgrade`), or it can be rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_VERSION = 2
FORMAT = "alexnet-ilsvrc-cache"
MANIFEST = "manifest.json"
BUILD = ".build"                 # where prepare builds; moved into place by `commit`
VERIFY_AT_OPEN = 1 << 30         # image files up to this size are checksummed at every open
OPEN_TRIES = 50                  # a cache replaced while being opened: try again (0.1 s apart)


class CacheError(ValueError):
    """A cache that is damaged, inconsistent or of an older format; the message says what to do."""


class CacheChanged(CacheError):
    """The cache is no longer the one a run or a loader opened (rebuilt or replaced)."""


def damaged(cache) -> str:
    """What to do about a damaged cache (the end of every such message)."""
    return (f"the cache is damaged: `alexnet prepare --verify {cache}` lists what is wrong; "
            f"rebuild it with `alexnet prepare SRC {cache} --rebuild`")


# ----------------------------------------------------------------------------- checksums

def crc32_blocks(array, rows, progress=None) -> list:
    """CRC-32 (hex) of the bytes of each block of `rows` rows of `array` (C order).
    `progress`: called with the rows of each block done (a progress bar's update)."""
    out = []
    for a in range(0, max(len(array), 1), rows):
        block = np.ascontiguousarray(array[a:a + rows])
        out.append(f"{zlib.crc32(block.reshape(-1).view(np.uint8)):08x}")
        if progress is not None:
            progress(len(block))
    return out


def array_record(file, array, rows=None, crc32=None) -> dict:
    """The manifest's entry for an .npy array: file, shape, dtype and one CRC-32 per
    block of `rows` rows (default: one block). `crc32`: the blocks' sums if known."""
    rows = int(rows or max(len(array), 1))
    return {"file": file, "shape": list(array.shape), "dtype": array.dtype.str, "rows": rows,
            "crc32": list(crc32) if crc32 is not None else crc32_blocks(array, rows)}


def file_record(path) -> dict:
    """The manifest's entry for a file read as a whole (pca.npz): its size and CRC-32."""
    data = Path(path).read_bytes()
    return {"file": Path(path).name, "bytes": len(data), "crc32": [f"{zlib.crc32(data):08x}"]}


def digest(record) -> str:
    """A short fingerprint of a manifest entry (shape, dtype and checksums)."""
    return hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the manifest

MANIFEST_SCHEMA = {"format": str, "version": int, "size": int, "wnids": list, "splits": dict}
ARRAY_SCHEMA = {"file": str, "shape": list, "dtype": str, "rows": int, "crc32": list}
FILE_SCHEMA = {"file": str, "bytes": int, "crc32": list}


def _manifest_bytes(cache: Path) -> bytes:
    """The manifest's bytes; waits while a commit replaces it, and says what to do when
    there is none."""
    path = cache / MANIFEST
    for _ in range(OPEN_TRIES):
        try:
            return path.read_bytes()
        except FileNotFoundError:
            if not (cache / BUILD / MANIFEST).exists():
                break
            time.sleep(0.1)        # a commit in progress (or one that was interrupted)
    if not cache.is_dir():
        raise FileNotFoundError(f"{cache}: no such folder; build the cache with "
                                f"`alexnet prepare SRC {cache}`")
    if (cache / BUILD).is_dir():
        raise FileNotFoundError(f"{cache}: not finished yet (no manifest.json; a build in "
                                f"{cache / BUILD} is incomplete): run the same `alexnet "
                                "prepare` command again to finish it")
    raise FileNotFoundError(f"{cache}: no manifest.json; build the cache with "
                            f"`alexnet prepare SRC {cache}`")


def parse_manifest(data: bytes, path, any_version=False) -> dict:
    """A manifest's bytes, checked (schema, format, version; each array entry's fields).
    any_version: accept a version-1 manifest (no checksums), for prepare and `upgrade`."""
    from minidl.serialize import check
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeError) as e:
        raise CacheError(f"{path}: not readable JSON ({e}); the cache is damaged: rebuild it "
                         f"with `alexnet prepare SRC {Path(path).parent} --rebuild`") from None
    check(manifest, MANIFEST_SCHEMA, path)
    if manifest["format"] != FORMAT or manifest["version"] not in (1, CACHE_VERSION):
        raise CacheError(f"{path}: a {manifest['format']!r} version {manifest['version']} "
                         f"manifest, expected an {FORMAT} of version {CACHE_VERSION}; prepare "
                         "the cache again")
    if manifest["version"] == 1:
        if any_version:
            return manifest
        cache = Path(path).parent
        raise CacheError(f"{cache} was made by an earlier `alexnet prepare` (cache version 1), "
                         "without the checksums that let damage be found. Run `alexnet "
                         f"prepare --verify {cache}` once: it checks the counts, shapes and "
                         "dtypes of its arrays and records their checksums (nothing is decoded "
                         f"again). Or rebuild it: `alexnet prepare SRC {cache} --rebuild`.")
    check(manifest, {"arrays": dict}, path)
    for name, record in manifest["arrays"].items():
        check(record, FILE_SCHEMA if "bytes" in record else ARRAY_SCHEMA, path,
              f"arrays/{name}")
    return manifest


def read_manifest(cache, any_version=False) -> dict:
    """CACHE/manifest.json, checked: the one place a cache's manifest is read. A
    missing, damaged, foreign or outdated one is a clear error."""
    cache = Path(cache)
    return parse_manifest(_manifest_bytes(cache), cache / MANIFEST, any_version)


def write_json(path, obj):
    """Write JSON via a temporary file and os.replace, so `path` is always whole."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(json.dumps(obj, indent=1).encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- arrays

def _header(path):
    """(shape, dtype, data offset) of an .npy file, from its header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"an .npy format version {version} this reader does not know")
        shape, fortran, dtype = read(f)
        if fortran:
            raise ValueError("a Fortran-ordered array; the cache writes C order")
        return shape, dtype, f.tell()


def load_array(cache, name, record, mmap=False):
    """The array `name` of the manifest, checked against its entry before its data is
    read: the file exists, its header parses and says the entry's shape and dtype, and
    the file holds all of the data. mmap: map it read-only instead of reading it."""
    path = Path(cache) / record["file"]
    want = f"{name} of shape {tuple(record['shape'])} and dtype {np.dtype(record['dtype'])}"
    if not path.is_file():
        raise CacheError(f"{path} is missing: the manifest lists it ({want}); {damaged(cache)}")
    try:
        shape, dtype, offset = _header(path)
    except Exception as e:  # noqa: BLE001 - any unreadable header (TokenError, EOFError, ...)
        raise CacheError(f"{path}: not a readable .npy file ({type(e).__name__}: {e}); expected "
                         f"{want}; {damaged(cache)}") from None
    if list(shape) != list(record["shape"]) or dtype.str != record["dtype"]:
        raise CacheError(f"{path}: expected {want} (the manifest), found shape {shape} and "
                         f"dtype {dtype}; {damaged(cache)}")
    need = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise CacheError(f"{path}: expected {need} bytes for {want}, found {size}: the file is "
                         f"cut short; {damaged(cache)}")
    if mmap:
        return np.memmap(path, dtype, "r", offset, tuple(shape))
    with open(path, "rb") as f:
        f.seek(offset)
        data = np.fromfile(f, dtype, int(np.prod(shape)))
    return data.reshape(shape)


def check_checksums(cache, name, record, array, progress=False):
    """Raise CacheError naming the rows whose bytes do not match the manifest's CRC-32s."""
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(array), desc=f"verify {record['file']}", unit="row", leave=False)
    try:
        found = crc32_blocks(array, record["rows"], bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    rows = record["rows"]
    bad = [i for i, (a, b) in enumerate(zip(found, record["crc32"])) if a != b]
    if len(found) != len(record["crc32"]):
        raise CacheError(f"{Path(cache) / record['file']}: the manifest holds "
                         f"{len(record['crc32'])} checksums for {name}, its rows make "
                         f"{len(found)}; {damaged(cache)}")
    if bad:
        spans = ", ".join(f"{i * rows}-{min((i + 1) * rows, len(array)) - 1}" for i in bad[:5])
        raise CacheError(f"{Path(cache) / record['file']}: rows {spans}"
                         f"{' and more' if len(bad) > 5 else ''} of {name} do not match their "
                         f"checksums ({len(bad)} of {len(found)} blocks of {rows} rows): their "
                         f"bytes changed after `alexnet prepare` wrote them; {damaged(cache)}")


def _record(manifest, name, cache, why):
    record = manifest["arrays"].get(name)
    if record is None:
        raise CacheError(f"{Path(cache) / MANIFEST} has no entry for {name} ({why}); "
                         f"{damaged(cache)}")
    return record


def load_mean(cache, manifest):
    """The mean image (size, size, 3) float32, checked and checksummed."""
    record = _record(manifest, "mean", cache, "the training set's mean image")
    s = manifest["size"]
    if record["shape"] != [s, s, 3] or np.dtype(record["dtype"]) != np.float32:
        raise CacheError(f"{Path(cache) / MANIFEST}: expected the mean image as ({s}, {s}, 3) "
                         f"float32, the manifest says {tuple(record['shape'])} "
                         f"{np.dtype(record['dtype'])}; {damaged(cache)}")
    mean = load_array(cache, "the mean image", record)
    check_checksums(cache, "the mean image", record, mean)
    if not (np.isfinite(mean).all() and mean.min() >= 0 and mean.max() <= 255):
        raise CacheError(f"{Path(cache) / record['file']}: expected pixel values in 0..255, "
                         f"found {mean.min():g}..{mean.max():g}; {damaged(cache)}")
    return mean


def load_pca(cache, manifest):
    """(eigvals (3,), eigvecs (3, 3)) of pca.npz, checked and checksummed."""
    record = _record(manifest, "pca", cache, "the RGB PCA of Section 4.1's colour noise")
    path = Path(cache) / record["file"]
    if not path.is_file():
        raise CacheError(f"{path} is missing: the RGB PCA that PCA colour noise (Section 4.1) "
                         f"needs; {damaged(cache)}. To train without the colour noise, pass "
                         "--no-pca-noise")
    data = path.read_bytes()
    if len(data) != record["bytes"] or f"{zlib.crc32(data):08x}" != record["crc32"][0]:
        raise CacheError(f"{path}: its bytes do not match the manifest's size and checksum "
                         f"({len(data)} bytes, {record['bytes']} expected); {damaged(cache)}")
    try:
        with np.load(path, allow_pickle=False) as z:
            eigvals = np.asarray(z["eigvals"], np.float64)
            eigvecs = np.asarray(z["eigvecs"], np.float64)
    except Exception as e:  # noqa: BLE001 - any unreadable archive
        raise CacheError(f"{path}: not a readable PCA ({type(e).__name__}: {e}); "
                         f"{damaged(cache)}") from None
    if eigvals.shape != (3,) or eigvecs.shape != (3, 3) or not (
            np.isfinite(eigvals).all() and np.isfinite(eigvecs).all()):
        raise CacheError(f"{path}: expected finite eigvals (3,) and eigvecs (3, 3), found "
                         f"{eigvals.shape} and {eigvecs.shape}; {damaged(cache)}")
    return eigvals, eigvecs


# ----------------------------------------------------------------------------- one split

@dataclass
class CacheSplit:
    """One split of the cache, ready for the loader.

    images: (N, 256, 256, 3) uint8 (a read-only memmap when opened from disk)
    labels: (N,) int64, -1 for skipped rows
    rows:   (M,) int64 the usable rows (label >= 0): the loader draws from these
    mean:   (256, 256, 3) float32 training mean image, 0..255, or None
    eigvals (3,), eigvecs (3, 3): RGB PCA of the training pixels in pixel/255 units, or None
    identity: what `open_split` found (the manifest's entries of the arrays it opened).
    Pickles as (path, split, identity) when it came from disk, so worker processes map
    the files themselves instead of receiving a copy, and refuse a cache that changed.
    """
    images: np.ndarray
    labels: np.ndarray
    mean: np.ndarray | None = None
    eigvals: np.ndarray | None = None
    eigvecs: np.ndarray | None = None
    wnids: list | None = None
    words: list | None = None
    path: str | None = None
    split: str | None = None
    identity: str | None = None
    parts: tuple = (True, True)      # whether the mean and the PCA were opened

    def __post_init__(self):
        self.labels = np.asarray(self.labels, np.int64)
        self.rows = np.flatnonzero(self.labels >= 0)

    def __len__(self):
        return len(self.rows)

    def __reduce_ex__(self, protocol):
        if self.path is not None:
            return reopen_split, (self.path, self.split, *self.parts, self.identity)
        return super().__reduce_ex__(protocol)


def split_identity(manifest, split, mean=True, pca=True) -> str:
    """A fingerprint of the manifest entries of the arrays `open_split` opens."""
    arrays = manifest["arrays"]
    names = [f"{split}_images", f"{split}_labels"] + ["mean"] * mean + ["pca"] * pca
    return digest({n: arrays.get(n) for n in names})


def open_split(cache, split="train", mean=True, pca=True, checksums=None, expect=None,
               progress=False) -> CacheSplit:
    """Map one split of a prepared cache, checked against its manifest (module docstring).

    mean, pca: also open the training mean image / the RGB PCA (an error if missing).
    checksums: True: check every checksum; False: none; None: all but those of image
    files larger than VERIFY_AT_OPEN. expect: the `identity` of an earlier open: raise
    CacheChanged if the cache is no longer that one (a worker reopening a run's cache).
    """
    cache = Path(cache)
    for _ in range(OPEN_TRIES):
        before = _manifest_bytes(cache)
        try:
            opened = _open_split(cache, before, split, mean, pca, checksums, expect, progress)
        except (CacheError, OSError):
            if _manifest_bytes(cache) != before:
                continue                    # replaced while we read it: read the new one
            raise
        if _manifest_bytes(cache) == before:
            return opened
        time.sleep(0.1)
    raise CacheError(f"{cache}: the cache kept changing while it was being opened (is `alexnet "
                     "prepare` writing it?); try again when it has finished")


def reopen_split(path, split, mean, pca, identity) -> CacheSplit:
    """A CacheSplit unpickled in another process: the same cache, or CacheChanged."""
    try:
        return open_split(path, split, mean, pca, checksums=False, expect=identity)
    except OSError as e:
        raise CacheChanged(f"the cache {path} cannot be read any more ({e}): it was deleted, "
                           "moved or is being rebuilt while in use. Put it back, or start "
                           "again once it is complete.") from None


def _open_split(cache, data, split, mean, pca, checksums, expect, progress):
    manifest = parse_manifest(data, cache / MANIFEST)
    entry = manifest["splits"].get(split)
    if not entry or not entry.get("complete"):
        state = "incomplete" if entry else "absent"
        raise FileNotFoundError(f"{cache}: split {split!r} is {state} (have: "
                                f"{sorted(manifest['splits'])}); run prepare again to finish it")
    identity = split_identity(manifest, split, mean, pca)
    if expect is not None and identity != expect:
        raise CacheChanged(f"{cache} changed since this run opened it (its {split} arrays, mean "
                           "or PCA are not the same any more: rebuilt by `alexnet prepare`, or "
                           "replaced). The run cannot go on with other data: restore the cache "
                           "it was trained on, or start a new run.")
    size, classes = manifest["size"], len(manifest["wnids"])
    images_r = _record(manifest, f"{split}_images", cache, f"the {split} images")
    labels_r = _record(manifest, f"{split}_labels", cache, f"the {split} labels")
    count = entry.get("count")
    where = cache / MANIFEST
    if images_r["shape"] != [count, size, size, 3] or labels_r["shape"] != [count]:
        raise CacheError(f"{where}: the {split} split should hold {count} images of {size}x"
                         f"{size}x3 and {count} labels, its arrays are recorded as "
                         f"{tuple(images_r['shape'])} and {tuple(labels_r['shape'])}: the "
                         f"manifest contradicts itself; {damaged(cache)}")
    if images_r["dtype"] != "|u1" or labels_r["dtype"] != "<i8":
        raise CacheError(f"{where}: expected uint8 images and int64 labels for {split}, the "
                         f"manifest says {images_r['dtype']} and {labels_r['dtype']}; "
                         f"{damaged(cache)}")
    images = load_array(cache, f"the {split} images", images_r, mmap=True)
    labels = load_array(cache, f"the {split} labels", labels_r)
    if checksums is not False:
        check_checksums(cache, f"the {split} labels", labels_r, labels)
    bad = np.flatnonzero((labels < -1) | (labels >= classes))
    if len(bad):
        raise CacheError(f"{cache / labels_r['file']}: expected class indices 0..{classes - 1} "
                         f"(or -1 for a skipped file), found {labels[bad[0]]} in row {bad[0]} "
                         f"({len(bad)} rows out of range); {damaged(cache)}")
    valid = int((labels >= 0).sum())
    if entry.get("valid", valid) != valid:
        raise CacheError(f"{where}: the {split} split should have {entry.get('valid')} usable "
                         f"images, its labels have {valid}; {damaged(cache)}")
    if checksums or (checksums is None and images.nbytes <= VERIFY_AT_OPEN):
        check_checksums(cache, f"the {split} images", images_r, images, progress)
    m = load_mean(cache, manifest) if mean else None
    eigvals = eigvecs = None
    if pca:
        eigvals, eigvecs = load_pca(cache, manifest)
    return CacheSplit(images, labels, m, eigvals, eigvecs, manifest["wnids"],
                      manifest.get("words"), str(cache), split, identity, (mean, pca))


# ----------------------------------------------------------------------------- verify

def verify(cache, progress=False) -> list:
    """Check everything (every checksum of every complete split); a list of problems,
    empty when the cache is sound. A version-1 cache is checked and upgraded (`upgrade`)."""
    cache = Path(cache)
    manifest = read_manifest(cache, any_version=True)
    if manifest["version"] == 1:
        return upgrade(cache, manifest)
    problems = []
    splits = [s for s, e in manifest["splits"].items() if e.get("complete")]
    if not splits:
        problems.append(f"{cache}: no complete split (have: {sorted(manifest['splits'])})")
    for split in splits:                      # the mean and the PCA come with train
        try:
            open_split(cache, split, mean=split == "train",
                       pca=split == "train" and "pca" in manifest["arrays"],
                       checksums=True, progress=progress)
        except (CacheError, OSError) as e:
            problems.append(str(e))
    return problems


def upgrade(cache, manifest) -> list:
    """A version-1 cache (no checksums): check its counts, shapes, dtypes and label
    ranges, then record the checksums of its arrays as they are now (version 2). A list
    of problems; nothing is written unless it is empty."""
    cache = Path(cache)
    problems, arrays = [], {}
    size, classes = manifest["size"], len(manifest["wnids"])
    rows = int(manifest.get("chunk_size") or 256)

    def add(name, file, shape, dtype, block=None):
        record = {"file": file, "shape": list(shape), "dtype": np.dtype(dtype).str, "rows": 1,
                  "crc32": []}
        try:
            a = load_array(cache, name, record, mmap=True)
        except CacheError as e:
            problems.append(str(e))
            return None
        arrays[name] = array_record(file, a, block)
        return a

    for split, entry in manifest["splits"].items():
        if not entry.get("complete"):
            continue
        n = entry.get("count")
        add(f"{split}_images", entry.get("images", f"{split}_images.npy"), (n, size, size, 3),
            np.uint8, rows)
        labels = add(f"{split}_labels", entry.get("labels", f"{split}_labels.npy"), (n,),
                     np.int64)
        if labels is not None and ((labels < -1) | (labels >= classes)).any():
            problems.append(f"{cache / entry.get('labels')}: labels outside -1..{classes - 1}")
        if split == "train":
            add("mean", "mean.npy", (size, size, 3), np.float32)
            if (cache / "pca.npz").is_file():
                arrays["pca"] = file_record(cache / "pca.npz")
            else:
                problems.append(f"{cache / 'pca.npz'} is missing")
    if not problems:
        manifest.update(version=CACHE_VERSION, arrays=arrays)
        write_json(cache / MANIFEST, manifest)
    return problems


# ----------------------------------------------------------------------------- commit

def commit(cache, manifest, files, remove=()):
    """Make a build the cache: move each of `files` (names in CACHE/.build/) into CACHE
    with a rename, then write the manifest; delete the files named in `remove` (of splits
    the new manifest drops) and the build folder.

    The old manifest is moved aside first, so a reader that opens the cache meanwhile
    waits (`_manifest_bytes`) instead of pairing it with new arrays. Running it again
    after an interruption finishes the job (a file already moved is skipped)."""
    cache = Path(cache)
    build = cache / BUILD
    write_json(build / MANIFEST, manifest)           # what an interrupted commit finishes
    if (cache / MANIFEST).exists():
        os.replace(cache / MANIFEST, build / "replaced-manifest.json")
    for name in files:
        if (build / name).exists():
            os.replace(build / name, cache / name)
    for name in remove:
        if name not in files and (cache / name).exists():
            (cache / name).unlink()                  # a process mapping it keeps its copy
    write_json(cache / MANIFEST, manifest)
    _fsync_dir(cache)
    shutil.rmtree(build, ignore_errors=True)


def finish_commit(cache) -> bool:
    """Finish a `commit` that was interrupted (its manifest waits in CACHE/.build); True
    if there was one."""
    build = Path(cache) / BUILD
    try:
        manifest = json.loads((build / MANIFEST).read_text())
    except (OSError, ValueError, UnicodeError):
        return False
    names = {r["file"] for r in manifest.get("arrays", {}).values()}
    names |= {e["files"] for e in manifest.get("splits", {}).values() if "files" in e}
    commit(cache, manifest, sorted(n for n in names if (build / n).exists()))
    return True


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
