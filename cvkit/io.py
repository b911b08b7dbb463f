"""Safe image reading, atomic file writes, and the readers and writers of every file contract.

Only this module knows the layout of ``manifest.csv``, ``classes.json``, ``rejected.csv``,
``dataset.json`` and ``stats.json`` (README.md, "File contracts"). Every JSON file cvkit writes
carries ``"format": 1``; a reader refuses a format it does not know.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cvkit.errors import ManifestError

FORMAT = 1
SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "label", "split", "fold", "sha1")
REJECTED_COLUMNS = ("path", "reason")


# ----------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write a versioned JSON file atomically (``format`` first, stable key order)."""
    write_text(path, json.dumps({"format": FORMAT, **data}, indent=2) + "\n")


def read_json(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Read a cvkit JSON file, checking it parses and has a known ``format``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing: {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); rewrite it or rerun the command that made it") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{path} has format {data.get('format') if isinstance(data, dict) else '?'}, "
                            f"this cvkit reads format {FORMAT}; rerun the command that made it")
    return data


# ----------------------------------------------------------------------------- dataset files


def write_csv(path: str | os.PathLike, frame: "pd.DataFrame", float_format: str | None = None) -> None:  # noqa: F821
    """Every CSV cvkit writes: no index, ``\n`` line ends, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n", float_format=float_format)


def write_manifest(path: str | os.PathLike, frame: "pd.DataFrame") -> None:  # noqa: F821
    write_csv(path, frame)


def read_manifest(dataset: str | os.PathLike) -> "pd.DataFrame":  # noqa: F821
    """Read ``DATASET/manifest.csv``, checking its columns, splits and folds."""
    import pandas as pd

    path = Path(dataset) / "manifest.csv"
    if not path.is_file():
        raise ManifestError(f"{path} is missing: {dataset} is not a dataset directory; create one with 'cvkit prepare'")
    try:
        frame = pd.read_csv(path, dtype={"path": str, "label": str, "split": str, "sha1": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"{path} cannot be parsed ({e}); rerun 'cvkit prepare'") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path} lacks the column(s) {', '.join(missing)}; rerun 'cvkit prepare'")
    bad = ~frame["split"].isin(SPLITS)
    if bad.any():
        row = int(bad.idxmax())
        raise ManifestError(f"{path} row {row + 2}: split '{frame['split'][row]}' is not one of {', '.join(SPLITS)}")
    try:
        frame["fold"] = frame["fold"].astype(int)
    except (TypeError, ValueError):
        raise ManifestError(f"{path}: the fold column must hold integers (-1 when unused)") from None
    return frame


def write_classes(path: str | os.PathLike, classes: list[str]) -> None:
    write_json(path, {"classes": list(classes)})


def read_classes(dataset: str | os.PathLike) -> list[str]:
    path = Path(dataset) / "classes.json"
    data = read_json(path, "rerun 'cvkit prepare' to write it")
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ManifestError(f"{path}: 'classes' must be a non-empty list of names; rerun 'cvkit prepare'")
    return classes


def write_rejected(path: str | os.PathLike, rows: list[tuple[str, str]]) -> None:
    import pandas as pd

    write_csv(path, pd.DataFrame(rows, columns=list(REJECTED_COLUMNS)))


def read_dataset_info(dataset: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(dataset) / "dataset.json", "rerun 'cvkit prepare' to write it")


def read_stats(dataset: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(dataset) / "stats.json", f"compute it with 'cvkit normalize {dataset}'")


def sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# ----------------------------------------------------------------------------- images


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
        from cvkit.errors import OptionError

        raise OptionError(f"--size '{text}' is not a size; use N (square) or HxW, for example --size 64 or --size 48x64")
    return values[0], values[1]


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float images to 8 bits by their range, not by clipping."""
    arr = np.asarray(img)
    if img.mode == "F":
        hi = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        out = np.clip(np.nan_to_num(arr) / hi * 255.0, 0, 255)
    else:  # I;16, I;16B, I;16L, I: 16-bit samples (a value of 40000 becomes 156)
        out = np.clip(arr.astype(np.float64) / 257.0, 0, 255)
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


def decode_image(data: bytes, channels: int | None = None, resize: Resize | None = None,
                 max_pixels: int | None = None) -> Decoded:
    """Decode and check image bytes; raise :class:`BadImage` with the reason when unusable.

    Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is enforced here, per call, and
    ``max_pixels`` may only lower it: cvkit never lifts it. EXIF orientation is applied. With ``resize``, JPEG draft mode decodes
    at a reduced scale first when shrinking.
    """
    if not data:
        raise BadImage("empty: the file has 0 bytes")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            # We check the pixel count ourselves below; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        w, h = img.size
        if limit and w * h > limit:
            raise BadImage(f"too large: {w}x{h} pixels is over the {limit:,}-pixel limit (decompression bomb guard)")
        if resize is not None and img.format == "JPEG":
            side = max(resize.height, resize.width)
            img.draft(img.mode if img.mode in ("L", "RGB") else None, (side, side))
        img.load()
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
    return Decoded(arr, gray)


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


# ----------------------------------------------------------------------------- run directory


def write_model_info(run: str | os.PathLike, info: dict[str, Any]) -> None:
    write_json(Path(run) / "model.json", info)


def read_model_info(run: str | os.PathLike) -> dict[str, Any]:
    path = Path(run) / "model.json"
    if not path.is_file():
        raise ManifestError(f"{path} is missing: {run} is not a run directory; create one with 'cvkit train'")
    info = read_json(path, "")
    for key in ("arch", "classes", "in_chans", "input_size", "mean", "std", "loss"):
        if key not in info:
            raise ManifestError(f"{path} lacks '{key}'; retrain with 'cvkit train'")
    return info


def write_metrics(run: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """``metrics.csv``: one row per epoch, rewritten whole (atomically) after each epoch."""
    import pandas as pd

    write_csv(Path(run) / "metrics.csv", pd.DataFrame(rows), "%.6g")


def save_weights(path: str | os.PathLike, state: dict[str, "torch.Tensor"], metadata: dict[str, str] | None = None) -> None:  # noqa: F821
    """Weights as safetensors: loading them never executes code."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_weights_file(path: str | os.PathLike) -> dict[str, "torch.Tensor"]:  # noqa: F821
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ManifestError(f"{path} is not a readable safetensors file ({e}); retrain or restore it") from None


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def torch_load_safe(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only, never code."""
    import pickle

    import torch

    from cvkit.errors import UnsafeCheckpoint

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing: no {what} to load") from None
    except pickle.UnpicklingError as e:
        # torch's allow-list stopped at something other than tensors and plain containers: a function
        # or class (code that would run), or bytes that are not a torch.save file at all.
        raise UnsafeCheckpoint(f"{path} is not a plain file of tensors that loads without running code "
                               f"({str(e).splitlines()[0][:120]}); cvkit refuses to unpickle anything else: use "
                               f"a safetensors file or a state dict saved with torch.save") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ManifestError(f"{path} is not a readable {what} ({str(e).splitlines()[0][:160]})") from None
