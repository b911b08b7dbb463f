"""Semantic segmentation: `cvkit train --arch unet` against the hand-written U-Net loop (bench/baseline_unet.py),
both on the same scenes, splits, width, depth, epochs and batch size, measured in this one run.

Each 64 px scene holds 1-3 real Fashion-MNIST items (the IDX train images) resized to 20-36 px on a textured
canvas; the mask is the item's label + 1 (background 0, 11 classes, faint edges 255 = ignore;
tests/tasks/scenes.py). Per seed: prepare SRC/images --masks SRC/masks --mask-classes SRC/classes.txt
(--val 0.2 --test 0.2), normalize, train --arch unet --padding same, evaluate --split val; then the baseline on
the train and val images of that manifest (it normalizes with the train split's statistics and flips as
cvkit's default augmentation does). Reports the training loop's pixels/s (images/s x H x W, val excluded) of
each and their ratio, and the val mIoU of each (cvkit: its best epoch on val; baseline: its last and best
epoch). The test split is not read.

--baseline-only runs the baseline alone on its own split (the last 20% of the scenes as val) and prints its
figures without writing a result, to check the baseline without cvkit's segment task.

Usage: python bench/bench_segment.py [--images 2000] [--seeds 0,1,2] [--epochs 10] [--base 16] [--depth 3]
                                     [--batch 32] [--baseline-only]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from bench_multilabel import idx_items
from common import CVKIT, HERE, WORK, need_fmnist, run_measured, spread, write_result

sys.path.insert(0, str(HERE.parent))
from tests.tasks import scenes  # noqa: E402

BASELINE = HERE / "baseline_unet.py"
SIZE = 64  # the scenes' side and prepare's --size: no resize on either side


def sources(items: dict, images: int, seed: int) -> Path:
    """The scenes of this seed in WORK (written once: the same seed writes the same files)."""
    root = WORK / f"segment_{images}_{seed}"
    src = root / "src"
    if not (src / "classes.txt").is_file() or len(list((src / "masks").glob("*.png"))) != images:
        scenes.write_segment(src, items, n=images, size=SIZE, seed=seed)
    return root


def prepare(root: Path, seed: int) -> Path:
    src, data = root / "src", root / "ds"
    run_measured(CVKIT + ["-q", "prepare", str(src / "images"), "--masks", str(src / "masks"), "--mask-classes",
                          str(src / "classes.txt"), "--out", str(data), "--size", str(SIZE), "--val", "0.2",
                          "--test", "0.2", "--seed", str(seed), "--force"])
    run_measured(CVKIT + ["-q", "normalize", str(data)])
    return data


def splits_of(data: Path, root: Path) -> Path:
    """cvkit's split of each scene (by file name, from the manifest), as the baseline's --splits CSV."""
    manifest = pd.read_csv(data / "manifest.csv")
    names = manifest["path"].map(lambda p: Path(p).name)
    found = set(names)
    missing = [p.name for p in (root / "src" / "images").glob("*.png") if p.name not in found]
    if missing:
        sys.exit(f"{data / 'manifest.csv'} lists no row for {len(missing)} scenes (e.g. {missing[0]}); "
                 f"see {data / 'rejected.csv'}")
    out = root / "splits.csv"
    pd.DataFrame({"name": names, "split": manifest["split"]}).to_csv(out, index=False)
    return out


def baseline(root: Path, args, seed: int, splits: Path | None) -> dict:
    summary = root / "baseline.json"
    command = [sys.executable, str(BASELINE), str(root / "src"), "--epochs", str(args.epochs), "--base",
               str(args.base), "--depth", str(args.depth), "--batch", str(args.batch), "--seed", str(seed),
               "--json", str(summary)]
    seconds, rss, _ = run_measured(command + (["--splits", str(splits)] if splits else []))
    figures = json.loads(summary.read_text())
    return {"wall_seconds": round(seconds, 1), "peak_rss_mib": round(rss / 2**20), **figures}


def cvkit(root: Path, data: Path, args, seed: int) -> dict:
    run = root / "run"
    seconds, rss, _ = run_measured(CVKIT + ["-q", "--seed", str(seed), "train", str(data), "--arch", "unet",
                                            "--padding", "same", "--base", str(args.base), "--depth", str(args.depth),
                                            "--epochs", str(args.epochs), "--batch-size", str(args.batch),
                                            "--out", str(run), "--force"])
    _, _, out = run_measured(CVKIT + ["-q", "evaluate", str(run), "--split", "val", "--json"])
    figures = json.loads(out)
    history = pd.read_csv(run / "metrics.csv")
    images = history["images_per_s"] * history["seconds"]  # training images seen per epoch
    resolved = json.loads((run / "config.json").read_text()).get("resolved", {})
    return {"wall_seconds": round(seconds, 1), "peak_rss_mib": round(rss / 2**20),
            "train_seconds": round(float(history["seconds"].sum()), 2),
            "pixels_per_s": round(float(images.sum() / history["seconds"].sum()) * SIZE * SIZE),
            "steady_pixels_per_s": round(float(images[1:].sum() / history["seconds"][1:].sum()) * SIZE * SIZE)
            if len(history) > 1 else None,
            "val_miou": round(float(figures["miou"]), 4), "precision": resolved.get("precision"),
            "memory_format": resolved.get("memory_format")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--baseline-only", action="store_true")
    args = parser.parse_args()
    items = idx_items(need_fmnist())
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        root = sources(items, args.images, seed)
        if args.baseline_only:
            print(json.dumps({"seed": seed, "baseline": baseline(root, args, seed, None)}), flush=True)
            continue
        data = prepare(root, seed)
        ours, theirs = cvkit(root, data, args, seed), baseline(root, args, seed, splits_of(data, root))
        runs.append({"seed": seed, "cvkit": ours, "baseline": {k: v for k, v in theirs.items() if k != "per_epoch"},
                     "speedup": round(ours["pixels_per_s"] / theirs["pixels_per_s"], 2)})
        print(json.dumps(runs[-1]), flush=True)
    if args.baseline_only:
        return
    write_result("segment", {
        "images": args.images, "size": SIZE, "classes": 11, "epochs": args.epochs, "batch": args.batch,
        "base": args.base, "depth": args.depth,
        "splits": "val figures: prepare's val split (--val 0.2 --test 0.2), the same images for both; the test "
                  "split is not read",
        "cvkit": {key: spread([r["cvkit"][key] for r in runs]) for key in ("pixels_per_s", "val_miou")},
        "baseline": {key: spread([r["baseline"][key] for r in runs])
                     for key in ("pixels_per_s", "val_miou", "best_val_miou")},
        "speedup": spread([r["speedup"] for r in runs]), "runs": runs})


if __name__ == "__main__":
    main()
