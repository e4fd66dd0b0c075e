"""The paper's preprocessing, done once (Section 2), into a cache the loader maps.

    "we down-sampled the images to a fixed resolution of 256 x 256. Given a
    rectangular image, we first rescaled the image such that the shorter side was
    of length 256, and then cropped out the central 256x256 patch."

`prepare(src, out)` decodes every image in worker processes and writes:

    OUT/manifest.json        classes (WNIDs, words), per-split counts, source, settings, and
                             each array's file, shape, dtype and CRC-32s (alexnet/data/cache.py)
    OUT/train_images.npy     (N, 256, 256, 3) uint8, memory-mappable (np.load(mmap_mode="r"))
    OUT/train_labels.npy     (N,) int64 class index; -1 marks a row whose file was skipped
    OUT/train_files.txt      row i's file name (relative to the source)
    OUT/val_images.npy, val_labels.npy, val_files.txt   the same for val (and test)
    OUT/mean.npy             (256, 256, 3) float32 mean image of the training set, 0..255
    OUT/pca.npz              eigvals (3,), eigvecs (3, 3) (columns, descending), cov (3, 3),
                             mean_rgb (3,) of the training pixels, in units of pixel/255
    OUT/report.json          skipped files (row, name, error) and refused archive members

Written beside, moved into place: everything is built in OUT/.build/ and, once every
split asked for is complete, moved into OUT with renames, the manifest last
(`cache.commit`). A cache in use is never rewritten: `--rebuild` while a run trains
on OUT leaves the run's mapped files intact, and the run notices the new manifest.

Resumable: rows are preallocated; each finished chunk of rows is recorded (with
its exact integer sums for the mean and the covariance, and the CRC-32 of its
bytes) in a progress file that is replaced atomically, so an interrupted run redoes
only unrecorded chunks. Everything is exact integer arithmetic until the final
division, so the mean and PCA do not depend on the number of workers or on
interruptions.
"""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .cache import (BUILD, CACHE_VERSION, MANIFEST, CacheError, CacheSplit, array_record,
                    commit, file_record, finish_commit, open_split, read_manifest, verify,
                    write_json)
from .imagenet import Listing, find_devkit, find_split, has_split, load_devkit, read_bytes

SIZE = 256
RESAMPLE = Image.BICUBIC  # antialiased when shrinking (Pillow scales the kernel support)


# --------------------------------------------------------------------------- one image

def load_image(data: bytes, size: int = SIZE, exif_transpose: bool = False) -> np.ndarray:
    """Encoded image bytes -> (size, size, 3) uint8: shorter side to `size`, central crop.

    - JPEG draft mode: libjpeg decodes at 1/2, 1/4 or 1/8 scale when the image is
      at least that many times larger than `size` on both sides (the shorter side
      never drops below `size`), which is much faster for big photos.
    - Any mode (grayscale L, CMYK, palette, RGBA) -> RGB. Pillow identifies the
      format from the bytes, so a PNG named .JPEG is fine.
    - EXIF orientation is ignored by default, like the tools ImageNet models were
      trained and evaluated with (the stored pixels in file order).
    - Resize and crop are one Pillow call: resizing the central square `box` of
      the source to size x size is the same as scaling the shorter side to `size`
      and cropping the centre, without rounding the intermediate size.
    Raises on a truncated or corrupt file (Pillow's LOAD_TRUNCATED_IMAGES is left
    False: a half-grey image is worse than a skipped one).
    """
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (size, size))
    if exif_transpose:
        img = ImageOps.exif_transpose(img)
    img = to_rgb(img)
    w, h = img.size
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    return np.asarray(img.resize((size, size), RESAMPLE, box=box))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image -> 8-bit RGB.

    Pillow's convert("RGB") clips 16- and 32-bit integer pixels (modes I;16, I)
    at 255, so a 16-bit PNG would become solid white: those are scaled to 0..255
    from their type's range (0..65535) first, float images (mode F) from 0..1.
    """
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        a = np.asarray(img).astype(np.float64)
        top = 1.0 if img.mode == "F" else 65535.0
        a = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        img = Image.fromarray(a, "L")
    return img.convert("RGB")


# --------------------------------------------------------------------------- worker side

_W = {}  # per-process state: the output file, opened once


def _init_worker(images_path, data_offset, source, size, exif_transpose, stats, child=True):
    if child:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
        warnings.simplefilter("ignore")  # Pillow's EXIF/metadata warnings would break the bar
        parent = mp.parent_process()
        if parent is not None:  # a Pool worker outlives a SIGKILLed parent: leave with it
            threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()
    # No I/O here: a failing initializer makes Pool respawn workers forever, while an
    # error inside a task reaches the parent as an exception.
    _W.update(path=images_path, offset=data_offset, source=source,
              size=size, exif=exif_transpose, stats=stats)


def _do_chunk(task):
    """Decode rows [start, start + len(names)) and write them into the cache file.

    Returns the CRC-32 of the rows' bytes and the chunk's exact statistics: the
    integer sum image, the sum of RGB values and of their outer products (for the
    mean and covariance), and the skipped rows. The rows are on disk (fdatasync)
    before the chunk is reported.
    """
    chunk, start, names, offsets, sizes = task
    w, size = _W, _W["size"]
    row_bytes = size * size * 3
    out = np.zeros((len(names), size, size, 3), np.uint8)  # skipped rows stay zero
    sum_image = np.zeros((size, size, 3), np.int64)
    sum_outer, count = np.zeros((3, 3), np.int64), 0
    skipped = []
    for k, name in enumerate(names):
        try:
            data = read_bytes(w["source"], name, None if offsets is None else int(offsets[k]),
                              None if sizes is None else int(sizes[k]))
            out[k] = load_image(data, size, w["exif"])
        except Exception as e:  # noqa: BLE001 - any undecodable file is skipped and reported
            why = "not an image format Pillow knows" if isinstance(e, UnidentifiedImageError) else e
            skipped.append((start + k, name, f"{type(e).__name__}: {why}"))
            continue
        if w["stats"]:
            sum_image += out[k]
            sum_outer += _rgb_outer_sum(out[k])
            count += 1
    if "file" not in w:
        w["file"] = open(w["path"], "r+b")
    f = w["file"]
    f.seek(w["offset"] + start * row_bytes)
    f.write(out.data)
    f.flush()
    (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(f.fileno())
    stats = (sum_image, sum_image.sum((0, 1)), sum_outer, count) if w["stats"] else None
    return chunk, zlib.crc32(out.data), stats, skipped


def _rgb_outer_sum(image):
    """sum over pixels x of x x^T, (3, 3) int64, exactly: products of 0..255 values fit
    uint32 and numpy sums uint32 in uint64. (Six plain products beat a (3, HW) GEMM
    here, and stay clear of BLAS threads fighting the worker processes.)"""
    r, g, b = image.reshape(-1, 3).T.astype(np.uint32)
    rr, rg, rb, gg, gb, bb = (int((u * v).sum()) for u, v in ((r, r), (r, g), (r, b), (g, g), (g, b), (b, b)))
    return np.array([[rr, rg, rb], [rg, gg, gb], [rb, gb, bb]], np.int64)


# --------------------------------------------------------------------------- one split

def _atomic_write(path, write):
    """Write via a temporary file and os.replace, so `path` is always whole."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


LISTING_VERSION = 1   # of the fingerprint below (not the cache's version: a cache upgraded
                      # to checksums keeps its fingerprints, so its runs still resume)


def _fingerprint(listing, size, chunk_size, exif_transpose):
    h = hashlib.sha1(
        f"{LISTING_VERSION} {size} {chunk_size} {exif_transpose} {len(listing)}".encode())
    for name, label in zip(listing.names, listing.labels.tolist()):
        h.update(f"{name}\t{label}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


class _Progress:
    """Done chunks, their CRC-32s and the running integer sums, saved atomically to one
    .npz file."""

    def __init__(self, path, n_chunks, size, fingerprint):
        self.path, self.fingerprint = Path(path), fingerprint
        self.done = np.zeros(n_chunks, bool)
        self.crc = np.zeros(n_chunks, np.uint32)
        self.sum_image = np.zeros((size, size, 3), np.int64)
        self.sum_rgb = np.zeros(3, np.int64)
        self.sum_outer = np.zeros((3, 3), np.int64)
        self.count = 0
        self.skipped = []

    def load(self):
        """Resume from the file if it belongs to the same listing; True if it did."""
        if not self.path.exists():
            return False
        with np.load(self.path) as z:
            if str(z["fingerprint"]) != self.fingerprint or z["done"].shape != self.done.shape:
                return False
            self.done, self.sum_image = z["done"].copy(), z["sum_image"].copy()
            self.crc = z["crc"].copy()
            self.sum_rgb, self.sum_outer = z["sum_rgb"].copy(), z["sum_outer"].copy()
            self.count = int(z["count"])
            self.skipped = [tuple(s) for s in json.loads(str(z["skipped"]))]
        return True

    def add(self, chunk, crc, stats, skipped):
        self.done[chunk] = True
        self.crc[chunk] = crc
        self.skipped += skipped
        if stats is not None:
            self.sum_image += stats[0]
            self.sum_rgb += stats[1]
            self.sum_outer += stats[2]
            self.count += stats[3]

    def save(self):
        _atomic_write(self.path, lambda f: np.savez(
            f, fingerprint=self.fingerprint, done=self.done, crc=self.crc, sum_image=self.sum_image,
            sum_rgb=self.sum_rgb, sum_outer=self.sum_outer, count=self.count,
            skipped=json.dumps(self.skipped)))


def rgb_pca(sum_rgb, sum_outer, count):
    """Eigen-decomposition of the 3x3 covariance of RGB pixel values (Section 4.1).

    sum_rgb (3,) and sum_outer (3, 3) are sums of x and x x^T over `count` pixels x
    in 0..255. Returns (eigvals (3,) descending, eigvecs (3, 3) with eigenvector i
    in column i, cov (3, 3), mean (3,)), in units of pixel/255 (values in [0, 1]):
    the units in which alpha_i * lambda_i with alpha_i ~ N(0, 0.1) is a small
    colour shift (on ImageNet lambda_1 is about 0.2, a shift of a few grey levels).
    """
    mean = np.asarray(sum_rgb, np.float64) / count
    cov = np.asarray(sum_outer, np.float64) / count - np.outer(mean, mean)
    cov, mean = cov / 255.0 ** 2, mean / 255.0
    eigvals, eigvecs = np.linalg.eigh(cov)
    eigvals, eigvecs = eigvals[::-1].copy(), eigvecs[:, ::-1].copy()
    signs = np.sign(eigvecs[np.abs(eigvecs).argmax(0), range(3)])  # largest entry positive
    return eigvals, eigvecs * signs, cov, mean


def default_context():
    """How worker processes start: "forkserver" on Linux (no inherited threads, CUDA
    contexts or locks), "spawn" elsewhere; "fork" when the main program is stdin,
    which the other two cannot re-import."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if main is not None and not os.path.exists(main) and hasattr(os, "fork"):
        return "fork"
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def _prepare_split(listing: Listing, build: Path, split, size, chunk_size, workers,
                   exif_transpose, progress, max_chunks, context, fp):
    """Fill BUILD/{split}_images.npy (OUT/.build: nothing anyone reads); returns
    (complete, progress state)."""
    n = len(listing)
    images_path = build / f"{split}_images.npy"
    n_chunks = -(-n // chunk_size)
    state = _Progress(build / f"{split}_progress.npz", n_chunks, size, fp)
    resumed = state.load() and images_path.exists()
    if not resumed:
        state = _Progress(state.path, n_chunks, size, fp)
        np.lib.format.open_memmap(images_path, "w+", np.uint8, (n, size, size, 3)).flush()
        _atomic_write(build / f"{split}_files.txt", lambda f: f.write(
            "".join(f"{name}\n" for name in listing.names).encode("utf-8", "surrogateescape")))
        state.save()
    data_offset = np.load(images_path, mmap_mode="r").offset
    stats = split == "train"
    todo = [c for c in range(n_chunks) if not state.done[c]]
    if max_chunks is not None:
        todo = todo[:max_chunks]
    tasks = ((c, c * chunk_size, listing.names[c * chunk_size:(c + 1) * chunk_size],
              None if listing.offsets is None else listing.offsets[c * chunk_size:(c + 1) * chunk_size],
              None if listing.sizes is None else listing.sizes[c * chunk_size:(c + 1) * chunk_size])
             for c in todo)
    initargs = (str(images_path), data_offset, listing.root, size, exif_transpose, stats)
    done_rows = sum(min(chunk_size, n - c * chunk_size) for c in np.flatnonzero(state.done))
    from tqdm import tqdm
    bar = tqdm(total=n, initial=done_rows, desc=f"prepare {split}", unit="img",
               disable=not progress, smoothing=0.05)
    pool = None
    last_save = time.monotonic()
    try:
        if workers == 0:
            _init_worker(*initargs, child=False)
            results = map(_do_chunk, tasks)
        else:
            pool = mp.get_context(context or default_context()).Pool(
                workers, initializer=_init_worker, initargs=initargs)
            results = pool.imap_unordered(_do_chunk, tasks)
        done, tenth = done_rows, 10 * done_rows // n
        for chunk, crc, chunk_stats, skipped in results:
            state.add(chunk, crc, chunk_stats, skipped)
            bar.update(min(chunk_size, n - chunk * chunk_size))
            done += min(chunk_size, n - chunk * chunk_size)
            if not progress and 10 * done // n > tenth:     # no bars: a plain line per 10%
                tenth = 10 * done // n
                print(f"prepare {split}: {done}/{n} images ({100 * done // n}%)", flush=True)
            if time.monotonic() - last_save > 1.0:
                state.save()
                last_save = time.monotonic()
    finally:
        state.save()  # whatever finished is kept, also on Ctrl-C
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        if workers == 0:
            _W.pop("file").close() if "file" in _W else None
            _W.clear()
    return bool(state.done.all()), state


# --------------------------------------------------------------------------- the entry point

SPLITS = ("train", "val", "test")
PROGRESS = "progress.json"       # in OUT/.build: the build so far (a manifest of its splits)


def _settings(src, size, chunk_size, exif_transpose) -> dict:
    return {"source": str(src), "size": size, "chunk_size": chunk_size,
            "exif_transpose": exif_transpose}


def _differences(manifest, settings) -> list:
    """'--size: 76 in the cache, 32 now' for each setting a manifest was made with that
    differs from this run's."""
    names = {"source": "SRC", "size": "--size", "chunk_size": "--chunk-size",
             "exif_transpose": "--exif-transpose"}
    return [f"{names[k]}: {manifest.get(k, v)!r} in the cache, {v!r} now"
            for k, v in settings.items() if manifest.get(k, v) != v]


def _current_cache(out, rebuild) -> dict:
    """The manifest of the finished cache in OUT, or {} if there is none (or it is
    damaged or outdated and --rebuild replaces it)."""
    if not (out / MANIFEST).exists():
        return {}
    try:
        return read_manifest(out)
    except CacheError:
        if rebuild:
            return {}
        raise


def _build_so_far(build, settings) -> dict:
    """The state of an interrupted build in OUT/.build (kept when made with the same
    settings; otherwise the folder is emptied)."""
    try:
        staged = json.loads((build / PROGRESS).read_text())
        if all(staged.get(k) == v for k, v in settings.items()):
            return staged
    except (OSError, ValueError, UnicodeError):
        pass
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    return {**settings, "splits": {}, "arrays": {}}


def _split_files(split):
    return [f"{split}_images.npy", f"{split}_labels.npy", f"{split}_files.txt"]


def prepare(src, out, workers=None, splits=None, size=SIZE, chunk_size=256,
            devkit=None, exif_transpose=False, progress=True, max_chunks=None, context=None,
            rebuild=False):
    """Build the 256x256 cache of ILSVRC under `out` from `src` (Section 2).

    src:        a folder with ``train/`` and ``val/`` (WNID subfolders, or a flat val
                with the devkit), or with ``ILSVRC2012_img_train.tar``,
                ``ILSVRC2012_img_val.tar`` and the devkit (folder or .tar.gz).
    out:        the cache folder (created). Running again resumes an interrupted
                run, and skips splits that are already complete.
    workers:    decoding processes (default: all CPUs); 0 decodes in this process.
    splits:     which of train, val, test to prepare (each must exist); default:
                train and val, those SRC has (a missing val is warned about at once). The class list comes from train when it is present
                (or from an earlier manifest, or the devkit). Every split is
                listed before any image is decoded, so a missing one is reported
                at once.
    chunk_size: images per unit of work and of resumption (and per checksum).
    devkit:     devkit folder or archive (default: one found in src).
    exif_transpose: apply EXIF orientation (default False: ignored, as ImageNet tools did).
    max_chunks: stop after this many new chunks per split (a partial run, e.g. for
                tests or time-sliced jobs; run again to continue).
    rebuild:    build the splits again even when `out` holds them finished (made from
                another SRC or settings, which is otherwise an error, or damaged).
    Everything is built in OUT/.build and moved into OUT when every split asked for is
    complete (`cache.commit`): a cache in use is never rewritten in place.
    Files the listing refuses (symlinks leaving SRC or looping, names with a newline
    or not UTF-8, damaged archive members) and files that do not decode are skipped
    and listed in OUT/report.json; one bad file never stops the run.
    Returns the manifest (a dict), also written to OUT/manifest.json once complete;
    its ``splits[s]["complete"]`` says whether split s is finished.
    """
    src, out = Path(src).resolve(), Path(out).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: expected a folder holding train/ and val/ or the "
                                "ILSVRC archives")
    if size < 1 or chunk_size < 1 or (max_chunks is not None and max_chunks < 1):
        raise ValueError(f"size, chunk_size and max_chunks must be >= 1, found {size}, "
                         f"{chunk_size}, {max_chunks}")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: decode in this process), found {workers}")
    if splits is None:
        splits = [s for s in ("train", "val") if has_split(src, s)] or ["train"]
        if splits == ["train"] and has_split(src, "train"):
            warnings.warn(f"{src} has no val/ folder or ILSVRC20xx_img_val.tar: preparing train "
                          "only (`alexnet train` needs val as well; add it and run again)",
                          stacklevel=2)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown split(s) {bad}; expected some of {', '.join(SPLITS)}")
    missing = [s for s in splits if not has_split(src, s)]
    if missing:
        raise FileNotFoundError(
            f"{src} has no {' and no '.join(f'{s}/ folder or ILSVRC20xx_img_{s}.tar' for s in missing)} "
            f"(it holds: {', '.join(sorted(p.name for p in src.iterdir())[:10]) or 'nothing'}). "
            f"Point SRC at the folder that holds them, or prepare only the splits it has "
            f"(--splits {','.join(s for s in splits if s not in missing) or 'train'}).")
    out.mkdir(parents=True, exist_ok=True)
    build = out / BUILD
    finish_commit(out)             # a build whose move into place was interrupted
    current = _current_cache(out, rebuild)
    settings = _settings(src, size, chunk_size, exif_transpose)
    differ = _differences(current, settings) if current else []
    if differ and not rebuild:
        raise ValueError(f"{out} holds a cache made with other settings ("
                         + "; ".join(differ) + "). Rebuilding it would stop runs trained on it "
                         "from resuming. Use the same settings, choose another OUT folder, or "
                         "pass --rebuild to rebuild it.")
    keep = {} if differ or not current else {
        s: e for s, e in current["splits"].items() if e.get("complete")}
    staged = _build_so_far(build, settings)
    report_path = out / "report.json"
    report = {}
    if report_path.exists() and not rebuild:
        try:
            report = json.loads(report_path.read_text())
        except (ValueError, UnicodeError):
            report = {}
    wnids = (current.get("wnids") if keep else None) or staged.get("wnids")
    kit_path = devkit or find_devkit(src)
    words = load_devkit(kit_path).words if kit_path else {}
    order = sorted(splits, key=lambda s: s != "train")  # train first: it fixes the classes
    listings = {}
    for split in order:        # every split listed before any decoding: errors come first
        listing = find_split(src, split, wnids=wnids if split != "train" else None, devkit=kit_path)
        if wnids is not None and split == "train" and listing.wnids != wnids:
            if keep and not rebuild:
                raise ValueError(f"{out}: the cache's classes differ from {src}/train's; use a "
                                 "new OUT, or --rebuild")
            keep = {}          # other classes: nothing of the old cache fits
        if len(listing) == 0:
            raise FileNotFoundError(f"{src}: the {split} split holds no image that can be read "
                                    f"({len(listing.rejected)} refused, e.g. "
                                    f"{listing.rejected[:2]})")
        wnids = listing.wnids
        listings[split] = listing
    staged.update(wnids=wnids, words=[words.get(w, "") for w in wnids])
    for split in order:
        listing = listings[split]
        fp = _fingerprint(listing, size, chunk_size, exif_transpose)
        entry = keep.get(split)
        if entry and entry.get("fingerprint") == fp and not rebuild:
            continue  # already prepared from the same files
        if entry and not rebuild:
            raise ValueError(f"{out}: the {split} split was prepared from other files than "
                             f"{src} now holds (added, removed or renamed images); runs "
                             "trained on it could no longer resume. Choose another OUT "
                             "folder, or pass --rebuild to rebuild it.")
        keep.pop(split, None)                             # this split is built anew
        entry = staged["splits"].get(split)
        if entry and entry.get("complete") and entry.get("fingerprint") == fp:
            continue  # built in OUT/.build by an earlier, interrupted run
        complete, state = _prepare_split(listing, build, split, size, chunk_size, workers,
                                         exif_transpose, progress, max_chunks, context, fp)
        skipped = sorted(state.skipped)
        staged["splits"][split] = dict(
            count=len(listing), valid=len(listing) - len(skipped), skipped=len(skipped),
            refused=len(listing.rejected),
            complete=complete, fingerprint=fp, layout=listing.layout, root=listing.root,
            images=f"{split}_images.npy", labels=f"{split}_labels.npy", files=f"{split}_files.txt")
        report[split] = dict(skipped=[dict(row=r, file=f, error=e) for r, f, e in skipped],
                             refused_archive_members=[dict(member=m, reason=r)
                                                      for m, r in listing.rejected])
        _atomic_write(report_path, lambda f: f.write(json.dumps(report, indent=1).encode()))
        if complete:
            labels = listing.labels.copy()
            labels[[r for r, _, _ in skipped]] = -1
            _atomic_write(build / f"{split}_labels.npy", lambda f: np.save(f, labels))
            shape = (len(listing), size, size, 3)
            staged["arrays"][f"{split}_images"] = dict(
                file=f"{split}_images.npy", shape=list(shape), dtype=np.dtype(np.uint8).str,
                rows=chunk_size, crc32=[f"{int(c):08x}" for c in state.crc])
            staged["arrays"][f"{split}_labels"] = array_record(f"{split}_labels.npy", labels)
            if split == "train":
                if state.count == 0:
                    raise ValueError(f"{src}: no training image could be decoded; the reasons "
                                     f"are in {report_path}")
                mean = (state.sum_image / state.count).astype(np.float32)
                pixels = state.count * size * size
                eigvals, eigvecs, cov, mean_rgb = rgb_pca(state.sum_rgb, state.sum_outer, pixels)
                _atomic_write(build / "mean.npy", lambda f: np.save(f, mean))
                _atomic_write(build / "pca.npz", lambda f: np.savez(
                    f, eigvals=eigvals, eigvecs=eigvecs, cov=cov, mean_rgb=mean_rgb, pixels=pixels))
                staged["arrays"]["mean"] = array_record("mean.npy", mean)
                staged["arrays"]["pca"] = file_record(build / "pca.npz")
                staged["mean"] = f"mean.npy ({size}x{size}x3 float32, pixel values 0..255)"
                staged["pca"] = dict(file="pca.npz", units="pixel/255 (values in [0, 1])",
                                     eigvals=eigvals.tolist(), eigvecs=eigvecs.tolist())
            state.path.unlink()
        write_json(build / PROGRESS, staged)
    return _finish(out, current, keep, staged, splits)


def _finish(out, current, keep, staged, splits) -> dict:
    """The manifest of OUT as it now stands. When every split asked for is complete,
    the splits built in OUT/.build are moved into place (`cache.commit`); until then
    OUT is left alone."""
    build = out / BUILD
    building = {s: e for s, e in staged["splits"].items()   # asked for, or finished earlier
                if s not in keep and (s in splits or e.get("complete"))}
    manifest = {k: v for k, v in staged.items() if k not in ("splits", "arrays")}
    manifest.update(format="alexnet-ilsvrc-cache", version=CACHE_VERSION,
                    resize=f"shorter side to {staged['size']} (Pillow bicubic, JPEG draft), "
                           "central crop",
                    splits={}, arrays={})
    for source, chosen in ((current, keep), (staged, building)):
        names = [n for s in chosen for n in (f"{s}_images", f"{s}_labels")]
        names += ["mean", "pca"] if "train" in chosen else []
        manifest["splits"].update(chosen)
        manifest["arrays"].update({n: source["arrays"][n] for n in names
                                   if n in source.get("arrays", {})})
        for key in ("mean", "pca"):
            if "train" in chosen and key in source:
                manifest[key] = source[key]
    if not building:                            # nothing built: the cache stays as it is
        if staged["splits"]:
            warnings.warn(f"{build} holds an unfinished rebuild of {sorted(staged['splits'])}; "
                          "run the command with --rebuild to finish it, or delete the folder",
                          stacklevel=3)
        else:
            shutil.rmtree(build, ignore_errors=True)
        return manifest
    if not all(manifest["splits"].get(s, {}).get("complete") for s in splits) or not all(
            e.get("complete") for e in building.values()):
        return manifest
    files = [n for s in building for n in _split_files(s)]
    files += ["mean.npy", "pca.npz"] if "train" in building else []
    dropped = [n for s in current.get("splits", {}) if s not in manifest["splits"]
               for n in _split_files(s)]
    commit(out, manifest, files, remove=dropped)
    return manifest


# --------------------------------------------------------------------------- reading it back
# (alexnet/data/cache.py; importable from here, where they used to live)
__all__ = ["prepare", "load_image", "rgb_pca", "open_split", "read_manifest", "CacheSplit",
           "CacheError", "verify"]
