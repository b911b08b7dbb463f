"""``--head gap`` against ``--head gmp``: the size of CAM's boxes on generated shapes.

The subject's claim (Zhou et al., 2016): global average pooling makes the class activation map cover
the whole object, global max pooling only its most telling part, so GMP's box should be the smaller.
Each setup generates shapes (tests/shapes.py: a bright disc, square or cross on a textured
background, its box known), trains smallcnn with each head on the same data and seed, and runs
``cvkit cam --method cam`` on the val images. Per head and box threshold: the mean box area, the mean
IoU with the true box, and the pointing game (the map's peak inside the true box); and the val accuracy.
Nothing is chosen here, and the test split is not read.

Setups: ``small``, the tests' shapes (32 px images, shapes of 10-16 px: each cell of smallcnn's last
8 x 8 map sees about the whole shape); ``large``, 64 px images with shapes of 28-48 px (the last map is
16 x 16 and a cell sees a part of the shape).

Usage: python bench/bench_gmp.py [--setups small,large] [--seed 0]
Writes bench/results/gmp.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from common import CVKIT, WORK, run_measured, write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# name: (canvas px, shape sizes px, images per class, smallcnn --base, epochs)
SETUPS = {"small": (32, (10, 16), 60, 32, 12), "large": (64, (28, 48), 60, 16, 15)}
THRESHOLDS = (0.2, 0.3, 0.5)


def shapes(root: Path, canvas: int, sizes: tuple[int, int], per_class: int) -> tuple[Path, Path]:
    """A prepared, normalized shapes dataset in root/data (made once) and root/boxes.csv."""
    from tests.shapes import SHAPES, shape_image

    data, boxes = root / "data", root / "boxes.csv"
    if (data / "stats.json").is_file():
        return data, boxes
    rng = np.random.default_rng(0)
    lines = ["path,x0,y0,x1,y1"]
    for kind in SHAPES:
        (root / "images" / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image, box = shape_image(kind, rng, canvas, sizes)
            Image.fromarray(image).save(root / "images" / kind / f"{i:03d}.png")
            lines.append(f"images/{kind}/{i:03d}.png,{','.join(map(str, box))}")
    boxes.write_text("\n".join(lines) + "\n")
    run_measured(CVKIT + ["-q", "prepare", str(root / "images"), "--out", str(data), "--size", str(canvas), "--val",
                          "0.2", "--test", "0.2", "--force"])
    run_measured(CVKIT + ["-q", "normalize", str(data)])
    return data, boxes


def measure(run: Path, data: Path, boxes: Path, root: Path) -> dict:
    from cvkit.explain.boxes import boxes_from_maps, iou, peak

    manifest = pd.read_csv(data / "manifest.csv")
    paths = [str(data / p) for p in manifest.loc[manifest["split"] == "val", "path"]]  # absolute stay as they are
    listing = root / "val.csv"
    listing.write_text("path\n" + "\n".join(paths) + "\n")
    out = run / "cam_val"
    run_measured(CVKIT + ["-q", "cam", str(run), str(listing), "--method", "cam", "--out", str(out), "--force"])
    table = pd.read_csv(out / "cams.csv")
    maps = np.stack([np.load(out / name) for name in table["map"]])
    truth = {f"{kind}/{stem}": box for kind, stem, box in _true_boxes(boxes)}
    keys = [f"{Path(p).parent.name}/{Path(p).stem}" for p in table["path"]]
    true = np.array([truth[k] for k in keys])
    peaks = np.array([peak(m) for m in maps])
    inside = (peaks[:, 0] >= true[:, 0]) & (peaks[:, 0] < true[:, 2]) & (peaks[:, 1] >= true[:, 1]) & (
        peaks[:, 1] < true[:, 3])
    figures = {"val_acc": json.loads((run / "model.json").read_text())["val_acc"], "images": len(maps),
               "pointing_game": round(float(inside.mean()), 4),
               "true_box_area": round(float(np.prod(true[:, 2:] - true[:, :2], axis=1).mean()), 1)}
    for t in THRESHOLDS:
        found = boxes_from_maps(maps, t)
        figures[f"box_area@{t}"] = round(float(np.prod(found[:, 2:] - found[:, :2], axis=1).mean()), 1)
        figures[f"mean_iou@{t}"] = round(float(np.mean([iou(tuple(a), tuple(b)) for a, b in zip(found, true)])), 4)
    figures["map_share_above_half"] = round(float((maps >= 0.5).mean()), 4)
    return figures


def _true_boxes(boxes: Path):
    for row in pd.read_csv(boxes).itertuples():
        yield Path(row.path).parent.name, Path(row.path).stem, (row.x0, row.y0, row.x1, row.y1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {}
    for name in args.setups.split(","):
        canvas, sizes, per_class, base, epochs = SETUPS[name]
        root = WORK / "gmp" / name
        data, boxes = shapes(root, canvas, sizes, per_class)
        results[name] = {"canvas": canvas, "shape_sizes": list(sizes), "images_per_class": per_class,
                         "arch": f"smallcnn --base {base}", "epochs": epochs}
        for head in ("gap", "gmp"):
            run = root / f"{head}_seed{args.seed}"
            if not (run / "model.safetensors").is_file():
                run_measured(CVKIT + ["-q", "--seed", str(args.seed), "train", str(data), "--out", str(run), "--arch",
                                      "smallcnn", "--base", str(base), "--head", head, "--epochs", str(epochs),
                                      "--precision", "fp32", "--memory-format", "contiguous", "--batch-size", "32",
                                      "--force"])
            results[name][head] = measure(run, data, boxes, root)
            print(name, head, results[name][head], flush=True)
        gap, gmp = results[name]["gap"], results[name]["gmp"]
        results[name]["gmp_box_smaller"] = {str(t): gmp[f"box_area@{t}"] < gap[f"box_area@{t}"] for t in THRESHOLDS}
    write_result("gmp", {"method": "cam --method cam on the val images; boxes: the largest component of the map "
                                   "at or above threshold x its maximum", "seed": args.seed, "setups": results})


if __name__ == "__main__":
    main()
