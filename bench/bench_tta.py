"""``evaluate --tta VIEWS`` on Fashion-MNIST: the accuracy each set of test-time views buys, and its cost.

One run trains with the defaults (``--epochs 3`` unless told otherwise) on the prepared and normalized
Fashion-MNIST (read only), into RUNS/tta_seedS (reused when it is there). Its best weights are then scored
on val with no TTA, flip, flip+shift and flip+shift+scale (``cvkit.runtime.LoadedRun.predict``, what
``evaluate`` calls), timing the forward passes of each; the test split is read once per set of views, for
the report only (nothing is chosen on it).

Usage: python bench/bench_tta.py [--epochs 3] [--seed 0] [--runs DIR]
Writes bench/results/tta.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import CVKIT, WORK, fmnist_dataset, run_measured, write_result

VIEW_SETS = ("none", "flip", "flip,shift", "flip,shift,scale")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", default="3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=WORK / "runs", help="Where the run is trained (or found).")
    args = parser.parse_args()
    import torch

    from cvkit.data import load_split
    from cvkit.runtime import load_run
    from cvkit.transforms.views import make_views, parse_views

    data = fmnist_dataset()
    run = args.runs / f"tta_seed{args.seed}"
    train_seconds = None
    if not (run / "model.safetensors").is_file():
        train_seconds, _, _ = run_measured(CVKIT + ["-q", "train", str(data), "--epochs", args.epochs, "--seed",
                                                    str(args.seed), "--out", str(run), "--force"])
    loaded = load_run(run, torch.device("cpu"))
    task = loaded.task
    splits = {split: load_split(data, split, loaded.input_size) for split in ("val", "test")}
    rows = []
    for views in VIEW_SETS:
        names = parse_views(views)
        row = {"tta": views, "forward_passes_per_image": 1 + len(make_views(names, loaded.input_size))}
        for split, part in splits.items():
            targets = task.targets(part)
            start = time.perf_counter()
            probs, _ = loaded.predict(part.images, batch_size=512, tta=names)
            seconds = time.perf_counter() - start
            scores = task.metrics(probs, targets)
            row[f"{split}_accuracy"] = round(scores["accuracy"], 4)
            row[f"{split}_log_loss"] = round(scores["log_loss"], 4)
            if split == "val":
                row["val_seconds"] = round(seconds, 2)
                row["val_images_per_s"] = round(len(targets) / seconds, 1)
        rows.append(row)
        print(row, flush=True)
    base = rows[0]["val_seconds"]
    for row in rows:
        row["cost_vs_none"] = round(row["val_seconds"] / base, 2)
    info = loaded.info
    write_result("tta", {
        "data": "Fashion-MNIST, 28 px, 54k train / 6k val / 10k test", "epochs": int(args.epochs),
        "seed": args.seed, "run_epoch": info.epoch, "train_wall_seconds": round(train_seconds, 1)
        if train_seconds else None, "chosen_on_val_by_training": info.tta.get("chosen"),
        "threads": torch.get_num_threads(), "splits": "val: the figures to choose by; test: read once per view set, "
                                                      "for the report", "views": rows})


if __name__ == "__main__":
    main()
