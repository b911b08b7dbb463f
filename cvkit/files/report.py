"""The folder ``cvkit report`` writes: ``index.html`` and the pictures it shows, ``images/NNNN-name.png``.

The page is the only reader of these pictures, and this module the only writer: every picture is decoded
and written again as a PNG under a name made here (a counter and a sanitized stem), so no path from a
dataset or a run ever reaches the page, and nothing the page shows lies outside its folder. With
``single_file`` the pictures are embedded in the page as ``data:`` URIs instead.
"""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

from PIL import Image

from cvkit.errors import ManifestError
from cvkit.files.atomic import atomic_path
from cvkit.files.jsonio import write_json
from cvkit.files.outputs import Own, holds_only

PAGE = "index.html"
IMAGES = "images"
COMPUTED = "computed"  # what the report computed because the run had not written it (evaluate's report, ...)
REPORT_FILES = (PAGE, IMAGES, COMPUTED, "report.json")
MAX_SIDE = 1600  # a larger picture is thumbnailed to this many pixels on its longer side

def _computed(folder: Path) -> Path | None:
    """Nothing in ``computed/`` is a user's: the report alone writes there, through the other commands' library calls."""
    return None


own_report: Own = holds_only((PAGE, "report.json"), {IMAGES: holds_only(("*.png",)), COMPUTED: _computed})


def _stem(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")[:40] or "image"


class PageWriter:
    """Builds the report inside ``folder`` (a stage folder that takes ``--out``'s place when complete)."""

    def __init__(self, folder: Path, single_file: bool = False) -> None:
        self.folder = Path(folder)
        self.single_file = single_file
        self.count = 0

    def image(self, source: str | os.PathLike | Image.Image | bytes, name: str = "image") -> str:
        """The ``src`` of a picture in the page: the picture decoded, thumbnailed to ``MAX_SIDE`` and
        written as ``images/NNNN-name.png`` (or a data URI with ``single_file``)."""
        if isinstance(source, Image.Image):
            img = source
        else:
            what = "picture" if isinstance(source, bytes) else str(source)
            try:
                img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
                img.load()
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise ManifestError(f"{what} cannot be shown in the report ({e}); rerun the command that wrote it") from e
        if img.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            img = img.convert("RGB")
        if max(img.size) > MAX_SIDE:
            img = img.copy()
            img.thumbnail((MAX_SIDE, MAX_SIDE))
        self.count += 1
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        if self.single_file:
            return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        relative = f"{IMAGES}/{self.count:04d}-{_stem(name)}.png"
        target = self.folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(buffer.getvalue())
        return relative

    @property
    def computed(self) -> Path:
        """Where the report writes what it computes (evaluate's report of the split, ...)."""
        return self.folder / COMPUTED

    def write_summary(self, summary: dict) -> None:
        """``report.json``: what the page shows (kind, runs, split) and what the report computed."""
        write_json(self.folder / "report.json", summary)

    def write_page(self, html: str) -> Path:
        with atomic_path(self.folder / PAGE) as tmp:
            tmp.write_text(html, encoding="utf-8")
        return self.folder / PAGE
