"""``evaluate --tta VIEWS`` on Fashion-MNIST: the accuracy each set of test-time views buys, and its cost.

Two runs train (``--epochs 3`` unless told otherwise) on the prepared and normalized Fashion-MNIST
(read only), into RUNS/tta_NAME_seedS (reused when there): ``default`` with the defaults (``--hflip
0.5``), ``geometric`` with a policy file that adds training's shifts and zooms (``--translate 0.1
--scale 0.9,1.1``, written into RUNS). Each run's best weights are scored on val with no TTA, flip,
flip+shift and flip+shift+scale (``cvkit.runtime.LoadedRun.predict``, what ``evaluate`` calls), timing
the forward passes of each; the test split is read once per run and set of views, for the report only
(nothing is chosen on it).

Usage: python bench/bench_tta.py [--epochs 3] [--seed 0] [--runs DIR] [--only default,geometric]
Writes bench/results/tta.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import CVKIT, WORK, fmnist_dataset, run_measured, write_result

VIEW_SETS = ("none", "flip", "flip,shift", "flip,shift,scale")
# What the geometric run's policy adds to the default mirror: shifts and zooms like the views'
GEOMETRIC = {"hflip": 0.5, "translate": 0.1, "scale": [0.9, 1.1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", default="3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=WORK / "runs", help="Where the runs are trained (or found).")
    parser.add_argument("--only", default="default,geometric")
    args = parser.parse_args()
    import torch

    data = fmnist_dataset()
    args.runs.mkdir(parents=True, exist_ok=True)
    policy = args.runs / "tta_geometric.json"
    policy.write_text(json.dumps({"format": 1, "policy": GEOMETRIC}))
    extra = {"default": [], "geometric": ["--augment", str(policy)]}
    augment = {"default": {"hflip": 0.5}, "geometric": GEOMETRIC}
    results = {name: {"augment": augment[name], **score(data, args.runs / f"tta_{name}_seed{args.seed}", args,
                                                          extra[name])}
               for name in args.only.split(",")}
    write_result("tta", {
        "data": "Fashion-MNIST, 28 px, 54k train / 6k val / 10k test", "epochs": int(args.epochs),
        "seed": args.seed, "threads": torch.get_num_threads(), "geometric_policy": GEOMETRIC,
        "splits": "val: the figures to choose by; test: read once per run and view set, for the report",
        "runs": results})


def score(data: Path, run: Path, args: argparse.Namespace, extra: list[str]) -> dict:
    """Train ``run`` unless it is there, then its figures and forward-pass time with each set of views."""
    import torch

    from cvkit.data import load_split
    from cvkit.runtime import load_run
    from cvkit.transforms.views import make_views, parse_views

    train_seconds = None
    if not (run / "model.safetensors").is_file():
        train_seconds, _, _ = run_measured(CVKIT + ["-q", "train", str(data), "--epochs", args.epochs, "--seed",
                                                    str(args.seed), "--out", str(run), "--force", *extra])
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
        print(run.name, row, flush=True)
    for row in rows:
        row["cost_vs_none"] = round(row["val_seconds"] / rows[0]["val_seconds"], 2)
    return {"run": run.name, "best_epoch": loaded.info.epoch,
            "train_wall_seconds": round(train_seconds, 1) if train_seconds else None,
            "chosen_on_val_by_training": loaded.info.tta.get("chosen"),
            "best_on_val": max(rows, key=lambda r: r["val_accuracy"])["tta"], "views": rows}


if __name__ == "__main__":
    main()
