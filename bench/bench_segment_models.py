"""Semantic segmentation on held-out scenes: U-Net with defaults, an FCN decoder on a classifier's backbone,
and the convolutionalized classifier with no segmentation training, in one table.

Scenes are 64 px textured canvases holding 1-3 real Fashion-MNIST items (tests/tasks/scenes.py; mask: the
item's class, 11 classes with the background, faint edges 255). Train and val scenes are made of IDX train
items, test scenes of IDX test items (held-out items as well as held-out scenes): prepare reads the split
folders (--val 0.2 of train). Per seed:

- ``unet``: ``cvkit train DS --arch unet`` with every default;
- a classifier: smallcnn trained on 32 px crops of the train scenes (each item's centre, and background
  windows), the dataset's 11 classes;
- ``fcn``: ``cvkit train DS --arch fcn --encoder smallcnn --weights CLASSIFIER/model.safetensors`` (defaults
  otherwise): the classifier made the encoder of an FCN-8s;
- ``convolutionalized``: ``cvkit convolutionalize CLASSIFIER --segmenter upsample --data DS``: no
  segmentation training at all.

Each is scored with ``cvkit evaluate --split test`` (test mIoU over the 11 classes, pixel accuracy); training
seconds are train's epochs (the FCN and the convolutionalized net add their classifier's).

``--choose`` instead compares candidate U-Net defaults on the val split at one wall-clock --budget each
(padding valid against same), over the seeds; the test split is not read then.

Usage: python bench/bench_segment_models.py [--train 1500] [--test 500] [--seeds 0,1,2]
       python bench/bench_segment_models.py --choose [--budget 150s] [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bench_multilabel import idx_items
from common import CVKIT, HERE, WORK, need_fmnist, run_measured, spread, write_result

sys.path.insert(0, str(HERE.parent))
from tests.tasks import scenes  # noqa: E402

SIZE = 64
CROP = 32  # the classifier's input: a window about an item's size


def sources(train: int, test: int, seed: int) -> Path:
    """SRC/images/{train,test} and SRC/masks/{train,test}, written once per (sizes, seed)."""
    root = WORK / f"segment_models_{train}_{test}_{seed}"
    src = root / "src"
    if not (src / "done").is_file():
        fmnist = need_fmnist()
        for split, items, n in (("train", idx_items(fmnist), train), ("test", idx_items(fmnist, 200, "t10k"), test)):
            part = scenes.write_segment(root / f"tmp_{split}", items, n=n, size=SIZE, seed=seed * 7 + (split == "test"))
            for kind in ("images", "masks"):
                (src / kind).mkdir(parents=True, exist_ok=True)
                (part / kind).rename(src / kind / split)
            (part / "classes.txt").replace(src / "classes.txt")
        (src / "done").write_text("")
    return root


def prepare(root: Path, seed: int) -> Path:
    src, data = root / "src", root / "ds"
    if not (data / "stats.json").is_file():
        run_measured(CVKIT + ["-q", "prepare", str(src / "images"), "--masks", str(src / "masks"), "--mask-classes",
                              str(src / "classes.txt"), "--out", str(data), "--size", str(SIZE), "--val", "0.2",
                              "--seed", str(seed), "--force"])
        run_measured(CVKIT + ["-q", "normalize", str(data)])
    return data


def train(data: Path, run: Path, seed: int, *options: str) -> float:
    """Train; the seconds of its epochs (metrics.csv), start-up excluded."""
    run_measured(CVKIT + ["-q", "--seed", str(seed), "train", str(data), "--out", str(run), "--force", *options])
    return round(float(pd.read_csv(run / "metrics.csv")["seconds"].sum()), 1)


def evaluate(run: Path, data: Path, split: str) -> dict:
    _, _, out = run_measured(CVKIT + ["-q", "evaluate", str(run), "--data", str(data), "--split", split, "--json"])
    figures = json.loads(out)
    return {"miou": round(figures["miou"], 4), "pixel_accuracy": round(figures["pixel_accuracy"], 4),
            "fw_iou": round(figures["fw_iou"], 4),
            "per_class_iou": {k: (None if v is None else round(v, 4)) for k, v in figures["per_class_iou"].items()}}


def crops(root: Path, data: Path) -> Path:
    """A classification dataset of 32 px windows of the train split's scenes: one centred on each item
    (its class), and up to two background windows per scene (no labelled item pixel inside)."""
    out = root / "crops"
    if (out / "done").is_file():
        return out
    manifest = pd.read_csv(data / "manifest.csv", keep_default_na=False)
    names = json.loads((data / "classes.json").read_text())["classes"]
    rng = np.random.default_rng(0)
    for i, row in manifest[manifest["split"] == "train"].iterrows():
        image, mask = np.asarray(Image.open(row["path"]).convert("RGB")), np.asarray(Image.open(row["mask"]))
        windows = []
        for c in np.unique(mask):
            if c in (0, 255):
                continue
            ys, xs = np.nonzero(mask == c)
            windows.append((c, int(ys.mean()), int(xs.mean())))
        for _ in range(2):
            y, x = rng.integers(CROP // 2, SIZE - CROP // 2, 2)
            window = mask[y - CROP // 2:y + CROP // 2, x - CROP // 2:x + CROP // 2]
            if not ((window != 0) & (window != 255)).any():
                windows.append((0, int(y), int(x)))
        for c, y, x in windows:
            y0 = int(np.clip(y - CROP // 2, 0, SIZE - CROP))
            x0 = int(np.clip(x - CROP // 2, 0, SIZE - CROP))
            folder = out / "images" / names[c]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[y0:y0 + CROP, x0:x0 + CROP]).save(folder / f"{i}_{c}.png")
    (out / "done").write_text("")
    return out


def classifier(root: Path, data: Path, seed: int) -> tuple[Path, float]:
    src = crops(root, data)
    cls = root / "cls_ds"
    run_measured(CVKIT + ["-q", "prepare", str(src / "images"), "--out", str(cls), "--size", str(CROP), "--val", "0.2",
                          "--test", "0", "--seed", str(seed), "--force"])
    run_measured(CVKIT + ["-q", "normalize", str(cls)])
    run = root / f"cls_run_{seed}"
    return run, train(cls, run, seed, "--arch", "smallcnn")


def table(args) -> None:
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        root = sources(args.train, args.test, seed)
        data = prepare(root, seed)
        row: dict = {"seed": seed}
        seconds = train(data, root / "unet", seed, "--arch", "unet")
        row["unet"] = {"train_seconds": seconds, **evaluate(root / "unet", data, "test")}
        cls, cls_seconds = classifier(root, data, seed)
        seconds = train(data, root / "fcn", seed, "--arch", "fcn", "--encoder", "smallcnn", "--weights",
                        str(cls / "model.safetensors"))
        row["fcn"] = {"train_seconds": round(seconds + cls_seconds, 1), **evaluate(root / "fcn", data, "test")}
        run_measured(CVKIT + ["-q", "convolutionalize", str(cls), "--segmenter", "upsample", "--data", str(data),
                              "--out", str(root / "conv"), "--force"])
        row["convolutionalized"] = {"train_seconds": cls_seconds, **evaluate(root / "conv", data, "test")}
        runs.append(row)
        print(json.dumps(row), flush=True)
    models = ("unet", "fcn", "convolutionalized")
    write_result("segment_models", {
        "train_scenes": args.train, "test_scenes": args.test, "size": SIZE, "classes": 11,
        "splits": "train/val: scenes of IDX train items (--val 0.2); test: scenes of IDX test items, read once",
        "models": {m: {k: spread([r[m][k] for r in runs]) for k in ("miou", "pixel_accuracy", "train_seconds")}
                   for m in models},
        "runs": runs})


def choose(args) -> None:
    """U-Net padding on val at one budget each."""
    candidates = {"valid": ["--padding", "valid"], "same": ["--padding", "same"]}
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        root = sources(args.train, args.test, seed)
        data = prepare(root, seed)
        row: dict = {"seed": seed}
        for name, options in candidates.items():
            run = root / f"choose_{name}"
            seconds = train(data, run, seed, "--arch", "unet", "--budget", args.budget, *options)
            epochs = len(pd.read_csv(run / "metrics.csv"))
            row[name] = {"train_seconds": seconds, "epochs": epochs, **evaluate(run, data, "val")}
        runs.append(row)
        print(json.dumps(row), flush=True)
    write_result("segment_choose", {
        "train_scenes": args.train, "budget": args.budget, "candidates": candidates,
        "splits": "val split only (--val 0.2 of the train scenes); the test split is not read",
        "val_miou": {name: spread([r[name]["miou"] for r in runs]) for name in candidates}, "runs": runs})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--choose", action="store_true")
    parser.add_argument("--budget", default="150s")
    args = parser.parse_args()
    choose(args) if args.choose else table(args)


if __name__ == "__main__":
    main()
