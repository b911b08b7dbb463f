"""The perceptron learning rule and maxout units on scikit-learn's digits (8 px, 10 classes).

1. ``--arch perceptron --optimizer perceptron`` (the rule, image by image, from zero weights, eta 1)
   against the same net trained with ``--optimizer sgd`` (cvkit's defaults for it: one-cycle lr 0.1 per
   128 images, label smoothing 0.1, weight decay 5e-4): val accuracy per epoch and the training
   mistakes per epoch (the rule's ``errors`` column; for SGD the images each batch got wrong before its
   step, (1 - train_acc) x images).
2. ``--arch mlp`` with ``--activation maxout:2`` against relu, cvkit's defaults otherwise (Adam, one-cycle),
   for a fixed number of epochs.

Every run has no augmentation (a mirrored digit is another digit) and reads train and val only: the
best epoch is picked on val and the test split is not read. Seeds change the shuffles (and the SGD
and mlp runs' initial weights).

Usage: python bench/bench_subject.py [--seeds 0,1,2] [--epochs 20] [--mlp-epochs 15]
Writes bench/results/subject.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from common import CVKIT, WORK, run_measured, spread, write_result

HELD_OUT = 30  # val and test images per class


def dataset() -> Path:
    """WORK/digits_subject: all of digits at 8 px, HELD_OUT images per class for val and for test (built once)."""
    out = WORK / "digits_subject"
    if (out / "manifest.csv").is_file():
        return out
    from sklearn.datasets import load_digits

    digits = load_digits()
    src = WORK / "digits_subject_src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    rows = ["path,label,split"]
    for d in range(10):
        for i, image in enumerate(np.rint(digits.images[digits.target == d] * 255 / 16).astype(np.uint8)):
            Image.fromarray(image, "L").save(src / f"{d}_{i}.png")
            rows.append(f"{d}_{i}.png,{d},{'test' if i < HELD_OUT else 'val' if i < 2 * HELD_OUT else 'train'}")
    (src / "digits.csv").write_text("\n".join(rows) + "\n")
    run_measured(CVKIT + ["-q", "prepare", str(src / "digits.csv"), "--out", str(out), "--size", "8"])
    run_measured(CVKIT + ["-q", "normalize", str(out)])
    return out


def train(data: Path, name: str, options: list[str]) -> dict:
    out = WORK / "runs" / name
    seconds, _, _ = run_measured(CVKIT + ["-q", "train", str(data), "--out", str(out), "--force", "--augment", "none",
                                          *options])
    metrics = pd.read_csv(out / "metrics.csv")
    batch = int(json.loads((out / "config.json").read_text())["resolved"]["batch_size"])
    n_train = int((pd.read_csv(data / "manifest.csv")["split"] == "train").sum()) // batch * batch  # whole batches
    errors = (metrics["errors"] if "errors" in metrics else (1 - metrics["train_acc"]) * n_train).round().astype(int)
    return {"best_val_acc": round(float(metrics["val_acc"].max()), 4),
            "last_val_acc": round(float(metrics["val_acc"].iloc[-1]), 4),
            "val_acc_per_epoch": [round(float(v), 4) for v in metrics["val_acc"]],
            "train_errors_per_epoch": [int(e) for e in errors], "train_images": n_train,
            "epochs": len(metrics), "train_wall_seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", default="20", help="epochs of the two perceptron runs")
    parser.add_argument("--mlp-epochs", default="15", help="epochs of the mlp runs")
    args = parser.parse_args()
    data = dataset()
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = {
        "perceptron_rule": ["--arch", "perceptron", "--optimizer", "perceptron", "--epochs", args.epochs],
        "perceptron_sgd": ["--arch", "perceptron", "--optimizer", "sgd", "--epochs", args.epochs],
        "mlp_relu": ["--arch", "mlp", "--activation", "relu", "--epochs", args.mlp_epochs],
        "mlp_maxout2": ["--arch", "mlp", "--activation", "maxout:2", "--epochs", args.mlp_epochs],
    }
    results = {}
    for key, options in configs.items():
        runs = []
        for seed in seeds:
            one = {"seed": seed, **train(data, f"subject_{key}_seed{seed}", [*options, "--seed", str(seed)])}
            runs.append(one)
            print(json.dumps({key: one}), flush=True)
        results[key] = {"options": options, "best_val_acc": spread([r["best_val_acc"] for r in runs]),
                        "last_val_acc": spread([r["last_val_acc"] for r in runs]),
                        "last_epoch_train_errors": spread([r["train_errors_per_epoch"][-1] for r in runs]),
                        "train_wall_seconds": spread([r["train_wall_seconds"] for r in runs]), "runs": runs}
    write_result("subject", {"data": f"scikit-learn digits, 8 px, {HELD_OUT} val and {HELD_OUT} test images per "
                                     "class, the rest train; val picks the best epoch, test not read",
                             **results})


if __name__ == "__main__":
    main()
