"""HTML built from escaped parts: the one way report sections make markup.

Every string that is not :class:`Markup` is escaped (``&<>"'``) where it is placed, in text and in
attribute values alike, so a class named ``<img src=x onerror=alert(1)>`` or a path with quotes is
shown as text. Sections build their markup with :func:`el` and the helpers below and never format
HTML from strings themselves.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any


class Markup(str):
    """A string that is already HTML (made by this module): placed as it is, never escaped again."""


Child = Any  # str (escaped), Markup (as is), None (skipped), a number, or an iterable of those


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _children(children: Iterable[Child]) -> str:
    parts = []
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, Markup):
            parts.append(child)
        elif isinstance(child, (str, int, float)):
            parts.append(esc(child))
        else:
            parts.append(_children(child))
    return "".join(parts)


VOID = {"img", "br", "hr", "meta", "link", "col", "input"}


def el(tag: str, *children: Child, **attrs: Any) -> Markup:
    """``<tag attrs>children</tag>``; ``class_`` gives ``class``, ``data_x`` gives ``data-x``; an attribute
    that is None or False is left out, True is written bare."""
    parts = [tag]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(name if value is True else f'{name}="{esc(value)}"')
    opening = f"<{' '.join(parts)}>"
    if tag in VOID:
        return Markup(opening)
    return Markup(f"{opening}{_children(children)}</{tag}>")


def join(*children: Child) -> Markup:
    return Markup(_children(children))


def number(value: Any, digits: int = 4) -> str:
    """A figure as the page shows it: floats to ``digits`` significant places, integers with separators."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], sortable: bool = True, caption: str | None = None,
          class_: str | None = None) -> Markup:
    """A table; with ``sortable`` a click on a column's header sorts its rows (the page's script: numbers
    by value, text alphabetically; a second click reverses). Cells that are numbers keep their value in
    ``data-value`` so that sorting does not read the formatted text. The table comes in a ``div.scroll``
    that scrolls sideways on a narrow screen instead of widening the page."""
    head = el("tr", *(el("th", name, scope="col") for name in header))
    body = []
    for row in rows:
        cells = []
        for value in row:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                cells.append(el("td", number(value), data_value=repr(float(value)), class_="num"))
            else:
                cells.append(el("td", value))
        body.append(el("tr", *cells))
    classes = " ".join(c for c in ("sortable" if sortable else "", class_ or "") if c) or None
    return el("div", el("table", el("caption", caption) if caption else None, el("thead", head), el("tbody", *body),
                        class_=classes), class_="scroll")


def figure(src: str, caption: Child = None, alt: str = "", width: int | None = None) -> Markup:
    """A picture the page holds (``src`` from :meth:`cvkit.files.report.PageWriter.image`) with its caption."""
    return el("figure", el("img", src=src, alt=alt or (caption if isinstance(caption, str) else ""), loading="lazy",
                           width=width), el("figcaption", caption) if caption is not None else None)


def note(*children: Child) -> Markup:
    """A line in the page's muted style: where a figure comes from, why something is not shown."""
    return el("p", *children, class_="note")


def section(title: str, *children: Child, id: str | None = None, note: Child = None) -> Markup:
    """A titled part of the page; ``note`` a line under the title (what the report computed, where a file is from)."""
    return el("section", el("h2", title), el("p", note, class_="note") if note is not None else None, *children, id=id)


def definitions(pairs: Iterable[tuple[str, Child]]) -> Markup:
    """A two-column list of names and values."""
    return el("dl", *(join(el("dt", name), el("dd", value)) for name, value in pairs))
