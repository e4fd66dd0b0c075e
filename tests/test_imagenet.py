"""ILSVRC listing, devkit labels, archives and the 256x256 cache, on synthetic files.

The synthetic dataset has 4 classes whose devkit IDs are deliberately not in
sorted-WNID order (ID 1 is the third class), so an ID/index mix-up shows, and one
file of each real-world oddity: grayscale, CMYK, a PNG named .JPEG, EXIF
orientation, a truncated JPEG and a file that is no image at all.
"""
import io
import json
import shutil
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.data import imagenet, prepare as prep
from alexnet.data.imagenet import find_split, parse_meta, read_mat
from alexnet.data.prepare import load_image, open_split, prepare

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "ilsvrc2012_meta_tiny.mat"
# The fixture's synsets: 1-based ILSVRC ID -> WNID (IDs 5 and 6 are inner nodes).
IDS = {1: "n03000003", 2: "n01000001", 3: "n04000004", 4: "n02000002"}
WNIDS = sorted(IDS.values())  # class k = WNIDS[k]; ID 1 is class 2


def photo(w, h, seed, mode="RGB"):
    """A smooth random picture (JPEG-friendly, with structure to misplace)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    img = small.resize((w, h), Image.BICUBIC)
    return img.convert(mode) if mode != "RGB" else img


def jpeg(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def make_images(seed=0):
    """{name: bytes} of one class's files, sizes from 40 to 900 px."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(3):
        w, h = (int(v) for v in rng.integers(40, 900, 2))
        out[f"img_{seed}_{i}.JPEG"] = jpeg(photo(w, h, seed * 10 + i))
    return out


def oddities():
    """{name: bytes} of the real-world oddities (decodable ones first)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    png = io.BytesIO()
    photo(300, 200, 91, "RGBA").save(png, "PNG")
    good = jpeg(photo(500, 375, 92))
    return {"gray.JPEG": jpeg(photo(320, 240, 93, "L")),
            "cmyk.JPEG": jpeg(photo(240, 320, 94, "CMYK")),
            "png.JPEG": png.getvalue(),
            "exif.JPEG": jpeg(photo(400, 260, 95), exif=exif),
            "truncated.JPEG": good[:len(good) // 2],
            "corrupt.JPEG": b"this is not an image at all" * 10}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """SRC trees in three layouts over the same files, plus the files themselves."""
    root = tmp_path_factory.mktemp("ilsvrc")
    train = {w: make_images(k) for k, w in enumerate(WNIDS)}
    train[WNIDS[1]].update(oddities())
    val_files = {}  # flat val: name -> (bytes, WNID); ground-truth IDs in sorted name order
    for k in range(8):
        wnid = WNIDS[(3 * k + 1) % 4]
        val_files[f"ILSVRC2012_val_{k + 1:08d}.JPEG"] = (jpeg(photo(300 + 17 * k, 260, 200 + k)), wnid)
    id_of = {w: i for i, w in IDS.items()}
    truth = "".join(f"{id_of[val_files[n][1]]}\n" for n in sorted(val_files))

    folders = root / "folders"  # train/WNID/, val/WNID/
    for w, files in train.items():
        for name, data in files.items():
            (folders / "train" / w).mkdir(parents=True, exist_ok=True)
            (folders / "train" / w / name).write_bytes(data)
    for name, (data, w) in val_files.items():
        (folders / "val" / w).mkdir(parents=True, exist_ok=True)
        (folders / "val" / w / name).write_bytes(data)

    devkit = root / "devkit"  # the devkit as a folder
    (devkit / "data").mkdir(parents=True)
    shutil.copy(FIXTURE, devkit / "data" / "meta.mat")
    (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text(truth)

    flat = root / "flat"  # train/WNID/ + flat val/ + devkit folder
    shutil.copytree(folders / "train", flat / "train")
    (flat / "val").mkdir()
    for name, (data, _) in val_files.items():
        (flat / "val" / name).write_bytes(data)
    shutil.copytree(devkit, flat / "ILSVRC2012_devkit_t12")

    tars = root / "tars"  # the official archives, devkit as .tar.gz
    tars.mkdir()
    with tarfile.open(tars / "ILSVRC2012_img_train.tar", "w") as outer:
        for w, files in train.items():
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as t:
                for name, data in files.items():
                    _add(t, name, data)
            _add(outer, f"{w}.tar", inner.getvalue())
    with tarfile.open(tars / "ILSVRC2012_img_val.tar", "w") as t:
        for name, (data, _) in val_files.items():
            _add(t, name, data)
    with tarfile.open(tars / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as t:
        t.add(devkit, "ILSVRC2012_devkit_t12")
    return dict(root=root, folders=folders, flat=flat, tars=tars, devkit=devkit,
                train=train, val=val_files, truth=truth)


def _add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


# --------------------------------------------------------------------------- MAT v5 and the devkit


def test_meta_fixture_maps_ids_to_wnids_leaves_only():
    ids, words = parse_meta(FIXTURE)
    assert ids == IDS  # the inner nodes 5 and 6 (num_children > 0) are not classes
    assert words["n03000003"] == "gamma class"


def _el(mtype, payload):
    """A MAT v5 data element (small format when it fits in 4 bytes, as MATLAB does)."""
    if len(payload) <= 4:
        return struct.pack("<HH", mtype, len(payload)) + payload.ljust(4, b"\0")
    return struct.pack("<II", mtype, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _matrix(cls, dims, body, name=""):
    head = (_el(6, struct.pack("<II", cls, 0)) + _el(5, struct.pack(f"<{len(dims)}i", *dims))
            + _el(1, name.encode()))
    payload = head + body
    return struct.pack("<II", 14, len(payload)) + payload


def _double(v):
    """Doubles stored in the smallest integer type, like MATLAB's own writer."""
    v = np.atleast_2d(np.asarray(v, float))
    data = v.T.ravel()
    if np.all(data == np.round(data)) and data.size and data.min() >= 0 and data.max() < 65536:
        body = _el(4 if data.max() > 255 else 2, data.astype("<u2" if data.max() > 255 else "u1").tobytes())
    else:
        body = _el(9, data.astype("<f8").tobytes())
    return _matrix(6, v.shape, body)


def _char(s):
    return _matrix(4, (1, len(s)), _el(4, np.array([ord(c) for c in s], "<u2").tobytes()))


def write_mat_like_matlab(path, synsets, id_field, compress=True):
    """A meta.mat written the way MATLAB writes one (compact integer types, UTF-16
    chars, small elements, each variable zlib-compressed)."""
    fields = [id_field, "WNID", "words", "num_children", "children"]
    width = 32
    names = b"".join(f.encode().ljust(width, b"\0") for f in fields)
    body = _el(5, struct.pack("<i", width)) + _el(1, names)
    for s in synsets:
        body += (_double(s[0]) + _char(s[1]) + _char(s[2]) + _double(s[3])
                 + _double(s[4] if len(s[4]) else np.zeros((1, 0))))
    var = _matrix(2, (len(synsets), 1), body, "synsets")
    if compress:
        z = zlib.compress(var)
        var = struct.pack("<II", 15, len(z)) + z
    header = b"MATLAB 5.0 MAT-file, synthetic".ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    Path(path).write_bytes(header + var)


SYNSETS_2010 = [(1, "n02000002", "beta", 0, []), (2, "n04000004", "delta", 0, []),
                (3, "n01000001", "alpha", 0, []), (4, "n03000003", "gamma", 0, []),
                (300, "n09000009", "a node with an ID > 255", 2, [1, 2])]


@pytest.mark.parametrize("compress", [True, False])
def test_read_mat_matlab_style_file(tmp_path, compress):
    path = tmp_path / "meta.mat"
    write_mat_like_matlab(path, SYNSETS_2010, "ILSVRC2010_ID", compress)
    synsets = read_mat(path)["synsets"]
    assert [int(s["ILSVRC2010_ID"].item()) for s in synsets] == [1, 2, 3, 4, 300]
    assert [s["WNID"] for s in synsets] == [s[1] for s in SYNSETS_2010]
    assert synsets[4]["children"].tolist() == [[1.0, 2.0]] and synsets[0]["children"].size == 0
    ids, _ = parse_meta(path)
    assert ids == {1: "n02000002", 2: "n04000004", 3: "n01000001", 4: "n03000003"}
    # The writer above is valid MAT v5: SciPy read its output back (the same WNIDs and
    # IDs) when tests/data/make_references.py stored it; it still writes those bytes.
    checked = (DATA / "meta_matlab_style.mat").read_bytes()
    data = path.read_bytes()
    if compress:           # the same variable, zlib-compressed (tag 15, length, stream)
        assert struct.unpack("<I", data[128:132]) == (15,)
        data = data[:128] + zlib.decompress(data[136:])
    assert data[116:] == checked[116:]      # the header's text (its first 116 bytes) aside


@pytest.mark.parametrize("name", ["savemat.mat", "savemat_compressed.mat"])
def test_read_mat_reads_what_scipy_savemat_wrote(name):
    """Files written by scipy.io.savemat (stored by tests/data/make_references.py)."""
    got = read_mat(DATA / name)
    np.testing.assert_array_equal(got["a"], np.arange(12.0).reshape(3, 4))
    assert got["i"].dtype == np.int16 and got["i"].tolist() == [[7, -3]]
    assert got["s"] == "hello" and got["rows"] == ["ab", "cd"]
    assert got["b"].dtype == bool and got["b"].tolist() == [[True, False]]


def test_devkit_2010_flat_val_and_test(tmp_path):
    kit = tmp_path / "src" / "devkit-1.0"
    (kit / "data").mkdir(parents=True)
    write_mat_like_matlab(kit / "data" / "meta.mat", SYNSETS_2010, "ILSVRC2010_ID")
    (kit / "data" / "ILSVRC2010_validation_ground_truth.txt").write_text("4\n1\n")
    (tmp_path / "src" / "ILSVRC2010_test_ground_truth.txt").write_text("2\n")
    dk = imagenet.load_devkit(kit)
    assert dk.year == "2010" and set(dk.truth) == {"val"}
    for split, names in (("val", ["ILSVRC2010_val_00000002.JPEG", "ILSVRC2010_val_00000001.JPEG"]),
                         ("test", ["ILSVRC2010_test_00000001.JPEG"])):
        (tmp_path / "src" / split).mkdir()
        for n in names:
            (tmp_path / "src" / split / n).write_bytes(jpeg(photo(50, 50, 1)))
    listing = find_split(tmp_path / "src", "val")
    # sorted names: ..._01 gets ID 4 (n03000003, class 2), ..._02 gets ID 1 (n02000002, class 1)
    assert listing.names == ["ILSVRC2010_val_00000001.JPEG", "ILSVRC2010_val_00000002.JPEG"]
    assert listing.labels.tolist() == [2, 1] and listing.wnids == WNIDS
    test = find_split(tmp_path / "src", "test")  # ID 2 = n04000004 = class 3
    assert test.labels.tolist() == [3]


# --------------------------------------------------------------------------- finding the data


def test_folders_class_index_is_sorted_wnid(dataset):
    listing = find_split(dataset["folders"], "train")
    assert listing.wnids == WNIDS
    for name, label in zip(listing.names, listing.labels):
        assert name.split("/")[0] == WNIDS[label]
    assert len(listing) == sum(len(f) for f in dataset["train"].values())


def test_flat_val_labelled_through_devkit_ids(dataset):
    listing = find_split(dataset["flat"], "val", wnids=WNIDS)
    assert listing.names == sorted(dataset["val"])
    expected = [WNIDS.index(dataset["val"][n][1]) for n in listing.names]
    assert listing.labels.tolist() == expected
    # the mistake the synthetic IDs are there to catch: using ID - 1 as the class index
    ids = [int(t) for t in dataset["truth"].split()]
    assert expected != [i - 1 for i in ids]
    assert listing.read(0) == dataset["val"][listing.names[0]][0]


def test_archives_read_in_place(dataset):
    tr = find_split(dataset["tars"], "train")
    ref = find_split(dataset["folders"], "train")
    assert tr.labels.tolist() == ref.labels.tolist() and tr.wnids == ref.wnids
    assert [n.split("/")[-1] for n in tr.names] == [n.split("/")[-1] for n in ref.names]
    for i in range(len(tr)):  # each image's bytes, from its offset in the outer tar
        w, name = tr.names[i].split("/")
        assert tr.read(i) == dataset["train"][w[:-4]][name]
    va = find_split(dataset["tars"], "val", wnids=WNIDS)  # devkit found as .tar.gz
    assert va.labels.tolist() == find_split(dataset["flat"], "val", wnids=WNIDS).labels.tolist()
    assert va.read(3) == dataset["val"][va.names[3]][0]


def test_archive_refuses_links_and_path_tricks(tmp_path):
    good = jpeg(photo(60, 50, 3))
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w") as t:
        _add(t, "n01000001_1.JPEG", good)
        _add(t, "../../etc/evil.JPEG", good)
        link = tarfile.TarInfo("link.JPEG")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)
    with tarfile.open(tmp_path / "ILSVRC2012_img_train.tar", "w") as t:
        _add(t, "n01000001.tar", inner.getvalue())
        _add(t, "/abs/n01000001.JPEG", good)
    listing = find_split(tmp_path, "train")
    assert listing.names == ["n01000001.tar/n01000001_1.JPEG"] and listing.read(0) == good
    refused = dict(listing.rejected)
    assert set(refused) == {"n01000001.tar/../../etc/evil.JPEG", "n01000001.tar/link.JPEG", "/abs/n01000001.JPEG"}
    assert not (tmp_path / "etc").exists()


def test_missing_data_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="ILSVRC20xx_img_train.tar"):
        find_split(tmp_path, "train")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="devkit"):
        find_split(tmp_path, "val")


# --------------------------------------------------------------------------- one image


def test_load_image_is_shorter_side_256_then_centre_crop():
    img = photo(600, 300, 7)  # exactly 512x256 after scaling: the crop starts at x = 128
    direct = np.asarray(img.resize((512, 256), Image.BICUBIC).crop((128, 0, 384, 256)))
    got = load_image(_png(img))
    assert got.shape == (256, 256, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - direct).max() <= 2
    tall = load_image(_png(photo(300, 600, 7).transpose(Image.ROTATE_90)))
    assert tall.shape == (256, 256, 3)
    small = load_image(_png(photo(40, 60, 8)))  # upscaled
    assert small.shape == (256, 256, 3)


def _png(img):
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_modes_become_rgb():
    gray = load_image(jpeg(Image.new("L", (300, 280), 120)))
    assert np.abs(gray.astype(int) - 120).max() <= 1
    cmyk = load_image(jpeg(Image.new("CMYK", (300, 280), (0, 255, 255, 0))))  # red ink
    assert cmyk[..., 0].min() > 240 and cmyk[..., 1:].max() < 15
    rgba = io.BytesIO()
    Image.new("RGBA", (280, 300), (10, 20, 30, 128)).save(rgba, "PNG")
    assert load_image(rgba.getvalue()).reshape(-1, 3).tolist()[0] == [10, 20, 30]


def test_exif_orientation_ignored_by_default():
    exif = Image.Exif()
    exif[0x0112] = 6
    img = photo(400, 260, 5)
    with_exif, without = jpeg(img, exif=exif), jpeg(img)
    np.testing.assert_array_equal(load_image(with_exif), load_image(without))
    rotated = load_image(with_exif, exif_transpose=True)
    decoded = Image.open(io.BytesIO(without)).convert("RGB").transpose(Image.ROTATE_270)  # 260x400
    direct = np.asarray(decoded.resize((256, 256), Image.BICUBIC, box=(0, 70, 260, 330)))
    np.testing.assert_array_equal(rotated, direct)


def test_draft_decoding_close_to_full_decoding():
    data = jpeg(photo(1800, 1200, 9))  # >= 4x larger: libjpeg decodes at 1/4 scale
    fast = load_image(data).astype(int)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    slow = np.asarray(full.resize((256, 256), Image.BICUBIC, box=(300, 0, 1500, 1200))).astype(int)
    assert np.abs(fast - slow).mean() < 1.5


def test_broken_files_raise():
    for name in ("truncated.JPEG", "corrupt.JPEG"):
        with pytest.raises(Exception):
            load_image(oddities()[name])


# --------------------------------------------------------------------------- prepare


@pytest.fixture(scope="module")
def cache(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    manifest = prepare(dataset["folders"], out, workers=2, chunk_size=4, progress=False)
    return out, manifest


def test_prepare_writes_the_cache(cache, dataset):
    out, manifest = cache
    assert manifest["wnids"] == WNIDS and manifest["words"][0] == ""  # no devkit in this SRC
    train = open_split(out, "train")
    listing = find_split(dataset["folders"], "train")
    n = len(listing)
    assert train.images.shape == (n, 256, 256, 3) and train.images.dtype == np.uint8
    assert (out / "train_files.txt").read_text().split("\n")[:-1] == listing.names
    bad = {listing.names.index(f"{WNIDS[1]}/{b}") for b in ("truncated.JPEG", "corrupt.JPEG")}
    labels = np.load(out / "train_labels.npy")
    assert {int(i) for i in np.flatnonzero(labels < 0)} == bad
    assert sorted(train.rows.tolist()) == sorted(set(range(n)) - bad)
    assert not train.images[sorted(bad)].any()  # skipped rows are zeros, never garbage
    good = np.flatnonzero(labels >= 0)
    assert (labels[good] == listing.labels[good]).all()
    report = json.loads((out / "report.json").read_text())
    assert sorted(s["file"] for s in report["train"]["skipped"]) == sorted(listing.names[i] for i in bad)
    assert manifest["splits"]["train"]["valid"] == n - 2 and manifest["splits"]["val"]["count"] == 8
    # every decodable file's row is exactly load_image of its bytes
    for i in good:
        np.testing.assert_array_equal(train.images[i], load_image(listing.read(i)))
    gray = listing.names.index(f"{WNIDS[1]}/gray.JPEG")
    assert (train.images[gray, ..., 0] == train.images[gray, ..., 2]).all()


def test_mean_and_pca_match_numpy(cache):
    out, manifest = cache
    train = open_split(out, "train")
    x = np.asarray(train.images[train.rows], np.float64)
    np.testing.assert_allclose(train.mean, x.mean(0), rtol=0, atol=1e-4)
    pixels = x.reshape(-1, 3) / 255.0
    cov = np.cov(pixels, rowvar=False, bias=True)
    with np.load(out / "pca.npz") as z:
        np.testing.assert_allclose(z["cov"], cov, rtol=1e-9, atol=1e-12)
        vals, vecs = z["eigvals"], z["eigvecs"]
    np.testing.assert_allclose(vecs @ np.diag(vals) @ vecs.T, cov, atol=1e-12)
    assert (np.diff(vals) <= 0).all() and np.allclose(vecs.T @ vecs, np.eye(3))
    np.testing.assert_allclose(train.eigvals, np.linalg.eigvalsh(cov)[::-1], rtol=1e-9)
    assert manifest["pca"]["units"].startswith("pixel/255")


def test_prepare_from_archives_equals_folders(cache, dataset, tmp_path):
    out, _ = cache
    prepare(dataset["tars"], tmp_path, workers=0, chunk_size=5, progress=False)
    for split in ("train", "val"):  # val's rows: by class in folders, by name in the flat archive
        a, b = open_split(out, split), open_split(tmp_path, split)
        names_a, names_b = ((d / f"{split}_files.txt").read_text().split() for d in (out, tmp_path))
        row_b = {n.split("/")[-1]: i for i, n in enumerate(names_b)}
        order = [row_b[n.split("/")[-1]] for n in names_a]
        np.testing.assert_array_equal(a.images, b.images[order])
        np.testing.assert_array_equal(a.labels, b.labels[order])
    np.testing.assert_array_equal(np.load(out / "mean.npy"), np.load(tmp_path / "mean.npy"))
    words = json.loads((tmp_path / "manifest.json").read_text())["words"]
    assert words == ["alpha class", "beta class", "gamma class", "delta class"]


def test_prepare_resumes_after_interruption(cache, dataset, tmp_path):
    out, _ = cache
    part = prepare(dataset["folders"], tmp_path, workers=0, chunk_size=4, progress=False,
                   splits=("train",), max_chunks=2)
    assert part["splits"]["train"]["complete"] is False
    with pytest.raises(FileNotFoundError, match="incomplete"):
        open_split(tmp_path, "train")
    progress = tmp_path / ".build" / "train_progress.npz"      # built beside, not in place
    assert progress.exists() and not (tmp_path / "train_images.npy").exists()
    prepare(dataset["folders"], tmp_path, workers=0, chunk_size=4, progress=False, splits=("train",),
            max_chunks=1)  # resumes: 2 + 1 chunks done
    with np.load(progress) as z:
        assert z["done"].sum() == 3
    done = prepare(dataset["folders"], tmp_path, workers=0, chunk_size=4, progress=False, splits=("train",))
    assert done["splits"]["train"]["complete"] and not (tmp_path / ".build").exists()
    a, b = open_split(out, "train"), open_split(tmp_path, "train")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.mean, b.mean)  # exact integer sums: same bits as 2 workers
    np.testing.assert_array_equal(a.eigvecs, b.eigvecs)
    assert len(json.loads((tmp_path / "report.json").read_text())["train"]["skipped"]) == 2
    # a finished split is not redone
    again = prepare(dataset["folders"], tmp_path, workers=0, chunk_size=4, progress=False, splits=("train",))
    assert again["splits"]["train"] == done["splits"]["train"]


def test_prepare_restarts_when_the_files_change(dataset, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(dataset["folders"] / "train" / WNIDS[0], src / "train" / WNIDS[0])
    prepare(src, tmp_path / "out", workers=0, chunk_size=2, progress=False, splits=("train",), max_chunks=1)
    (src / "train" / WNIDS[0] / "zzz_new.JPEG").write_bytes(jpeg(photo(300, 300, 1)))
    with pytest.warns(UserWarning, match="preparing train only"):              # said up front
        m = prepare(src, tmp_path / "out", workers=0, chunk_size=2, progress=False)  # SRC's splits
    assert m["splits"]["train"]["count"] == 4 and len(open_split(tmp_path / "out", "train")) == 4
    assert list(m["splits"]) == ["train"]


def test_cache_split_pickles_by_path(cache):
    import pickle
    out, _ = cache
    split = open_split(out, "val")
    blob = pickle.dumps(split)
    assert len(blob) < 10_000  # the path, not the pixels
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.images, split.images)


def test_prepare_module_exports():
    assert prep.prepare is prepare and callable(prep.open_split)
