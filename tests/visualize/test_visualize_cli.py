"""`cvkit visualize` from the command line: every option writes a titled, non-blank PNG of the expected size."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from tests.conftest import SAMPLE, leftovers, run, tree
from tests.visualize import check_png

BAG = SAMPLE / "fashion" / "bag" / "001.png"


def test_every_option_on_a_grayscale_run(trained, tmp_path):
    out = tmp_path / "vis"
    result = run(CliRunner(), "visualize", trained, "--curves", "--filters", "--activations", BAG, "--layer",
                 "features.0", "--max-patches", "--units", "4", "--top", "5", "--maximize", "--unit", "3", "--steps", "50",
                 "--saliency", BAG, "--smooth", "8", "--embedding", "--confusion", "--out", out)
    assert result.exit_code == 0, result.stderr
    names = ["curves.png", "filters.png", "activations_001_features.0.png", "max_patches_features.0_train.png",
             "max_patches_features.0_train.csv", "maximize_features.0_unit3.png", "saliency_001.png",
             "embedding_val_pca.png", "embedding_val_pca.csv", "confusion_val.png"]
    assert result.stdout.splitlines() == [str(out / name) for name in names]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    check_png(out / "curves.png", (1100, 450))
    check_png(out / "filters.png", (800, 870))  # 32 kernels: a 6 x 6 grid, square
    check_png(out / "activations_001_features.0.png", (1040, 870))  # the input beside 32 maps
    check_png(out / "max_patches_features.0_train.png", (800, round(100 * (8 * (4 * 6 + 3) / (5 * 6 + 4) + 1.0))))
    check_png(out / "maximize_features.0_unit3.png", (400, 410))
    check_png(out / "saliency_001.png", (960, 410))  # image, gradient, SmoothGrad
    check_png(out / "embedding_val_pca.png", (850, 700))
    check_png(out / "confusion_val.png", (950, 400))

    patches = pd.read_csv(out / "max_patches_features.0_train.csv")
    assert list(patches.columns) == ["unit", "rank", "activation", "index", "path", "y", "x", "y0", "x0", "height",
                                     "width"]
    assert len(patches) == 4 * 5 and (patches["height"] == 6).all() and (patches["width"] == 6).all()
    for _, rows in patches.groupby("unit", sort=False):  # strongest first, one patch per image
        assert rows["activation"].is_monotonic_decreasing and rows["index"].is_unique
    points = pd.read_csv(out / "embedding_val_pca.csv")
    assert list(points.columns) == ["index", "path", "label", "x", "y"] and len(points) == 40


def test_rerun_keeps_earlier_pictures_and_replaces_redrawn_ones(trained, tmp_path):
    out = trained / "visualize"
    assert run(CliRunner(), "-q", "visualize", trained, "--filters").exit_code == 0
    first = (out / "filters.png").read_bytes()
    result = run(CliRunner(), "-q", "visualize", trained, "--curves", "--filters")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [str(out / "curves.png"), str(out / "filters.png")]
    assert (out / "filters.png").read_bytes() == first  # the same weights draw the same picture
    result = run(CliRunner(), "-q", "visualize", trained, "--maximize", "--class", "bag", "--steps", "20")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "filters.png", "maximize_class_bag.png"]
    assert not leftovers(trained)


def test_rgb_run_filters_patches_maximize_and_saliency(shapes_run, shapes, tmp_path):
    image = shapes / "images" / "disc" / "000.png"
    out = tmp_path / "vis"
    result = run(CliRunner(), "-q", "visualize", shapes_run, "--filters", "--max-patches", "--layer", "features.1",
                 "--units", "3", "--top", "4", "--maximize", "--class", "square", "--steps", "50", "--saliency", image,
                 "--activations", image, "--out", out)
    assert result.exit_code == 0, result.stderr
    filters = check_png(out / "filters.png")
    # colour kernels: the grid holds pixels whose channels differ (not only grays and the white gaps)
    assert (filters.max(2).astype(int) - filters.min(2) > 40).sum() > 100
    check_png(out / "max_patches_features.1_train.png", (800, round(100 * (8 * (3 * 17 - 1) / (4 * 17 - 1) + 1.0))))
    check_png(out / "maximize_class_square.png", (400, 410))
    check_png(out / "saliency_000_square.png", (640, 410))  # --class is the target of both
    check_png(out / "activations_000_features.1.png")
    patches = pd.read_csv(out / "max_patches_features.1_train.csv")
    assert (patches["height"] == 16).all() and (patches["width"] == 16).all()


def test_default_layer_is_printed_and_split_is_chosen(shapes_run, tmp_path):
    out = tmp_path / "vis"
    result = run(CliRunner(), "visualize", shapes_run, "--max-patches", "--units", "2", "--top", "2", "--split", "val",
                 "--embedding", "--projection", "pca", "--points", "10", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "layer: features.1 (the last convolutional stage" in result.stderr
    assert result.stdout.splitlines()[0] == str(out / "max_patches_features.1_val.png")
    points = pd.read_csv(out / "embedding_val_pca.csv")
    assert len(points) == 10 and points["index"].is_monotonic_increasing  # a seeded sample of the val split
    assert json.loads((shapes_run / "model.json").read_text())["classes"] == ["cross", "disc", "square"]


def test_out_with_foreign_files_is_left_alone(trained, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    result = run(CliRunner(), "visualize", trained, "--filters", "--out", out)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --out {out} holds files cvkit did not write there")
    assert tree(out) == before
