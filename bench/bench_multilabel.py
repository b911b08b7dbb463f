"""Multi-label classification with default options on 56 px 2x2 mosaics of real Fashion-MNIST items.

Each mosaic holds 1-3 items of the IDX train images (tests/tasks/mosaics.py's layout: a textured canvas,
labels drawn with unequal frequencies). Per seed: prepare --task multilabel (--val 0.2 --test 0.2),
normalize, train with defaults (the epoch is chosen on val mAP, the thresholds on val F1), then evaluate
the test split once. Reports test mAP, micro/macro F1 and exact match, mean and spread over the seeds.

Usage: python bench/bench_multilabel.py [--images 1200] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

from common import CVKIT, HERE, WORK, need_fmnist, run_measured, spread, write_result

sys.path.insert(0, str(HERE.parent))
from tests.tasks import mosaics  # noqa: E402

CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def idx_items(folder: Path, per_class: int = 600, part: str = "train") -> dict[str, list[np.ndarray]]:
    """The first ``per_class`` images of each class, from the IDX files (``part``: train, or t10k for the
    test images)."""
    with gzip.open(folder / f"{part}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder / f"{part}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return {name: list(images[labels == k][:per_class]) for k, name in enumerate(CLASSES)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    items = idx_items(need_fmnist())
    mosaics.fashion_items = lambda: items  # the real items instead of sample_data's 20 per class
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        root = WORK / f"multilabel_{args.images}_{seed}"
        csv = mosaics.write_mosaics(root / "src", args.images, seed=seed)
        data, run = root / "ds", root / "run"
        run_measured(CVKIT + ["-q", "prepare", str(csv), "--out", str(data), "--task", "multilabel", "--size", "56",
                              "--val", "0.2", "--test", "0.2", "--seed", str(seed), "--force"])
        run_measured(CVKIT + ["-q", "normalize", str(data)])
        seconds, _, _ = run_measured(CVKIT + ["-q", "--seed", str(seed), "train", str(data), "--out", str(run),
                                              "--force"])
        _, _, out = run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", "test", "--json"])
        figures = json.loads(out)
        epochs = len((run / "metrics.csv").read_text().splitlines()) - 1
        runs.append({"seed": seed, "train_wall_seconds": round(seconds, 1), "epochs": epochs,
                     **{k: round(figures[k], 4) for k in ("map", "micro_f1", "macro_f1", "exact_match", "hamming_loss")}})
        print(json.dumps(runs[-1]), flush=True)
    write_result("multilabel", {
        "images": args.images, "splits": "test figures: the test split, read once per seed after training; the "
                                          "epoch chose on val mAP and the thresholds on val F1",
        **{key: spread([r[key] for r in runs]) for key in ("map", "micro_f1", "macro_f1", "exact_match")},
        "runs": runs})


if __name__ == "__main__":
    main()
