"""`cvkit normalize`: statistics from the train split only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from PIL import Image

from tests.conftest import SAMPLE, make_image, run


def prepared(runner, tmp_path, *extra):
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", SAMPLE / "fashion", "--out", out, *extra).exit_code == 0
    return out


def train_pixels(out):
    m = pd.read_csv(out / "manifest.csv")
    paths = m[m["split"] == "train"]["path"]
    return np.stack([np.asarray(Image.open(p), dtype=np.float64) / 255 for p in paths])


def test_stats_equal_numpy_over_train_images(runner, tmp_path):
    out = prepared(runner, tmp_path, "--size", "28")
    result = run(runner, "normalize", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out / "stats.json")
    stats = json.loads((out / "stats.json").read_text())
    x = train_pixels(out)
    assert stats["format"] == 1 and stats["split"] == "train" and stats["count"] == len(x) == 160
    assert stats["size"] == [28, 28] and stats["channels"] == 1
    assert abs(stats["mean"][0] - x.mean()) < 1e-5
    assert abs(stats["std"][0] - x.std()) < 1e-5
    assert "mean" in result.stderr and f"{x.mean():.4f}" in result.stderr


def test_image_added_only_to_test_split_leaves_stats_unchanged(runner, tmp_path):
    out = prepared(runner, tmp_path, "--size", "28")
    assert run(runner, "-q", "normalize", out).exit_code == 0
    before = (out / "stats.json").read_bytes()
    (out / "extra").mkdir()  # inside the dataset: a manifest path may not lead outside it or its source
    extra = make_image(out / "extra" / "white.png", seed=0, size=(28, 28), mode="L")
    Image.new("L", (28, 28), 255).save(extra)
    m = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    row = {"path": "extra/white.png", "label": "bag", "split": "test", "fold": -1, "sha1": "0" * 40}
    pd.concat([m, pd.DataFrame([row])]).to_csv(out / "manifest.csv", index=False)
    assert run(runner, "-q", "normalize", out).exit_code == 0
    assert (out / "stats.json").read_bytes() == before
    # ... while the same image added to train does move them.
    row["split"] = "train"
    pd.concat([m, pd.DataFrame([row])]).to_csv(out / "manifest.csv", index=False)
    assert run(runner, "-q", "normalize", out).exit_code == 0
    after = json.loads((out / "stats.json").read_text())
    assert after["count"] == 161 and after["mean"][0] > json.loads(before)["mean"][0]


def test_pixel_mode_writes_the_mean_image(runner, tmp_path):
    out = prepared(runner, tmp_path, "--size", "28")
    assert run(runner, "-q", "normalize", out, "--mode", "pixel").exit_code == 0
    mean_image = np.load(out / "mean_image.npy")
    assert mean_image.shape == (28, 28, 1) and mean_image.dtype == np.float32
    assert np.allclose(mean_image[:, :, 0], train_pixels(out).mean(0), atol=1e-6)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["mode"] == "pixel" and stats["mean_image"] == "mean_image.npy"


def test_size_comes_from_prepare_or_option(runner, tmp_path):
    out = prepared(runner, tmp_path)  # no --size
    result = run(runner, "normalize", out)
    assert result.exit_code == 2 and "--size" in result.stderr
    result = run(runner, "normalize", out, "--size", "16", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["size"] == [16, 16]
    assert (out / "cache" / "train_16x16.npy").is_file()


def test_color_dataset_gives_three_channels(runner, class_folders, tmp_path):
    out = tmp_path / "d"
    assert run(runner, "-q", "prepare", class_folders, "--out", out, "--size", "10x12").exit_code == 0
    stats = json.loads(run(runner, "-q", "normalize", out, "--json").stdout)
    assert len(stats["mean"]) == 3 and stats["size"] == [10, 12]
    assert all(0.4 < m < 0.6 for m in stats["mean"])  # uniform noise


def test_from_arch(runner, tmp_path, class_folders):
    out = tmp_path / "color"
    assert run(runner, "-q", "prepare", class_folders, "--out", out).exit_code == 0
    stats = json.loads(run(runner, "-q", "normalize", out, "--from-arch", "resnet18", "--json").stdout)
    assert stats["mean"] == [0.485, 0.456, 0.406] and stats["std"] == [0.229, 0.224, 0.225]
    assert stats["source"] == "timm:resnet18"
    gray = prepared(runner, tmp_path)
    stats = json.loads(run(runner, "-q", "normalize", gray, "--from-arch", "resnet18", "--json").stdout)
    assert len(stats["mean"]) == 1 and abs(stats["mean"][0] - (0.485 + 0.456 + 0.406) / 3) < 1e-6
    result = run(runner, "normalize", gray, "--from-arch", "resnt18")
    assert result.exit_code == 2
    assert "Unknown architecture 'resnt18'" in result.stderr and "resnet18" in result.stderr


def test_not_a_dataset(runner, tmp_path):
    result = run(runner, "normalize", tmp_path)
    assert result.exit_code == 2 and "cvkit prepare" in result.stderr
