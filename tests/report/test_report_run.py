"""``cvkit report RUN``: the page of one classify run, through the CLI, on a run whose class names are
hostile HTML; and html.py's escaping through the library."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FAST, SAMPLE, run
from tests.hostile.test_hostile_files import one_line_error

TAG = "<img src=x onerror=alert(1)>"
QUOTE = "a\"quote'"
CLASSES = {TAG: "bag", QUOTE: "sneaker", "plain": "trouser"}  # class folder -> the sample images it holds
SECTIONS = ["run", "curves", "metrics", "worst", "calibration", "augmentation"]


class Page(HTMLParser):
    """What a test reads from a page: each section's tables (cells as text, or data-value), pictures and text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, dict] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self._section: dict | None = None
        self._cell: list[str] | None = None
        self._value: str | None = None
        self._row: list | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = self.sections.setdefault(attrs.get("id"), {"tables": [], "images": [], "text": []})
        elif tag == "img":
            self.images.append(attrs["src"])
            if self._section is not None:
                self._section["images"].append(attrs["src"])
        elif tag == "table" and self._section is not None:
            self._section["tables"].append([])
        elif tag == "tr" and self._section is not None:
            self._row = []
        elif tag in ("td", "th"):
            self._cell, self._value = [], attrs.get("data-value")
        if "href" in attrs:
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(float(self._value) if self._value is not None else "".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._section is not None:
            self._section["tables"][-1].append(self._row)
            self._row = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._section is not None:
            self._section["text"].append(data)

    def text(self, section: str) -> str:
        return " ".join(self.sections[section]["text"])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path]:
    """A dataset whose class folders are named as HTML that would run (and a quote of each kind), with an
    augmentation policy, and a 1-epoch run on it: (run, dataset)."""
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("report")
    for name, sample in CLASSES.items():
        shutil.copytree(SAMPLE / "fashion" / sample, root / "src" / name)
    data, out, r = root / "data", root / "run", CliRunner()
    assert run(r, "-q", "prepare", root / "src", "--out", data, "--size", "28", "--val", "0.2", "--test", "0.2").exit_code == 0
    assert run(r, "-q", "normalize", data).exit_code == 0
    assert run(r, "-q", "augment", data, "--hflip", "0.5", "--rotate", "10").exit_code == 0
    result = run(r, "-q", "train", data, "--out", out, "--epochs", "1", "--seed", "3", *FAST)
    assert result.exit_code == 0, result.stderr
    return out, data


def read_page(out: Path) -> tuple[str, Page]:
    text = (out / "index.html").read_text(encoding="utf-8")
    return text, Page(text)


def check_safe(text: str, page: Page, out: Path) -> None:
    """Hostile names only as text; pictures inside OUT (or embedded); nothing that reaches another host."""
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "<img src=x" not in text
    assert "a&quot;quote&#x27;" in text and QUOTE not in text
    for src in page.images:
        if not src.startswith("data:image/png;base64,"):
            assert not os.path.isabs(src) and ".." not in src.split("/"), src
            assert (out / src).is_file() and (out / src).resolve().is_relative_to(out.resolve()), src
    assert all(link.startswith("#") for link in page.links), page.links
    assert not re.search(r"(?i)\b(?:https?|ftp|file):", text)
    assert not re.search(r"""(?:src|href|url)\s*[=(]\s*["']?//""", text)


def test_the_page_of_a_run_evaluated_for_it(hostile, tmp_path, runner):
    """No evaluation yet: the report evaluates the split into OUT/computed/, draws the CAMs of the worst images
    and the train split's features for their neighbours, and says so in the page and in report.json."""
    run_dir, data = hostile
    out = tmp_path / "page"
    result = run(runner, "report", run_dir, "--out", out, "--neighbours", "2", "--top", "4")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out / "index.html")
    text, page = read_page(out)
    assert list(page.sections) == [*SECTIONS, "computed"]
    check_safe(text, page, out)

    summary = json.loads((out / "report.json").read_text())
    computed = " | ".join(summary["computed"])
    assert summary["kind"] == "run" and len(summary["computed"]) == 4, computed
    for needle in ("evaluated", "Grad-CAM maps of the 4 worst images", "features of the 36 train images",
                   "augmentation preview"):
        assert needle in computed
    evaluation = next((out / "computed").glob("eval_test_*"))
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert not (run_dir / "eval_test").exists() and not (run_dir / "cam").exists()  # nothing written into the run
    assert f"From {evaluation.relative_to(out).as_posix()} (in this report's folder)" in page.text("metrics")
    assert f"{os.sep}.{out.name}." not in text  # no path of the stage folder the page was built in

    # the run: options that differ from the defaults, images per class and split (12 test images: 4 a class)
    tables = page.sections["run"]["tables"]
    assert ["--epochs", "1", "auto"] in tables[0] and ["--seed", "3", "0"] in tables[0]
    assert sorted(row[0] for row in tables[1][1:]) == sorted(CLASSES)
    assert all(row[1:] == [12.0, 4.0, 4.0, 20.0] for row in tables[1][1:])
    # metrics: the per-class table, from the confusion matrix, as evaluate's metrics.json has it
    per_class = {row[0]: row[1:] for row in page.sections["metrics"]["tables"][0][1:]}
    assert set(per_class) == set(CLASSES)
    for expected in metrics["per_class"]:
        got = per_class[expected["class"]]
        assert got == pytest.approx([expected["precision"], expected["recall"], expected["f1"], expected["support"]])
    assert f"accuracy {metrics['accuracy']:.4g}" in " ".join(page.text("metrics").split())
    # worst: top_losses.csv's first four, each with its image, its CAM and two neighbours
    worst = pd.read_csv(evaluation / "top_losses.csv", dtype=str, keep_default_na=False)
    assert len(page.sections["worst"]["images"]) == 4 * (1 + 1 + 2)
    shown = [html.unescape(f) for f in re.findall(r"<dt>file</dt><dd>(.*?)</dd>", text)]
    assert shown == worst["path"].tolist()[:4]
    # calibration: ECE of the evaluation's probabilities, as metrics.json's (within predictions.csv's rounding)
    ece = float(re.search(r"ECE\s+([0-9.]+)", page.text("calibration")).group(1))
    assert ece == pytest.approx(metrics["ece"], abs=2e-4)
    assert "No temperature was fitted" in page.text("calibration")
    # augmentation: the dataset's policy (hflip, rotate) with the preview strip
    assert re.search(r"hflip\s+0\.5", page.text("augmentation")) and re.search(r"rotate\s+10", page.text("augmentation"))
    assert len(page.sections["augmentation"]["images"]) == 1


def test_what_the_commands_wrote_is_reused(hostile, tmp_path, runner):
    """After evaluate, cam on exactly the worst images and a retrieval index inside the run, the report
    computes nothing but the preview; the neighbours come from the index and match the features the
    report computes itself."""
    run_dir, data = hostile
    work = tmp_path / "run"
    shutil.copytree(run_dir, work)
    assert run(runner, "-q", "evaluate", work, "--split", "test").exit_code == 0
    worst = pd.read_csv(work / "eval_test" / "top_losses.csv", dtype=str, keep_default_na=False)["path"][:3]
    assert run(runner, "-q", "cam", work, *worst).exit_code == 0
    assert run(runner, "-q", "retrieve", "index", work, data, "--out", work / "index").exit_code == 0

    result = run(runner, "report", work, "--top", "3", "--neighbours", "2")
    assert result.exit_code == 0, result.stderr
    out = work / "report"
    text, page = read_page(out)
    check_safe(text, page, out)
    computed = json.loads((out / "report.json").read_text())["computed"]
    assert len(computed) == 1 and "augmentation preview" in computed[0], computed
    assert not list((out / "computed").glob("eval_*")) and not (out / "computed" / "cam").exists()
    assert f"From {work / 'eval_test'}" in page.text("metrics")
    assert f"come from {work / 'cam'}" in page.text("worst") and "retrieval index" in page.text("worst")
    from_index = re.findall(r"· [0-9.]+", page.text("worst"))

    shutil.rmtree(work / "index")
    assert run(runner, "-q", "report", work, "--top", "3", "--neighbours", "2", "--out", tmp_path / "again").exit_code == 0
    _, again = read_page(tmp_path / "again")
    assert re.findall(r"· [0-9.]+", again.text("worst")) == from_index and len(from_index) == 6


def test_single_file_embeds_every_picture(hostile, tmp_path, runner):
    run_dir, _ = hostile
    out = tmp_path / "one"
    assert run(runner, "-q", "report", run_dir, "--single-file", "--top", "1", "--out", out).exit_code == 0
    text, page = read_page(out)
    assert not (out / "images").exists()
    assert len(page.images) >= 5 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert len(re.findall(r"<img ", text)) == len(page.images)
    check_safe(text, page, out)


@pytest.mark.parametrize(("args", "needles"), [
    (["{empty}"], ["is neither a run directory", "model.json"]),
    (["{run}", "--split", "bad"], ["--split bad", "train, val, test"]),
    (["{run}", "--top", "-1"], ["--top -1"]),
    (["{run}", "--data", "{empty}"], ["is not a dataset directory"]),
    (["{run}", "--out", "{data}/report"], ["lies inside the dataset"]),
], ids=["not-a-run", "split", "top", "data", "out-in-dataset"])
def test_bad_inputs_are_one_line_errors_and_write_nothing(hostile, tmp_path, runner, args, needles):
    run_dir, data = hostile
    (tmp_path / "empty").mkdir()
    values = {"run": run_dir, "data": data, "empty": tmp_path / "empty"}
    args = [a.format(**values) for a in args]
    out = tmp_path / "out"
    if "--out" not in args:
        args += ["--out", str(out)]
    one_line_error(run(runner, "report", *args), *needles)
    assert not out.exists() and not (data / "report").exists() and not (run_dir / "report").exists()


# ----------------------------------------------------------------------------- the library


def test_html_escapes_text_and_attributes():
    from cvkit.report.html import Markup, el, figure, table

    hostile = "<script>alert('x')</script> & \"q\""
    markup = el("p", hostile, title=hostile, data_name=TAG)
    assert markup == ('<p title="&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;" '
                      'data-name="&lt;img src=x onerror=alert(1)&gt;">&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; '
                      '&amp; &quot;q&quot;</p>')
    assert el("b", Markup("<i>kept</i>"), "<i>not</i>") == "<b><i>kept</i>&lt;i&gt;not&lt;/i&gt;</b>"
    cell = table([QUOTE], [[TAG, 0.5]])
    assert "<th scope=\"col\">a&quot;quote&#x27;</th>" in cell and "<td>&lt;img src=x onerror=alert(1)&gt;</td>" in cell
    assert 'data-value="0.5"' in cell
    assert figure('x" onerror="alert(1)', TAG).startswith('<figure><img src="x&quot; onerror=&quot;alert(1)"')


def test_per_class_figures_from_the_confusion_matrix_match_evaluate():
    from cvkit.report.run_sections import per_class
    from cvkit.tasks.metrics import classification_metrics, confusion_matrix

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    labels[labels == 3] = 2  # class 3 absent: recall and support 0
    probs = rng.dirichlet(np.ones(4), 200)
    names = ["a", "b", "c", "d"]
    expected = classification_metrics(labels, probs, names)["per_class"]
    got = per_class(confusion_matrix(labels, probs.argmax(1), 4), names)
    assert [row[0] for row in got] == names
    for row, e in zip(got, expected):
        assert row[1:] == pytest.approx([e["precision"], e["recall"], e["f1"], e["support"]])
    assert not any(math.isnan(v) for row in got for v in row[1:])


def test_tile_enlarges_by_whole_pixels():
    from cvkit.plots.report import tile

    image = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28, 1)
    big = np.asarray(tile(image, 112))
    assert big.shape == (112, 112) and (big[::4, ::4] == image[:, :, 0]).all() and (big[3::4, 3::4] == image[:, :, 0]).all()
    small = tile(np.zeros((300, 150, 3), np.uint8), 100)
    assert small.size == (50, 100)
