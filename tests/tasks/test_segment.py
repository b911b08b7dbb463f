"""Semantic segmentation through the CLI on textured scenes of real Fashion-MNIST items (tests/tasks/scenes.py):
prepare with masks, train a tiny U-Net, evaluate's figures and files, predict on a larger image, export with
dynamic height and width, crossval, the convolutionalized classifier as a segmenter, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import FAST, run
from tests.hostile.test_hostile_files import one_line_error
from tests.tasks.scenes import large_scene, write_segment

SIZE = 32
UNET = ["--arch", "unet", "--padding", "same", "--base", "8", "--depth", "2"]
TRAIN = [*FAST, *UNET, "--batch-size", "8", "--lr", "0.01", "--epochs", "8", "--seed", "0"]


def _runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture(scope="module")
def seg_src(tmp_path_factory):
    return write_segment(tmp_path_factory.mktemp("segment") / "src", n=60, size=SIZE, seed=0, lo=12, hi=20)


@pytest.fixture(scope="module")
def seg_data(seg_src):
    out = seg_src.parent / "ds"
    r = _runner()
    result = run(r, "-q", "prepare", seg_src / "images", "--masks", seg_src / "masks", "--mask-classes",
                 seg_src / "classes.txt", "--out", out, "--size", SIZE, "--val", "0.2", "--test", "0.2", "--folds", "2")
    assert result.exit_code == 0, result.stderr
    assert run(r, "-q", "normalize", out).exit_code == 0
    return out


@pytest.fixture(scope="module")
def seg_run(seg_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("segruns") / "run"
    result = run(_runner(), "-q", "train", seg_data, "--out", out, *TRAIN)
    assert result.exit_code == 0, result.stderr
    return out


def test_train_records_the_segment_task_and_picks_the_epoch_on_val_miou(seg_run) -> None:
    model = json.loads((seg_run / "model.json").read_text())
    assert model["task"] == "segment" and model["num_outputs"] == 11 and model["classes"][0] == "background"
    assert model["arch_options"]["padding"] == "same" and model["arch_options"]["depth"] == 2
    metrics = pd.read_csv(seg_run / "metrics.csv")
    assert "val_miou" in metrics.columns
    assert model["epoch"] == int(metrics["epoch"][metrics["val_miou"].idxmax()])
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]


def test_evaluate_json_and_files(seg_run) -> None:
    result = run(_runner(), "evaluate", seg_run, "--split", "test", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("miou", "pixel_accuracy", "fw_iou", "per_class_iou"):
        assert key in metrics
    assert set(metrics["per_class_iou"]) == set(json.loads((seg_run / "model.json").read_text())["classes"])
    assert 0 <= metrics["miou"] <= 1
    assert metrics["pixel_accuracy"] > 0.5 and metrics["per_class_iou"]["background"] > 0.5  # it learnt the background
    folder = seg_run / "eval_test"
    for name in ("metrics.json", "predictions.csv", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png",
                 "worst.png"):
        assert (folder / name).is_file(), name
    matrix = pd.read_csv(folder / "confusion_matrix.csv").set_index("true")
    assert int(matrix.to_numpy().sum()) == metrics["pixels"]
    table = pd.read_csv(folder / "predictions.csv")
    assert {"path", "pixel_accuracy", "miou", "pixels_background"} <= set(table.columns)
    assert (table.filter(like="pixels_").sum(axis=1) == SIZE * SIZE).all()


def test_predict_a_larger_image_in_tiles(seg_run, tmp_path) -> None:
    image, _ = large_scene(SIZE * 3 + 5, SIZE * 2 + 3, seed=1)
    path = tmp_path / "street.png"
    Image.fromarray(image).save(path)
    small = tmp_path / "small.png"
    Image.fromarray(image[:20, :24]).save(small)  # smaller than a tile: mirror-padded
    out = tmp_path / "pred"
    result = run(_runner(), "-q", "predict", seg_run, path, small, "--out", out, "--probs")
    assert result.exit_code == 0, result.stderr
    mask = Image.open(out / "masks" / "street.png")
    assert mask.mode == "P" and mask.size == (SIZE * 3 + 5, SIZE * 2 + 3)
    assert np.asarray(mask).max() < 11
    assert Image.open(out / "masks" / "small.png").size == (24, 20)
    assert Image.open(out / "overlays" / "street.png").size == (SIZE * 3 + 5, SIZE * 2 + 3)
    probs = np.load(out / "probs" / "street.npy")
    assert probs.shape == (11, SIZE * 2 + 3, SIZE * 3 + 5)
    assert np.allclose(probs.astype(np.float32).sum(0), 1, atol=1e-2)
    assert (probs.argmax(0) == np.asarray(mask)).mean() > 0.99  # float16 ties aside
    table = pd.read_csv(out / "predictions.csv")
    row = table[table["path"].str.endswith("street.png")].iloc[0]
    assert (row["width"], row["height"]) == (SIZE * 3 + 5, SIZE * 2 + 3)
    assert int(table.filter(like="pixels_").iloc[0].sum()) == int(row["width"] * row["height"])


def test_predict_fit_and_refusals(seg_run, tmp_path) -> None:
    image, _ = large_scene(SIZE * 2, SIZE * 2, seed=2)
    path = tmp_path / "x.png"
    Image.fromarray(image).save(path)
    result = run(_runner(), "-q", "predict", seg_run, path, "--out", tmp_path / "p", "--fit")
    assert result.exit_code == 0, result.stderr
    assert Image.open(tmp_path / "p" / "masks" / "x.png").size == (SIZE * 2, SIZE * 2)


def test_tta_flip_is_averaged_and_views_a_mask_cannot_undo_are_refused(seg_run, tmp_path) -> None:
    scores = {}
    for name, option in (("plain", "--no-tta"), ("flip", "--tta=flip")):
        result = run(_runner(), "-q", "evaluate", seg_run, "--split", "val", option, "--json", "--out", tmp_path / name)
        assert result.exit_code == 0, result.stderr
        scores[name] = json.loads(result.stdout)
    assert scores["flip"]["tta_views"] == ["flip"] and scores["plain"]["tta_views"] == []
    assert scores["flip"]["pixel_accuracy"] != scores["plain"]["pixel_accuracy"]  # the mirror's maps were averaged in
    image, _ = large_scene(SIZE * 2, SIZE * 2, seed=3)
    Image.fromarray(image).save(tmp_path / "x.png")
    for command, inputs in (("evaluate", []), ("predict", [tmp_path / "x.png"])):
        result = run(_runner(), command, seg_run, *inputs, "--tta", "flip,scale", "--out", tmp_path / "refused")
        assert result.exit_code == 2
        assert result.stderr.startswith("Error: --tta scale: a segment run cannot move its predictions back from a "
                                        "scale view (only flip); leave scale out of --tta")
        assert not (tmp_path / "refused").exists()


def test_export_onnx_takes_any_size(seg_run, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    result = run(_runner(), "-q", "export", seg_run, "--format", "onnx", "--out", out)
    assert result.exit_code == 0, result.stderr
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for h, w in ((SIZE, SIZE), (SIZE + 13, SIZE * 2)):
        x = np.random.default_rng(0).random((2, 3, h, w), dtype=np.float32)
        probs = session.run(None, {"image": x})[0]
        assert probs.shape == (2, 11, h, w)
        assert np.allclose(probs.sum(1), 1, atol=1e-4)


def test_crossval_ranks_by_miou(seg_data, tmp_path) -> None:
    out = tmp_path / "cv"
    result = run(_runner(), "-q", "crossval", seg_data, "--out", out, *FAST, *UNET, "--epochs", "1", "--folds", "2")
    assert result.exit_code == 0, result.stderr
    assert (out / "summary.csv").is_file() or any(out.iterdir())


def test_mixup_refused_and_classifier_refused(seg_data, tmp_path) -> None:
    r = _runner()
    one_line_error(run(r, "augment", seg_data, "--mixup", "0.2"), "mixup")
    one_line_error(run(r, "train", seg_data, "--out", tmp_path / "r", *FAST, "--arch", "smallcnn", "--epochs", "1"),
                   "--arch smallcnn", "unet")
    one_line_error(run(r, "train", seg_data, "--out", tmp_path / "r2", *TRAIN, "--alpha", "0.5"), "--alpha")


def test_border_weight_and_dice_train(seg_data, tmp_path) -> None:
    out = tmp_path / "run"
    result = run(_runner(), "-q", "train", seg_data, "--out", out, *FAST, *UNET, "--epochs", "1",
                 "--border-weight", "10,3", "--dice", "0.5", "--class-weights", "auto")
    assert result.exit_code == 0, result.stderr
    state = json.loads((out / "model.json").read_text())["task_state"]
    assert state["border_weight"] == [10.0, 3.0] and state["dice"] == 0.5 and len(state["class_weights"]) == 11
    # the border term is computed once per mask and kept in the cache beside the masks, keyed by them
    from cvkit.data.cache import mask_planes
    from cvkit.tasks.borders import border_planes

    masks = np.load(seg_data / "cache" / f"train_{SIZE}x{SIZE}_mask.npy", mmap_mode="r")
    stored = seg_data / "cache" / f"train_{SIZE}x{SIZE}_mask_border3.npy"
    assert np.array_equal(np.load(stored), border_planes(np.asarray(masks), 3.0))
    assert np.load(stored).any()
    calls = []
    again = mask_planes(masks, "border3", lambda m: calls.append(1) or border_planes(m, 3.0))
    assert calls == [] and isinstance(again, np.memmap)  # read back, not recomputed
    mask_planes(masks[:5], "border3", lambda m: calls.append(len(m)) or border_planes(m, 3.0))
    assert calls == [5]  # part of a split: computed in memory, the stored planes untouched
    one_line_error(run(_runner(), "train", seg_data, "--out", tmp_path / "bad", *TRAIN, "--border-weight", "10"),
                   "--border-weight")


def test_a_convolutionalized_classifier_segments_without_training(seg_data, seg_src, tmp_path) -> None:
    """A classifier of the same classes (crops of the scenes' items and of their background), converted
    with --segmenter, is evaluated on the segmentation dataset like a trained segmenter."""
    from tests.tasks.scenes import class_names

    names = class_names()
    crops = tmp_path / "crops"
    masks = sorted((seg_src / "masks").iterdir())
    for i, mask_path in enumerate(masks[:40]):
        image = np.asarray(Image.open(seg_src / "images" / mask_path.name))
        mask = np.asarray(Image.open(mask_path))
        for c in np.unique(mask):
            if c == 255:
                continue
            ys, xs = np.nonzero(mask == c)
            y, x = int(np.clip(ys.mean() - 8, 0, SIZE - 16)), int(np.clip(xs.mean() - 8, 0, SIZE - 16))
            folder = crops / names[c]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[y:y + 16, x:x + 16]).save(folder / f"{i}_{c}.png")
    r = _runner()
    assert run(r, "-q", "prepare", crops, "--out", tmp_path / "cls", "--size", "16", "--val", "0.2",
               "--test", "0").exit_code == 0
    present = json.loads((tmp_path / "cls" / "classes.json").read_text())["classes"]
    assert sorted(present) == sorted(names) and present != names  # the folders' order, not the dataset's
    assert run(r, "-q", "train", tmp_path / "cls", "--out", tmp_path / "clsrun", *FAST, "--arch", "smallcnn",
               "--epochs", "2").exit_code == 0
    # without --data the segmenter keeps the classifier's order, which evaluate refuses on this dataset
    assert run(r, "-q", "convolutionalize", tmp_path / "clsrun", "--segmenter", "upsample", "--out",
               tmp_path / "unordered").exit_code == 0
    one_line_error(run(r, "-q", "evaluate", tmp_path / "unordered", "--data", seg_data), "classes")
    result = run(r, "-q", "convolutionalize", tmp_path / "clsrun", "--segmenter", "upsample", "--data", seg_data,
                 "--out", tmp_path / "seg")
    assert result.exit_code == 0, result.stderr
    result = run(r, "evaluate", tmp_path / "seg", "--data", seg_data, "--split", "test", "--json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["task"] == "segment" and 0 <= metrics["miou"] <= 1


def test_augment_materialize_moves_the_mask_with_the_image_pixel_for_pixel(tmp_path) -> None:
    """Images whose grey level encodes their mask (class c: 40 + 70 c), flipped and shifted by augment
    --materialize: every copy's mask is the one its own pixels encode (255 where the shift brought in
    what lay outside the image, which is black)."""
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (tmp_path / "src" / folder).mkdir(parents=True)
    for i in range(12):
        mask = np.zeros((24, 24), np.uint8)
        for c in (1, 2):
            y, x = rng.integers(0, 16, 2)
            mask[y:y + 8, x:x + 5] = c
        Image.fromarray((40 + 70 * mask).astype(np.uint8)).save(tmp_path / "src" / "images" / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "src" / "masks" / f"{i}.png")
    r = _runner()
    ds = tmp_path / "ds"
    assert run(r, "-q", "prepare", tmp_path / "src" / "images", "--masks", tmp_path / "src" / "masks", "--out", ds,
               "--size", "24", "--val", "0", "--test", "0").exit_code == 0
    result = run(r, "-q", "augment", ds, "--hflip", "0.5", "--translate", "0.25", "--materialize", "2")
    assert result.exit_code == 0, result.stderr
    manifest = pd.read_csv(ds / "manifest.csv", keep_default_na=False)
    copies = manifest[manifest["augmented_from"] != ""]
    assert len(copies) == 24 and copies["mask"].str.startswith("augmented/masks/").all()
    moved = 0
    for _, row in copies.iterrows():
        image = np.asarray(Image.open(ds / row["path"]).convert("L")).astype(int)
        mask = np.asarray(Image.open(ds / row["mask"]))
        expected = np.where(image == 0, 255, (image - 40) // 70)
        assert np.array_equal(mask, expected)
        source = np.asarray(Image.open(tmp_path / "src" / "masks" / Path(row["augmented_from"]).name))
        moved += not np.array_equal(mask, source)
        present = sorted(str(c) for c in np.unique(mask) if c != 255)
        assert sorted(row["labels"].split("|")) == present
    assert moved > 12  # flips and shifts changed most copies
    # the copies train with the originals
    assert run(r, "-q", "train", ds, "--out", tmp_path / "run", *FAST, *UNET, "--epochs", "1",
               "--augment", "none").exit_code == 0


def test_resume_and_budget_work_unchanged(seg_data, tmp_path) -> None:
    from cvkit.errors import Interrupted
    from cvkit.train import TrainConfig, fit

    whole, part = tmp_path / "whole", tmp_path / "part"
    options = dict(arch="unet", padding="same", base=8, depth=2, epochs=3, batch_size=8, lr=0.01,
                   precision="fp32", memory_format="contiguous")
    fit(TrainConfig(data=str(seg_data), out=str(whole), **options))

    def interrupt(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        fit(TrainConfig(data=str(seg_data), out=str(part), **options), callbacks=(interrupt,))
    result = run(_runner(), "-q", "train", "--resume", part)
    assert result.exit_code == 0, result.stderr
    a, b = pd.read_csv(whole / "metrics.csv"), pd.read_csv(part / "metrics.csv")
    assert list(b["epoch"]) == [1, 2, 3]
    assert np.allclose(a["train_loss"], b["train_loss"]) and np.allclose(a["val_miou"], b["val_miou"])
    budget = tmp_path / "budget"
    result = run(_runner(), "-q", "train", seg_data, "--out", budget, *FAST, *UNET, "--budget", "6s")
    assert result.exit_code == 0, result.stderr
    assert json.loads((budget / "config.json").read_text())["resolved"]["budget"]["seconds"] == 6


def test_visualize_and_inspect_work_on_a_segment_run(seg_run, seg_src, tmp_path) -> None:
    r = _runner()
    image = sorted((seg_src / "images").iterdir())[0]
    result = run(r, "-q", "visualize", seg_run, "--filters", "--activations", image, "--out", tmp_path / "vis")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "vis" / "filters.png").is_file() and list((tmp_path / "vis").glob("activations_*.png"))
    result = run(r, "inspect", seg_run, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert any("pads" in note or "multiple" in note or "output" in note for note in report["notes"])
    one_line_error(run(r, "-q", "cam", seg_run, image), "class per pixel")
    one_line_error(run(r, "-q", "visualize", seg_run, "--saliency", image), "--saliency")
