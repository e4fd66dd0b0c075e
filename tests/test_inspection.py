"""`alexnet inspect`: the table of one image through the net, the image
preparation of Section 2, the activation-map PNGs, and clear errors."""
import numpy as np
import pytest
from PIL import Image

from minidl import serialize
from alexnet.inspection import (IMAGENET_RGB_MEAN, build_model, default_image, format_table,
                                inspect_image, load_image, map_file_name, preprocess)

STAGES = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7"]

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
    assert names == [f"{s}/{c}" for s in STAGES for c in "AB"] + ["fc8"]
    assert sum(r.params for r in rows) == 60_965_224
    assert sum(r.madds for r in rows) == MADDS              # ~724 M for the grouped net
    assert rows[-1].shape == (1, 1000) and rows[0].shape == (1, 48, 55, 55)
    text = "\n".join(lines)
    assert "60,965,224" in text and f"{MADDS / 1e6:.1f}" in text
    assert "no trained mean" in text                           # says what it approximates
    for n in names:
        assert any(line.startswith(n + " ") for line in lines), n
    # ReLU outputs are never negative and have dead units; fc8's logits are signed
    assert all(r.mean >= 0 and 0 <= r.zeros <= 1 for r in rows[:-1])
    assert rows[0].zeros > 0 and np.isfinite([r.std for r in rows]).all()


def test_save_maps_writes_one_valid_png_per_stage(default_run):
    rows, _, maps = default_run
    files = sorted(maps.glob("*.png"))
    assert [f.name for f in files] == [map_file_name(i, r) for i, r in enumerate(rows)]
    assert files[0].name == "01_conv1_A.png" and files[-1].name == "21_fc8.png"
    for f in files:
        with Image.open(f) as img:
            img.verify()
            assert img.format == "PNG"
    with Image.open(files[0]) as img:            # 48 maps of 55x55 in a 7x7 grid
        assert img.size[0] >= 7 * 55


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
    assert [r.name for r in rows] == [f"{s}/A" for s in STAGES] + ["fc8"]
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


def test_format_table_flags_a_mismatch_of_totals(default_run):
    rows, _, _ = default_run
    assert "the model holds 1 parameters" in format_table(rows, total_params=1)[-1]
    assert "the model holds" not in "\n".join(format_table(rows, total_params=60_965_224))
