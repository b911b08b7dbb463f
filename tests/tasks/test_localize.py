"""Single-object localization through the CLI, on textured canvases holding one real Fashion-MNIST item each
(tests/tasks/canvases.py): prepare, train class + box, evaluate's figures and files, the loss, how
augmentation moves the box, and the refusals."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from cvkit.explain.boxes import localization_metrics
from cvkit.tasks import TaskSpec, create_task
from cvkit.tasks.boxes import ious
from cvkit.tasks.localize import DEFAULT_BOX_LOSS, Localize
from cvkit.transforms.batch import augment
from cvkit.transforms.policy import AugmentPolicy
from tests.conftest import FAST, run
from tests.hostile.test_hostile_files import one_line_error
from tests.tasks.canvases import write_localize

CLASSES = ["a", "b", "c"]
# The defaults of --alpha and --box-loss are chosen on bigger data (bench/); on 144 training images a
# box-heavy loss learns the box within seconds, and val_loss (mostly the box) picks a late epoch.
TRAIN = [*FAST, "--epochs", "12", "--seed", "0", "--alpha", "0.1", "--monitor", "val_loss"]


@pytest.fixture(scope="module")
def loc_data(tmp_path_factory):
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("localize")
    csv = write_localize(root / "src", 240, seed=0)
    out = root / "ds"
    runner = CliRunner()
    assert run(runner, "-q", "prepare", csv, "--out", out, "--task", "localize", "--size", "64", "--val", "0.2",
               "--test", "0.2").exit_code == 0
    assert run(runner, "-q", "normalize", out).exit_code == 0
    return out


@pytest.fixture(scope="module")
def loc_run(loc_data, tmp_path_factory):
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("locruns") / "run"
    result = run(CliRunner(), "-q", "train", loc_data, "--out", out, *TRAIN)
    assert result.exit_code == 0, result.stderr
    return out


def _centre_box_iou(manifest: pd.DataFrame) -> float:
    """The test split's mean IoU of one constant guess: the train boxes' mean size, centred."""
    norm = manifest[["x0", "y0", "x1", "y1"]].to_numpy() / manifest[["width", "height"] * 2].to_numpy()
    train, test = norm[manifest["split"] == "train"], norm[manifest["split"] == "test"]
    w, h = (train[:, 2] - train[:, 0]).mean(), (train[:, 3] - train[:, 1]).mean()
    guess = np.array([0.5 - w / 2, 0.5 - h / 2, 0.5 + w / 2, 0.5 + h / 2])
    return float(ious(np.tile(guess, (len(test), 1)), test).mean())


def test_a_localize_run_learns_the_box_and_evaluate_writes_its_files(loc_data, loc_run, runner):
    model = json.loads((loc_run / "model.json").read_text())
    assert model["task"] == "localize" and model["num_outputs"] == 10 + 4
    assert model["task_state"] == {"alpha": 0.1, "box_loss": DEFAULT_BOX_LOSS}
    metrics = pd.read_csv(loc_run / "metrics.csv")
    assert "val_loc_accuracy" in metrics.columns and "val_acc" not in metrics.columns
    result = run(runner, "evaluate", loc_run, "--split", "test", "--json")
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["task"] == "localize" and figures["count"] == 48
    for key in ("accuracy", "mean_iou", "iou50", "loc_accuracy"):
        assert 0 <= figures[key] <= 1, key
    assert figures["loc_accuracy"] <= min(figures["accuracy"], figures["iou50"])
    manifest = pd.read_csv(loc_data / "manifest.csv")
    baseline = _centre_box_iou(manifest)
    assert figures["mean_iou"] > baseline + 0.1, (figures["mean_iou"], baseline)

    out = loc_run / "eval_test"
    assert {"metrics.json", "predictions.csv", "per_class.csv", "boxes.png"} <= {p.name for p in out.iterdir()}
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.columns[:9]) == ["path", "label", "predicted", "score", "x0", "y0", "x1", "y1", "iou"]
    assert [c for c in table.columns[9:]] == [f"prob_{c}" for c in json.loads((loc_run / "model.json")
                                                                             .read_text())["classes"]]
    # boxes in the cache's pixels (64 x 64 here, as the files), the IoU the same as cam --boxes computes
    test = manifest[manifest["split"] == "test"].set_index("path").loc[table["path"]]
    boxes = table[["x0", "y0", "x1", "y1"]].to_numpy()
    assert boxes.min() >= 0 and boxes.max() <= 64 and (boxes[:, 2:] > boxes[:, :2]).all()
    true = test[["x0", "y0", "x1", "y1"]].to_numpy()
    np.testing.assert_allclose(table["iou"], ious(boxes, true), atol=1e-4)
    assert table["iou"].mean() == pytest.approx(figures["mean_iou"], abs=1e-5)
    correct = (table["label"] == table["predicted"]).to_numpy()
    cam_figures = localization_metrics(boxes, true, np.zeros((len(boxes), 2)), correct)
    assert cam_figures["localization_accuracy"] == pytest.approx(figures["loc_accuracy"])
    per_class = pd.read_csv(out / "per_class.csv")
    assert list(per_class.columns) == ["class", "count", "accuracy", "mean_iou", "iou50", "loc_accuracy"]
    assert per_class["count"].sum() == 48


def test_predict_and_classify_on_a_localize_dataset(loc_data, loc_run, runner, tmp_path):
    images = sorted((loc_data.parent / "src" / "images").glob("*.png"))[:4]
    result = run(runner, "-q", "predict", loc_run, *images, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert {"predicted", "score", "x0", "y0", "x1", "y1"} <= set(table.columns) and len(table) == 4
    # a localize dataset's rows have one class each: a plain classifier trains on them
    result = run(runner, "-q", "train", loc_data, "--out", tmp_path / "c", "--task", "classify", *FAST, "--epochs", "1")
    assert result.exit_code == 0, result.stderr
    model = json.loads((tmp_path / "c" / "model.json").read_text())
    assert model["task"] == "classify" and model["num_outputs"] == 10


def test_other_loss_options_train_and_bad_ones_are_refused(loc_data, runner, tmp_path):
    result = run(runner, "-q", "train", loc_data, "--out", tmp_path / "r", *FAST, "--epochs", "1",
                 "--box-loss", "smooth_l1", "--alpha", "0.25")
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "r" / "model.json").read_text())["task_state"] == {"alpha": 0.25,
                                                                                    "box_loss": "smooth_l1"}
    one_line_error(run(runner, "train", loc_data, "--out", tmp_path / "x", *FAST, "--alpha", "1.5"), "--alpha 1.5")
    one_line_error(run(runner, "train", loc_data, "--out", tmp_path / "x", *FAST, "--box-loss", "xyz"),
                   "--box-loss xyz", "smooth_l1, giou")
    one_line_error(run(runner, "train", loc_data, "--out", tmp_path / "x", *FAST, "--loss", "bce"), "--loss bce")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("option, needles", [
    (["--rotate", "10"], ["--rotate", "cvkit augment DATASET --rotate 0"]),
    (["--perspective", "0.1"], ["--perspective", "cvkit augment DATASET --perspective 0"]),
    (["--elastic", "0.1"], ["elastic", "--elastic 0"]),
    (["--mixup", "0.4"], ["mixup and cutmix", "--task localize"]),
])
def test_augmentation_the_box_cannot_follow_is_refused(loc_data, runner, tmp_path, option, needles):
    data = tmp_path / "ds"
    shutil.copytree(loc_data, data)
    one_line_error(run(runner, "augment", data, *option), *needles)  # before augment.json is written
    assert not (data / "augment.json").exists()
    policy = tmp_path / "policy.json"  # a policy file written elsewhere is refused by train itself
    name, value = option[0].lstrip("-"), float(option[1])
    policy.write_text(json.dumps({"format": 1, "policy": {name: value}}))
    one_line_error(run(runner, "train", data, "--out", tmp_path / "r", *FAST, "--epochs", "1", "--augment", policy),
                   *needles)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------- the task itself


def _task(**options) -> Localize:
    return create_task("localize", TaskSpec(CLASSES, options=options))


def _perfect(labels: torch.Tensor) -> torch.Tensor:
    """Outputs whose class is certain and whose box is the true one."""
    logits = torch.full((len(labels), len(CLASSES)), -30.0)
    logits[torch.arange(len(labels)), labels[:, 0].long()] = 30.0
    x0, y0, x1, y1 = labels[:, 1:5].unbind(1)
    cxcywh = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], 1)
    return torch.cat([logits, torch.logit(cxcywh)], 1)


LABELS = torch.tensor([[0, 0.1, 0.2, 0.5, 0.6], [2, 0.3, 0.3, 0.9, 0.7]])


@pytest.mark.parametrize("box_loss", ["giou", "smooth_l1"])
def test_the_loss_is_zero_for_a_perfect_prediction_and_the_weight_drops_the_box(box_loss):
    task = _task(box_loss=box_loss, alpha=0.5)
    assert task.num_outputs == 7
    perfect = _perfect(LABELS)
    assert float(task.loss(perfect, task.eval_targets(LABELS))) == pytest.approx(0, abs=1e-5)
    wrong = perfect.clone()
    wrong[:, 3:] = torch.tensor([2.0, -2.0, -1.0, 0.5])
    targets = task.eval_targets(LABELS)
    loss = task.loss(wrong, targets)
    assert math.isfinite(float(loss)) and float(loss) > 0.05
    unweighted = targets.clone()
    unweighted[:, -1] = 0  # both boxes cut off: only the (perfect) class is trained
    assert float(task.loss(wrong, unweighted)) == pytest.approx(0, abs=1e-5)
    random = torch.randn(2, 7, generator=torch.Generator().manual_seed(0)) * 50
    assert math.isfinite(float(task.loss(random, targets)))


def test_alpha_weighs_the_class_against_the_box():
    labels = LABELS
    outputs = _perfect(labels)
    outputs[:, :3] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # the class unsure, the second one wrong
    outputs[:, 3] += 1.0  # the box off centre
    ce = torch.nn.functional.cross_entropy(outputs[:, :3], labels[:, 0].long())
    only_class, only_box, half = _task(alpha=1.0), _task(alpha=0.0), _task(alpha=0.5)
    assert torch.allclose(only_class.loss(outputs, only_class.eval_targets(labels)), ce)
    box = only_box.loss(outputs, only_box.eval_targets(labels))
    assert float(box) > 0
    assert torch.allclose(half.loss(outputs, half.eval_targets(labels)), (ce + box) / 2)
    smoothed = create_task("localize", TaskSpec(CLASSES, label_smoothing=0.3)).train_targets(labels)
    assert torch.allclose(smoothed[:, :3].sum(1), torch.ones(2)) and float(smoothed[0, 0]) == pytest.approx(0.8)
    assert torch.equal(smoothed[:, 3:], torch.cat([labels[:, 1:], torch.ones(2, 1)], 1))


def test_a_flip_mirrors_the_box_and_a_crop_that_cuts_the_object_off_drops_it():
    task = _task()
    x = torch.zeros(2, 1, 8, 16)
    x[:, :, 2:4, 1:5] = 1  # the object: columns 1..4, rows 2..3
    labels = torch.tensor([[1, 1 / 16, 2 / 8, 5 / 16, 4 / 8]] * 2)
    flipped, matrices = augment(x, AugmentPolicy(hflip=1.0), torch.Generator().manual_seed(0), track=True)
    moved = task.move(labels, matrices, (8, 16))
    assert torch.allclose(moved * torch.tensor([1, 16, 8, 16, 8, 1]),
                          torch.tensor([[1.0, 11, 2, 15, 4, 1]] * 2))
    cols = flipped[0, 0].nonzero()[:, 1]
    assert (int(cols.min()), int(cols.max()) + 1) == (11, 15)  # the image moved as the box did
    # output -> source: the output shows the source's left half (x -1..0), stretched
    half = torch.eye(3, dtype=torch.float64).repeat(3, 1, 1)
    half[:, 0, 0], half[:, 0, 2] = 0.5, -0.5
    boxes = torch.tensor([[0, 0.1, 0.1, 0.3, 0.5],  # inside the left half: kept, twice as wide
                          [0, 0.7, 0.1, 0.9, 0.5],  # in the right half: cut off
                          [0, 0.4, 0.1, 0.6, 0.5]])  # half of it left: kept
    moved = task.move(boxes, half, (8, 16))
    assert moved[:, 5].tolist() == [1, 0, 1]
    assert torch.allclose(moved[0, 1:5], torch.tensor([0.2, 0.1, 0.6, 0.5]))
    assert torch.allclose(moved[2, 1:5], torch.tensor([0.8, 0.1, 1.0, 0.5]))
    probs = torch.tensor([[0.2, 0.3, 0.5, 0.1, 0.2, 0.4, 0.6]])
    assert torch.allclose(task.flip_back(probs), torch.tensor([[0.2, 0.3, 0.5, 0.6, 0.2, 0.9, 0.6]]))


def test_figures_and_the_prediction_table():
    task = _task()
    labels = np.array([[0, 0.0, 0.0, 0.5, 0.5], [1, 0.0, 0.0, 0.5, 0.5], [1, 0.5, 0.5, 1.0, 1.0]])
    probs = np.array([[0.8, 0.1, 0.1, 0.0, 0.0, 0.5, 0.5],  # class right, box right
                      [0.8, 0.1, 0.1, 0.0, 0.0, 0.5, 0.25],  # class wrong, IoU 0.5
                      [0.1, 0.8, 0.1, 0.0, 0.0, 0.5, 0.5]])  # class right, box elsewhere
    figures = task.metrics(probs, labels)
    assert figures["count"] == 3 and figures["accuracy"] == pytest.approx(2 / 3)
    assert figures["mean_iou"] == pytest.approx(0.5) and figures["iou50"] == pytest.approx(2 / 3)
    assert figures["loc_accuracy"] == pytest.approx(1 / 3) == task.score(probs, labels)
    assert [row["count"] for row in figures["per_class"]] == [1, 2, 0]
    assert figures["per_class"][1]["mean_iou"] == pytest.approx(0.25) and figures["per_class"][2]["accuracy"] is None
    table = task.prediction_table(["p", "q", "r"], probs, labels, np.tile([200.0, 100.0, 10.0, 5.0], (3, 1)))
    assert list(table.columns) == ["path", "label", "predicted", "score", "x0", "y0", "x1", "y1", "iou",
                                   "prob_a", "prob_b", "prob_c"]
    assert table.loc[1, ["x0", "y0", "x1", "y1"]].tolist() == [10, 5, 110, 30]
    assert table["iou"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    bare = task.prediction_table(["p"], probs[:1])
    assert list(bare.columns) == ["path", "predicted", "score", "x0", "y0", "x1", "y1", "prob_a", "prob_b", "prob_c"]
    assert task.top(probs[:1], 2) == [[("a", 0.8), ("b", 0.1)]]


def test_the_box_overlay_outlines_the_box(tmp_path):
    from PIL import Image

    from cvkit.plots.boxes import OVERLAY_RGB, draw_box_overlay

    image = np.zeros((40, 60, 3), np.uint8)
    draw_box_overlay(image, (10, 15, 30, 35), "coat 0.93", tmp_path / "o.png")
    drawn = np.asarray(Image.open(tmp_path / "o.png"))
    assert drawn.shape == (40, 60, 3)
    assert tuple(drawn[25, 10]) == OVERLAY_RGB and tuple(drawn[25, 29]) == OVERLAY_RGB  # the left and right edges
    assert tuple(drawn[25, 20]) == (0, 0, 0) and tuple(drawn[25, 30]) == (0, 0, 0)  # x1 is exclusive
