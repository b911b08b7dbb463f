"""The report's metrics and worst sections of multilabel, localize, regress (keypoints) and segment runs
(cvkit/report/task_sections.py), on tiny real runs: 1 epoch on mosaics, canvases and scenes of Fashion-MNIST
items whose class or target names are hostile HTML, evaluated through the CLI, then drawn by ``task_parts``
into a page folder and through ``cvkit report``."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvkit.files.report import PageWriter
from cvkit.files.run import ModelInfo
from cvkit.plots.report_tasks import boxes_picture, points_picture
from cvkit.report.context import ReportContext
from cvkit.report.html import esc, number
from cvkit.report.task_sections import task_parts
from cvkit.tasks import TASKS
from tests.conftest import FAST, run
from tests.tasks.canvases import write_keypoints, write_localize
from tests.tasks.mosaics import write_mosaics
from tests.tasks.scenes import write_segment

HOSTILE = "<img src=x onerror=alert(1)>"
QUOTED = 'it\'s "a" <b>.png'  # an image file name with quotes and markup
TRAIN = [*FAST, "--epochs", "1", "--seed", "0"]
UNET = ["--arch", "unet", "--padding", "same", "--base", "8", "--depth", "2", "--batch-size", "8"]
SPLIT = ["--size", "32", "--val", "0.25", "--test", "0.25"]
TOP = 4


def _ok(runner, *args) -> None:
    result = run(runner, "-q", *args)
    assert result.exit_code == 0, result.stderr


def _dataset(runner, source, out: Path, *options) -> Path:
    _ok(runner, "prepare", source, "--out", out, *SPLIT, *options)
    _ok(runner, "normalize", out)
    return out


def _trained(runner, data: Path, out: Path, *options) -> Path:
    _ok(runner, "train", data, "--out", out, *TRAIN, *options)
    _ok(runner, "evaluate", out, "--split", "test")
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One evaluated run per task, each with a class or target named ``HOSTILE``."""
    from typer.testing import CliRunner

    runner, root = CliRunner(), tmp_path_factory.mktemp("report_tasks")
    # multilabel: 'shirt' renamed, labels joined by ';' (the hostile name holds spaces)
    csv = write_mosaics(root / "mlsrc", 40, seed=0)
    frame = pd.read_csv(csv, keep_default_na=False)
    frame["labels"] = [";".join(HOSTILE if name == "shirt" else name for name in cell.split()) for cell in frame["labels"]]
    frame.to_csv(csv, index=False)
    ml = _dataset(runner, csv, root / "ml", "--task", "multilabel", "--label-delim", ";")
    # localize: 'bag' renamed, and every image file named with quotes and markup
    csv = write_localize(root / "locsrc", 40, seed=0)
    frame = pd.read_csv(csv)
    frame["label"] = frame["label"].replace("bag", HOSTILE)
    for i in range(len(frame)):
        new = f"images/{i:04d}-{QUOTED}"
        (csv.parent / frame.loc[i, "path"]).rename(csv.parent / new)
        frame.loc[i, "path"] = new
    frame.to_csv(csv, index=False)
    loc = _dataset(runner, csv, root / "loc", "--task", "localize")
    # plain targets: each item's box width and height
    sizes = root / "locsrc" / "sizes.csv"
    pd.DataFrame({"path": frame["path"], "w": frame["x1"] - frame["x0"], "h": frame["y1"] - frame["y0"]}).to_csv(
        sizes, index=False)
    plain = _dataset(runner, sizes, root / "plain", "--task", "regress", "--targets", "w,h")
    # keypoints: the x column named HOSTILE
    csv = write_keypoints(root / "kpsrc", 40, seed=0)
    pd.read_csv(csv).rename(columns={"cx": HOSTILE}).to_csv(csv, index=False)
    kp = _dataset(runner, csv, root / "kp", "--task", "regress", "--targets", f"{HOSTILE},cy", "--keypoints")
    # segment: 'bag' renamed in the mask classes
    src = write_segment(root / "segsrc", n=40, size=32, seed=0, lo=12, hi=20)
    names = (src / "classes.txt").read_text().splitlines()
    (src / "classes.txt").write_text("\n".join(HOSTILE if n == "bag" else n for n in names) + "\n")
    seg = _dataset(runner, src / "images", root / "seg", "--masks", src / "masks", "--mask-classes", src / "classes.txt")
    return {"multilabel": _trained(runner, ml, root / "mlrun"), "localize": _trained(runner, loc, root / "locrun"),
            "regress": _trained(runner, kp, root / "kprun"), "plain": _trained(runner, plain, root / "plainrun"),
            "segment": _trained(runner, seg, root / "segrun", *UNET)}


class Parsed(HTMLParser):
    """What a test reads of the markup: tables (rows of (text, data-value)), picture sources, all text,
    the items of description lists, and each figure's caption text."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[tuple[str, str | None]]]] = []
        self.images: list[str] = []
        self.captions: list[str] = []
        self.terms: dict[str, str] = {}
        self.text: list[str] = []
        self.ids: list[str] = []
        self._cell: list[str] | None = None
        self._value: str | None = None
        self._caption: list[str] | None = None
        self._dt: str | None = None
        self._in: str | None = None
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._value = [], attrs.get("data-value")
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "figcaption":
            self._caption = []
        elif tag in ("dt", "dd"):
            self._in = tag
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append(("".join(self._cell), self._value))
            self._cell = None
        elif tag == "figcaption" and self._caption is not None:
            self.captions.append("".join(self._caption))
            self._caption = None
        elif tag == "dt":
            self._dt, self._cell = "".join(self._cell or []), None
        elif tag == "dd" and self._dt is not None:
            self.terms[self._dt] = "".join(self._cell or [])
            self._dt = self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)


def _draw(run_dir: Path, folder: Path, top: int = TOP) -> tuple[dict[str, Parsed], ReportContext, dict, str]:
    """``task_parts`` of a run into ``folder``: each part parsed, the context, metrics.json, the markup."""
    ctx = ReportContext(PageWriter(folder), top=top)
    evaluation = ctx.evaluation(run_dir)
    assert evaluation == run_dir / "eval_test"  # evaluate's folder is reused, not computed again
    parts = task_parts(run_dir, ctx, ModelInfo.read(run_dir), evaluation)
    assert [anchor for anchor, _, _ in parts] == ["metrics", "worst"]
    markup = "".join(body for _, _, body in parts)
    return ({anchor: Parsed(body) for anchor, _, body in parts}, ctx,
            json.loads((evaluation / "metrics.json").read_text()), markup)


def _check_common(parsed: dict[str, Parsed], folder: Path, markup: str, metrics: dict, task: str, names: list[str]):
    """The per-class or per-target table has the run's names as rows, the headline is metrics.json's,
    every picture is a file inside the page folder, and the hostile name is shown as text only."""
    metrics_part = parsed["metrics"]
    rows = metrics_part.tables[0]
    assert [cells[0][0] for cells in rows[1:]] == names
    for key, title in TASKS[task].headline:
        if key in metrics:
            assert metrics_part.terms[title] == number(metrics[key]), title
    assert metrics_part.terms["images"] == number(metrics["count"])
    sources = [src for part in parsed.values() for src in part.images]
    assert sources
    for src in sources:
        assert not src.startswith(("/", "data:", "file:")) and ".." not in src
        path = (folder / src).resolve()
        assert path.is_file() and path.is_relative_to(folder.resolve())
        Image.open(path).verify()
    assert HOSTILE not in markup and esc(HOSTILE) in markup and "<img src=x" not in markup
    assert HOSTILE in "".join(metrics_part.text)  # shown as text, as the user named it
    return rows


def _column(rows, title: str) -> list[float]:
    index = [cell[0] for cell in rows[0]].index(title)
    return [float(cells[index][1]) if cells[index][1] is not None else float("nan") for cells in rows[1:]]


def test_multilabel_sections(runs, tmp_path):
    run_dir = runs["multilabel"]
    parsed, ctx, metrics, markup = _draw(run_dir, tmp_path)
    classes = ModelInfo.read(run_dir).classes
    rows = _check_common(parsed, tmp_path, markup, metrics, "multilabel", classes)
    per_class = {row["class"]: row for row in metrics["per_class"]}
    assert [cell[0] for cell in rows[0]] == ["class", "AP", "precision", "recall", "F1", "threshold", "support"]
    for title, key in (("AP", "ap"), ("F1", "f1"), ("threshold", "threshold"), ("support", "support")):
        shown = _column(rows, title)
        for name, value in zip(classes, shown):
            want = per_class[name][key]
            assert (np.isnan(value) and want is None) or value == pytest.approx(want, rel=1e-5, abs=1e-6), (name, key)
    assert len(parsed["metrics"].images) == 1  # the precision-recall curves
    # the worst images: the highest binary cross-entropy first, with every true label listed
    predictions = pd.read_csv(run_dir / "eval_test" / "predictions.csv")
    probs = np.clip(predictions.iloc[:, -len(classes):].to_numpy(), 1e-7, 1 - 1e-7)
    manifest = pd.read_csv(run_dir.parent / "ml" / "manifest.csv", keep_default_na=False).set_index("path")
    truth = np.array([[c in manifest.loc[p, "labels"].split("|") for c in classes] for p in predictions["path"]])
    loss = -(truth * np.log(probs) + (~truth) * np.log(1 - probs)).mean(1)
    order = np.argsort(-loss, kind="stable")[:TOP]
    captions = parsed["worst"].captions
    assert len(captions) == len(parsed["worst"].images) == TOP
    for rank, (i, caption) in enumerate(zip(order, captions), 1):
        assert caption.startswith(f"#{rank} · loss {number(float(loss[i]), 3)} · {Path(predictions['path'][i]).name}")
        for k in np.flatnonzero(truth[i]):
            assert f"{classes[k]} {number(float(predictions.iloc[i, 3 + k]), 3)} (" in caption
        assert caption.count("(right)") + caption.count("(missed)") == int(truth[i].sum())


def _has(picture: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((picture == np.array(colour, dtype=np.uint8)).all(-1).any())


def test_localize_sections_draw_the_predicted_box_against_the_true_one(runs, tmp_path):
    run_dir = runs["localize"]
    parsed, ctx, metrics, markup = _draw(run_dir, tmp_path)
    classes = ModelInfo.read(run_dir).classes
    rows = _check_common(parsed, tmp_path, markup, metrics, "localize", classes)
    counts = {row["class"]: row["count"] for row in metrics["per_class"]}
    assert _column(rows, "images") == [counts[c] for c in classes]
    assert QUOTED not in markup and esc(QUOTED) in markup  # the file names, as text
    predictions = pd.read_csv(run_dir / "eval_test" / "predictions.csv", keep_default_na=False)
    right = (predictions["label"] == predictions["predicted"]).to_numpy()
    order = np.lexsort((predictions["iou"].to_numpy(), right))[:TOP]
    captions = parsed["worst"].captions
    assert len(captions) == TOP
    for rank, (i, caption) in enumerate(zip(order, captions), 1):
        name = Path(predictions["path"][i]).name
        assert name.endswith(QUOTED) and caption.startswith(f"#{rank} · IoU {number(float(predictions['iou'][i]), 3)} · {name}")
        assert f"true: {predictions['label'][i]}" in caption and f"predicted: {predictions['predicted'][i]}" in caption
    first = np.asarray(Image.open(tmp_path / parsed["worst"].images[0]).convert("RGB"))
    assert first.shape[0] >= 160  # the 32 px cache image, enlarged
    assert _has(first, (50, 205, 50))  # the true box in limegreen
    hit = predictions["iou"][order[0]] >= 0.5
    assert _has(first, (0, 191, 255) if hit else (255, 0, 0))  # the predicted box: deepskyblue or red


def test_keypoint_sections_draw_true_and_predicted_points(runs, tmp_path):
    run_dir = runs["regress"]
    parsed, ctx, metrics, markup = _draw(run_dir, tmp_path)
    rows = _check_common(parsed, tmp_path, markup, metrics, "regress", [HOSTILE, "cy"])
    assert _column(rows, "MAE") == pytest.approx([row["mae"] for row in metrics["per_target"]], rel=1e-5)
    assert "PCK@0.1" in parsed["metrics"].terms and len(parsed["metrics"].images) == 1  # the scatter
    predictions = pd.read_csv(run_dir / "eval_test" / "predictions.csv")
    diff = predictions[[HOSTILE, "cy"]].to_numpy() - predictions[[f"true_{HOSTILE}", "true_cy"]].to_numpy()
    distance = np.sqrt((diff ** 2).sum(1))
    order = np.argsort(-distance, kind="stable")[:TOP]
    captions = parsed["worst"].captions
    assert len(captions) == TOP
    for rank, (i, caption) in enumerate(zip(order, captions), 1):
        assert caption.startswith(f"#{rank} · mean distance {number(float(distance[i]), 3)} px · ")
        true = f"({number(float(predictions[f'true_{HOSTILE}'][i]), 3)}, {number(float(predictions['true_cy'][i]), 3)})"
        assert f"{HOSTILE}: true {true}, predicted (" in caption
    first = np.asarray(Image.open(tmp_path / parsed["worst"].images[0]).convert("RGB"))
    assert _has(first, (50, 205, 50)) and _has(first, (255, 0, 0))  # true disc, predicted ring


def test_plain_regress_sections_list_the_true_and_predicted_values(runs, tmp_path):
    run_dir = runs["plain"]
    ctx = ReportContext(PageWriter(tmp_path), top=TOP)
    parts = {anchor: Parsed(body) for anchor, _, body in task_parts(run_dir, ctx, ModelInfo.read(run_dir),
                                                                      ctx.evaluation(run_dir))}
    assert [cells[0][0] for cells in parts["metrics"].tables[0][1:]] == ["w", "h"]
    assert "PCK@0.1" not in parts["metrics"].terms
    predictions = pd.read_csv(run_dir / "eval_test" / "predictions.csv")
    std = np.asarray(ModelInfo.read(run_dir).task_state["std"])
    error = (np.abs(predictions[["w", "h"]].to_numpy() - predictions[["true_w", "true_h"]].to_numpy()) / std).mean(1)
    captions = parts["worst"].captions
    assert len(captions) == TOP and len(parts["worst"].images) == TOP
    for rank, (i, caption) in enumerate(zip(np.argsort(-error, kind="stable")[:TOP], captions), 1):
        assert caption.startswith(f"#{rank} · mean error {number(float(error[i]), 3)} std · ")
        assert f"w: true {number(float(predictions['true_w'][i]), 4)}, predicted {number(float(predictions['w'][i]), 4)}" \
            in caption
    ctx = ReportContext(PageWriter(tmp_path / "none"), top=0)
    worst = dict((a, b) for a, _, b in task_parts(run_dir, ctx, ModelInfo.read(run_dir), run_dir / "eval_test"))["worst"]
    assert "<img" not in worst and "No image to show" in worst


def test_segment_sections_predict_the_worst_masks_again_as_evaluate_did(runs, tmp_path):
    from cvkit.plots.segment import palette
    from cvkit.tasks.segment_metrics import image_scores, per_image_confusions

    run_dir = runs["segment"]
    parsed, ctx, metrics, markup = _draw(run_dir, tmp_path)
    classes = ModelInfo.read(run_dir).classes
    rows = _check_common(parsed, tmp_path, markup, metrics, "segment", classes)
    ious = metrics["per_class_iou"]
    for name, value in zip(classes, _column(rows, "IoU")):
        assert (ious[name] is None and np.isnan(value)) or value == pytest.approx(ious[name], rel=1e-5, abs=1e-6)
    assert len(ctx.computed) == 1 and "predicted the masks of the 4 worst test images" in ctx.computed[0]
    worst = parsed["worst"]
    assert len(worst.images) == 3 * TOP and worst.captions[:3] == ["image", "true mask", "predicted mask"]
    predictions = pd.read_csv(run_dir / "eval_test" / "predictions.csv")
    order = np.argsort(np.nan_to_num(predictions["miou"].to_numpy(), nan=2.0), kind="stable")[:TOP]
    colours = {tuple(c): k for k, c in enumerate(palette()[:len(classes)].tolist())}
    for rank, i in enumerate(order):
        true_png, pred_png = (np.asarray(Image.open(tmp_path / src).convert("RGB")) for src in worst.images[3 * rank + 1:3 * rank + 3])
        factor = true_png.shape[0] // 32
        decode = [np.vectorize(lambda *c: colours.get(c, 255), otypes=[np.int64])(*picture[::factor, ::factor].transpose(2, 0, 1))
                  for picture in (true_png, pred_png)]
        # the masks predicted again score the image as evaluate did
        accuracy, miou = image_scores(per_image_confusions(decode[0][None], decode[1][None], len(classes)))
        assert miou[0] == pytest.approx(predictions["miou"][i], abs=1e-5)
        assert f"#{rank + 1} · mIoU {number(float(predictions['miou'][i]), 3)}" in "".join(worst.text)


def test_a_dataset_gone_since_evaluate_keeps_the_metrics_and_says_why_no_images(runs, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["localize"], run_dir)
    path = run_dir / "eval_test" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["data"], metrics["runs"] = str(tmp_path / "gone"), [str(run_dir)]
    path.write_text(json.dumps(metrics))
    ctx = ReportContext(PageWriter(tmp_path / "page"))
    parts = dict((anchor, body) for anchor, _, body in task_parts(run_dir, ctx, ModelInfo.read(run_dir),
                                                                   run_dir / "eval_test"))
    assert "<table" in parts["metrics"] and "The worst images cannot be shown" in parts["worst"]
    assert "<img" not in parts["worst"] and str(tmp_path / "gone") in Parsed(parts["worst"]).text[0]


def test_the_worst_localize_images_are_the_wrong_classes_then_the_lowest_iou():
    from cvkit.report.task_localize import ranking

    right = np.array([True, False, False, True])
    iou = np.array([0.1, 0.9, 0.5, 0.8])
    assert ranking(right, iou).tolist() == [2, 1, 0, 3]


def test_the_pictures_put_boxes_and_points_on_their_pixels():
    image = np.zeros((8, 10, 1), np.uint8)
    picture = np.asarray(boxes_picture(image, (2, 1, 6, 5), (0, 0, 10, 8), hit=False))
    assert picture.shape == (160, 200, 3)  # enlarged 20 times, nearest
    green = (picture == (50, 205, 50)).all(-1)
    assert green[20:100, 40].all() and green[20, 40:120].all() and not green[:19].any() and not green[101:].any()
    assert (picture == (255, 0, 0)).all(-1)[0, :6].all()  # the dashed predicted box along the top edge
    picture = np.asarray(points_picture(image, np.array([[2.0, 3.0]]), np.array([[7.0, 3.0]])))
    assert tuple(picture[60, 40]) == (50, 205, 50) and (picture[55:66, 135:146] == (255, 0, 0)).all(-1).any()
    assert tuple(picture[60, 100]) == (255, 255, 255)  # the line from the true point to the prediction


# --------------------------------------------------------------------------- through the CLI (the run page)


@pytest.mark.parametrize("task", ["multilabel", "localize"])
def test_cvkit_report_shows_the_task_sections(runs, runner, tmp_path, task):
    out = tmp_path / "report"
    result = run(runner, "report", runs[task], "--out", out, "--top", "3")
    assert result.exit_code == 0, result.stderr
    page = (out / "index.html").read_text()
    parsed = Parsed(page)
    assert {"metrics", "worst"} <= set(parsed.ids)
    metrics_at, worst_at = page.index('id="metrics"'), page.index('id="worst"')
    classes = ModelInfo.read(runs[task]).classes
    metrics_part = Parsed(page[metrics_at:page.index("</section>", metrics_at)])
    assert [cells[0][0] for cells in metrics_part.tables[0][1:]] == classes
    worst_part = Parsed(page[worst_at:page.index("</section>", worst_at)])
    assert len(worst_part.captions) == 3 and len(worst_part.images) == 3
    for src in parsed.images:
        assert (out / src).resolve().is_file() and (out / src).resolve().is_relative_to(out.resolve())
    assert HOSTILE not in page and esc(HOSTILE) in page
