"""Hostile and damaged data: CIFAR-10 pickles and archives, ImageNet source trees.

Each test builds one bad input and asserts what the user gets: a clear error
naming the file, or the file skipped and reported, never a traceback, a huge
allocation, a write outside the output folder or a silently wrong cache.
"""
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet import cli
from alexnet.data import cifar10 as C
from alexnet.data.imagenet import find_split, load_devkit, parse_meta
from alexnet.data.prepare import load_image, open_split, prepare, verify
from test_cifar10 import N, make_archive, make_batches, write_batch
from test_imagenet import FIXTURE
from test_imagenet_train import image_folder

pytestmark = pytest.mark.filterwarnings("ignore:.*not the official archive")


# ------------------------------------------------------------- CIFAR-10 pickles --

def _s(b):
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _tuple_of_ints(values):
    return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"


def _array_without_data(shape):
    """numpy's _reconstruct(ndarray, shape, 'B') and no BUILD: an uninitialised
    array of any size, for the price of a few bytes."""
    return (b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            + _tuple_of_ints(shape) + _s(b"B") + b"\x87R")


def _batch(array_opcodes):
    return (b"\x80\x02}(" + _s(b"data") + array_opcodes + _s(b"labels") + b"](K\x00e" + b"u.")


def test_pickle_cannot_allocate_an_array_larger_than_the_file(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(_batch(_array_without_data((500000, 3072))))     # would be 1.5 GB
    assert path.stat().st_size < 200
    with pytest.raises(C.CIFAR10FormatError, match="not \\(0,\\)"):
        C.load_batch(path)


def test_pickle_whose_data_is_shorter_than_its_shape_is_refused(tmp_path):
    array = (_array_without_data((0,)) + b"(K\x01" + _tuple_of_ints((1000, 3072))
             + b"cnumpy\ndtype\n" + _s(b"u1") + b"K\x00K\x01\x87R"
             + b"\x89" + _s(b"x" * 3072) + b"tb")
    path = tmp_path / "data_batch_1"
    path.write_bytes(_batch(array))
    with pytest.raises(C.CIFAR10FormatError, match="needs 3072000 bytes, the file holds 3072"):
        C.load_batch(path)


def test_batch_with_more_images_than_an_official_batch_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "data_batch_1"
    write_batch(path, np.zeros((N, 3072), np.uint8), np.arange(N) % 10)
    monkeypatch.setattr(C, "MAX_BATCH_IMAGES", N - 1)
    with pytest.raises(C.CIFAR10FormatError, match=f"at most {N - 1} images"):
        C.load_batch(path)


# ------------------------------------------------------------ CIFAR-10 archives --

def test_archive_total_size_is_capped_not_only_each_member(tmp_path, monkeypatch):
    d, _ = make_batches(tmp_path)
    archive = make_archive(tmp_path / "a.tar.gz", d)
    one = (d / "data_batch_1").stat().st_size
    monkeypatch.setattr(C, "MAX_TOTAL_BYTES", 3 * one)      # each member fits, all do not
    with pytest.raises(C.UnsafeArchiveError, match="add up to more than"):
        C.extract_archive(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_archive_member_count_and_size_are_capped(tmp_path, monkeypatch):
    d, _ = make_batches(tmp_path)
    archive = make_archive(tmp_path / "a.tar.gz", d)
    monkeypatch.setattr(C, "MAX_MEMBERS", 4)
    with pytest.raises(C.UnsafeArchiveError, match="more than 4 members"):
        C.extract_archive(archive, tmp_path / "out")
    monkeypatch.setattr(C, "MAX_MEMBERS", 64)
    monkeypatch.setattr(C, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(C.UnsafeArchiveError, match="more than the official CIFAR-10 archive"):
        C.extract_archive(archive, tmp_path / "out")


def test_local_archive_with_another_md5_is_refused_unless_accepted(tmp_path, capsys):
    d, _ = make_batches(tmp_path / "made")
    root = tmp_path / "root"
    root.mkdir()
    make_archive(root / C.ARCHIVE_NAME, d)
    with pytest.raises(C.ChecksumError, match="allow-unofficial-archive"):
        C.load_cifar10(root)
    assert not (root / C.BATCHES_DIR).exists()
    args = ["figure1", "--data-dir", str(root), "--quick", "--no-download", "-o",
            str(tmp_path / "out")]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "MD5" in err and C.ARCHIVE_MD5 in err and "Traceback" not in err
    with pytest.warns(UserWarning, match="not the official archive"):
        data = C.load_cifar10(root, allow_unofficial=True)
    assert data.x_train.shape == (5 * N, 3, 32, 32)


# ------------------------------------------------------------- ImageNet sources --

def _prepare(src, out, **kw):
    return prepare(src, out, workers=0, size=32, progress=False, **kw)


def test_symlinks_out_of_src_are_refused_and_reported(tmp_path):
    src = image_folder(tmp_path / "src", train=2, val=1)
    secret = tmp_path / "outside.JPEG"
    Image.new("RGB", (40, 40), (255, 0, 0)).save(secret)
    cls = sorted((src / "train").iterdir())[0]
    os.symlink(secret, cls / "link.JPEG")
    os.symlink(cls / "loop.JPEG", cls / "loop.JPEG")                    # a symlink loop
    os.symlink(tmp_path, src / "train" / "n09999999")                    # a folder outside
    m = _prepare(src, tmp_path / "out")
    files = (tmp_path / "out" / "train_files.txt").read_text().split("\n")
    assert not any("link" in f or "loop" in f or "n09999999" in f for f in files)
    assert m["splits"]["train"]["refused"] == 3 and "n09999999" not in m["wnids"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reasons = {r["member"]: r["reason"] for r in report["train"]["refused_archive_members"]}
    assert "outside the source folder" in reasons[f"{cls.name}/link.JPEG"]
    assert "looping" in reasons[f"{cls.name}/loop.JPEG"]


def test_splits_cannot_name_a_path(tmp_path, capsys):
    src = image_folder(tmp_path / "src", train=1, val=1)
    with pytest.raises(SystemExit) as e:
        cli.main(["prepare", str(src), str(tmp_path / "out"), "--splits", "../x"])
    assert e.value.code == 2 and "subset of train,val,test" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown split"):
        _prepare(src, tmp_path / "out", splits=("../x",))
    assert not (tmp_path / "x_images.npy").exists()


def test_finished_cache_is_not_rebuilt_silently_from_other_settings(tmp_path, capsys):
    src = image_folder(tmp_path / "src", train=2, val=1)
    other = image_folder(tmp_path / "other", train=3, val=1, seed=1)
    out = tmp_path / "out"
    _prepare(src, out, chunk_size=4)
    before = (out / "train_images.npy").stat().st_mtime_ns
    with pytest.raises(ValueError, match="--chunk-size: 4 in the cache, 2 now.*--rebuild"):
        _prepare(src, out, chunk_size=2)
    assert cli.main(["prepare", str(other), str(out), "--chunk-size", "4", "--size", "32",
                     "--workers", "0"]) == 1
    assert "SRC" in capsys.readouterr().err
    assert (out / "train_images.npy").stat().st_mtime_ns == before
    m = _prepare(other, out, chunk_size=4, rebuild=True)
    assert m["splits"]["train"]["count"] == 12 and len(open_split(out, "train")) == 12


def test_newline_and_non_utf8_names_are_skipped_not_fatal(tmp_path):
    src = image_folder(tmp_path / "src", train=2, val=1)
    cls = sorted((src / "train").iterdir())[0]
    Image.new("RGB", (40, 40)).save(cls / "a\nb.JPEG", "JPEG")
    Image.new("RGB", (40, 40)).save(os.fsencode(cls) + b"/bad\xff.JPEG", "JPEG")
    listing = find_split(src, "train")
    assert len(listing) == 8 and len(listing.rejected) == 2
    assert {why for _, why in listing.rejected} == {
        "a newline in the file name (rename the file)",
        "the file name is not valid UTF-8 (rename the file)"}
    _prepare(src, tmp_path / "out")
    rows = (tmp_path / "out" / "train_files.txt").read_text().splitlines()
    assert len(rows) == 8


@pytest.mark.filterwarnings("ignore:.*preparing train only")
def test_empty_class_folder_and_empty_dataset_are_reported_up_front(tmp_path):
    src = image_folder(tmp_path / "src", train=2, val=1)
    (src / "train" / "n05000005").mkdir()
    with pytest.raises(ValueError, match="1 class folder\\(s\\) hold no images, e.g. n05000005"):
        _prepare(src, tmp_path / "out")
    empty = tmp_path / "empty"
    (empty / "train" / "n01000001").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="hold no images"):
        _prepare(empty, tmp_path / "out2")


def test_missing_val_is_reported_before_any_decoding(tmp_path):
    src = image_folder(tmp_path / "src", train=2, val=1)
    import shutil
    shutil.rmtree(src / "val")
    with pytest.raises(FileNotFoundError, match="no val/ folder.*--splits train"):
        _prepare(src, tmp_path / "out", splits=("train", "val"))
    assert not (tmp_path / "out" / "train_images.npy").exists()      # nothing decoded
    with pytest.warns(UserWarning, match="preparing train only"):
        _prepare(src, tmp_path / "out")


def test_truncated_tar_keeps_the_members_before_the_damage(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    inner = tmp_path / "n01000001.tar"
    with tarfile.open(inner, "w") as t:
        for i in range(3):
            p = tmp_path / f"x{i}.JPEG"
            Image.new("RGB", (40, 40), (i * 80, 0, 0)).save(p)
            t.add(p, arcname=p.name)
    archive = src / "ILSVRC2012_img_train.tar"
    with tarfile.open(archive, "w") as t:
        t.add(inner, arcname=inner.name)
        t.add(inner, arcname="n02000002.tar")
    blob = bytearray(archive.read_bytes())
    second = blob.index(b"n02000002.tar") + 512              # its data, after its header
    damaged = bytes(blob[:second]) + b"\xff" * 512 + bytes(blob[second + 512:])
    archive.write_bytes(damaged)                             # the second inner tar's header is junk
    listing = find_split(src, "train")
    assert listing.names == [f"n01000001.tar/x{i}.JPEG" for i in range(3)]
    assert any("truncated or damaged" in why for _, why in listing.rejected)
    archive.write_bytes(bytes(blob[:second + 1000]))         # cut short in the second inner tar
    listing = find_split(src, "train")
    assert len(listing) == 3 and "past the end" in listing.rejected[0][1]


def test_damaged_meta_mat_is_one_clear_error(tmp_path):
    blob = bytearray(FIXTURE.read_bytes())
    rng = np.random.default_rng(0)
    for trial in range(60):
        bad = bytearray(blob)
        for pos in rng.integers(128, len(bad), 3):
            bad[pos] = int(rng.integers(0, 256))
        try:
            parse_meta(bytes(bad), "meta.mat")
        except ValueError as e:
            assert "meta.mat" in str(e)
    kit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    kit.mkdir(parents=True)
    (kit / "meta.mat").write_bytes(bytes(blob[:len(blob) // 2]))
    with pytest.raises(ValueError, match="meta.mat: cannot be read as an ILSVRC devkit"):
        load_devkit(kit.parent)


def test_devkit_archive_is_bounded_and_its_ground_truth_checked(tmp_path, monkeypatch):
    from alexnet.data import imagenet
    kit = tmp_path / "ILSVRC2012_devkit_t12"
    (kit / "data").mkdir(parents=True)
    (kit / "data" / "meta.mat").write_bytes(FIXTURE.read_bytes())
    (kit / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n2\nthree\n")
    archive = tmp_path / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(kit, arcname=kit.name)
    devkit = load_devkit(archive)
    with pytest.raises(ValueError, match="validation_ground_truth.txt.*one ILSVRC class ID"):
        devkit.wnid_of_file("val", ["a.JPEG", "b.JPEG", "c.JPEG"])
    monkeypatch.setattr(imagenet, "DEVKIT_MAX_MEMBER_BYTES", 100)
    with pytest.raises(ValueError, match="more than an ILSVRC devkit holds"):
        load_devkit(archive)


def test_a_train_split_where_nothing_decodes_points_at_a_written_report(tmp_path):
    src = image_folder(tmp_path / "src", train=1, val=1)
    for f in (src / "train").rglob("*.JPEG"):
        f.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="no training image could be decoded.*report.json"):
        _prepare(src, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["train"]["skipped"]) == 4


# -------------------------------------------------------------- image formats --

def test_16_bit_png_is_scaled_not_clipped_to_white(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)                  # a 16-bit grayscale PNG
    out = load_image(path.read_bytes(), size=64)      # (64, 64, 3) uint8
    expected = np.rint(ramp / 257.0)
    assert out.shape == (64, 64, 3) and out.min() < 10 and out.max() > 240
    assert np.abs(out[..., 0].astype(float) - expected).mean() < 2
    from alexnet.inspection import load_image as inspect_load
    seen = np.asarray(inspect_load(path))                  # inspect reads it the same way
    assert seen.shape == (64, 64, 3) and np.abs(seen[..., 1] - expected).mean() < 1


def test_a_damaged_manifest_is_one_clear_error(tmp_path, capsys):
    src = image_folder(tmp_path / "src", train=1, val=1)
    out = tmp_path / "out"
    _prepare(src, out)
    manifest = out / "manifest.json"
    good = manifest.read_text()
    for damage, expected in (("{not json", "not readable JSON"),
                             (good.replace('"wnids"', '"classes"'), "'wnids' is missing"),
                             (good.replace('"version": 2', '"version": 9'), "version 9")):
        manifest.write_text(damage)
        with pytest.raises(ValueError, match=expected):
            open_split(out, "train")
        assert cli.main(["evaluate", str(tmp_path), "--data-dir", str(out)]) == 1
        assert "Traceback" not in capsys.readouterr().err


def test_prepare_in_a_log_writes_plain_lines_not_bars(tmp_path, capsys):
    src = image_folder(tmp_path / "src", train=2, val=1)
    assert cli.main(["prepare", str(src), str(tmp_path / "out"), "--size", "32", "-j", "0",
                     "--chunk-size", "2"]) == 0                 # stderr is not a terminal here
    out, err = capsys.readouterr()
    assert "prepare train: 8/8 images (100%)" in out and "prepare val: 4/4 images (100%)" in out
    assert "\r" not in out + err and "\x1b" not in out + err


@pytest.mark.parametrize("name, kind, problem", [
    ("a/b.JPEG", tarfile.REGTYPE, None),
    ("./a/", tarfile.DIRTYPE, None),
    ("/etc/passwd", tarfile.REGTYPE, "absolute"),
    ("C:/x.JPEG", tarfile.REGTYPE, "drive"),
    ("a/../../x", tarfile.REGTYPE, "outside"),
    ("a\\..\\..\\x", tarfile.REGTYPE, "outside"),
    ("a/link", tarfile.SYMTYPE, "symlink"),
    ("a/hard", tarfile.LNKTYPE, "hard link"),
    ("a/dev", tarfile.CHRTYPE, "device"),
    ("a/fifo", tarfile.FIFOTYPE, "fifo"),
])
def test_one_rule_for_what_an_archive_member_may_be(name, kind, problem):
    from alexnet.data.archive import member_problem
    m = tarfile.TarInfo(name)
    m.type = kind
    found = member_problem(m)
    assert (found is None) if problem is None else (problem in found)


# ------------------------------------------------------------------ the cache --
# A cache is checked against its manifest whenever it is opened (counts, shapes, dtypes,
# label range, checksums), rebuilt beside itself and moved into place, and `alexnet
# prepare --verify` checks everything. Each damage below was once used without a word.

TINY = ["--input-size", "67", "--conv-channels", "8,12,16,12,8", "--fc-features", "16",
        "--weight-std", "0.1", "--no-progress", "-b", "4", "-j", "0"]


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    src = image_folder(root / "src", train=2, val=1)
    prepare(src, root / "cache", workers=0, size=76, progress=False, chunk_size=4)
    return root / "cache"


@pytest.fixture(scope="module")
def good_run(good_cache, tmp_path_factory):
    """One epoch of a tiny net on the good cache (for evaluate)."""
    out = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--data-dir", str(good_cache), "-o", str(out), "--epochs", "1",
                     *TINY]) == 0
    return out


def _copy(cache, tmp_path):
    import shutil
    return Path(shutil.copytree(cache, tmp_path / "cache"))


def _manifest(cache, edit=None):
    path = cache / "manifest.json"
    m = json.loads(path.read_text())
    if edit:
        edit(m)
        path.write_text(json.dumps(m))
    return m


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _data_offset(path):
    return np.load(path, mmap_mode="r").offset


def _resave(cache, name, array, record=True):
    """Write `array` as cache/name; record=True also makes the manifest agree (so that only
    the check under test can find it)."""
    np.save(cache / name, array)
    if record:
        from alexnet.data.cache import array_record
        _manifest(cache, lambda m: m["arrays"].__setitem__(
            name[:-4], array_record(name, array, m["arrays"][name[:-4]]["rows"])))


def _labels(cache, split="train"):
    return np.load(cache / f"{split}_labels.npy")


DAMAGES = {
    "half the labels": (lambda c: _resave(c, "train_labels.npy", _labels(c)[:4], record=False),
                        "expected the train labels of shape (8,)"),
    "a manifest whose counts lie": (
        lambda c: _manifest(c, lambda m: m["splits"]["train"].update(count=16)),
        "should hold 16 images of 76x76x3 and 16 labels"),
    "images of shape (N, 76, 76, 1)": (
        lambda c: _resave(c, "train_images.npy", np.load(c / "train_images.npy")[..., :1],
                          record=False), "found shape (8, 76, 76, 1)"),
    "float labels": (lambda c: _resave(c, "train_labels.npy", _labels(c) + 0.7, record=False),
                     "found shape (8,) and dtype float64"),
    "a byte flipped in the images": (
        lambda c: _flip(c / "train_images.npy", _data_offset(c / "train_images.npy") + 5000),
        "rows 0-3 of the train images do not match their checksums"),
    "a byte flipped in the labels": (
        lambda c: _flip(c / "train_labels.npy", _data_offset(c / "train_labels.npy") + 8),
        "of the train labels do not match their checksums"),
    "a byte flipped in a .npy header": (lambda c: _flip(c / "train_labels.npy", 30),
                                        "train_labels.npy: not a readable .npy file"),
    "a zero-byte array": (lambda c: (c / "train_labels.npy").write_bytes(b""),
                          "train_labels.npy: not a readable .npy file"),
    "fewer image rows than labels": (
        lambda c: (c / "train_images.npy").write_bytes(
            (c / "train_images.npy").read_bytes()[:-100]),
        "the file is cut short"),
    "a validation label out of range": (
        lambda c: _resave(c, "val_labels.npy", _labels(c, "val") + 3),
        "expected class indices 0..3 (or -1 for a skipped file), found 4 in row 1"),
    "mean.npy missing": (lambda c: (c / "mean.npy").unlink(), "mean.npy is missing"),
    "a mean image of another shape": (
        lambda c: _resave(c, "mean.npy", np.zeros((76, 76), np.float32), record=False),
        "expected the mean image of shape (76, 76, 3)"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_cache_is_refused_with_what_to_do(damage, good_cache, good_run, tmp_path,
                                                    capsys):
    from alexnet.data.cache import CacheError
    cache = _copy(good_cache, tmp_path)
    spoil, expected = DAMAGES[damage]
    spoil(cache)
    split = "val" if "validation" in damage else "train"
    with pytest.raises(CacheError, match=re.escape(expected)) as e:
        open_split(cache, split)
    assert "alexnet prepare --verify" in str(e.value) and str(cache) in str(e.value)
    commands = [["train", "--data-dir", str(cache), "-o", str(tmp_path / "run"), *TINY],
                ["evaluate", str(good_run), "--data-dir", str(cache), "-j", "0", "--no-progress",
                 "--split", split]]
    for argv in commands:
        if "mean" in damage and argv[0] == "evaluate":
            assert cli.main(argv) == 0        # the net's mean image is the checkpoint's
            continue
        assert cli.main(argv) == 1, argv[0]
        err = capsys.readouterr().err
        assert "Traceback" not in err and expected in err, (argv[0], err)
    assert cli.main(["prepare", "--verify", str(cache), "--no-progress"]) == 1
    assert expected in capsys.readouterr().err


def test_pca_missing_is_an_error_unless_the_noise_is_turned_off(good_cache, tmp_path, capsys):
    cache = _copy(good_cache, tmp_path)
    (cache / "pca.npz").unlink()
    args = ["train", "--data-dir", str(cache), "--epochs", "1", *TINY]
    assert cli.main([*args, "-o", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "pca.npz is missing" in err and "--no-pca-noise" in err
    assert cli.main([*args, "-o", str(tmp_path / "b"), "--no-pca-noise"]) == 0
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["recipe"]["color_std"] == 0.0


def test_verify_checks_every_checksum_and_upgrades_an_old_cache(good_cache, tmp_path, capsys):
    from alexnet.data.cache import CacheError
    cache = _copy(good_cache, tmp_path)
    assert cli.main(["prepare", "--verify", str(cache), "--no-progress"]) == 0
    assert "sound" in capsys.readouterr().out
    m = _manifest(cache)
    old = {k: v for k, v in m.items() if k != "arrays"}
    (cache / "manifest.json").write_text(json.dumps({**old, "version": 1}))   # version 1
    with pytest.raises(CacheError, match="cache version 1.*alexnet prepare --verify"):
        open_split(cache, "train")
    assert cli.main(["prepare", "--verify", str(cache), "--no-progress"]) == 0
    assert "upgraded to checksums" in capsys.readouterr().out
    assert _manifest(cache)["arrays"] == m["arrays"]         # the same checksums prepare wrote
    assert len(open_split(cache, "train")) == 8
    assert cli.main(["prepare", "--verify", str(cache), "src"]) == 1        # one cache at a time
    assert cli.main(["prepare", str(cache)]) == 1                            # SRC and OUT
    assert "Traceback" not in capsys.readouterr().err


def test_a_big_image_file_is_checksummed_by_verify_not_at_every_open(good_cache, tmp_path,
                                                                      monkeypatch):
    from alexnet.data import cache as C
    cache = _copy(good_cache, tmp_path)
    _flip(cache / "train_images.npy", _data_offset(cache / "train_images.npy") + 7)
    monkeypatch.setattr(C, "VERIFY_AT_OPEN", 1000)            # as if 252 GB
    assert len(open_split(cache, "train")) == 8               # counts, shapes, dtypes: fine
    problems = C.verify(cache)
    assert len(problems) == 1 and "do not match their checksums" in problems[0]


def test_a_rebuild_is_written_beside_and_moved_into_place(good_cache, tmp_path):
    """A run's mapped images stay what they were while `prepare --rebuild` writes new
    ones; a process reopening the run's cache refuses the new one; an interrupted
    rebuild leaves the old cache whole, and running it again finishes it."""
    import pickle
    from alexnet.data.cache import CacheChanged
    cache = _copy(good_cache, tmp_path)
    old = open_split(cache, "train")
    before = np.array(old.images)
    other = image_folder(tmp_path / "other", train=2, val=1, seed=7)
    part = prepare(other, cache, workers=0, size=76, progress=False, chunk_size=4,
                   rebuild=True, max_chunks=1)
    assert not part["splits"]["train"]["complete"]
    again = open_split(cache, "train")                         # still the old cache
    np.testing.assert_array_equal(again.images, before)
    prepare(other, cache, workers=0, size=76, progress=False, chunk_size=4, rebuild=True)
    assert not (cache / ".build").exists()
    np.testing.assert_array_equal(old.images, before)          # the mapped file is untouched
    assert not np.array_equal(open_split(cache, "train").images, before)
    with pytest.raises(CacheChanged, match="changed since this run opened it"):
        pickle.loads(pickle.dumps(old))                        # what a loader worker does


def test_prepare_again_leaves_a_finished_cache_alone_and_keeps_an_unfinished_rebuild(
        good_cache, tmp_path):
    cache = _copy(good_cache, tmp_path)
    src = json.loads((cache / "manifest.json").read_text())["source"]
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    prepare(src, cache, workers=0, size=76, progress=False, chunk_size=4)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before   # not rewritten
    prepare(src, cache, workers=0, size=76, progress=False, chunk_size=4, rebuild=True,
            max_chunks=1)                                    # a rebuild, interrupted
    with pytest.warns(UserWarning, match="unfinished rebuild.*--rebuild to finish it"):
        m = prepare(src, cache, workers=0, size=76, progress=False, chunk_size=4)
    assert m["splits"]["train"]["complete"] and (cache / ".build").is_dir()
    prepare(src, cache, workers=0, size=76, progress=False, chunk_size=4, rebuild=True)
    assert not (cache / ".build").exists() and verify(cache) == []


def test_an_interrupted_move_into_place_is_finished_by_the_next_prepare(good_cache, tmp_path,
                                                                        monkeypatch):
    from alexnet.data import cache as C
    cache = _copy(good_cache, tmp_path)
    src = json.loads((cache / "manifest.json").read_text())["source"]
    real = os.replace

    def dies_mid_commit(a, b):
        if Path(b) == cache / "train_labels.npy":            # the second file moved in
            raise KeyboardInterrupt
        return real(a, b)
    monkeypatch.setattr(C.os, "replace", dies_mid_commit)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, cache, workers=0, size=76, progress=False, chunk_size=4, rebuild=True)
    monkeypatch.setattr(C.os, "replace", real)
    with pytest.raises(FileNotFoundError, match="run the same `alexnet prepare` command again"):
        C.open_split(cache, "train")
    prepare(src, cache, workers=0, size=76, progress=False, chunk_size=4)
    assert C.verify(cache) == [] and not (cache / ".build").exists()


def _run_train(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "alexnet", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not path.exists() and proc.poll() is None:
        time.sleep(0.05)
    assert path.exists(), proc.communicate()


def test_a_run_stops_when_its_cache_is_rebuilt_and_resume_says_why(good_cache, tmp_path):
    cache = _copy(good_cache, tmp_path)
    out = tmp_path / "run"
    args = ["--data-dir", str(cache), "-o", str(out), "--epochs", "500", *TINY[:-4], "-b", "4",
            "-j", "2", "--checkpoint-steps", "1"]
    proc = _run_train(args)
    try:
        _wait_for(out / "metrics.jsonl", proc)                # an epoch done
        other = image_folder(tmp_path / "other", train=2, val=1, seed=7)
        assert cli.main(["prepare", str(other), str(cache), "--size", "76", "-j", "0",
                         "--chunk-size", "4", "--rebuild", "--no-progress"]) == 0
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "changed while this run trained on it" in err and "train_images" in err
    assert "Traceback" not in err and "SIGBUS" not in err
    epochs = minidl_load(out)["train"]
    assert epochs["batch"] == 2 or epochs["epoch"] >= 2       # the epoch's training was saved
    resumed = subprocess.run([sys.executable, "-m", "alexnet", "train", "--resume", str(out),
                              "--no-progress"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 1
    assert "is not the cache the run" in resumed.stderr and "train_images" in resumed.stderr


def test_a_cache_deleted_mid_training_is_a_message_not_a_traceback(good_cache, tmp_path):
    import shutil
    cache = _copy(good_cache, tmp_path)
    out = tmp_path / "run"
    proc = _run_train(["--data-dir", str(cache), "-o", str(out), "--epochs", "500",
                       *TINY[:-4], "-b", "4", "-j", "2"])
    try:
        _wait_for(out / "metrics.jsonl", proc)
        shutil.rmtree(cache)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "cannot be read any more" in err and "no such folder" in err
    assert "Traceback" not in err and "Broken pipe" not in err and "BrokenPipe" not in err


def test_a_loader_worker_reports_a_vanished_cache(good_cache, tmp_path):
    import shutil
    from alexnet.data.loader import Loader
    cache = _copy(good_cache, tmp_path)
    val = open_split(cache, "val", mean=False, pca=False)
    shutil.rmtree(cache)
    with Loader(val, 2, train=False, crop=67, workers=2) as loader:
        with pytest.raises(RuntimeError, match="could not open the data: the cache .* cannot be "
                                               "read any more .*deleted"):
            list(loader.epoch(0))


def minidl_load(out):
    from minidl import serialize
    return serialize.load(out / "checkpoint.npz")
