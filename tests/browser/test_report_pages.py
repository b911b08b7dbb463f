"""``cvkit report``'s pages opened in headless Chromium: a classification run (one class named with markup), a
multi-label run (in a folder named with quotes and markup), two runs compared, and a crossval folder.

Each page loads with no error logged, every picture decodes, nothing is requested from outside the report's
folder, the names from the dataset and the runs show as text and run nothing, it reads at 1280 and 400 px
without scrolling sideways, and its screenshots are written; each holds the sections the contract names.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import HOSTILE, ONE_EPOCH, cli, escaped, open_page, page_problems, unsortable

RUN_SECTIONS = ("run", "curves", "metrics", "worst", "calibration", "augmentation")
PICTURED = ("curves", "metrics", "worst", "calibration", "augmentation")  # the sections that show pictures
PER_CLASS = "section#metrics table.sortable"


def _report(*args: object) -> Path:
    """``cvkit report ARGS``: the page it wrote."""
    page = Path(cli("report", *args).strip())
    assert page.name == "index.html" and page.is_file(), page
    return page


def _sections(tab) -> list[str]:
    return tab.evaluate("Array.from(document.querySelectorAll('main > section'), s => s.id)")


def _pictures(tab, anchor: str) -> int:
    return tab.evaluate(f"document.querySelectorAll('section#{anchor} img').length")


@pytest.fixture(scope="module")
def run_page(classes_run, tmp_path_factory) -> Path:
    return _report(classes_run, "--out", tmp_path_factory.mktemp("run_report") / "report", "--top", "4")


@pytest.fixture(scope="module")
def multilabel_page(multilabel_run, tmp_path_factory) -> Path:
    return _report(multilabel_run, "--out", tmp_path_factory.mktemp("multilabel_report") / "report", "--top", "4")


@pytest.fixture(scope="module")
def other_run(classes_data, tmp_path_factory) -> Path:
    """An mlp on the same data, in a folder named with quotes and markup: the second run of the comparison."""
    out = tmp_path_factory.mktemp("browser_other") / f'mlp "quoted" {HOSTILE}'
    cli("train", classes_data, "--out", out, "--arch", "mlp", *ONE_EPOCH)
    return out


@pytest.fixture(scope="module")
def compare_page(classes_run, other_run, tmp_path_factory) -> Path:
    return _report(classes_run, other_run, "--out", tmp_path_factory.mktemp("compare_report") / "report",
                   "--top", "4")


@pytest.fixture(scope="module")
def crossval_page(crossval_folder, tmp_path_factory) -> Path:
    return _report(crossval_folder, "--out", tmp_path_factory.mktemp("crossval_report") / "report")


def test_run_page_loads_clean_reads_on_a_phone_and_shows_the_hostile_class_as_text(browser, run_page, tmp_path):
    with open_page(browser, run_page) as tab:
        assert page_problems(tab, run_page.parent, tmp_path) == []
        assert escaped(tab) == []


def test_run_page_has_its_sections_pictures_and_a_per_class_table_that_sorts(browser, run_page, tmp_path):
    with open_page(browser, run_page) as tab:
        assert _sections(tab)[:len(RUN_SECTIONS)] == list(RUN_SECTIONS)
        assert {anchor: _pictures(tab, anchor) > 0 for anchor in PICTURED} == dict.fromkeys(PICTURED, True)
        rows = tab.table(PER_CLASS)
        assert sorted(row[0][0] for row in rows) == sorted(["bag", "sneaker", HOSTILE])
        assert unsortable(tab, PER_CLASS) == []


def test_multilabel_page(browser, multilabel_page, multilabel_run, tmp_path):
    with open_page(browser, multilabel_page) as tab:
        assert page_problems(tab, multilabel_page.parent, tmp_path) == []
        assert escaped(tab, multilabel_run.name) == []  # the run's folder: quotes and markup
        assert "metrics" in _sections(tab) and _pictures(tab, "metrics") > 0  # the PR curves
        assert len(tab.table(PER_CLASS)) > 1  # AP of each class
        assert unsortable(tab, PER_CLASS) == []


def test_compare_page(browser, compare_page, other_run, tmp_path):
    with open_page(browser, compare_page) as tab:
        assert page_problems(tab, compare_page.parent, tmp_path) == []
        assert escaped(tab, other_run.name) == []
        assert _sections(tab)[:4] == ["runs", "metrics", "curves", "differ"]
        assert _pictures(tab, "curves") > 0 and _pictures(tab, "differ") > 0


def test_crossval_page(browser, crossval_page, crossval_folder, tmp_path):
    with open_page(browser, crossval_page) as tab:
        assert page_problems(tab, crossval_page.parent, tmp_path) == []
        assert escaped(tab, crossval_folder.name) == []
        assert _sections(tab)[:2] == ["summary", "folds"]
        assert _pictures(tab, "summary") > 0  # the error bars
        summary = tab.evaluate("document.querySelector('section#summary').innerText")
        assert "0.001" in summary and "0.01" in summary  # both learning rates of the grid
