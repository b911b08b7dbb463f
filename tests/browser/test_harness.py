"""The browser harness itself: a page built with the report's own helpers (cvkit.report.page.render,
cvkit.report.html) passes every check, and a page that is broken in each of the ways the checks look for
fails each of them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cvkit.files.report import PageWriter
from cvkit.report.html import el, figure, section, table
from cvkit.report.page import render
from tests.browser.conftest import (HOSTILE, WIDTHS, broken_images, escaped, open_page, outside, page_problems,
                                    shot, staged, unreadable, unsortable)

CLASSES = ["bag", HOSTILE, "sneaker", 'a "quoted" name', "coat"]


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))


def _page(folder, single_file: bool = False):
    """A page like a report's: a sortable per-class table in section#metrics (the hostile class among them), a
    table far wider than a phone, and two pictures written through the report's PageWriter."""
    writer = PageWriter(folder, single_file)
    supports = [12, 3, 7, 7, 1]
    scores = [0.5, 0.25, 0.875, 0.125, 1.0]
    metrics = table(["class", "support", "f1"], [[c, s, f] for c, s, f in zip(CLASSES, supports, scores)])
    wide = table([f"a rather long column name {i}" for i in range(30)], [[i * j for i in range(30)] for j in range(3)])
    pictures = el("div", figure(writer.image(_picture(0), "first"), "first"), figure(writer.image(_picture(1), HOSTILE),
                                                                                     HOSTILE), class_="row")
    parts = [("metrics", "Metrics", [metrics, wide]), ("worst", "Worst images", [pictures])]
    html = render(f"cvkit report: {HOSTILE}", "classify · smallcnn · test split",
                  [section(title, *body, id=anchor) for anchor, title, body in parts],
                  [(anchor, title) for anchor, title, _ in parts])
    return writer.write_page(html)


@pytest.mark.parametrize("single_file", [False, True], ids=["images-beside", "single-file"])
def test_a_page_made_with_the_report_helpers_passes_every_check(browser, tmp_path, single_file):
    page = _page(tmp_path / "report", single_file)
    with open_page(browser, page) as tab:
        assert page_problems(tab, tmp_path / "report", tmp_path, least_images=2) == []
        assert unsortable(tab, "section#metrics table.sortable") == []
        assert escaped(tab) == []
        # the check above means something: the wide table is wider than a phone and scrolls in its div.scroll
        tab.set_width(400)
        assert tab.evaluate("Math.max(...Array.from(document.querySelectorAll('div.scroll'), "
                            "d => d.scrollWidth - d.clientWidth))") > 1000
        requested = tab.requests()
    assert requested[0] == page.as_uri()
    assert sum(url.startswith("data:image/png") for url in requested) == (2 if single_file else 0)
    assert sum(url.endswith(".png") and url.startswith("file:") for url in requested) == (0 if single_file else 2)
    for width in WIDTHS:
        with Image.open(tmp_path / f"page-{width}.png") as image:
            assert image.width == width and image.height > 200


def test_a_click_sorts_the_per_class_table_by_value_not_by_text(browser, tmp_path):
    with open_page(browser, _page(tmp_path / "report")) as tab:
        tab.click("section#metrics table.sortable thead th:nth-child(2)")
        assert [text for text, _ in (row[0] for row in tab.table("section#metrics table"))] == [
            "coat", HOSTILE, "sneaker", 'a "quoted" name', "bag"]  # support 1, 3, 7, 7, 12: 12 last, not before 3
        tab.click("section#metrics table.sortable thead th:nth-child(2)")
        assert [row[1][1] for row in tab.table("section#metrics table")] == [12, 7, 7, 3, 1]
        tab.click("section#metrics table.sortable thead th:nth-child(1)")
        names = [row[0][0] for row in tab.table("section#metrics table")]
        assert names.index("bag") < names.index("coat") < names.index("sneaker")


BROKEN = f"""<!DOCTYPE html><html><head><title>broken</title></head><body>
<p>{HOSTILE}</p>
<p>Computed into /tmp/runs/a/.report.k2x9.new/computed/eval_test_1.</p>
<div style="width: 2000px">a wide block</div>
<div class="scroll"><table class="sortable"><thead><tr><th>n</th></tr></thead>
<tbody><tr><td data-value="2">2</td></tr><tr><td data-value="1">1</td></tr></tbody></table></div>
<table style="overflow-wrap: anywhere; width: 1px"><tr><th>epoch</th><td>a-b a/b xy</td>
<td>a_rather_long_token_that_may_wrap</td><td class="num">0.875</td></tr></table>
<img src="broken.png" alt="not a picture"><img src="http://127.0.0.1:9/remote.png" alt="remote">
<img src="../outside.png" alt="outside the folder">
<script>console.error("boom"); alert("hello");</script>
<script>undefinedFunction();</script>
</body></html>"""


def test_a_broken_page_fails_every_check(browser, tmp_path):
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    _picture(2).save(tmp_path / "outside.png")
    (folder / "index.html").write_text(BROKEN)
    with open_page(browser, folder / "index.html") as tab:
        images = " ".join(broken_images(tab, least=5))
        assert "broken.png'> did not decode" in images and "remote.png'> did not decode" in images
        assert "report/x'> did not decode" in images  # the one the hostile name made
        assert "4 pictures, expected at least 5" in images
        assert "outside.png" not in images  # it decodes: it is only in the wrong place
        errors = tab.errors()
        assert any(e == "console.error: boom" for e in errors), errors
        assert any(e.startswith("uncaught: ReferenceError: undefinedFunction") for e in errors), errors
        assert any("remote.png" in e for e in errors), errors
        assert outside(tab, folder) == ["requested http://127.0.0.1:9/remote.png: not a file of the report",
                                        f"read {tmp_path / 'outside.png'}: outside the report's folder {folder}"]
        assert unreadable(tab, 1280)[0].startswith("at 1280 px the page is 20")
        assert "too wide: div to 20" in unreadable(tab, 400)[0]
        # every cell as narrow as one letter: short words and figures break, single letters and long tokens do not count
        assert unreadable(tab, 400)[1] == ("at 400 px 3 figures or words break across lines in table cells: "
                                           "['epoch', 'xy', '0.875']")
        assert unsortable(tab, "table.sortable") == ["after click 1 on 'n' its values are [2, 1], not ascending"]
        assert escaped(tab) == [f"{HOSTILE!r} does not show as text on the page",
                                f"1 <img src=\"x\"> elements made from {HOSTILE!r}: the page does not escape it",
                                f"the page's title became 'pwned': a handler from {HOSTILE!r} ran",
                                "dialog opened: alert: hello"]
        assert staged(tab) == ["the page names /tmp/runs/a/.report.k2x9.new/computed/eval_test_1., in a staging "
                               "folder that is gone once the report is complete"]
        (tmp_path / "shots").mkdir()
        assert shot(tab, tmp_path / "shots" / "broken.png", 400) == []  # a screenshot of a broken page is fine
        assert len(page_problems(tab, folder, tmp_path / "shots", least_images=5)) >= 10


def test_a_table_with_nothing_to_sort_by_is_reported(browser, tmp_path):
    same = section("Metrics", table(["class", "n"], [["a", 1], ["b", 1]]), id="metrics")
    page = PageWriter(tmp_path).write_page(render("t", "s", [same]))
    with open_page(browser, page) as tab:
        assert unsortable(tab, "section#metrics table.sortable") == [
            "section#metrics table.sortable has no column of numbers with two different values to sort by "
            "(columns ['class', 'n'], 2 rows)"]
