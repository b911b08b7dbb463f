"""`cvkit cam` through the CLI: outputs, run discovery, refusals, and localization on generated shapes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import SAMPLE, run


def cli(*args):
    return run(CliRunner(), *args)


def shape_images(shapes: Path, per_class: int = 4) -> list[Path]:
    return [p for kind in ("disc", "square", "cross") for p in sorted((shapes / "images" / kind).glob("*.png"))[-per_class:]]


def test_gradcam_writes_overlay_map_and_csv(shapes_run, shapes, tmp_path):
    images = shape_images(shapes, 2)
    out = tmp_path / "cam"
    result = cli("cam", shapes_run, *images, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out / "cams.csv")
    assert f"run {shapes_run}" in result.stderr and "layer features.1" in result.stderr
    table = pd.read_csv(out / "cams.csv")
    assert list(table.columns[:7]) == ["path", "class", "score", "x0", "y0", "x1", "y1"]
    assert len(table) == len(images) and set(table["method"]) == {"gradcam"}
    assert ((table.x1 > table.x0) & (table.y1 > table.y0) & (table.x1 <= 32) & (table.y1 <= 32)).all()
    for image in images:
        m = np.load(out / f"{image.stem}_gradcam.npy")
        assert m.shape == (32, 32) and m.dtype == np.float32 and m.min() >= 0 and m.max() == pytest.approx(1.0)
        picture = np.asarray(Image.open(out / f"{image.stem}_gradcam.png"))
        assert picture.shape[1] >= 256 and len(np.unique(picture.reshape(-1, 3), axis=0)) > 50


def split_images(run_dir: Path, split: str) -> list[Path]:
    """The images of one split of the dataset ``run_dir`` was trained on."""
    data = Path(json.loads((run_dir / "config.json").read_text())["data"])
    manifest = pd.read_csv(data / "manifest.csv")
    return [Path(p) for p in manifest.loc[manifest["split"] == split, "path"]]


LOCALIZE = ("cam", "gradcam", "augmented-gradcam")
THRESHOLDS = (0.2, 0.3, 0.4, 0.5)


def test_shapes_localization_and_faithfulness(shapes_run, shapes, tmp_path):
    """The CAM and Grad-CAM of a net trained on shapes point at the shape, and their boxes overlap it.

    The box threshold is chosen per method on the val images (by mean IoU), then the test images are
    read once with it: at the default 0.2, maps upsampled from the 8 x 8 layer make boxes too large
    (bench/results/cam.json)."""
    from cvkit.explain.boxes import boxes_from_maps, ious
    from cvkit.files.cams import read_true_boxes

    truth = read_true_boxes(shapes / "boxes.csv")
    val = split_images(shapes_run, "val")
    result = cli("cam", shapes_run, *val, "--method", ",".join(LOCALIZE), "--out", tmp_path / "val")
    assert result.exit_code == 0, result.stderr
    chosen = {}
    for method in LOCALIZE:
        maps = np.stack([np.load(tmp_path / "val" / f"{p.stem}_{method}.npy") for p in val])
        true = np.array([truth.get(str(p)).box for p in val])
        scores = {t: ious(boxes_from_maps(maps, t), true).mean() for t in THRESHOLDS}
        chosen[method] = max(scores, key=scores.get)
    test = split_images(shapes_run, "test")
    for method in LOCALIZE:
        out = tmp_path / f"test_{method}"
        result = cli("cam", shapes_run, *test, "--method", method, "--box-threshold", chosen[method],
                     "--boxes", shapes / "boxes.csv", "--metrics", "--out", out)
        assert result.exit_code == 0, result.stderr
        loc = json.loads((out / "localization.json").read_text())
        assert loc["format"] == 1 and loc["images_with_boxes"] == len(test)
        figures = loc["methods"][method]
        assert figures["pointing_game"] >= 0.8, (method, chosen[method], figures)
        assert figures["iou_at_0_5"] >= 0.6, (method, chosen[method], figures)
        assert figures["localization_accuracy"] >= 0.6, (method, chosen[method], figures)
        faith = json.loads((out / "faithfulness.json").read_text())["methods"][method]
        assert 0 <= faith["deletion_auc"] < faith["insertion_auc"] <= 1, (method, faith)


def test_newest_run_under_runs_is_used(shapes_run, shapes, tmp_path, monkeypatch):
    for name in ("old", "new"):
        shutil.copytree(shapes_run, tmp_path / "runs" / name)
    (tmp_path / "runs" / "old" / "model.json").touch()
    image = shape_images(shapes, 1)[0]
    monkeypatch.chdir(tmp_path)
    result = cli("cam", image)
    assert result.exit_code == 0, result.stderr
    assert "run runs/old" in result.stderr
    assert (tmp_path / "runs" / "old" / "cam" / f"{image.stem}_gradcam.png").is_file()


def test_no_run_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = shutil.copy(SAMPLE / "photos" / next(p.name for p in (SAMPLE / "photos").iterdir()), tmp_path)
    result = cli("cam", image)
    assert result.exit_code == 2
    assert "no run given and none under ./runs/" in result.stderr and "--pretrained" in result.stderr


def test_pretrained_offline_says_how_to_do_without(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    image = next((SAMPLE / "photos").iterdir())
    result = cli("cam", image, "--arch", "resnet18", "--pretrained", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "cannot be downloaded here" in result.stderr and "--weights FILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_pretrained_weights_in_the_local_cache_load_without_network(tmp_path, monkeypatch):
    """Offline, a download retried for about a minute; cached weights are now read from their file."""
    import time

    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    cfg = timm.models.get_pretrained_cfg("resnet18")
    snapshot = tmp_path / "hub" / f"models--{cfg.hf_hub_id.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    torch.manual_seed(7)
    state = timm.create_model("resnet18").state_dict()
    save_file(state, snapshot / "model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    from cvkit.models import create_model

    started = time.perf_counter()
    model = create_model("resnet18", 1000, 3, (224, 224), pretrained=True)
    assert time.perf_counter() - started < 20
    assert torch.equal(model.state_dict()["conv1.weight"], state["conv1.weight"])
    image = next((SAMPLE / "photos").iterdir())
    result = cli("-q", "cam", image, "--arch", "resnet18", "--pretrained", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.stderr


def test_local_imagenet_weights(tmp_path):
    from safetensors.torch import save_file

    from cvkit.models import create_model

    weights = tmp_path / "resnet18.safetensors"
    save_file(create_model("resnet18", 1000, 3, (224, 224)).state_dict(), weights)
    image = next((SAMPLE / "photos").iterdir())
    result = cli("cam", image, "--arch", "resnet18", "--weights", weights, "--out", tmp_path / "o", "--topk", "2")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(tmp_path / "o" / "cams.csv")
    assert list(table["rank"]) == [1, 2] and table["class"].nunique() == 2
    assert "layer layer4" in result.stderr
    assert np.load(tmp_path / "o" / f"{image.stem}_gradcam_top1.npy").shape == (224, 224)


def test_cam_refuses_a_model_without_gap(trained, tmp_path):
    image = next((SAMPLE / "fashion" / "bag").iterdir())
    result = cli("cam", trained, image, "--method", "cam", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "--method cam needs" in result.stderr and "--head gap" in result.stderr and "gradcam" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--layer", "featurs.1"], "--layer featurs.1: the model has no layer of that name with a feature map (did you mean"),
    (["--method", "gradcm"], "gradcm"),
    (["--class", "ellipse"], "--class ellipse is not a class of the model"),
    (["--topk", "9"], "--topk 9 must lie between 1 and the number of classes (3)"),
    (["--box-threshold", "1.5"], "--box-threshold 1.5 must lie between 0 and 1"),
])
def test_bad_options(shapes_run, shapes, tmp_path, args, message):
    result = cli("cam", shapes_run, shape_images(shapes, 1)[0], "--out", tmp_path / "o", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not (tmp_path / "o").exists()


def test_layer_error_lists_valid_layers(shapes_run, shapes, tmp_path):
    result = cli("cam", shapes_run, shape_images(shapes, 1)[0], "--layer", "nope", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "valid layers: " in result.stderr and "features.0" in result.stderr and "features.1" in result.stderr


def test_corrupt_images_are_listed_and_skipped(shapes_run, shapes, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    good = shape_images(shapes, 1)[0]
    result = cli("cam", shapes_run, good, bad, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    assert "broken.png" in (tmp_path / "o" / "rejected.csv").read_text()
    assert len(pd.read_csv(tmp_path / "o" / "cams.csv")) == 1
    result = cli("cam", shapes_run, bad, "--out", tmp_path / "o2")
    assert result.exit_code == 2 and "could be read" in result.stderr


def test_class_option_explains_that_class(shapes_run, shapes, tmp_path):
    image = shape_images(shapes, 1)[0]
    result = cli("cam", shapes_run, image, "--class", "square", "--method", "gradcam++", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    table = pd.read_csv(tmp_path / "o" / "cams.csv")
    assert list(table["class"]) == ["square"] and (tmp_path / "o" / f"{image.stem}_gradcam++.png").is_file()


def test_rerun_replaces_default_out_and_no_hooks_are_left(shapes_run, shapes):
    from cvkit.explain.cam import CamOptions, cam
    from cvkit.runtime import load_run

    loaded = load_run(shapes_run, torch.device("cpu"))
    images = [str(p) for p in shape_images(shapes, 2)]
    for _ in range(3):
        summary = cam(loaded, images, None, CamOptions(methods=["gradcam", "scorecam"]))
    assert summary.out == shapes_run / "cam"
    assert all(not m._forward_hooks and not m._backward_hooks for m in loaded.model.modules())
    assert all(p.grad is None for p in loaded.model.parameters())
