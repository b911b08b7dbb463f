"""Safe image decoding, the same everywhere: ``prepare``, the cache, and the runtime's new images.

Every input is checked while it is decoded; a bad one raises :class:`BadImage` with the reason,
which ends up in a ``rejected.csv``. Modes are normalized to ``L`` or ``RGB`` one way only.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cvkit.errors import OptionError
from cvkit.files.atomic import atomic_path
from cvkit.files.dataset import IGNORE_INDEX

# Larger sizes would make a cache of many GB per thousand images and decode buffers that the
# machine cannot hold; no CNN cvkit trains takes more than this side.
MAX_SIDE = 4096


def sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class BadImage(Exception):
    """An input image that is skipped and listed in rejected.csv.

    The message is the reason, ``"KIND: detail"`` with KIND one of ``empty``, ``not an image``,
    ``truncated``, ``unreadable``, ``too large``, ``duplicate`` (summaries count by KIND).
    """


@dataclass(frozen=True)
class Resize:
    """How images are brought to a fixed size: ``crop`` (shorter side, then centre crop) or ``squash``."""

    height: int
    width: int
    mode: str = "crop"

    def point_map(self, height: int, width: int) -> tuple[float, float, float, float]:
        """``(sx, sy, ox, oy)``: where decoding a ``height`` x ``width`` image at this size puts a point:
        ``(x * sx + ox, y * sy + oy)``, in continuous pixel coordinates (pixel column j spans [j, j + 1)).

        ``squash`` stretches each axis; ``crop`` is Pillow's ``ImageOps.fit``: the largest centred box of
        the output's aspect ratio, scaled to the output (what falls outside the box is cut off)."""
        if self.mode == "squash" or height * self.width == width * self.height:
            return self.width / width, self.height / height, 0.0, 0.0
        ratio = self.width / self.height
        if width / height >= ratio:
            crop_w, crop_h = ratio * height, float(height)
        else:
            crop_w, crop_h = float(width), width / ratio
        sx, sy = self.width / crop_w, self.height / crop_h
        return sx, sy, -(width - crop_w) / 2 * sx, -(height - crop_h) / 2 * sy


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"64"`` -> (64, 64); ``"48x64"`` -> (48, 64) (height x width)."""
    if text is None or text == "":
        return None
    parts = str(text).lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise OptionError(f"--size '{text}' is not a size; use N (square) or HxW, for example --size 64 or --size 48x64")
    if max(values) > MAX_SIDE:
        raise OptionError(f"--size '{text}' is over the largest side cvkit handles, {MAX_SIDE} pixels; "
                          f"images are resized to --size for every image, so use a smaller size such as 224")
    return values[0], values[1]


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float images to 8 bits by their range, not by clipping.

    Integer samples from 0 to 65535 are 16-bit ones (a value of 40000 becomes 156), whatever the mode
    stores them in (``I;16``, or ``I``, as Pillow opens 16-bit PNGs and 32-bit TIFFs); float samples
    from 0 to 1 or from 0 to 255 keep that scale. Samples outside those ranges (a 32-bit TIFF holding
    values up to 2**31, negative values, floats above 255) fit no fixed scale: they are stretched from
    the image's own minimum (0) to its maximum (255), where clipping would make the image solid white.
    NaN becomes 0, +inf 255.
    """
    arr = np.asarray(img).astype(np.float64)
    values = arr[np.isfinite(arr)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if img.mode == "F" and lo >= 0 and hi <= 255:
        base, top = 0.0, 1.0 if hi <= 1.0 else 255.0
    elif img.mode != "F" and lo >= 0 and hi <= 65535:
        base, top = 0.0, 65535.0
    else:
        base, top = lo, (hi if hi > lo else lo + 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        out = (arr - base) * (255.0 / (top - base))
    out = np.clip(np.nan_to_num(out, nan=0.0, posinf=255.0, neginf=0.0), 0, 255)
    return Image.fromarray(np.rint(out).astype(np.uint8), "L")


def normalize_mode(img: Image.Image, channels: int | None) -> Image.Image:
    """Convert any Pillow mode to ``L`` or ``RGB`` the same way everywhere.

    ``channels`` None keeps grayscale images as ``L`` and makes everything else ``RGB``.
    Alpha is dropped (as torchvision and timm loaders do); palette transparency goes through RGBA
    so Pillow applies it rather than warning.
    """
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("1", "LA", "La"):
        img = img.convert("L")
    elif img.mode not in ("L", "RGB"):
        img = img.convert("RGB")  # RGBA, RGBa, CMYK, YCbCr, LAB, HSV
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    return img


@dataclass
class Decoded:
    array: np.ndarray  # H x W x C uint8
    gray: bool  # the image had one channel, or three equal ones
    size: tuple[int, int] = (0, 0)  # (height, width) of the image as stored, EXIF orientation applied, before resizing


def _open(data: bytes, max_pixels: int | None,
          resize: Resize | None = None) -> tuple[Image.Image, str | None, tuple[int, int]]:
    """Open, check and load image bytes, EXIF orientation applied: the image, its file format and its
    (height, width) as stored (oriented), or :class:`BadImage` with the reason. ``resize`` lets a JPEG
    decode at a reduced scale first (draft mode)."""
    if not data:
        raise BadImage("empty: the file has 0 bytes")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            # We check the pixel count ourselves below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        w, h = img.size
        if _orientation(img) in (5, 6, 7, 8):  # EXIF Orientation 5-8 turn the image by 90 degrees
            w, h = h, w
        if limit and w * h > limit:
            raise BadImage(f"too large: {w}x{h} pixels is over the {limit:,}-pixel limit (decompression bomb guard)")
        if resize is not None and img.format == "JPEG":
            side = max(resize.height, resize.width)
            img.draft(img.mode if img.mode in ("L", "RGB") else None, (side, side))
        img.load()
        fmt = img.format
        img = ImageOps.exif_transpose(img)
    except BadImage:
        raise
    except Image.DecompressionBombError as e:
        raise BadImage(f"too large: {e}") from None
    except UnidentifiedImageError:
        raise BadImage("not an image: Pillow cannot identify the file") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        message = str(e)
        if "truncated" in message.lower() or isinstance(e, EOFError):
            raise BadImage(f"truncated: {message or 'unexpected end of data'}") from None
        raise BadImage(f"unreadable: {message}") from None
    return img, fmt, (h, w)


def decode_image(data: bytes, channels: int | None = None, resize: Resize | None = None,
                 max_pixels: int | None = None) -> Decoded:
    """Decode and check image bytes; raise :class:`BadImage` with the reason when unusable.

    Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is enforced here, per call, and
    ``max_pixels`` may only lower it: cvkit never lifts it. EXIF orientation is applied. With ``resize``, JPEG draft mode decodes
    at a reduced scale first when shrinking.
    """
    img, _, (h, w) = _open(data, max_pixels, resize)
    img = normalize_mode(img, channels)
    if resize is not None and img.size != (resize.width, resize.height):
        if resize.mode == "squash":
            img = img.resize((resize.width, resize.height), Image.Resampling.BILINEAR)
        else:
            img = ImageOps.fit(img, (resize.width, resize.height), Image.Resampling.BILINEAR)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
        gray = True
    else:
        gray = bool((arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 1] == arr[:, :, 2]).all())
    return Decoded(arr, gray, (h, w))


# Modes whose samples are class indices as they are: a palette image's index (not its colour), a gray
# level, a bilevel bit, a 16/32-bit integer that fits 0 to 255. Alpha (LA, PA) is dropped.
MASK_MODES = ("P", "PA", "L", "LA", "1", "I", "I;16", "I;16L", "I;16B", "I;16N")
MASK_FIX = "save masks as palette or grayscale PNGs of class indices"


@dataclass
class DecodedMask:
    array: np.ndarray  # H x W uint8 class indices (IGNORE_INDEX: ignore), resized when asked
    size: tuple[int, int]  # (height, width) of the mask file, EXIF orientation applied, before resizing
    values: tuple[int, ...]  # the class indices the file holds, ascending, IGNORE_INDEX left out


def decode_mask(data: bytes, resize: Resize | None = None, image_size: tuple[int, int] | None = None,
                classes: int | None = None, max_pixels: int | None = None) -> DecodedMask:
    """Decode and check a segmentation mask (a pixel's value is its class, ``IGNORE_INDEX`` = ignore);
    :class:`BadImage` with a reason starting ``mask:`` when unusable.

    ``image_size``: the (height, width) of its image, which the mask must have; ``classes``: how many
    classes there are (a value from ``classes`` up, other than ``IGNORE_INDEX``, is refused). With
    ``resize`` the mask goes through exactly the geometry :func:`decode_image` gives its image (the same
    centred crop box or stretch), sampled with nearest neighbour so that every value stays a class. (A
    JPEG image that draft mode decodes at 1/2 to 1/8 scale first may sit up to half a cache pixel off.)
    """
    try:
        img, fmt, (h, w) = _open(data, max_pixels)
    except BadImage as e:
        raise BadImage(f"mask: {e}") from None
    if image_size is not None and (h, w) != tuple(image_size):
        raise BadImage(f"mask: {w}x{h} pixels, but its image is {image_size[1]}x{image_size[0]}; a mask must have "
                       f"its image's size")
    if fmt == "JPEG":
        raise BadImage(f"mask: JPEG is lossy and blurs the class indices at every edge; {MASK_FIX}")
    if img.mode in ("RGB", "RGBA", "RGBX", "RGBa"):
        raise BadImage(f"mask: {img.mode} without a palette; {MASK_FIX}")
    if img.mode not in MASK_MODES:
        raise BadImage(f"mask: mode {img.mode} holds no class indices; {MASK_FIX}")
    if img.mode in ("LA", "PA"):
        img = img.getchannel(0)
    arr = np.asarray(img)
    if arr.dtype != np.uint8:  # bool (mode 1) or 16/32-bit integers
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > IGNORE_INDEX:
            raise BadImage(f"mask: value {hi if hi > IGNORE_INDEX else lo} is not a class (a mask holds 0 to "
                           f"{IGNORE_INDEX - 1}, {IGNORE_INDEX} = ignore)")
        arr = arr.astype(np.uint8)
    counts = np.bincount(arr.ravel(), minlength=256)
    counts[IGNORE_INDEX] = 0
    values = tuple(int(v) for v in np.flatnonzero(counts))
    if classes is not None and values and values[-1] >= classes:
        raise BadImage(f"mask: value {values[-1]} is not a class (the {classes} classes are 0 to {classes - 1}, "
                       f"{IGNORE_INDEX} = ignore)")
    if resize is not None and (w, h) != (resize.width, resize.height):
        plane, target = Image.fromarray(np.ascontiguousarray(arr), "L"), (resize.width, resize.height)
        if resize.mode == "squash":
            plane = plane.resize(target, Image.Resampling.NEAREST)
        else:
            plane = ImageOps.fit(plane, target, Image.Resampling.NEAREST)
        arr = np.asarray(plane)
    return DecodedMask(arr, (h, w), values)


def _orientation(img: Image.Image) -> int:
    """The EXIF Orientation tag (1 when absent or unreadable: exif_transpose then leaves the image as is)."""
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block is Pillow's to ignore, not a reason to reject
        return 1


def read_image_file(path: str | os.PathLike, channels: int | None = None, resize: Resize | None = None,
                    max_pixels: int | None = None) -> tuple[Decoded, str]:
    """Read, hash and decode one image file; returns the decoded image and the sha1 of its bytes."""
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise BadImage("unreadable: is a directory") from None
    except OSError as e:
        raise BadImage(f"unreadable: {e.strerror or e}") from None
    return decode_image(data, channels, resize, max_pixels), sha1_bytes(data)


def encode_png(array: np.ndarray) -> bytes:
    """Encode an H x W (x 1|3) uint8 array as PNG bytes (deterministic, so its sha1 is stable)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """An H x W (x 1|3) uint8 array as a PNG file, written atomically, pixel for pixel (no resize)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_png(array))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file as :func:`decode_image` orients it (EXIF), reading only the header."""
    with Image.open(path) as img:
        w, h = img.size
        orientation = img.getexif().get(0x0112, 1)  # EXIF Orientation: 5-8 turn the image by 90 degrees
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)
