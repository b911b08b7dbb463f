"""Localization with the multitask loss on real Fashion-MNIST items pasted onto 64 px textured canvases.

Each image holds one item of the IDX train images, scaled to 20-40 px at a random place
(tests/tasks/canvases.py). Per seed: prepare --task localize (--val 0.2 --test 0.2), normalize, train
with defaults, evaluate the test split once (accuracy, mean IoU, IoU >= 0.5 rate, localization accuracy).
For comparison, a classifier trained on the same images' labels only (train --task classify --head gap)
localizes the same test images weakly with ``cam --boxes`` (the same figures, localization.json).

``--choose``: train every --alpha x --box-loss pair and report the val split's figures only (the
default is picked there; the test split is not read).

Every run trains --epochs 15 (the default, auto, trains about 400 steps: 45 epochs of 2000 images'
1200-image train split, 9 minutes a run on this project's 2-core CPU at 64 px).

Usage: python bench/bench_localize.py [--images 2000] [--seeds 0,1,2] [--epochs 15] [--choose [--alphas 0.1,0.25,0.5]]
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from bench_multilabel import idx_items
from common import CVKIT, HERE, WORK, need_fmnist, run_measured, spread, write_result

sys.path.insert(0, str(HERE.parent))
from tests.tasks import canvases, mosaics  # noqa: E402

KEYS = ("accuracy", "mean_iou", "iou50", "loc_accuracy")


def dataset(images: int, seed: int):
    root = WORK / f"localize_{images}_{seed}"
    if (root / "ds" / "stats.json").is_file():  # the same seed writes the same dataset
        return root, root / "ds"
    csv = canvases.write_localize(root / "src", images, seed=seed)
    data = root / "ds"
    run_measured(CVKIT + ["-q", "prepare", str(csv), "--out", str(data), "--task", "localize", "--size", "64",
                          "--val", "0.2", "--test", "0.2", "--seed", str(seed), "--force"])
    run_measured(CVKIT + ["-q", "normalize", str(data)])
    return root, data


def train(data, run, seed: int, extra: list[str]) -> float:
    seconds, _, _ = run_measured(CVKIT + ["-q", "--seed", str(seed), "train", str(data), "--out", str(run), "--force",
                                          *extra])
    return seconds


def evaluate(run, split: str) -> dict:
    _, _, out = run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", split, "--json"])
    return json.loads(out)


def weak_localization(root, data, seed: int, extra: list[str]) -> dict:
    """A classifier (GAP head, CAM-ready) on the labels only, then cam --boxes on the test images."""
    run = root / "classify"
    train(data, run, seed, ["--task", "classify", "--head", "gap", *extra])
    manifest = pd.read_csv(data / "manifest.csv").query("split == 'test'")
    truth = root / "test_boxes.csv"
    boxes = manifest[["path", "label", "x0", "y0", "x1", "y1"]].copy()
    for column in ("x0", "y0", "x1", "y1"):  # cam's box CSV takes whole pixels (the canvases' boxes are)
        boxes[column] = boxes[column].round().astype(int)
    boxes.to_csv(truth, index=False)
    listing = root / "test_images.csv"
    manifest[["path"]].to_csv(listing, index=False)
    run_measured(CVKIT + ["-q", "cam", str(run), str(listing), "--boxes", str(truth), "--out", str(root / "cam"),
                          "--force"])
    found = json.loads((root / "cam" / "localization.json").read_text())
    method, figures = next(iter(found["methods"].items()))  # cam's default method
    return {"method": method, "accuracy": float(evaluate(run, "test")["accuracy"]), "mean_iou": figures["mean_iou"],
            "iou50": figures["iou_at_0_5"], "loc_accuracy": figures["localization_accuracy"]}


def choose(args) -> None:
    rows = []
    for seed in args.seeds:
        root, data = dataset(args.images, seed)
        for alpha in args.alphas:
            for box_loss in ("smooth_l1", "giou"):
                run = root / f"run_{alpha}_{box_loss}"
                if not (run / "model.json").is_file():  # a rerun keeps the runs it finished
                    train(data, run, seed, ["--alpha", str(alpha), "--box-loss", box_loss, *args.train])
                figures = evaluate(run, "val")
                rows.append({"seed": seed, "alpha": alpha, "box_loss": box_loss, **{k: round(figures[k], 4) for k in KEYS}})
                print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows).groupby(["alpha", "box_loss"])[list(KEYS)].agg(["mean", "std"]).round(4)
    print(table.to_string())
    write_result("localize_choose", {"images": args.images, "train_options": args.train,
                                     "splits": "val figures only: the default is chosen here", "runs": rows})


def report(args) -> None:
    runs = []
    for seed in args.seeds:
        root, data = dataset(args.images, seed)
        seconds = train(data, root / "run", seed, args.train)
        figures = evaluate(root / "run", "test")
        weak = weak_localization(root, data, seed, args.train)
        runs.append({"seed": seed, "train_wall_seconds": round(seconds, 1), **{k: round(figures[k], 4) for k in KEYS},
                     "cam_method": weak["method"], **{f"cam_{k}": round(weak[k], 4) for k in KEYS}})
        print(json.dumps(runs[-1]), flush=True)
    write_result("localize", {
        "images": args.images, "train_options": args.train, "splits": "test figures: the test split, read once per seed after training",
        **{k: spread([r[k] for r in runs]) for k in KEYS}, **{f"cam_{k}": spread([r[f"cam_{k}"] for r in runs])
                                                             for k in KEYS}, "runs": runs})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--choose", action="store_true")
    parser.add_argument("--alphas", default="0.1,0.25,0.5")
    parser.add_argument("--epochs", default="15", help="train's --epochs (auto: about 400 steps, 9 min a run here)")
    args = parser.parse_args()
    args.alphas = [float(a) for a in args.alphas.split(",")]
    args.train = ["--epochs", args.epochs]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    items = idx_items(need_fmnist())
    mosaics.fashion_items = lambda: items  # the real items instead of sample_data's 20 per class
    choose(args) if args.choose else report(args)


if __name__ == "__main__":
    main()
