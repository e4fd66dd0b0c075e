"""`alexnet inspect`: the table of one image through the net, the image
preparation of Section 2, the activation-map PNGs, and clear errors."""
import numpy as np
import pytest
from PIL import Image

from minidl import serialize
from alexnet.inspection import (IMAGENET_RGB_MEAN, build_model, default_image, format_table,
                                inspect_image, load_image, map_file_name, preprocess,
                                preprocess_like_cache)

# Per column, in order: the layer, then its ReLU; LRN and dropout are stages of their own.
GROUPS = [["conv1", "relu1"], ["lrn1", "pool1"], ["conv2", "relu2"], ["lrn2", "pool2"],
          ["conv3", "relu3"], ["conv4", "relu4"], ["conv5", "relu5"], ["pool5"],
          ["fc6", "relu6", "dropout6"], ["fc7", "relu7", "dropout7"]]
STAGES = [s for g in GROUPS for s in g]


def stage_names(columns):
    return [f"{s}/{c}" for g in GROUPS for c in "AB"[:columns] for s in g] + ["fc8"]

# Multiply-adds per image of the two-column net, counted by hand from the layer table:
# out_h * out_w * out_channels * (in_channels read per kernel * k * k), and in * out for fc.
MADDS = (55 * 55 * 96 * 3 * 121 + 27 * 27 * 256 * 48 * 25 + 13 * 13 * 384 * 256 * 9
         + 13 * 13 * 384 * 192 * 9 + 13 * 13 * 256 * 192 * 9
         + 9216 * 4096 + 4096 * 4096 + 4096 * 1000)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One run on the built-in image with --save-maps (the slowest part, done once)."""
    maps = tmp_path_factory.mktemp("maps")
    lines = []
    rows = inspect_image(save_maps=maps, out=lines.append)
    return rows, lines, maps


def test_table_on_the_default_image_has_every_stage_and_the_totals(default_run):
    rows, lines, _ = default_run
    names = [r.name for r in rows]
    assert names == stage_names(2)
    assert sum(r.params for r in rows) == 60_965_224
    assert sum(r.madds for r in rows) == MADDS              # ~724 M for the grouped net
    assert rows[-1].shape == (1, 1000) and rows[0].shape == (1, 48, 55, 55)
    text = "\n".join(lines)
    assert "60,965,224" in text and f"{MADDS / 1e6:.1f}" in text
    assert "no trained mean" in text                           # says what it approximates
    for n in names:
        assert any(line.startswith(n + " ") for line in lines), n
    # ReLU outputs are never negative and have dead units; a conv's own output is signed
    after_relu = [r for r in rows if r.name.startswith(("relu", "lrn", "pool", "dropout"))]
    assert all(r.output.min() >= 0 and 0 <= r.zeros <= 1 for r in after_relu)
    conv1, relu1 = rows[0], rows[1]
    assert conv1.output.min() < 0 and conv1.zeros == 0 and relu1.zeros > 0
    np.testing.assert_array_equal(relu1.output, np.maximum(conv1.output, 0))
    assert np.isfinite([r.std for r in rows]).all()


def test_save_maps_writes_one_valid_png_per_stage(default_run):
    rows, _, maps = default_run
    files = sorted(maps.glob("*.png"))
    assert [f.name for f in files] == [map_file_name(i, r) for i, r in enumerate(rows)]
    assert files[0].name == "01_conv1_A.png" and files[-1].name == "43_fc8.png"
    for f in files:
        with Image.open(f) as img:
            img.verify()
            assert img.format == "PNG"
    with Image.open(files[0]) as img:            # 48 maps of 55x55 in a 7x7 grid, a colour bar
        assert img.size[0] >= 7 * 55
        pixels = np.asarray(img.convert("RGB"))
    assert (pixels[:20] < 100).all(axis=2).any()  # the title's dark text on the top rows


def test_preprocess_is_section_2_then_the_central_patch():
    # a 400x300 image whose pixels are their own column index (mod 256) in red
    a = np.zeros((300, 400, 3), np.uint8)
    a[..., 0] = np.arange(400) % 256
    x = preprocess(Image.fromarray(a), 227)
    assert x.shape == (3, 227, 227) and x.dtype == np.float32
    # shorter side 300 -> 256: width 341; crop offsets (341-256)//2 = 42, then 14
    assert abs(x[1] + IMAGENET_RGB_MEAN[1]).max() < 1e-4             # green was 0
    expected_first_col = (42 + 14) * 400 / 341                          # source column, roughly
    assert abs(x[0, 100, 0] + IMAGENET_RGB_MEAN[0] - expected_first_col) < 2


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_grayscale_cmyk_and_other_modes_load_as_rgb(tmp_path, mode):
    img = default_image().convert(mode)
    path = tmp_path / f"img.{'jpg' if mode in ('L', 'CMYK') else 'png'}"
    img.save(path)
    rgb = load_image(path)
    assert rgb.mode == "RGB" and rgb.size == (320, 256)
    if mode == "L":                                  # grey stays grey
        a = np.asarray(rgb)
        assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
    assert preprocess(rgb).shape == (3, 227, 227)


def test_a_grayscale_image_runs_through_the_one_column_net(tmp_path):
    path = tmp_path / "grey.jpg"
    default_image().convert("L").save(path)
    lines = []
    rows = inspect_image(path, columns=1, out=lines.append)
    assert [r.name for r in rows] == stage_names(1)
    assert rows[0].shape == (1, 48, 55, 55) and rows[-1].shape == (1, 1000)
    assert str(path) in lines[0]


def test_a_non_image_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "notes.JPEG"
    path.write_text("not an image at all")
    with pytest.raises(ValueError, match="not an image Pillow can read"):
        inspect_image(path, out=lambda line: None)
    with pytest.raises(FileNotFoundError, match="no image file"):
        inspect_image(tmp_path / "missing.jpg", out=lambda line: None)


def test_checkpoint_weights_are_used(tmp_path):
    trained = build_model(seed=1)
    path = serialize.save(tmp_path / "ckpt.npz", {"model": dict(trained.state_dict()), "epoch": 3})
    loaded = build_model(seed=0, checkpoint=path)
    for (name, a), (_, b) in zip(trained.named_parameters(), loaded.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    assert not loaded.training


def test_checkpoint_may_be_a_run_folder_of_a_small_net(tmp_path):
    from dataclasses import asdict
    from alexnet.imagenet_train import RECIPE_KIND, model_config
    from alexnet.model import AlexNet
    cfg = model_config(4, 2, input_size=67, conv_channels=(8, 12, 16, 12, 8), fc_features=64)
    net = AlexNet(cfg, seed=3)
    mean = np.random.default_rng(0).uniform(0, 255, (76, 76, 3)).astype(np.float32)
    meta = {"kind": RECIPE_KIND, "model": asdict(cfg), "recipe": {}, "data": {},
            "mean": mean, "wnids": ["n1", "n2", "n3", "n4"], "devices": ["cpu", "cpu"]}
    serialize.save(tmp_path / "checkpoint.npz", {"meta": meta, "model": dict(net.state_dict()),
                                                 "train": {"epoch": 2}})
    lines = []
    rows = inspect_image(checkpoint=tmp_path, out=lines.append)          # the run folder
    assert rows[0].shape == (1, 4, 15, 15) and rows[-1].shape == (1, 4)
    text = "\n".join(lines)
    assert f"checkpoint {tmp_path}" in text
    assert "no trained mean" not in text and "the run's mean training image (76x76" in text
    assert "shorter side 76" in text
    with pytest.raises(ValueError, match="does not hold weights of the paper's"):
        build_model(columns=1, checkpoint=serialize.save(tmp_path / "other.npz",
                                                         {"model": {"x": np.ones(2)}}))


def test_a_trained_net_sees_the_image_as_evaluate_gives_it(tmp_path):
    """With a run's mean image, inspect prepares a file as `alexnet prepare` stored it
    and subtracts the mean as `alexnet evaluate` does: the loader's centre patch."""
    from alexnet.data.augment import eval_batch
    from alexnet.data.prepare import load_image as cache_image
    path = tmp_path / "photo.jpg"
    default_image().save(path, quality=90)
    mean = np.random.default_rng(1).uniform(0, 255, (76, 76, 3)).astype(np.float32)
    stored = cache_image(path.read_bytes(), 76)                             # (76, 76, 3)
    want = eval_batch(stored[None], np.array([0]), 67, mean=mean)[0]        # (3, 67, 67)
    np.testing.assert_allclose(preprocess_like_cache(path, 67, mean), want, rtol=0, atol=1e-4)
    # the built-in picture (no file): the same resize as the cache's
    built_in = preprocess_like_cache(default_image(), 67, mean)
    assert built_in.shape == (3, 67, 67) and np.abs(built_in).max() > 1


def test_format_table_flags_a_mismatch_of_totals(default_run):
    rows, _, _ = default_run
    assert "the model holds 1 parameters" in format_table(rows, total_params=1)[-1]
    assert "the model holds" not in "\n".join(format_table(rows, total_params=60_965_224))
