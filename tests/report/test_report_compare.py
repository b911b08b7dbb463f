"""`cvkit report RUN1 RUN2 --out DIR` (the runs side by side, curves overlaid, where they disagree) and
`cvkit report CROSSVAL` (summary table, error bars, folds), through the CLI on tiny 1-epoch mlp runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cvkit.report.compare import run_names
from tests.conftest import FAST, copy_run_with, make_image, run, run_ok

TINY = ["--arch", "mlp", "--epochs", "1", *FAST]


def section(page: str, anchor: str) -> str:
    found = re.search(f'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert found, f"the page has no section {anchor}"
    return found.group(1)


def images_of(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', html)


def check_contained(out: Path, page: str) -> None:
    """Every picture lies in OUT/images (no path leads out of the folder) and nothing is linked from elsewhere."""
    sources = images_of(page)
    assert sources
    for src in sources:
        assert re.fullmatch(r"images/\d{4}-[a-z0-9_-]+\.png", src), src
        assert (out / src).is_file()
    assert not re.search(r'(src|href)="(?!images/|#|data:)', page)


def table_rows(html: str) -> list[list[str]]:
    """The body rows of the first table in ``html``: each cell's data-value if it has one, else its text."""
    body = re.search(r"<tbody>(.*?)</tbody>", html, re.S).group(1)
    cells = r'<td(?: data-value="([^"]*)")?[^>]*>(.*?)</td>'
    return [[value or re.sub("<[^>]+>", "", text) for value, text in re.findall(cells, row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


@pytest.fixture(scope="module")
def two_runs(data, tmp_path_factory) -> tuple[Path, Path]:
    """Two runs both named ``run`` (in ``a/`` and ``b/``), other seeds; the first already evaluated on test."""
    root = tmp_path_factory.mktemp("compare")
    first, second = root / "a" / "run", root / "b" / "run"
    run_ok("-q", "train", data, "--out", first, *TINY, "--seed", "0")
    run_ok("-q", "train", data, "--out", second, *TINY, "--seed", "1")
    run_ok("-q", "evaluate", first)
    return first, second


@pytest.fixture(scope="module")
def compared(two_runs, tmp_path_factory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("page") / "out"
    result = run(CliRunner(), "report", *two_runs, "--out", out, "--top", "4", "--json")
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout), (out / "index.html").read_text()


def test_the_runs_get_unique_names_and_their_options_side_by_side(compared):
    out, summary, page = compared
    assert summary["kind"] == "compare" and summary["page"] == str(out / "index.html")
    runs = section(page, "runs")
    rows = table_rows(runs)
    assert [r[0] for r in rows] == ["a/run", "b/run"]  # both folders are named run: their parents tell them apart
    assert all(r[1:3] == ["classify", "mlp"] for r in rows)
    assert rows[0][3] == rows[1][3] and float(rows[0][3]) > 1000  # parameters, as inspect counts them
    assert "Options that differ" in runs
    options = table_rows(runs[runs.index("Options that differ"):])
    assert ["seed", "0", "1"] in options
    assert not any(r[0] == "out" for r in options)  # every run has its own folder: not an option that differs


def test_the_metrics_table_has_each_runs_figures_from_its_evaluation(two_runs, compared):
    out, summary, page = compared
    # the first run's evaluation is reused; the second's is computed into OUT/computed and said
    assert len(summary["computed"]) == 1 and str(two_runs[1]) in summary["computed"][0]
    computed = list((out / "computed").glob("eval_test_*"))
    assert len(computed) == 1
    scores = [json.loads((folder / "metrics.json").read_text()) for folder in (two_runs[0] / "eval_test", computed[0])]
    metrics = section(page, "metrics")
    assert 'class="sortable"' in metrics
    rows = table_rows(metrics)
    assert [r[0] for r in rows] == ["a/run", "b/run"]
    for row, score in zip(rows, scores):
        assert float(row[1]) == score["count"] == 40
        assert float(row[2]) == pytest.approx(score["accuracy"])
    per_class = table_rows(metrics[metrics.index("Per class"):])
    assert len(per_class) == 10
    header = re.findall(r"<th scope=\"col\">(.*?)</th>", metrics[metrics.index("Per class"):])
    assert header[:4] == ["class", "support", "recall: a/run", "recall: b/run"]
    for row, truth in zip(per_class, scores[1]["per_class"]):
        assert row[0] == truth["class"] and float(row[3]) == pytest.approx(truth["recall"])


def test_the_curves_of_both_runs_are_one_picture(compared):
    out, _, page = compared
    sources = images_of(section(page, "curves"))
    assert len(sources) == 1 and "curves" in sources[0]
    picture = np.asarray(Image.open(out / sources[0]).convert("RGB"))
    assert picture.shape[1] > 600 and picture.std() > 10  # drawn, not blank
    check_contained(out, page)


def test_the_images_they_disagree_on_are_counted_and_shown(two_runs, compared):
    out, _, page = compared
    first = pd.read_csv(two_runs[0] / "eval_test" / "predictions.csv", keep_default_na=False)
    second = pd.read_csv(next((out / "computed").glob("eval_test_*")) / "predictions.csv", keep_default_na=False)
    assert first["path"].tolist() == second["path"].tolist()
    differ = first["predicted"] != second["predicted"]
    count = int(differ.sum())
    assert count > 0  # two 1-epoch runs of other seeds: otherwise the test below would show nothing
    part = section(page, "differ")
    assert re.search(r'data-count="(\d+)"', part).group(1) == str(count)
    right = [int((frame.loc[differ, "predicted"] == frame.loc[differ, "label"]).sum()) for frame in (first, second)]
    assert [[float(v) for v in r[1:]] for r in table_rows(part)] == [[right[0], count - right[0]],
                                                                      [right[1], count - right[1]]]
    tiles = re.findall(r"<figure>(.*?)</figure>", part, re.S)
    assert len(tiles) == min(4, count)  # --top 4
    for tile in tiles:
        path = re.search(r'alt="([^"]*)"', tile).group(1)
        row = first.index[first["path"] == path][0]
        assert differ[row]
        assert f"true: <b>{first.at[row, 'label']}</b>" in tile
        for frame, name in ((first, "a/run"), (second, "b/run")):
            predicted, ok = frame.at[row, "predicted"], frame.at[row, "predicted"] == frame.at[row, "label"]
            answer = f'class="{"right" if ok else "wrong"}">{"✓" if ok else "✗"} {name}: <b>{predicted}</b>'
            assert answer in tile
            assert f"({frame.at[row, f'prob_{predicted}']:.2f})" in tile
        # the image is the cached picture of that row, as the page shows it
        src = images_of(tile)[0]
        assert Image.open(out / src).size == (28, 28)


@pytest.mark.parametrize("change, needle", [({"classes": [f"c{i}" for i in range(10)]}, "other classes"),
                                            ({"task": "multilabel"}, "one task")])
def test_runs_of_other_classes_or_tasks_are_refused(two_runs, tmp_path, change, needle):
    other = copy_run_with(two_runs[0], tmp_path / "other", **change)
    out = tmp_path / "out"
    result = run(CliRunner(), "report", two_runs[0], other, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert needle in result.stderr and str(other) in result.stderr and str(two_runs[0]) in result.stderr
    assert not out.exists()


def test_several_runs_need_out(two_runs):
    result = run(CliRunner(), "report", *two_runs)
    assert result.exit_code == 2 and "--out" in result.stderr and result.stderr.count("\n") == 1
    assert not any((r / "report").exists() for r in two_runs)


def test_run_names_take_parents_only_where_needed():
    names = run_names([Path("x/a/run"), Path("x/b/run"), Path("x/c/other"), Path("x/a/run")])
    assert names == ["a/run", "b/run", "other", "a/run (2)"]


# ----------------------------------------------------------------------------- hostile names

HOSTILE_CLASSES = ("<img src=x onerror=alert(1)>", "\"q'uote&amp;")


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory) -> list[Path]:
    """Two runs in folders named with markup and quotes, on classes named the same way."""
    root = tmp_path_factory.mktemp("hostile")
    for c, name in enumerate(HOSTILE_CLASSES):
        for i in range(12):
            make_image(root / "src" / name / f"{i:02d}.png", seed=c * 100 + i)
    data = root / "data"
    run_ok("-q", "prepare", root / "src", "--out", data, "--size", "12", "--val", "0.25", "--test", "0.25")
    runs = [root / "runs" / "<b>\"one'", root / "runs" / "<b>\"two'"]
    for seed, folder in enumerate(runs):
        run_ok("-q", "train", data, "--out", folder, *TINY, "--seed", seed)
    return runs


@pytest.mark.parametrize("single_file", [False, True])
def test_hostile_run_folders_and_class_names_show_as_text(hostile_runs, tmp_path, single_file):
    out = tmp_path / "out"
    run_ok("-q", "report", *hostile_runs, "--out", out, *(["--single-file"] if single_file else []))
    page = (out / "index.html").read_text()
    for raw in ("<b>\"one'", "<b>\"two'", *HOSTILE_CLASSES):
        assert raw not in page
    assert "&lt;b&gt;&quot;one&#x27;" in page and "&lt;b&gt;&quot;two&#x27;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in section(page, "metrics")  # the per-class table
    assert "&quot;q&#x27;uote&amp;amp;" in page
    assert page.count("<b>") == page.count("</b>")  # only the page's own bold: none from a folder's name
    if single_file:
        assert not (out / "images").exists()
        assert all(src.startswith("data:image/png;base64,") for src in images_of(page))
    else:
        check_contained(out, page)


# ----------------------------------------------------------------------------- a crossval folder


@pytest.fixture(scope="module")
def crossval(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cv") / "cv"
    run_ok("-q", "crossval", data, *TINY, "--folds", "2", "--grid", "lr=0.001,0.01", "--out", out)
    return out


def test_a_crossval_folder_shows_its_summary_error_bars_and_folds(crossval):
    result = run(CliRunner(), "report", crossval, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "crossval"
    out = crossval / "report"
    page = (out / "index.html").read_text()
    summary = pd.read_csv(crossval / "summary.csv")
    part = section(page, "summary")
    rows = table_rows(part)
    assert [r[1] for r in rows] == summary["config"].tolist()  # best first, as summary.csv ranks them
    for row, (_, expected) in zip(rows, summary.iterrows()):
        assert float(row[0]) == expected["rank"]
        assert float(row[4]) == pytest.approx(expected["val_acc_mean"])
        assert float(row[5]) == pytest.approx(expected["val_acc_std"])
    header = re.findall(r"<th scope=\"col\">(.*?)</th>", part)
    assert header[:6] == ["rank", "config", "lr", "folds", "val_acc mean", "val_acc ± std"]
    # the error bars are crossval's own picture, copied pixel for pixel
    sources = images_of(part)
    assert len(sources) == 1
    assert np.array_equal(np.asarray(Image.open(out / sources[0])), np.asarray(Image.open(crossval / "crossval.png")))
    best = json.loads((crossval / "best.json").read_text())
    assert f"<dd>{best['config']}</dd>" in part and "The refit on train+val" in part
    folds = table_rows(section(page, "folds"))
    results = pd.read_csv(crossval / "results.csv")
    assert len(folds) == len(results) == 4
    assert [(r[0], float(r[2])) for r in folds] == list(zip(results["config"], results["fold"].astype(float)))
    check_contained(out, page)
    assert not (out / "computed").exists()  # everything was there: nothing computed


def test_a_missing_error_bar_plot_is_drawn_again_and_said(crossval, tmp_path):
    folder = tmp_path / "cv"
    shutil.copytree(crossval, folder, ignore=shutil.ignore_patterns("report"))
    (folder / "crossval.png").unlink()
    result = run(CliRunner(), "report", folder, "--json")
    assert result.exit_code == 0, result.stderr
    said = json.loads(result.stdout)["computed"]
    assert len(said) == 1 and "crossval.png" in said[0]
    page = (folder / "report" / "index.html").read_text()
    assert len(images_of(section(page, "summary"))) == 1 and 'id="computed"' in page
    assert not (folder / "crossval.png").exists()  # the crossval folder is read, never written


def test_a_crossval_folder_without_its_summary_is_refused_in_one_line(crossval, tmp_path):
    folder = tmp_path / "cv"
    shutil.copytree(crossval, folder, ignore=shutil.ignore_patterns("report"))
    (folder / "summary.csv").unlink()
    result = run(CliRunner(), "report", folder)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "summary.csv is missing" in result.stderr and "cvkit crossval summarize" in result.stderr
    assert not (folder / "report").exists()
