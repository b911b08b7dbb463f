"""Keypoint regression on real Fashion-MNIST items pasted onto 64 px textured canvases.

Each image holds one item of the IDX train images, scaled to 20-40 px at a random place
(tests/tasks/canvases.py); the targets are the item's centre (cx, cy) as keypoints. Per seed: prepare
--task regress --targets cx,cy --keypoints (--val 0.2 --test 0.2), normalize, train (defaults but
--epochs), evaluate the test split once: PCK@0.1, MAE and RMSE in the input's pixels, R². For
comparison, the PCK of predicting the train split's mean point for every test image.

Usage: python bench/bench_regress.py [--images 2000] [--seeds 0,1,2] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from bench_multilabel import idx_items
from common import CVKIT, HERE, WORK, need_fmnist, run_measured, spread, write_result

sys.path.insert(0, str(HERE.parent))
from tests.tasks import canvases, mosaics  # noqa: E402

KEYS = ("pck", "mae", "rmse", "r2")


def mean_point_pck(data) -> float:
    """PCK@0.1 of predicting the train split's mean centre for every test image (all images are 64 px)."""
    frame = pd.read_csv(data / "manifest.csv")
    train, test = frame[frame["split"] == "train"], frame[frame["split"] == "test"]
    guess = train[["cx", "cy"]].to_numpy().mean(0)
    distance = np.hypot(*(test[["cx", "cy"]].to_numpy() - guess).T)
    return float((distance <= 0.1 * 64).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", default="15")
    args = parser.parse_args()
    items = idx_items(need_fmnist())
    mosaics.fashion_items = lambda: items  # the real items instead of sample_data's 20 per class
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        root = WORK / f"regress_{args.images}_{seed}"
        csv = canvases.write_keypoints(root / "src", args.images, seed=seed)
        data, run = root / "ds", root / "run"
        run_measured(CVKIT + ["-q", "prepare", str(csv), "--out", str(data), "--task", "regress", "--targets", "cx,cy",
                              "--keypoints", "--size", "64", "--val", "0.2", "--test", "0.2", "--seed", str(seed),
                              "--force"])
        run_measured(CVKIT + ["-q", "normalize", str(data)])
        seconds, _, _ = run_measured(CVKIT + ["-q", "--seed", str(seed), "train", str(data), "--out", str(run),
                                              "--epochs", args.epochs, "--force"])
        _, _, out = run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", "test", "--json"])
        figures = json.loads(out)
        runs.append({"seed": seed, "train_wall_seconds": round(seconds, 1), **{k: round(figures[k], 4) for k in KEYS},
                     "mean_point_pck": round(mean_point_pck(data), 4)})
        print(json.dumps(runs[-1]), flush=True)
    write_result("regress", {
        "images": args.images, "train_options": ["--epochs", args.epochs],
        "splits": "test figures: the test split, read once per seed after training (the epoch chosen on val MAE)",
        **{k: spread([r[k] for r in runs]) for k in (*KEYS, "mean_point_pck")}, "runs": runs})


if __name__ == "__main__":
    main()
