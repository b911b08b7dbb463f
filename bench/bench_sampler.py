"""``train --sampler none|balanced|sqrt`` on an imbalanced real dataset: scikit-learn's digits with
classes 5-9 cut to a tenth of their training images (val and test keep 30 images of every class).

Each sampler trains with the defaults otherwise, over seeds; the test split is read once per run for
the rare classes' mean recall, the common classes' mean recall and macro-F1. The sampler is an
option, not a default: nothing here is chosen on test.

Usage: python bench/bench_sampler.py [--seeds 0,1,2]
Writes bench/results/sampler.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from common import CVKIT, WORK, run_measured, spread, write_result

RARE = [5, 6, 7, 8, 9]
HELD_OUT = 30  # test and val images per class


def dataset() -> Path:
    """WORK/digits_imbalanced, prepared at 8 px from a CSV source (built once)."""
    out = WORK / "digits_imbalanced"
    if (out / "manifest.csv").is_file():
        return out
    from sklearn.datasets import load_digits

    digits = load_digits()
    src = WORK / "digits_imbalanced_src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    rows = ["path,label,split"]
    for d in range(10):
        images = np.rint(digits.images[digits.target == d] * 255 / 16).astype(np.uint8)
        train_n = len(images) - 2 * HELD_OUT
        keep = train_n // 10 if d in RARE else train_n
        for i, image in enumerate(images[:2 * HELD_OUT + keep]):
            Image.fromarray(image, "L").save(src / f"{d}_{i}.png")
            split = "test" if i < HELD_OUT else "val" if i < 2 * HELD_OUT else "train"
            rows.append(f"{d}_{i}.png,{d},{split}")
    (src / "digits.csv").write_text("\n".join(rows) + "\n")
    run_measured(CVKIT + ["-q", "prepare", str(src / "digits.csv"), "--out", str(out), "--size", "8"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    data = dataset()
    results = {}
    for sampler in ("none", "balanced", "sqrt"):
        runs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            run = WORK / "runs" / f"sampler_{sampler}_seed{seed}"
            seconds, _, _ = run_measured(CVKIT + ["-q", "train", str(data), "--out", str(run), "--force",
                                                  "--seed", str(seed), "--sampler", sampler])
            _, _, out = run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", "test", "--json",
                                              "--out", str(run / "eval_test")])
            metrics = json.loads(out)
            recall = {row["class"]: row["recall"] for row in metrics["per_class"]}
            runs.append({"seed": seed, "rare_recall": round(float(np.mean([recall[str(d)] for d in RARE])), 4),
                         "common_recall": round(float(np.mean([recall[str(d)] for d in range(10) if d not in RARE])), 4),
                         "macro_f1": round(metrics["macro_f1"], 4), "accuracy": metrics["accuracy"],
                         "train_wall_seconds": round(seconds, 1)})
            print(json.dumps({sampler: runs[-1]}), flush=True)
        results[sampler] = {k: spread([r[k] for r in runs]) for k in ("rare_recall", "common_recall", "macro_f1")}
        results[sampler]["runs"] = runs
    write_result("sampler", {"data": "sklearn digits, classes 5-9 cut to a tenth of their train images; val and "
                                     f"test {HELD_OUT} per class", "split": "test, read once per run", **results})


if __name__ == "__main__":
    main()
