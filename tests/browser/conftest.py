"""The report opened in a real browser: one headless Chromium for the session (tests/browser/chromium.py), and
the checks every report page must pass, each returning what is wrong in words (an empty list: nothing).

Without a Chromium the whole folder is skipped, with the command that installs one.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from PIL import Image

from tests.browser.chromium import Chromium, Tab, find_chromium

WIDTHS = (1280, 400)  # a laptop's window, and a phone held upright
HOSTILE = "<img src=x onerror=document.title='pwned'>"  # a class name that is markup, and would retitle the page


@pytest.fixture(scope="session", autouse=True)
def chromium_binary() -> str:
    found = find_chromium() if os.name == "posix" else None
    if found is None:
        pytest.skip("no headless Chromium: apt-get install chromium (or set CVKIT_CHROMIUM to a Chromium or Chrome "
                    "binary); the report's browser tests need one")
    return found


@pytest.fixture(scope="session")
def browser(chromium_binary: str):
    """One Chromium for every test in the session (a fresh tab per page)."""
    chromium = Chromium(chromium_binary)
    yield chromium
    chromium.close()


def open_page(browser: Chromium, page: Path, width: int = WIDTHS[0]) -> Tab:
    """``page`` (an HTML file) loaded from the file system in a fresh tab; use it as a context manager."""
    return browser.open(Path(page).resolve().as_uri(), width)


# ----------------------------------------------------------------------------- the checks


def outside(tab: Tab, folder: Path) -> list[str]:
    """Every request that leaves the file system, or reads a file outside ``folder`` (the report's own)."""
    folder = Path(folder).resolve()
    problems = []
    for url in tab.requests():
        parsed = urlparse(url)
        if parsed.scheme == "data":
            continue
        if parsed.scheme != "file":
            problems.append(f"requested {url[:120]}: not a file of the report")
        elif not Path(unquote(parsed.path)).resolve().is_relative_to(folder):
            problems.append(f"read {unquote(parsed.path)}: outside the report's folder {folder}")
    return problems


def broken_images(tab: Tab, least: int = 0) -> list[str]:
    """Pictures that did not decode (natural width 0), and too few pictures when ``least`` are expected."""
    images = tab.images()
    problems = [f"<img src={src!r}> did not decode" if width == 0 else f"<img src={src!r}> still loading after 10 s"
                for src, width in images if width <= 0]
    if len(images) < least:
        problems.append(f"{len(images)} pictures, expected at least {least}")
    return problems


def unreadable(tab: Tab, width: int) -> list[str]:
    """Laid out ``width`` pixels wide, the page must not scroll sideways (wide tables scroll in their div.scroll),
    and no figure or short word in a table may break across lines."""
    tab.set_width(width)
    laid = tab.overflow()
    problems = []
    if laid["scrollWidth"] > laid["clientWidth"] or laid["clientWidth"] > laid["innerWidth"]:
        problems.append(f"at {width} px the page is {laid['scrollWidth']} px wide (window {laid['innerWidth']} px, "
                        f"content {laid['clientWidth']} px); too wide: {', '.join(laid['wide']) or 'nothing found'}")
    broken = tab.broken_words()
    if broken:
        problems.append(f"at {width} px {len(broken)} figures or words break across lines in table cells: "
                        f"{broken[:6]}")
    return problems


def shot(tab: Tab, path: Path, width: int) -> list[str]:
    """A screenshot of the whole page at ``width`` pixels written to ``path``: a PNG that wide."""
    tab.set_width(width)
    tab.screenshot(path)
    with Image.open(path) as image:
        if image.format != "PNG" or image.width != width or image.height < 100:
            return [f"screenshot {path.name} is a {image.format} of {image.width}x{image.height}"]
    return []


def unsortable(tab: Tab, selector: str) -> list[str]:
    """A click on the header of the table's first column of numbers (with two values at least) must sort its
    rows by it, ascending; a second click descending; the rows stay whole (every cell moves with its row)."""
    rows = tab.table(selector)
    header = tab.header(selector)
    columns = [i for i in range(len(header)) if rows and all(len(r) > i and r[i][1] is not None for r in rows)
               and len({r[i][1] for r in rows}) > 1]
    if not columns:
        return [f"{selector} has no column of numbers with two different values to sort by (columns "
                f"{header}, {len(rows)} rows)"]
    column = columns[0]
    problems = []
    for click, order in ((1, "ascending"), (2, "descending")):
        tab.click(f"{selector} thead th:nth-child({column + 1})")
        after = tab.table(selector)
        values = [r[column][1] for r in after]
        if values != sorted(values, reverse=order == "descending"):
            problems.append(f"after click {click} on {header[column]!r} its values are {values}, not {order}")
        if Counter(map(repr, after)) != Counter(map(repr, rows)):
            problems.append(f"after click {click} on {header[column]!r} the rows changed, not only their order")
    return problems


def escaped(tab: Tab, text: str = HOSTILE) -> list[str]:
    """``text`` (markup) shows as text on the page, and none of it ran: no element it would have made, the
    title it would have set, nor any dialog."""
    seen = tab.evaluate(f"""({{shown: document.body.innerText.includes({json.dumps(text)}),
        made: document.querySelectorAll('img[src="x"]').length, title: document.title}})""")
    problems = []
    if not seen["shown"]:
        problems.append(f"{text!r} does not show as text on the page")
    if seen["made"]:
        problems.append(f"{seen['made']} <img src=\"x\"> elements made from {text!r}: the page does not escape it")
    if seen["title"] == "pwned":
        problems.append(f"the page's title became {seen['title']!r}: a handler from {text!r} ran")
    return problems + [f"dialog opened: {d}" for d in tab.dialogs()]


def staged(tab: Tab) -> list[str]:
    """Paths on the page into a staging folder (``.NAME.*.new``, where a command builds its output before it
    takes --out's place): renamed once the report is complete, so they lead nowhere."""
    text = tab.evaluate("document.body.innerText")
    return [f"the page names {path}, in a staging folder that is gone once the report is complete"
            for path in sorted(set(re.findall(r"\S*/\.[^/\s]+\.new(?:/\S*)?", text)))]


def page_problems(tab: Tab, folder: Path, shots: Path, least_images: int = 0) -> list[str]:
    """What every report page must pass: no error logged, every picture decodes, nothing requested from
    outside ``folder``, no dialog, readable at each of WIDTHS, no path into a staging folder; its screenshots
    go to ``shots``."""
    problems = broken_images(tab, least_images)  # first: the lazy pictures load, so their requests count below
    for width in WIDTHS:
        problems += unreadable(tab, width)
        problems += shot(tab, shots / f"page-{width}.png", width)
    problems += [f"console: {e}" for e in tab.errors()]
    problems += outside(tab, folder)
    problems += staged(tab)
    return problems + [f"dialog opened: {d}" for d in tab.dialogs()]


# ----------------------------------------------------------------------------- tiny runs and their reports

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "fashion"
ONE_EPOCH = ["--epochs", "1", "--seed", "0", "--precision", "fp32", "--memory-format", "contiguous",
             "--batch-size", "32"]


def cli(*args: object) -> str:
    """``cvkit ARGS`` in this process; its stdout (asserting it succeeded)."""
    from typer.testing import CliRunner

    from tests.conftest import run

    result = run(CliRunner(), "-q", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def classes_data(tmp_path_factory) -> Path:
    """Three Fashion-MNIST classes, one named HOSTILE and half as large (so per-class supports differ),
    prepared at 28 px, normalized, with an augmentation policy."""
    import shutil

    root = tmp_path_factory.mktemp("browser_classes")
    for name, source, count in (("bag", "bag", 20), ("sneaker", "sneaker", 20), (HOSTILE, "coat", 10)):
        (root / "src" / name).mkdir(parents=True)
        for png in sorted((SAMPLE / source).glob("*.png"))[:count]:
            shutil.copy(png, root / "src" / name / png.name)
    out = root / "data"
    cli("prepare", root / "src", "--out", out, "--size", "28", "--val", "0.2", "--test", "0.2")
    cli("normalize", out)
    cli("augment", out, "--hflip", "0.5")
    return out


@pytest.fixture(scope="session")
def classes_run(classes_data, tmp_path_factory) -> Path:
    """The default architecture, one epoch on classes_data."""
    out = tmp_path_factory.mktemp("browser_runs") / "classify"
    cli("train", classes_data, "--out", out, *ONE_EPOCH)
    return out


@pytest.fixture(scope="session")
def multilabel_run(tmp_path_factory) -> Path:
    """A multi-label run (one epoch on 2x2 mosaics, tests/tasks/mosaics.py) in a folder named with quotes and
    markup."""
    from tests.tasks.mosaics import write_mosaics

    root = tmp_path_factory.mktemp("browser_multilabel")
    csv = write_mosaics(root / "src", 80, seed=0)
    data = root / "data"
    cli("prepare", csv, "--out", data, "--task", "multilabel", "--size", "56", "--val", "0.2", "--test", "0.2")
    cli("normalize", data)
    out = root / f'"quoted" {HOSTILE}'
    cli("train", data, "--out", out, *ONE_EPOCH)
    return out


@pytest.fixture(scope="session")
def crossval_folder(classes_data, tmp_path_factory) -> Path:
    """``cvkit crossval`` of classes_data (an mlp, two folds, two learning rates, one epoch each) in a folder
    named with quotes and markup."""
    out = tmp_path_factory.mktemp("browser_crossval") / f'cv "quoted" {HOSTILE}'
    cli("crossval", classes_data, "--out", out, "--arch", "mlp", "--folds", "2", "--grid", "lr=0.001,0.01",
        *ONE_EPOCH)
    return out
