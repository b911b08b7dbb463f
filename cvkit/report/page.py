"""The page around the sections: its style, its one script (sortable tables) and its security policy.

The page loads nothing from any host: the style and the script are inline, and a Content-Security-Policy
allows only them (the script by its hash, so an injected ``onerror=`` or ``<script>`` would not run even
if a string escaped :mod:`cvkit.report.html`), pictures from the page's own folder or ``data:`` URIs, and
no connection, font, frame or form.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cvkit import __version__
from cvkit.report.html import Markup, el, esc, join

STYLE = """
:root { --fg: #1d232b; --muted: #5b6674; --line: #d8dde3; --bg: #ffffff; --band: #f4f6f8; --accent: #2f6fb3; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); }
header { background: var(--band); border-bottom: 1px solid var(--line); padding: 12px 16px; }
header h1 { margin: 0; font-size: 1.3em; overflow-wrap: anywhere; }
header p { margin: 4px 0 0; color: var(--muted); overflow-wrap: anywhere; }
nav { display: flex; flex-wrap: wrap; gap: 4px 14px; margin-top: 8px; }
nav a { color: var(--accent); text-decoration: none; }
main { max-width: 1240px; margin: 0 auto; padding: 8px 16px 40px; }
section { border-bottom: 1px solid var(--line); padding: 10px 0 18px; }
h2 { font-size: 1.15em; margin: 10px 0 6px; }
h3 { font-size: 1em; margin: 12px 0 4px; }
.note { color: var(--muted); margin: 0 0 8px; overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 6px 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 9px; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; overflow-wrap: normal; }
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
figure { margin: 6px 0; display: inline-block; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; image-rendering: auto; }
figcaption { color: var(--muted); font-size: 0.88em; overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; }
.grid figure { margin: 0; }
.grid img { width: 100%; image-rendering: pixelated; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.wrong { color: #b3261e; }
.right { color: #1e7b34; }
footer { color: var(--muted); font-size: 0.85em; max-width: 1240px; margin: 0 auto; padding: 0 16px 24px; }
@media (max-width: 600px) { body { font-size: 14px; } main { padding: 4px 8px 30px; }
  dl { grid-template-columns: 1fr; } dt { margin-top: 6px; } .grid { grid-template-columns: repeat(2, 1fr); } }
"""

# Sorts a table.sortable by the clicked column: numbers by data-value, text alphabetically.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("thead th");
  heads.forEach(function (th, column) {
    th.setAttribute("tabindex", "0");
    function sort() {
      var up = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column], y = b.cells[column];
        var vx = x && x.hasAttribute("data-value") ? parseFloat(x.getAttribute("data-value")) : null;
        var vy = y && y.hasAttribute("data-value") ? parseFloat(y.getAttribute("data-value")) : null;
        var order = (vx !== null && vy !== null) ? vx - vy
          : (x ? x.textContent : "").localeCompare(y ? y.textContent : "", undefined, {numeric: true});
        return up ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
  });
});
"""


def _hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


POLICY = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
          f"script-src '{_hash(SCRIPT)}'; base-uri 'none'; form-action 'none'")


def render(title: str, subtitle: str, sections: Sequence[Markup], nav: Sequence[tuple[str, str]] = ()) -> str:
    """The whole page: ``sections`` under a header with ``title``, ``subtitle`` and links to the section ids."""
    links = el("nav", *(el("a", label, href=f"#{anchor}") for anchor, label in nav)) if nav else None
    head = join(Markup('<meta charset="utf-8">'),
                el("meta", http_equiv="Content-Security-Policy", content=POLICY),
                el("meta", name="viewport", content="width=device-width, initial-scale=1"),
                el("meta", name="generator", content=f"cvkit {__version__}"),
                el("title", title), el("style", Markup(STYLE)))
    body = join(el("header", el("h1", title), el("p", subtitle), links), el("main", *sections),
                el("footer", f"Written by cvkit {__version__} report. Everything on this page is in its own folder."),
                el("script", Markup(SCRIPT)))
    return f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>{head}</head>\n<body>{body}</body>\n</html>\n"


__all__ = ["render", "esc", "POLICY"]
