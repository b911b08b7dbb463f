"""``cvkit retrieve query``'s contact sheet: each query on the left, its neighbours to the right,
each titled with its label and score. Drawn with Pillow: one row per query, tiles enlarged so
that 28-32 px images stay legible."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from cvkit.files.atomic import atomic_path
from cvkit.plots.explain import _font

TILE = 112  # pixels per image side on the sheet
CAPTION = 34  # room under each tile for two lines of text
GAP = 6
QUERY_GAP = 18  # wider gap between the query and its neighbours
MISSING = (200, 200, 200)  # a neighbour whose file can no longer be read


def _tile(image: np.ndarray | None) -> Image.Image:
    if image is None:
        return Image.new("RGB", (TILE, TILE), MISSING)
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    h, w = rgb.shape[:2]
    scale = TILE / max(h, w)
    picture = Image.fromarray(np.ascontiguousarray(rgb)).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                                  Image.Resampling.NEAREST if scale >= 2 else
                                                                  Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (TILE, TILE), (255, 255, 255))
    canvas.paste(picture, ((TILE - picture.width) // 2, (TILE - picture.height) // 2))
    return canvas


def _fit(text: str, chars: int = 17) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "~"


def write_contact_sheet(rows: Sequence[tuple[np.ndarray, str, Sequence[tuple[np.ndarray | None, str, float]]]],
                        path: str | os.PathLike) -> None:
    """``rows``: per query its image (H x W x 1|3 uint8), its name, and its neighbours as (image or
    None when unreadable, label, score), best first."""
    k = max((len(n) for _, _, n in rows), default=0)
    width = GAP + TILE + QUERY_GAP + k * (TILE + GAP)
    height = GAP + len(rows) * (TILE + CAPTION + GAP)
    sheet = Image.new("RGB", (width, max(height, TILE)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font()
    for r, (query, name, neighbours) in enumerate(rows):
        y = GAP + r * (TILE + CAPTION + GAP)
        sheet.paste(_tile(query), (GAP, y))
        draw.rectangle([GAP - 2, y - 2, GAP + TILE + 1, y + TILE + 1], outline=(30, 90, 200), width=2)
        draw.text((GAP, y + TILE + 2), f"query\n{_fit(name)}", fill=(30, 90, 200), font=font)
        for j, (image, label, score) in enumerate(neighbours):
            x = GAP + TILE + QUERY_GAP + j * (TILE + GAP)
            sheet.paste(_tile(image), (x, y))
            draw.text((x, y + TILE + 2), f"{j + 1}. {_fit(label, 14)}\n{score:.3f}", fill=(0, 0, 0), font=font)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG", compress_level=1)
