"""Valid but unusual images (EXIF orientation, CMYK, palette, alpha, 16-bit) are accepted and
converted the same way by ``cvkit.files.images.decode_image`` and by ``cvkit prepare --size``; channels
and resize modes give the cache the requested shape."""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvkit.data import load_split
from cvkit.files.images import Resize, decode_image
from tests.conftest import make_image, run

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# ----------------------------------------------------------------------------- image builders


def to_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def quadrants(width: int = 40, height: int = 20) -> np.ndarray:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    arr = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    arr[:h, :w], arr[:h, w:], arr[h:, :w], arr[h:, w:] = RED, GREEN, BLUE, WHITE
    return arr


def exif_jpeg(orientation: int, width: int = 40, height: int = 20) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return to_bytes(Image.fromarray(quadrants(width, height)), "JPEG", quality=95, exif=exif.tobytes())


def cmyk_jpeg() -> bytes:
    img = Image.new("CMYK", (16, 12), (0, 255, 255, 0))  # pure red in CMYK
    return to_bytes(img, "JPEG", quality=95)


def palette_png(transparency=None) -> bytes:
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, :4], rgb[:, 4:] = RED, BLUE
    img = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    kw = {} if transparency is None else {"transparency": transparency}
    return to_bytes(img, "PNG", **kw)


def rgba_png() -> bytes:
    arr = np.zeros((6, 8, 4), np.uint8)
    arr[..., :3] = (10, 200, 30)
    arr[..., 3] = np.linspace(0, 255, 8, dtype=np.uint8)[None, :]
    return to_bytes(Image.fromarray(arr, "RGBA"))


def la_png() -> bytes:
    arr = np.dstack([np.full((6, 8), 77, np.uint8), np.full((6, 8), 10, np.uint8)])
    return to_bytes(Image.fromarray(arr, "LA"))


def gray16_png(value: int, shape=(6, 8)) -> bytes:
    img = Image.fromarray(np.full(shape, value, np.uint16))
    return to_bytes(img)


def close(pixel, colour, tol: int = 40) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, int) - np.asarray(colour, int)) <= tol))


def decode_strict(data: bytes, **kw):
    """decode_image with every warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return decode_image(data, **kw)


# ----------------------------------------------------------------------------- decode_image


def test_exif_orientation_6_rotates_clockwise():
    d = decode_strict(exif_jpeg(6))
    assert d.array.shape == (40, 20, 3)  # the 40x20 (WxH) image turned upright
    a = d.array
    # stored top-left (red) is shown top-right; stored bottom-left (blue) top-left
    assert close(a[5, 15], RED), a[5, 15]
    assert close(a[5, 5], BLUE), a[5, 5]
    assert close(a[35, 15], GREEN), a[35, 15]
    assert close(a[35, 5], WHITE), a[35, 5]


def test_exif_orientation_8_rotates_counter_clockwise():
    d = decode_strict(exif_jpeg(8))
    assert d.array.shape == (40, 20, 3)  # the 40x20 (WxH) image turned upright
    a = d.array
    # stored top-left (red) is shown bottom-left; stored top-right (green) top-left
    assert close(a[35, 5], RED), a[35, 5]
    assert close(a[5, 5], GREEN), a[5, 5]
    assert close(a[35, 15], BLUE), a[35, 15]
    assert close(a[5, 15], WHITE), a[5, 15]


def test_exif_orientation_1_is_unchanged():
    d = decode_strict(exif_jpeg(1))
    assert d.array.shape == (20, 40, 3)
    assert close(d.array[5, 5], RED)


def test_exif_orientation_applied_with_resize():
    d = decode_strict(exif_jpeg(6, 80, 40), resize=Resize(16, 8, "squash"))
    assert d.array.shape == (16, 8, 3)
    assert close(d.array[2, 6], RED, 60), d.array[2, 6]
    assert close(d.array[2, 1], BLUE, 60), d.array[2, 1]


def test_cmyk_jpeg_becomes_rgb():
    assert Image.open(io.BytesIO(cmyk_jpeg())).mode == "CMYK"
    d = decode_strict(cmyk_jpeg())
    assert d.array.shape == (12, 16, 3)
    assert d.array.dtype == np.uint8
    assert not d.gray
    assert close(d.array.reshape(-1, 3).mean(0), RED), d.array.reshape(-1, 3).mean(0)


def test_cmyk_jpeg_with_resize_becomes_rgb():
    d = decode_strict(cmyk_jpeg(), resize=Resize(6, 8))
    assert d.array.shape == (6, 8, 3)
    assert close(d.array.reshape(-1, 3).mean(0), RED)


def test_palette_becomes_rgb():
    data = palette_png()
    assert Image.open(io.BytesIO(data)).mode == "P"
    d = decode_strict(data)
    assert d.array.shape == (6, 8, 3)
    assert not d.gray
    assert tuple(d.array[0, 0]) == RED
    assert tuple(d.array[0, 7]) == BLUE


@pytest.mark.parametrize("transparency", [0, bytes([0, 128])], ids=["index", "bytes"])
def test_palette_with_transparency_becomes_rgb_without_warnings(transparency):
    data = palette_png(transparency)
    img = Image.open(io.BytesIO(data))
    assert img.mode == "P" and "transparency" in img.info
    d = decode_strict(data)  # raises if Pillow warns
    assert d.array.shape == (6, 8, 3)
    # alpha is dropped, not composited: the colours stay as they are
    assert tuple(d.array[0, 0]) == RED
    assert tuple(d.array[0, 7]) == BLUE


def test_rgba_becomes_rgb_dropping_alpha():
    d = decode_strict(rgba_png())
    assert d.array.shape == (6, 8, 3)
    assert (d.array == np.array([10, 200, 30], np.uint8)).all()


def test_la_becomes_gray():
    d = decode_strict(la_png())
    assert d.array.shape == (6, 8, 1)
    assert d.gray
    assert (d.array == 77).all()


@pytest.mark.parametrize("value,expected", [(40000, 156), (65535, 255), (0, 0), (257, 1), (32896, 128)])
def test_16bit_gray_is_scaled_not_clipped(value, expected):
    data = gray16_png(value)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    d = decode_strict(data)
    assert d.array.shape == (6, 8, 1)
    assert d.array.dtype == np.uint8
    assert d.gray
    assert (d.array == expected).all(), np.unique(d.array)


def test_16bit_gray_keeps_its_gradient():
    ramp = np.linspace(0, 65535, 8).round().astype(np.uint16)[None, :].repeat(4, 0)
    d = decode_strict(to_bytes(Image.fromarray(ramp)))
    row = d.array[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert (np.diff(row) > 0).all()  # strictly increasing: nothing is clipped to 255


def test_16bit_gray_with_three_channels():
    d = decode_strict(gray16_png(40000), channels=3)
    assert d.array.shape == (6, 8, 3)
    assert (d.array == 156).all()


def test_channels_3_on_gray_gives_three_equal_channels():
    data = to_bytes(Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)))
    d = decode_strict(data, channels=3)
    assert d.array.shape == (6, 8, 3)
    assert d.gray
    assert (d.array[..., 0] == np.arange(48).reshape(6, 8)).all()
    assert (d.array[..., 0] == d.array[..., 1]).all() and (d.array[..., 1] == d.array[..., 2]).all()


def test_channels_1_on_colour_gives_one_channel():
    d = decode_strict(to_bytes(Image.fromarray(quadrants(8, 6))), channels=1)
    assert d.array.shape == (6, 8, 1)
    expected = np.asarray(Image.fromarray(quadrants(8, 6)).convert("L"))
    assert (d.array[..., 0] == expected).all()


def test_channels_none_keeps_gray_and_colour():
    gray = decode_strict(to_bytes(Image.new("L", (8, 6), 9)))
    colour = decode_strict(to_bytes(Image.fromarray(quadrants(8, 6))))
    assert gray.array.shape == (6, 8, 1) and gray.gray
    assert colour.array.shape == (6, 8, 3) and not colour.gray


# ----------------------------------------------------------------------------- through cvkit prepare


MODE_IMAGES = {
    "exif6.jpg": lambda: exif_jpeg(6),
    "exif8.jpg": lambda: exif_jpeg(8),
    "cmyk.jpg": cmyk_jpeg,
    "palette.png": palette_png,
    "palette_trns.png": lambda: palette_png(bytes([0, 128])),
    "rgba.png": rgba_png,
    "la.png": la_png,
    "g16_40000.png": lambda: gray16_png(40000),
    "g16_65535.png": lambda: gray16_png(65535),
    "g16_0.png": lambda: gray16_png(0),
}


def _mode_folder(root: Path) -> dict[str, bytes]:
    files = {}
    for i, (name, build) in enumerate(MODE_IMAGES.items()):
        data = build()
        path = root / ("x" if i % 2 else "y") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[str(path.resolve())] = data
    return files


def _prepare(runner, src: Path, out: Path, *args: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Pillow's palette-transparency warning is a UserWarning
        result = run(runner, "prepare", src, "--out", out, "--val", "0", "--test", "0", *args)
    assert result.exit_code == 0, result.stderr
    return result


def _rows(out: Path, split: str = "train"):
    data = load_split(out, split)
    return {p: data.images[i] for i, p in enumerate(data.paths)}


def test_prepare_accepts_unusual_images_and_matches_decode_image(runner, tmp_path):
    files = _mode_folder(tmp_path / "src")
    out = tmp_path / "ds"
    _prepare(runner, tmp_path / "src", out, "--size", "10")
    assert (out / "rejected.csv").read_text().strip() == "path,reason"
    info = json.loads((out / "dataset.json").read_text())
    assert info["channels"] == 3  # some are colour
    cache = np.load(out / "cache" / "train_10x10.npy")
    assert cache.shape == (len(files), 10, 10, 3)

    rows = _rows(out)
    assert set(rows) == set(files)
    for path, data in files.items():
        expected = decode_strict(data, channels=3, resize=Resize(10, 10)).array
        assert (rows[path] == expected).all(), path

    by_name = {Path(p).name: arr for p, arr in rows.items()}
    assert (by_name["g16_40000.png"] == 156).all()
    assert (by_name["g16_65535.png"] == 255).all()
    assert (by_name["g16_0.png"] == 0).all()
    assert (by_name["la.png"] == 77).all()
    assert (by_name["rgba.png"] == np.array([10, 200, 30], np.uint8)).all()
    assert close(by_name["cmyk.jpg"].reshape(-1, 3).mean(0), RED)


def test_prepare_cache_equals_a_rebuilt_cache(runner, tmp_path):
    """The cache prepare writes (decoded with channels chosen afterwards) equals the one load_split
    rebuilds from the files (decoded with the dataset's channels)."""
    _mode_folder(tmp_path / "src")
    out = tmp_path / "ds"
    _prepare(runner, tmp_path / "src", out, "--size", "7x9")
    first = np.array(np.load(out / "cache" / "train_7x9.npy"))
    shutil.rmtree(out / "cache")
    rebuilt = load_split(out, "train")
    assert rebuilt.images.shape == first.shape == (len(MODE_IMAGES), 7, 9, 3)
    assert (np.asarray(rebuilt.images) == first).all()


def test_prepare_applies_exif_orientation(runner, tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "six.jpg").write_bytes(exif_jpeg(6))
    (src / "a" / "eight.jpg").write_bytes(exif_jpeg(8))
    for mode in ("crop", "squash"):
        out = tmp_path / f"ds_{mode}"
        _prepare(runner, src, out, "--size", "16x8", "--resize", mode)
        rows = {Path(p).name: arr for p, arr in _rows(out).items()}
        assert rows["six.jpg"].shape == (16, 8, 3)
        six, eight = rows["six.jpg"], rows["eight.jpg"]
        assert close(six[2, 6], RED, 60), (mode, six[2, 6])
        assert close(six[2, 1], BLUE, 60), (mode, six[2, 1])
        assert close(six[13, 1], WHITE, 60), (mode, six[13, 1])
        assert close(eight[13, 1], RED, 60), (mode, eight[13, 1])
        assert close(eight[2, 1], GREEN, 60), (mode, eight[2, 1])


def test_prepare_palette_transparency_emits_no_warning(runner, tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "p0.png").write_bytes(palette_png(0))
    (src / "a" / "p1.png").write_bytes(palette_png(bytes([0, 128])))
    out = tmp_path / "ds"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(runner, "prepare", src, "--out", out, "--val", "0", "--test", "0", "--size", "4")
    assert result.exit_code == 0, result.stderr
    assert not [w for w in caught if "PIL" in (w.filename or "") or "Palette" in str(w.message)], \
        [str(w.message) for w in caught]
    assert "Warning" not in result.stderr
    rows = _rows(out)
    assert all(arr.shape == (4, 4, 3) for arr in rows.values())


# ----------------------------------------------------------------------------- channels


def _gray_folder(root: Path) -> Path:
    for i in range(3):
        make_image(root / "a" / f"{i}.png", seed=i, mode="L")
        make_image(root / "b" / f"{i}.png", seed=10 + i, mode="L")
    (root / "a" / "la.png").write_bytes(la_png())
    (root / "b" / "g16.png").write_bytes(gray16_png(40000))
    return root


def test_channels_auto_all_gray_gives_one(runner, tmp_path):
    src = _gray_folder(tmp_path / "src")
    out = tmp_path / "ds"
    result = _prepare(runner, src, out, "--size", "6", "--json")
    assert json.loads(result.stdout)["channels"] == 1
    assert json.loads((out / "dataset.json").read_text())["channels"] == 1
    cache = np.load(out / "cache" / "train_6x6.npy")
    assert cache.shape == (8, 6, 6, 1)
    rows = {Path(p).name: arr for p, arr in _rows(out).items()}
    assert (rows["g16.png"] == 156).all()
    assert (rows["la.png"] == 77).all()


def test_channels_auto_any_colour_gives_three(runner, tmp_path):
    src = _gray_folder(tmp_path / "src")
    make_image(src / "a" / "colour.png", seed=99, mode="RGB")
    out = tmp_path / "ds"
    result = _prepare(runner, src, out, "--size", "6", "--json")
    assert json.loads(result.stdout)["channels"] == 3
    cache = np.load(out / "cache" / "train_6x6.npy")
    assert cache.shape == (9, 6, 6, 3)
    rows = {Path(p).name: arr for p, arr in _rows(out).items()}
    for name, arr in rows.items():
        if name != "colour.png":  # gray images are repeated over three equal channels
            assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all(), name
    assert not (rows["colour.png"][..., 0] == rows["colour.png"][..., 1]).all()
    assert (rows["g16.png"] == 156).all()


def test_prepare_channels_3_on_gray_gives_three_equal_channels(runner, tmp_path):
    src = _gray_folder(tmp_path / "src")
    out = tmp_path / "ds"
    _prepare(runner, src, out, "--size", "6", "--channels", "3")
    cache = np.load(out / "cache" / "train_6x6.npy")
    assert cache.shape == (8, 6, 6, 3)
    assert (cache[..., 0] == cache[..., 1]).all() and (cache[..., 1] == cache[..., 2]).all()
    assert json.loads((out / "dataset.json").read_text())["channels"] == 3
    one = tmp_path / "ds1"
    _prepare(runner, src, one, "--size", "6")
    gray = np.load(one / "cache" / "train_6x6.npy")
    assert (gray[..., 0] == cache[..., 0]).all()


def test_channels_1_on_colour_gives_one(runner, class_folders, tmp_path):
    out = tmp_path / "ds"
    result = _prepare(runner, class_folders, out, "--size", "6", "--channels", "1", "--json")
    assert json.loads(result.stdout)["channels"] == 1
    cache = np.load(out / "cache" / "train_6x6.npy")
    assert cache.shape == (30, 6, 6, 1)
    rows = _rows(out)
    for path, arr in rows.items():
        expected = decode_image(Path(path).read_bytes(), channels=1, resize=Resize(6, 6)).array
        assert (arr == expected).all()


# ----------------------------------------------------------------------------- resize modes


def _stripes(width: int = 36, height: int = 12) -> np.ndarray:
    """Vertical thirds red | green | blue."""
    arr = np.zeros((height, width, 3), np.uint8)
    t = width // 3
    arr[:, :t], arr[:, t:2 * t], arr[:, 2 * t:] = RED, GREEN, BLUE
    return arr


@pytest.mark.parametrize("mode", ["crop", "squash"])
@pytest.mark.parametrize("shape", [(12, 36), (40, 10), (9, 9)], ids=["wide", "tall", "square"])
def test_resize_gives_requested_height_and_width(runner, tmp_path, mode, shape):
    src = tmp_path / "src"
    for i in range(3):
        make_image(src / "a" / f"{i}.png", seed=i, size=(shape[1], shape[0]))
    out = tmp_path / "ds"
    args = ["--size", "8x12"] + ([] if mode == "crop" else ["--resize", mode])
    _prepare(runner, src, out, *args)
    assert json.loads((out / "dataset.json").read_text())["size"] == [8, 12]
    cache = np.load(out / "cache" / "train_8x12.npy")
    assert cache.shape == (3, 8, 12, 3)
    assert load_split(out, "train").images.shape == (3, 8, 12, 3)
    assert json.loads((out / "dataset.json").read_text())["resize"] == mode


def test_crop_and_squash_differ_on_a_non_square_input(runner, tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    Image.fromarray(_stripes()).save(src / "a" / "stripes.png")
    caches = {}
    for mode in ("crop", "squash"):
        out = tmp_path / mode
        _prepare(runner, src, out, "--size", "8x12", "--resize", mode)
        caches[mode] = np.load(out / "cache" / "train_8x12.npy")[0].astype(int)
    crop, squash = caches["crop"], caches["squash"]
    # squash keeps all three thirds (red fills the left quarter); crop keeps the centre 18 columns,
    # so red is only a sliver at the edge and column 3 is already green
    assert squash[:, 3, 0].min() > squash[:, 3, 1].max(), squash[:, 3]
    assert close(crop[:, 3].mean(0), GREEN, 30), crop[:, 3]
    assert close(crop[:, 6].mean(0), GREEN, 10) and close(squash[:, 6].mean(0), GREEN, 10)
    assert squash[:, 11, 2].min() > 200 and crop[:, 11, 2].min() > 100


def test_decode_image_crop_and_squash_shapes():
    data = to_bytes(Image.fromarray(_stripes()))
    for mode in ("crop", "squash"):
        assert decode_strict(data, resize=Resize(8, 12, mode)).array.shape == (8, 12, 3)
        assert decode_strict(data, resize=Resize(12, 8, mode)).array.shape == (12, 8, 3)
    crop = decode_strict(data, resize=Resize(12, 12, "crop")).array  # centre square: green only
    assert close(crop[:, 2:10].reshape(-1, 3).mean(0), GREEN, 10)
