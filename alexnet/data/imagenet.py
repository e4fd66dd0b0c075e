"""Finding ILSVRC images and their labels (Section 2), in the layouts users have.

Three layouts, one result (a `Listing`: file names, class indices, where to read
the bytes):

- **Extracted folders**: ``SRC/train/n01440764/*.JPEG`` (and ``SRC/val/nXXXXXXXX/``).
  Class index = position of the WNID in sorted order.
- **A flat val folder** ``SRC/val/ILSVRC2012_val_00000001.JPEG ...`` labelled by the
  devkit: ``data/ILSVRC2012_validation_ground_truth.txt`` holds one **1-based
  ILSVRC ID** per image, in sorted file-name order; ``data/meta.mat`` maps each
  ID to its WNID. The IDs are *not* sorted-WNID indices (ID 1 is n02119789,
  class 0 is n01440764), so we go ID -> WNID -> sorted index.
  The 2010 devkit is the same with ``ILSVRC2010_*`` names (and has test labels).
- **The official archives, never extracted**: ``ILSVRC2012_img_train.tar`` is a tar
  of 1000 ``nXXXXXXXX.tar``, ``ILSVRC2012_img_val.tar`` holds 50,000 flat JPEGs.
  We read the tar headers once (the outer and every inner one) and keep each
  image's byte offset in the outer file: a worker then reads an image with one
  seek and one read, in any order, without unpacking anything.

``meta.mat`` is a MATLAB v5 file. Rather than depend on SciPy for one struct,
`read_mat` below reads the MAT v5 format (about 80 lines; compressed or not).
"""
from __future__ import annotations

import os
import re
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .archive import bounded_members, member_problem

WNID = re.compile(r"^n\d{8}$")
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------- listing

@dataclass
class Listing:
    """The images of one split, in a fixed order (row i of the cache is image i).

    root:    a directory (names are paths relative to it) or an archive file
             (names are member paths, ``inner.tar/member`` for nested tars).
    names:   (N,) file names, in the cache's row order.
    labels:  (N,) int64 class indices into `wnids`.
    wnids:   the class list, sorted: class k is wnids[k].
    offsets, sizes: (N,) int64 byte offset and length of each image inside the
             archive `root`; None for a directory.
    rejected: (name, reason) of archive members we refused to read.
    """
    root: str
    names: list
    labels: np.ndarray
    wnids: list
    offsets: np.ndarray | None = None
    sizes: np.ndarray | None = None
    rejected: list = field(default_factory=list)
    layout: str = ""

    def __len__(self):
        return len(self.names)

    def read(self, i) -> bytes:
        """The encoded bytes of image i."""
        off = None if self.offsets is None else int(self.offsets[i])
        size = None if self.sizes is None else int(self.sizes[i])
        return read_bytes(self.root, self.names[i], off, size)


def read_bytes(root, name, offset=None, size=None) -> bytes:
    """Bytes of one image: a file under the directory `root`, or `size` bytes at
    `offset` in the archive `root` (picklable arguments, for worker processes)."""
    if offset is None:
        with open(os.path.join(root, name), "rb") as f:
            return f.read()
    with open(root, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"{root}: member {name} wants {size} bytes at {offset}, file ends first")
    return data


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def name_problem(name):
    """Why a file name cannot be a row of the cache, or None.

    A newline would split a line of {split}_files.txt; a name that is not UTF-8
    (os.listdir hands its bytes back as surrogates) cannot be written as text.
    """
    if "\n" in name or "\r" in name:
        return "a newline in the file name (rename the file)"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not valid UTF-8 (rename the file)"
    return None


def _scan_images(folder, root_real, rejected, prefix=""):
    """Sorted image file names directly in `folder`; files it refuses go to `rejected`
    as (name, reason): names `name_problem` refuses, symlinks that leave the source
    tree `root_real` or loop, and entries that cannot be read."""
    names = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        rejected.append((prefix.rstrip("/") or str(folder), f"cannot list the folder: {e}"))
        return names
    for e in entries:
        if not _is_image(e.name):
            continue
        name = prefix + e.name
        why = name_problem(e.name)
        if why is None and e.is_symlink():
            try:
                real = os.path.realpath(e.path, strict=True)
            except (OSError, RuntimeError) as err:
                why = f"a broken or looping symlink ({type(err).__name__})"
            else:
                if os.path.commonpath([real, root_real]) != root_real:
                    why = "a symlink to a file outside the source folder"
        if why is None:
            try:
                if not e.is_file():
                    continue
            except OSError as err:
                why = f"cannot be read ({err})"
        if why is not None:
            rejected.append((name, why))
            continue
        names.append(e.name)
    return names


def list_folders(root, wnids=None) -> Listing:
    """``root/nXXXXXXXX/*.JPEG``: one folder per class, class = sorted WNID position.

    `wnids`: the class list to label with (the training set's, for val);
    default: the sorted WNID folders found here.
    """
    root = str(root)
    root_real = os.path.realpath(root)
    found = sorted(d for d in os.listdir(root)
                   if WNID.match(d) and os.path.isdir(os.path.join(root, d)))
    if not found:
        raise FileNotFoundError(f"{root}: expected class folders named like n01440764/, found none")
    rejected = []
    outside = [d for d in found if os.path.commonpath(
        [os.path.realpath(os.path.join(root, d)), root_real]) != root_real]
    for d in outside:
        rejected.append((d, "a symlink to a folder outside the source folder"))
    found = [d for d in found if d not in outside]
    wnids = list(wnids) if wnids is not None else found
    index = {w: k for k, w in enumerate(wnids)}
    missing = [w for w in found if w not in index]
    if missing:
        raise ValueError(f"{root}: folders {missing[:5]} are not in the class list "
                         f"({len(wnids)} WNIDs from the training set); is this the same dataset?")
    names, labels, empty = [], [], []
    for w in found:
        files = _scan_images(os.path.join(root, w), root_real, rejected, f"{w}/")
        if not files:
            empty.append(w)
        names += [f"{w}/{f}" for f in files]
        labels += [index[w]] * len(files)
    if empty and len(empty) == len(found):
        raise FileNotFoundError(f"{root}: the class folders hold no images ({IMAGE_EXTENSIONS}); "
                                "is this the right folder?")
    if empty and set(found) == set(wnids):   # these folders define the classes: none may be empty
        raise ValueError(f"{root}: {len(empty)} class folder(s) hold no images, e.g. "
                         f"{', '.join(empty[:5])}; a class without images cannot be learnt. "
                         "Add their images, or remove the folders.")
    return Listing(root, names, np.array(labels, np.int64), wnids, rejected=rejected,
                   layout="class folders")


def list_flat(root, wnid_of_file, wnids) -> Listing:
    """A flat folder of images; `wnid_of_file` maps each *base name* to its WNID."""
    root = str(root)
    rejected = []
    files = _scan_images(root, os.path.realpath(root), rejected)
    listing = _label_flat(root, files, files, wnid_of_file, wnids, "flat folder + devkit labels")
    listing.rejected = rejected
    return listing


def _label_flat(root, names, basenames, wnid_of_file, wnids, layout, offsets=None, sizes=None):
    index = {w: k for k, w in enumerate(wnids)}
    unknown = [b for b in basenames if b not in wnid_of_file]
    if unknown:
        raise ValueError(f"{root}: {len(unknown)} images have no ground-truth label "
                         f"(first: {unknown[0]}); does the devkit belong to this split?")
    foreign = sorted({wnid_of_file[b] for b in basenames} - set(index))
    if foreign:
        raise ValueError(f"{root}: the devkit labels use classes {foreign[:5]} that are not in "
                         f"the class list ({len(wnids)} WNIDs); is this the same dataset?")
    labels = np.array([index[wnid_of_file[b]] for b in basenames], np.int64)
    return Listing(root, list(names), labels, list(wnids), offsets, sizes, layout=layout)


# --------------------------------------------------------------------------- archives

def _safe_member(m: tarfile.TarInfo, archive_size: int):
    """Why we refuse to read member `m`, or None if it is a plain file inside the archive.

    We never write to disk, so ``../`` names cannot escape anywhere; still, links,
    devices, sparse files and out-of-range offsets are refused, and odd names are
    reported rather than guessed at.
    """
    problem = member_problem(m)
    if problem or not m.isfile():
        return problem or "a folder"
    if m.offset_data + m.size > archive_size:
        return "data runs past the end of the archive"
    return name_problem(m.name)


def index_archive(path):
    """Every image in an uncompressed tar, looking one level into inner ``.tar`` members.

    Returns (names, offsets, sizes, rejected): `offsets` are absolute byte positions
    in the outer file, so ``read_bytes(path, name, offset, size)`` reads an image.
    Only tar headers are read (one seek each), never the image data.
    """
    path = str(path)
    total = os.path.getsize(path)
    names, offsets, sizes, rejected = [], [], [], []
    try:
        outer = tarfile.open(path, mode="r:")  # uncompressed: members are seekable
    except tarfile.ReadError as e:
        raise ValueError(f"{path}: not an uncompressed tar archive ({e}); the ILSVRC archives "
                         "are plain .tar files: decompress a .tar.gz first") from None
    with outer:
        members = iter(outer)
        while True:
            try:
                m = next(members)
            except StopIteration:
                break
            except (tarfile.TarError, OSError, EOFError) as e:  # truncated or damaged: keep what came before
                rejected.append((f"{path} after member {len(names) + len(rejected)}",
                                 f"the archive is truncated or damaged here ({e}); the rest is skipped"))
                break
            why = _safe_member(m, total)
            if why:
                rejected.append((m.name, why))
                continue
            if m.name.lower().endswith(".tar"):
                _index_inner(outer, m, names, offsets, sizes, rejected)
            elif _is_image(m.name):
                names.append(m.name)
                offsets.append(m.offset_data)
                sizes.append(m.size)
    return names, np.array(offsets, np.int64), np.array(sizes, np.int64), rejected


def _index_inner(outer, m, names, offsets, sizes, rejected):
    """The images of the inner tar `m` (one class of the train archive); a damaged
    inner tar keeps the members read before the damage and is reported."""
    found = []
    try:
        with tarfile.open(fileobj=outer.extractfile(m), mode="r:") as inner:
            for im in inner:
                why = _safe_member(im, m.size)
                if why:
                    rejected.append((f"{m.name}/{im.name}", why))
                elif _is_image(im.name):
                    found.append((f"{m.name}/{im.name}", m.offset_data + im.offset_data, im.size))
    except (tarfile.TarError, OSError, EOFError) as e:
        rejected.append((m.name, f"inner archive truncated or damaged ({e}); {len(found)} "
                                 "images before the damage kept"))
    for name, offset, size in found:
        names.append(name)
        offsets.append(offset)
        sizes.append(size)


def _wnid_of_member(name):
    """The WNID a member belongs to: its inner tar (``n01440764.tar/x.JPEG``) or
    folder (``train/n01440764/x.JPEG``); None for a flat member."""
    for part in reversed(name.split("/")[:-1]):
        stem = part[:-4] if part.lower().endswith(".tar") else part
        if WNID.match(stem):
            return stem
    return None


def list_archive(path, wnids=None, wnid_of_file=None, index=None) -> Listing:
    """An ILSVRC image archive, read in place.

    Per-class members (``n01440764.tar`` inside the train archive, or WNID folders)
    are labelled by their WNID; flat members (the val archive) through
    `wnid_of_file` (base name -> WNID, from the devkit). Order: sorted by class
    then name for per-class archives, sorted by base name for flat ones.
    `index`: the result of `index_archive(path)`, if already read.
    """
    names, offsets, sizes, rejected = index or index_archive(path)
    if not names:
        raise ValueError(f"{path}: no images inside (rejected members: {rejected[:3]})")
    owners = [_wnid_of_member(n) for n in names]
    if all(o is not None for o in owners):
        found = sorted(set(owners))
        wnids = list(wnids) if wnids is not None else found
        index = {w: k for k, w in enumerate(wnids)}
        missing = [w for w in found if w not in index]
        if missing:
            raise ValueError(f"{path}: classes {missing[:5]} are not in the class list")
        order = sorted(range(len(names)), key=lambda i: (owners[i], names[i]))
        labels = np.array([index[owners[i]] for i in order], np.int64)
        listing = Listing(str(path), [names[i] for i in order], labels, wnids,
                          offsets[order], sizes[order], rejected, "per-class archive")
        return listing
    if wnid_of_file is None:
        raise ValueError(f"{path}: images are not in per-class tars or WNID folders, so labels "
                         "must come from the devkit (pass devkit=PATH or put the devkit in SRC)")
    base = [n.rsplit("/", 1)[-1] for n in names]
    order = sorted(range(len(names)), key=lambda i: base[i])
    listing = _label_flat(str(path), [names[i] for i in order], [base[i] for i in order],
                          wnid_of_file, wnids, "flat archive + devkit labels",
                          offsets[order], sizes[order])
    listing.rejected = rejected
    return listing


# --------------------------------------------------------------------------- MAT v5

_MAT_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
               12: "i8", 13: "u8", 16: "u1", 17: "u2", 18: "u4"}
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_CHAR, _MX_SPARSE = 1, 2, 3, 4, 5


def read_mat(source) -> dict:
    """Variables of a MATLAB v5/v7 ``.mat`` file (path or bytes) as Python values.

    Numeric and logical arrays -> np.ndarray with MATLAB's shape; char -> str
    (a list of str for several rows); struct arrays -> a list of dicts (column-
    major order); cells -> a list. Enough for the ILSVRC ``meta.mat`` files.
    v7.3 files are HDF5, which this does not read.
    """
    data = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    if data[:4] == b"\x89HDF" or data[512:516] == b"\x89HDF":
        raise ValueError("MAT v7.3 (HDF5) files are not supported; save with -v7 or use scipy/h5py")
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        raise ValueError("not a MATLAB v5 .mat file (no 'IM'/'MI' endian marker at byte 126)")
    endian = "<" if data[126:128] == b"IM" else ">"
    out, pos = {}, 128
    while pos + 8 <= len(data):
        mtype, body, pos = _mat_element(data, pos, endian)
        if mtype == _MI_COMPRESSED:
            mtype, body, _ = _mat_element(zlib.decompress(body), 0, endian)
        if mtype == _MI_MATRIX:
            name, value = _mat_matrix(body, endian)
            out[name] = value
    return out


def _mat_element(data, pos, endian):
    """One data element at `pos`: (type, body bytes, position of the next element)."""
    mtype, nbytes = struct.unpack_from(endian + "II", data, pos)
    if mtype >> 16:  # small element: 2-byte size, 2-byte type, data in the next 4 bytes
        mtype, nbytes = mtype & 0xFFFF, mtype >> 16
        return mtype, data[pos + 4:pos + 4 + nbytes], pos + 8
    body = data[pos + 8:pos + 8 + nbytes]
    end = pos + 8 + nbytes
    if mtype != _MI_COMPRESSED:
        end += -nbytes % 8  # elements start on 8-byte boundaries
    return mtype, body, end


def _mat_numbers(data, pos, endian):
    mtype, body, pos = _mat_element(data, pos, endian)
    return np.frombuffer(body, endian + _MAT_DTYPES[mtype]), mtype, pos


def _mat_matrix(body, endian):
    """(name, value) of one miMATRIX element body."""
    if not body:  # an empty matrix may be written as a bare tag
        return "", np.zeros((0, 0))
    flags, _, pos = _mat_numbers(body, 0, endian)
    cls = int(flags[0]) & 0xFF
    dims, _, pos = _mat_numbers(body, pos, endian)
    shape = tuple(int(d) for d in dims)
    name, _, pos = _mat_numbers(body, pos, endian)
    name = name.tobytes().decode("ascii")
    count = int(np.prod(shape))
    if cls == _MX_CELL:
        cells = []
        for _ in range(count):
            _, sub, pos = _mat_element(body, pos, endian)
            cells.append(_mat_matrix(sub, endian)[1])
        return name, cells
    if cls in (_MX_STRUCT, _MX_OBJECT):
        if cls == _MX_OBJECT:
            _, _, pos = _mat_numbers(body, pos, endian)  # class name
        width, _, pos = _mat_numbers(body, pos, endian)
        raw, _, pos = _mat_numbers(body, pos, endian)
        raw, w = raw.tobytes(), int(width[0])
        fields = [raw[i:i + w].split(b"\0")[0].decode("ascii") for i in range(0, len(raw), w)]
        items = []
        for _ in range(count):
            item = {}
            for f in fields:
                _, sub, pos = _mat_element(body, pos, endian)
                item[f] = _mat_matrix(sub, endian)[1]
            items.append(item)
        return name, items
    if cls == _MX_SPARSE:
        raise ValueError(f"MAT variable {name!r}: sparse arrays are not supported")
    values, mtype, pos = _mat_numbers(body, pos, endian)
    if cls == _MX_CHAR:
        if mtype == 16:  # UTF-8 bytes
            text = values.tobytes().decode("utf-8")
        else:
            text = "".join(map(chr, values.tolist()))
        if len(shape) == 2 and shape[0] <= 1:
            return name, text
        rows = shape[0]
        chars = np.array(list(text)).reshape(shape[::-1]).T if text else np.zeros(shape, str)
        return name, ["".join(chars[r]) for r in range(rows)]
    values = values.reshape(shape, order="F")
    if int(flags[0]) & 0x0800:  # complex: imaginary part follows
        imag, _, pos = _mat_numbers(body, pos, endian)
        values = values + 1j * imag.reshape(shape, order="F")
    if int(flags[0]) & 0x0200:
        return name, values.astype(bool)
    return name, values.astype(np.float64) if cls == 6 else values


# --------------------------------------------------------------------------- devkit

@dataclass
class Devkit:
    """What the ILSVRC devkit says: the classes and the ground truth of val (and test).

    ids:    {1-based ILSVRC ID: WNID}, for the leaf synsets (the 1000 classes).
    words:  {WNID: "tench, Tinca tinca"}.
    truth:  {"val": path of ..._validation_ground_truth.txt, "test": ...}.
    """
    year: str
    ids: dict
    words: dict
    truth: dict

    @property
    def wnids(self):
        return sorted(self.ids.values())

    def wnid_of_file(self, split, filenames):
        """{base name: WNID} for a flat split: line k of the ground-truth file is the
        1-based ILSVRC ID of the k-th file in sorted name order."""
        if split not in self.truth:
            raise FileNotFoundError(f"the {self.year} devkit has no ground truth for {split!r} "
                                    f"(found: {sorted(self.truth)})")
        try:
            ids = [int(t) for t in _read_text(self.truth[split]).split()]
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{self.truth[split]}: expected one ILSVRC class ID (a whole number) "
                             f"per line ({e}); the file is damaged: extract the devkit "
                             "again") from None
        filenames = sorted(filenames)
        if len(ids) != len(filenames):
            raise ValueError(f"{self.truth[split]} has {len(ids)} labels but the {split} split "
                             f"has {len(filenames)} images")
        unknown = sorted(set(ids) - set(self.ids))
        if unknown:
            raise ValueError(f"{self.truth[split]}: IDs {unknown[:5]} are not leaf synsets of meta.mat")
        return {f: self.ids[i] for f, i in zip(filenames, ids)}


def _read_text(ref):
    """Text of a file given as a path, or as (archive path, member name)."""
    if isinstance(ref, tuple):
        with tarfile.open(ref[0]) as tar:
            return tar.extractfile(ref[1]).read().decode()
    return Path(ref).read_text()


def parse_meta(source, name="meta.mat") -> tuple:
    """({ILSVRC ID: WNID} of the leaf synsets, {WNID: words}) from a devkit ``meta.mat``.

    Any damage to the file (a bad zlib stream, a short struct, a missing field)
    is one ValueError naming the file."""
    try:
        return _parse_meta(source)
    except (zlib.error, struct.error, KeyError, IndexError, TypeError, ValueError,
            UnicodeDecodeError, AttributeError, OverflowError, MemoryError) as e:
        raise ValueError(f"{name}: cannot be read as an ILSVRC devkit meta.mat "
                         f"({type(e).__name__}: {e}); the file is damaged or not the devkit's. "
                         "Extract the devkit again from ILSVRC2012_devkit_t12.tar.gz.") from None


def _parse_meta(source) -> tuple:
    synsets = read_mat(source).get("synsets")
    if not synsets:
        raise ValueError("meta.mat has no 'synsets' struct array")
    id_field = next((k for k in synsets[0] if k.endswith("_ID")), None)
    if id_field is None:
        raise ValueError(f"meta.mat synsets have no ILSVRC20xx_ID field (fields: {list(synsets[0])})")
    ids, words = {}, {}
    for s in synsets:
        children = np.asarray(s.get("num_children", 0)).ravel()
        if children.size and children[0] != 0:
            continue  # an inner node of the WordNet tree, not a class
        wnid = s["WNID"] if isinstance(s["WNID"], str) else "".join(s["WNID"])
        if not WNID.match(wnid):
            raise ValueError(f"a synset's WNID is {wnid!r:.40}, expected like n01440764")
        ids[int(np.asarray(s[id_field]).ravel()[0])] = wnid
        words[wnid] = s.get("words", "") if isinstance(s.get("words", ""), str) else ""
    return ids, words


def load_devkit(path) -> Devkit:
    """A devkit folder (``ILSVRC2012_devkit_t12/``) or archive (``..._devkit_t12.tar.gz``)."""
    path = str(path)
    if os.path.isdir(path):
        files = {str(p.relative_to(path)).replace(os.sep, "/"): str(p) for p in Path(path).rglob("*")
                 if p.is_file()}
        read = lambda ref: Path(ref).read_bytes()  # noqa: E731
    else:
        files = _devkit_members(path)
        read = lambda ref: _read_member(*ref)  # noqa: E731
    meta = [k for k in files if k.endswith("meta.mat")]
    if not meta:
        raise FileNotFoundError(f"{path}: no data/meta.mat inside; is this an ILSVRC devkit?")
    ids, words = parse_meta(read(files[meta[0]]), f"{path}: {meta[0]}")
    truth = {}
    for k, ref in files.items():
        m = re.search(r"(ILSVRC\d{4})_(validation|test)_ground_truth\.txt$", k)
        if m:
            truth["val" if m.group(2) == "validation" else "test"] = ref
    year = re.search(r"ILSVRC(\d{4})", " ".join(files)) or re.search(r"(\d{4})", path)
    return Devkit(year.group(1) if year else "?", ids, words, truth)


# The ILSVRC devkits hold a few dozen files, none over a few MB: more than this is not a devkit.
DEVKIT_MAX_MEMBERS = 1000
DEVKIT_MAX_MEMBER_BYTES = 64 * 2**20
DEVKIT_MAX_TOTAL_BYTES = 256 * 2**20


def _devkit_members(path) -> dict:
    """{member name: (archive, name)} of a devkit archive's regular files, refusing one
    beyond the DEVKIT_MAX_* bounds (`archive.bounded_members`; nothing is extracted to
    disk: members are read in memory)."""
    files = {}
    try:
        with tarfile.open(path) as tar:
            for m in bounded_members(tar, path, DEVKIT_MAX_MEMBERS, DEVKIT_MAX_MEMBER_BYTES,
                                     DEVKIT_MAX_TOTAL_BYTES, what="an ILSVRC devkit"):
                if m.isfile():
                    files[m.name] = (path, m.name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: cannot be read as a devkit archive ({type(e).__name__}: {e}); "
                         "download ILSVRC2012_devkit_t12.tar.gz again") from None
    return files


def _read_member(archive, name):
    with tarfile.open(archive) as tar:
        return tar.extractfile(name).read()


def find_devkit(src):
    """The devkit in SRC (a folder or .tar.gz whose name has 'devkit'), or None."""
    for p in sorted(Path(src).iterdir()):
        if "devkit" in p.name.lower() and (p.is_dir() or p.name.endswith((".tar.gz", ".tgz", ".tar"))):
            return p
    return None


# --------------------------------------------------------------------------- one entry point

def _archives(src, split):
    return sorted(p for p in Path(src).iterdir() if p.is_file()
                  and re.match(rf"ILSVRC\d{{4}}_im(g|ages)_{split}\.tar$", p.name))


def has_split(src, split) -> bool:
    """Whether SRC holds `split` in a layout `find_split` reads (a folder or an archive)."""
    return (Path(src) / split).is_dir() or bool(_archives(src, split))


def find_split(src, split, wnids=None, devkit=None) -> Listing:
    """The images of `split` ("train", "val" or "test") under SRC, in any supported layout.

    Looks for, in order: the folder ``SRC/split/`` (WNID subfolders, or flat images
    labelled by the devkit); the archive ``SRC/ILSVRC20xx_img_{split}.tar`` (or
    ``_images_``). `wnids` fixes the class list (pass the training set's for val);
    `devkit`: a devkit folder/archive, default: one found in SRC.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: expected a folder holding train/ and val/ or the ILSVRC archives")
    folder = src / split
    archives = _archives(src, split)
    kit = None

    def labels_from_devkit(filenames):
        nonlocal kit, wnids
        path = devkit or find_devkit(src)
        if path is None:
            raise FileNotFoundError(f"{src}: the {split} images are flat (no WNID folders), so their "
                                    "labels come from the ILSVRC devkit: pass devkit=PATH or put "
                                    "ILSVRC2012_devkit_t12(.tar.gz) in SRC")
        kit = load_devkit(path)
        if split not in kit.truth:  # 2010 test labels came as a separate file next to the devkit
            extra = sorted(src.glob(f"ILSVRC*_{'validation' if split == 'val' else split}_ground_truth.txt"))
            if extra:
                kit.truth[split] = str(extra[0])
        wnids = list(wnids) if wnids is not None else kit.wnids
        return kit.wnid_of_file(split, filenames)

    if folder.is_dir():
        if any(WNID.match(d.name) and d.is_dir() for d in folder.iterdir()):
            return list_folders(folder, wnids)
        files = _scan_images(folder, os.path.realpath(folder), [])
        if not files:
            raise FileNotFoundError(f"{folder}: no WNID folders and no images")
        gt = labels_from_devkit(files)
        return list_flat(folder, gt, wnids)
    if archives:
        index = index_archive(archives[0])
        names = index[0]
        if names and all(_wnid_of_member(n) for n in names):
            return list_archive(archives[0], wnids, index=index)
        gt = labels_from_devkit([n.rsplit("/", 1)[-1] for n in names])
        return list_archive(archives[0], wnids, gt, index=index)
    raise FileNotFoundError(f"{src}: found neither {split}/ nor ILSVRC20xx_img_{split}.tar "
                            f"(contents: {sorted(p.name for p in src.iterdir())[:10]})")
